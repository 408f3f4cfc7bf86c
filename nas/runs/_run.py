"""Run directories: `prepare` one for a spec, `run_spec` trains and searches in it, `load_run` reads its `Run` back."""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.errors import NASError, RunError
from nas.metrics import default_reference, finite_reference, of
from nas.pareto import Constraint, parse_objectives
from nas.result import SearchResult, hypervolume_history
from nas.rundir import IDENTITY, RunDir, atomic_write
from nas.runs._identity import first_difference, identity_of, write_identity
from nas.runs._spec import SPEC, RunSpec, load_spec
from nas.searching import search
from nas.store import FILENAME as STORE
from nas.store import EvaluationStore
from nas.training import CHECKPOINT, read_checkpoint, train_supernet, trained_on

RUNS = Path("runs")


def run_dir(spec: RunSpec, run: str | os.PathLike | None = None) -> Path:
    """Where the run of `spec` lives: `run` when given, else ``runs/<name>``."""
    if run is not None and not str(run).strip():
        raise RunError("the run directory (--run) is empty; name a directory such as runs/NAME")
    return Path(run) if run is not None else RUNS / spec.name


def prepare(spec: RunSpec, run: str | os.PathLike | None = None) -> Path:
    """Check that the run directory is new or holds this same run, then write its ``spec.toml``.

    Budget and backend may change between sessions (raise the budget to extend a run);
    any other difference raises `RunError` and leaves the directory untouched.
    """
    path = check_run_dir(spec, run)
    write_spec(spec, path)
    return path


def write_spec(spec: RunSpec, path: Path) -> None:
    """Write the run's ``identity.json`` (its own copy) and ``spec.toml``."""
    text = spec.to_toml()
    written = RunSpec.from_dict(tomllib.loads(text))  # the keys as spec.toml gives them back (defaults filled)
    write_identity(path, text, identity_of(written))  # the run's own copy first: spec.toml is checked against it
    RunDir(path).write_spec(text)


def check_run_dir(spec: RunSpec, run: str | os.PathLike | None = None, *, files: bool = False) -> Path:
    """The run directory of `spec`, checked to be new or to hold this same run; nothing is written.

    With `files`, the checkpoint and the database it holds are read through once, so a
    damaged one is refused (`nas.rundir.CorruptFile`) before anything is written.
    """
    path = run_dir(spec, run)
    if path.exists() and not path.is_dir():
        raise RunError(f"the run directory {path} is a file")
    if (path / SPEC).is_file() or (path / IDENTITY).is_file():
        stored = RunSpec.load(path)  # refused when it was edited since the run was made (identity.json)
        same_code = all(stored[k] == spec[k] for k in ("data.source", "space.source"))
        stored._trusted, stored._where = spec._trusted and same_code, str(path)  # never run code only the stored spec names
        stored = stored.resolve() if stored._trusted else stored
        diffs = stored.differences(spec)
        if diffs:
            key, before, now, more = first_difference(diffs)
            raise RunError(
                f"{path} holds a run with {key} = {before}, not {now}{more}; "
                f"use another run directory (--run) or remove {path}"
            )
    elif (path / STORE).exists() or (path / CHECKPOINT).exists():
        raise RunError(f"{path} holds run files but no {SPEC}; use another run directory (--run)")
    elif path.is_dir() and not RunDir(path).is_run() and any(path.iterdir()):
        raise RunError(f"{path} is a non-empty directory that holds no run; use a new or empty run directory (--run)")
    if files and (path / CHECKPOINT).is_file():
        read_checkpoint(path / CHECKPOINT)
    if files and (path / STORE).is_file():
        with EvaluationStore(path / STORE, create=False) as store:
            store.check()
    return path


@dataclass
class Run(SearchResult):
    """A run directory's result: a `SearchResult` with its spec and the trained supernet.

    Example:
        >>> import tempfile
        >>> run = run_spec({"name": "tiny", "space": {"args": {"depths": [1], "widths": [16], "ranks": [4]}},
        ...                 "train": {"epochs": 1}}, run=tempfile.mkdtemp(), budget=1, progress=False)
        >>> len(load_run(run.run).evaluations), load_run(run.run).net.family
        (1, 'mlp')

    Attributes:
        spec: the run's `RunSpec`.
        history: the supernet's per-epoch training records (a method that trains it in its search: the search's).
    """

    spec: RunSpec | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    _net: Any = field(default=None, repr=False, compare=False)

    @property
    def net(self) -> Any:
        """The trained supernet (loaded from the checkpoint on first use)."""
        if self._net is None:
            self._net = _load_net(self.spec, self.run)
        return self._net

    def data(self) -> Any:
        """The run's data (a `nas.data.Data`)."""
        return self.spec.data(self.net)

    def summary(self) -> str:
        """Counts, hypervolume, the front table and where the files are."""
        return f"run {self.spec.name!r}: " + super().summary()


def _load_net(spec: RunSpec, path: Path) -> Any:
    net = spec.build_net()
    method = spec.method
    checkpoint = path / CHECKPOINT
    if not checkpoint.is_file():
        if method.trains and spec["train.epochs"] == 0:
            return net
        command = "train" if method.trains else "search"
        raise RunError(f"the run {path} has no trained supernet yet ({CHECKPOINT} is missing); run `nas {command} --run {path}`")
    state = read_checkpoint(checkpoint)
    method.check_finished(spec, path, state)
    net.load_state_dict(state["model"])
    net.trained_on = trained_on(state)  # the data it was trained on: other data warns (nas.data.DataMismatch)
    net.eval()
    return net


