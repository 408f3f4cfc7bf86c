"""`nas.search`: the search loop (ask the searcher, evaluate through a backend, tell, store)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nas.backends import Backend
from nas.backends import get as get_backend
from nas.evaluation import Evaluation
from nas.pareto import Objective, non_dominated_sort, objective_matrix, parse_objectives, hypervolume
from nas.result import SearchResult
from nas.searchers._base import Searcher
from nas.searchers._base import get as get_searcher
from nas.store import FILENAME as STORE
from nas.store import EvaluationStore

METRICS = ("accuracy", "loss", "params", "macs", "latency_ms")
ANALYTIC = ("params", "macs")


def search(
    net: Any,
    data: Any = None,
    *,
    objectives: Sequence[str | Objective] | str = ("accuracy:max", "params:min"),
    searcher: str | Searcher = "evolution",
    budget: int = 100,
    backend: str | Backend = "local",
    run: str | Path | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    latency: str | None = None,
    reference: dict[str, float] | None = None,
    progress: bool = True,
    searcher_kwargs: dict[str, Any] | None = None,
    backend_kwargs: dict[str, Any] | None = None,
) -> SearchResult:
    """Search `net`'s space for the Pareto front of `objectives` within `budget` evaluations.

    With a `run` directory, evaluations are stored there batch by batch and a repeated call
    resumes from them: stored configs are never evaluated again.

    Example:
        >>> import nas, search_spaces
        >>> net = search_spaces.get("mlp", depths=(1,), widths=(16, 32), ranks=(4, 8))
        >>> result = nas.search(net, searcher="random", budget=4, progress=False)
        >>> len(result.evaluations), result.front[0].ok
        (4, True)

    Args:
        net: a trained `Supernet`.
        data: as `nas.data.resolve` takes it (None: the family's digits split).
        objectives: metric names with directions, e.g. ``["accuracy:max", "latency_ms:min"]``;
            metrics: accuracy, loss, params, macs, latency_ms.
        searcher: a registered name (``nas.searchers.names()``), a `Searcher`, or ``"tangle"``:
            gradient-based search (`nas.tangle.search_tangle`; `budget` is then its epochs,
            each recording its argmax architecture).
        budget: total evaluations, stored ones included.
        backend: ``"local"``, ``"ray"`` or a `Backend`.
        run: directory for the evaluations database and the front (resumes when it exists).
        seed: seed of the searcher.
        batch_size: configs asked and evaluated per step (default: the backend's parallelism, at least 8).
        latency: how ``latency_ms`` is obtained: ``"table"`` (predicted from a per-layer table,
            the default when it is an objective) or ``"measured"``.
        reference: hypervolume reference point (default: accuracy 0, analytic costs 1.1x the
            largest subnet's, other metrics from the first batch).
        progress: show a progress bar.
        searcher_kwargs: extra arguments of the searcher.
        backend_kwargs: extra arguments of the backend (passed to `nas.evaluate` locally).
    """
    objectives = parse_objectives(objectives)
    unknown = [o.name for o in objectives if o.name not in METRICS]
    if unknown:
        raise ValueError(f"unknown objective metric {unknown[0]!r}; the metrics are: {', '.join(METRICS)}")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"The 'budget' parameter of search must be an int >= 1, got {budget!r}.")
    if latency not in (None, "table", "measured"):
        raise ValueError(f"The 'latency' parameter of search must be 'table' or 'measured', got {latency!r}.")
    wants_latency = any(o.name == "latency_ms" for o in objectives)
    latency = latency or ("table" if wants_latency else None)

    if isinstance(searcher, str) and searcher == "tangle":
        return _tangle(net, data, objectives, budget, backend, run, seed, latency, progress, searcher_kwargs)
    owned = not isinstance(backend, Backend)
    if owned:
        kwargs = dict(backend_kwargs or {})
        if latency:
            kwargs.setdefault("latency", latency)
        backend = get_backend(backend, net, data, **kwargs)
    cost = _cost_function(net, backend if latency == "table" else None)
    if isinstance(searcher, str):
        searcher = get_searcher(searcher, net.space, objectives, **{"seed": seed, "cost": cost, "budget": budget, **(searcher_kwargs or {})})
    elif not isinstance(searcher, Searcher):
        raise TypeError(f"The 'searcher' parameter must be a searcher name or a Searcher, got {type(searcher).__name__}.")

    store = EvaluationStore(Path(run) / STORE) if run is not None else None
    try:
        evaluations, batches = store.load_batches() if store is not None else ([], [])
        names = [str(o) for o in objectives]
        if store is not None and evaluations:
            stored = store.meta("objectives")
            if stored is not None and stored != names:
                raise ValueError(
                    f"the run {run} was searched with objectives {stored}, not {names}; "
                    "use a new run directory for other objectives"
                )
            if reference is None:
                reference = _plain_reference(store.meta("reference"))
        tracker = _FrontTracker(objectives, reference or default_reference(net, objectives))
        history: list[tuple[int, float]] = []
        start = 0
        for end in batches:  # batch by batch, as the uninterrupted search saw them
            tracker.add(evaluations[start:end])
            history.append((end, tracker.hypervolume()))
            start = end
        if evaluations:
            searcher.resume(evaluations, batches)
    except BaseException:
        if store is not None:
            store.close()
        if owned:
            backend.close()
        raise
    step = batch_size or max(backend.parallelism, 8)
    written = tracker.reference_dict() if evaluations else None

    bar = _progress(progress, budget, len(evaluations))
    try:
        while len(evaluations) < budget:
            configs = searcher.ask(min(step, budget - len(evaluations)))
            if not configs:
                break  # the space is used up
            results = backend.evaluate(configs)
            tracker.add(results)
            if store is not None:
                facts = {"objectives": names} if not evaluations else {}
                if tracker.reference_dict() != written:
                    written = facts["reference"] = tracker.reference_dict()
                store.append(results, [net.space.key(c) for c in configs], facts)
            searcher.tell(results)
            evaluations.extend(results)
            history.append((len(evaluations), tracker.hypervolume()))
            if bar is not None:
                bar.update(len(results))
                bar.set_postfix(hv=f"{history[-1][1]:.4g}", front=len(tracker.front), refresh=False)
    finally:
        if bar is not None:
            bar.close()
        if owned:
            backend.close()
        if store is not None:
            store.close()

    reference = tracker.reference_dict()
    result = SearchResult(
        evaluations=evaluations,
        objectives=objectives,
        space=net.space,
        reference=reference,
        hypervolume_history=history,
        run=Path(run) if run is not None else None,
    )
    if run is not None:
        write_front(result)
    return result


def _plain_reference(stored: dict[str, float | None] | None) -> dict[str, float | None] | None:
    """A stored reference point, with unset entries (infinite) left to be decided."""
    if not stored:
        return None
    return {k: (None if v is None or not math.isfinite(v) else float(v)) for k, v in stored.items()}


def _cost_function(net: Any, backend: Backend | None):
    """Analytic metrics of a config: params and MACs, plus table latency when used."""
    table = getattr(backend, "latency_table", None) if backend is not None else None

    def cost(config):
        out = dict(net.cost(config))
        if table is not None:
            out["latency_ms"] = float(table.predict(config))
        return out

    return cost


def default_reference(net: Any, objectives: list[Objective]) -> dict[str, float | None]:
    """Accuracy 0, analytic costs 1.1x the largest subnet's; others decided by the first batch."""
    largest = net.cost(net.largest())
    out: dict[str, float | None] = {}
    for o in objectives:
        if o.name in ANALYTIC:
            out[o.name] = 1.1 * largest[o.name]
        elif o.name == "accuracy":
            out[o.name] = 0.0
        else:
            out[o.name] = None
    return out


class _FrontTracker:
    """The running Pareto front and its hypervolume, updated batch by batch."""

    def __init__(self, objectives: list[Objective], reference: dict[str, float | None]):
        self.objectives = objectives
        self.reference = dict(reference)
        self.front = np.zeros((0, len(objectives)))

    def add(self, evaluations: Sequence[Evaluation]) -> None:
        ok = [e for e in evaluations if e.ok and all(o.name in e.metrics for o in self.objectives)]
        if not ok:
            return
        values = objective_matrix(ok, self.objectives)
        for i, o in enumerate(self.objectives):
            if self.reference.get(o.name) is None:
                worst = float(values[:, i].max())
                self.reference[o.name] = o.sign * (worst + 0.5 * abs(worst) + 1e-9)
        points = np.vstack([self.front, values])
        self.front = points[non_dominated_sort(points)[0]]

    def reference_dict(self) -> dict[str, float]:
        return {k: (v if v is not None else math.inf) for k, v in self.reference.items()}

    def hypervolume(self) -> float:
        if not len(self.front):
            return 0.0
        ref = np.array([o.sign * self.reference[o.name] for o in self.objectives])
        return hypervolume(self.front, ref)


def _progress(enabled: bool, total: int, done: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="search", unit="eval", dynamic_ncols=True)


def write_front(result: SearchResult) -> None:
    """Write the result's Pareto front, objectives, reference and hypervolume to front.json in its run directory."""
    front = [e.to_dict() for e in result.front]
    payload = {
        "objectives": [[o.name, o.direction] for o in result.objectives],
        "reference": result.reference,
        "hypervolume": result.hypervolume,
        "front": front,
    }
    path = result.run / "front.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)


def _tangle(net, data, objectives, budget, backend, run, seed, latency, progress, searcher_kwargs) -> SearchResult:
    """Gradient-based search (TangleNAS): one recorded architecture per epoch of bi-level training."""
    if backend != "local":
        raise ValueError("searcher 'tangle' trains the supernet in this process; use backend='local'")
    from nas.tangle import search_tangle

    kwargs = dict(searcher_kwargs or {})
    kwargs.setdefault("epochs", budget)
    return search_tangle(net, data, objectives, run=run, seed=seed, progress=progress,
                         latency="table" if latency == "table" else None, resume=run is not None, **kwargs)