def load_run(path: str | os.PathLike, *, trust: bool = False) -> Run:
    """The result of the run in directory `path` (read only: nothing there is changed).

    A spec whose ``data.source`` or ``space.source`` names code outside nas is imported
    and called only with ``trust=True`` or when its package is in ``NAS_TRUSTED_SOURCES``;
    otherwise `nas.runs.UntrustedSource` names the source and how to trust it.

    Example:
        >>> load_run("no/such/run")
        Traceback (most recent call last):
        ...
        nas.runs.RunError: no run at no/such/run: it has no spec.toml
    """
    path = Path(path)
    if not (path / SPEC).is_file() and not (path / IDENTITY).is_file():
        raise RunError(f"no run at {path}: it has no {SPEC}")
    spec = load_spec(path, trust=trust)
    objectives = parse_objectives(spec["search.objectives"])
    constraints = [Constraint.parse(c) for c in spec["search.constraints"]]
    evaluations: list = []
    ends: list[int] = []
    reference = None
    if (path / STORE).is_file():
        with EvaluationStore(path / STORE, create=False) as store:
            evaluations, ends = store.load_batches()
            stored = store.meta("reference")
        if stored:
            reference = finite_reference(stored)
    net = None
    if reference is None:
        net = spec.build_net()
        largest = net.cost(net.largest())
        reference = finite_reference(default_reference(objectives, {m: largest[m] for m in of("analytic") if m in largest}))
    history = []
    if (path / CHECKPOINT).is_file():
        history = read_checkpoint(path / CHECKPOINT)["history"]
    return Run(
        evaluations=evaluations,
        objectives=objectives,
        space=(net or spec.build_net()).space,
        reference=reference,
        hypervolume_history=hypervolume_history(evaluations, objectives, reference, ends, constraints) if evaluations else [],
        constraints=constraints,
        run=path,
        spec=spec,
        history=history,
    )


def run_spec(
    spec: str | os.PathLike | Mapping[str, Any] | RunSpec | None = None,
    *,
    run: str | os.PathLike | None = None,
    train_only: bool = False,
    progress: bool = True,
    trust: bool | None = None,
    **overrides: Any,
) -> Run:
    """Train the spec's supernet and search it, resuming whatever the run directory already holds.

    Training resumes from the last epoch's checkpoint and the search from the stored
    evaluations, so a run killed at any moment (even with SIGKILL) and started again
    ends with the same front as an uninterrupted one. Every key is validated before the
    run directory is created or touched. The searcher's method (`nas.methods`) says
    whether there is a training phase; one without it trains the supernet in its search
    and resumes from its own checkpoint.

    Args:
        spec: as `load_spec` takes it (None: the built-in demo).
        run: the run directory (default: `spec` when it is one, else ``runs/<name>``).
        train_only: stop after training (``nas train``).
        progress: progress bars for training and search.
        trust: whether the spec may import and call the code its sources name (see `load_spec`;
            None: yes for a file or dict, and for a run directory only with ``NAS_TRUSTED_SOURCES``).
        **overrides: spec keys by flag name (``budget=``, ``searcher=``, ...; see `load_spec`).
    """
    if run is None and isinstance(spec, (str, os.PathLike)) and Path(spec).is_dir():
        run = spec  # a run directory resumes there
    spec = load_spec(spec, trust=trust, **overrides)
    method = spec.method
    if train_only and not method.trains:
        raise RunError(f"searcher {spec['search.searcher']!r} trains the supernet during its search: run `nas search`, not `nas train`")
    device = spec.device(training_only=train_only)  # checked before the run directory is touched
    if method.trains and spec["train.backend"] == "ray" and spec["backend.address"] is not None:
        from nas.training import check_address

        check_address(spec["backend.address"], parameter=spec.label("backend.address"))
    net = spec.build_net()
    if device is not None:
        net.to(device)  # once: training, evaluation and latency run where the supernet is
    data = spec.data(net)
    path = check_run_dir(spec, run)
    with RunDir(path).lock():  # one writing process per run: taken before anything is written
        check_run_dir(spec, path, files=True)  # again under the lock, and the run's files read through
        previous = {p: p.read_bytes() for p in (RunDir(path).spec, RunDir(path).identity) if p.is_file()}
        write_spec(spec, path)
        try:
            history = None
            if method.trains:
                history = train_supernet(net, data, run=path, resume=True, progress=progress, **spec.train_kwargs())
                if train_only:
                    result = load_run(path)
                    result._net = net
                    return result
            result = search(net, data, run=path, progress=progress, **spec.search_kwargs())
        except Exception:  # a failed command leaves the run's spec as it was (a new budget, backend)
            for file, text in previous.items():
                with contextlib.suppress(NASError):
                    atomic_write(file, text)
            raise
    if history is None:  # the search trained the supernet: its per-epoch records
        history = result.history
    return Run(
        evaluations=result.evaluations,
        objectives=result.objectives,
        space=result.space,
        reference=result.reference,
        hypervolume_history=result.hypervolume_history,
        constraints=result.constraints,
        run=path,
        spec=spec,
        history=history,
        _net=net.eval(),
    )
