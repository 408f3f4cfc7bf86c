"""Run directories: one spec repeats a whole run, and a killed run resumes where it stopped.

A run lives in ``runs/<name>/``: ``spec.toml`` (everything needed to repeat it), the
supernet checkpoint ``supernet.pt``, the evaluations database ``evaluations.sqlite``,
``front.json``, the report and exports. `run_spec` trains the supernet (resuming from its
checkpoint) and searches it (resuming from the stored evaluations); `load_run` gives the
result back with the trained supernet loadable.

The spec has one schema (`FIELDS`), validated in one place (`RunSpec`), and reached three
ways that take the same names: a TOML file, the ``nas`` command's flags, and keyword
arguments of `run_spec` / `load_spec`:

========================  ======================  ===========================================
spec key                  flag / keyword          meaning
========================  ======================  ===========================================
``name``                                          run name: the run directory is ``runs/<name>``
``seed``                  ``--seed``              seed of the supernet's init, training and search
``space.family``          ``--space``             supernet family (``nas spaces``)
``space.args``                                    the family's arguments
``data.source``                                   ``"digits"`` or ``"package.module:function"``
``data.args``                                     arguments of the data source
``train.*``               ``--epochs``            training recipe (strategy, epochs, lr, ...)
``evaluate.*``                                    evaluation settings (BatchNorm calibration, latency)
``search.searcher``       ``--searcher``          searcher name (``nas.search.names()``)
``search.objectives``     ``--objectives``        e.g. ``["accuracy:max", "params:min"]``
``search.budget``         ``--budget``            total evaluations
``search.args``                                   the searcher's arguments
``backend.name``          ``--backend``           ``"local"`` or ``"ray"``
``backend.address``       ``--ray-address``       Ray cluster address (``"auto"``)
``backend.args``                                  the backend's own arguments
========================  ======================  ===========================================

With ``search.searcher = "tangle"`` (gradient search, `nas.tangle.search_tangle`) the
supernet is trained by the search itself: ``search.budget`` is its epochs (one recorded
architecture each), ``search.args`` holds its options (`tangle_fields`: cost_weight,
budget_constraint, sampling, combine, lr, arch_lr, ...), and the ``[train]`` section does
not apply (a ``train.*`` key or ``--epochs`` is refused, and ``nas train`` too).

Example:
    >>> spec = load_spec({"name": "tiny", "space": {"args": {"depths": [1], "widths": [16], "ranks": [4]}}}, budget=4)
    >>> spec["search.budget"], spec["space.family"], spec["train.strategy"]
    (4, 'mlp', 'sandwich')
    >>> load_spec({"search": {"budgt": 4}})
    Traceback (most recent call last):
    ...
    nas.runs.SpecError: unknown spec key 'search.budgt'; the keys of [search] are: searcher, objectives, budget, batch_size, args
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas._toml import dumps_toml
from nas.result import SearchResult, hypervolume_history
from nas.store import FILENAME as STORE
from nas.store import EvaluationStore

SPEC = "spec.toml"
CHECKPOINT = "supernet.pt"
RUNS = Path("runs")
TANGLE = "tangle"
"""The gradient searcher (`nas.tangle.search_tangle`): it trains the supernet itself."""


class RunError(ValueError):
    """A run that cannot be used as asked (missing, unfinished, or holding another run)."""


class SpecError(RunError):
    """A spec key that is unknown or has a value outside what it allows."""


# -- the schema ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """One spec key: its type, default, and the flag / keyword that sets it.

    Args:
        key: dotted key (``"search.budget"``).
        kind: ``"int"``, ``"float"``, ``"bool"``, ``"str"``, ``"strs"`` (list of strings) or ``"table"``.
        default: value when absent (None: unset, left to the library's default).
        help: one line for ``--help`` and the docs.
        flag: flag name (``--budget``) and keyword name (``budget``), when it has one.
        minimum: lowest allowed number.
        above: whether the number must be strictly above `minimum`.
        choices: allowed strings, or a function giving them (evaluated lazily).
        identity: whether it must match when a run is resumed (else it may change: budget, backend).
    """

    key: str
    kind: str
    default: Any
    help: str
    flag: str | None = None
    minimum: float | None = None
    above: bool = False
    choices: tuple[str, ...] | Callable[[], list[str]] | None = None
    identity: bool = True

    @property
    def section(self) -> str:
        return self.key.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.key.rpartition(".")[2]

    def allowed(self) -> list[str] | None:
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)

    def describe(self) -> str:
        """What values it takes, for error messages."""
        if self.kind == "int":
            return f"an int {'>' if self.above else '>='} {self.minimum:g}" if self.minimum is not None else "an int"
        if self.kind == "float":
            return f"a number {'>' if self.above else '>='} {self.minimum:g}" if self.minimum is not None else "a number"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "strs":
            return "a list of strings"
        if self.kind == "table":
            return "a table (TOML [section] or inline {...})"
        allowed = self.allowed()
        return f"one of {allowed}" if allowed else "a string"


def _families() -> list[str]:
    import search_spaces

    return search_spaces.names()


def _strategies() -> list[str]:
    from nas.training import STRATEGIES

    return sorted(STRATEGIES)


def _searchers() -> list[str]:
    from nas.search import names

    return sorted([*names(), TANGLE])


def _backends() -> list[str]:
    from nas.backends import names

    return names()


def _training_defaults() -> dict[str, Any]:
    from nas.training import _loop

    return {"epochs": _loop.EPOCHS, "lr": _loop.LR, "batch_size": _loop.BATCH_SIZE, "weight_decay": _loop.WEIGHT_DECAY}


_TRAIN = _training_defaults()

FIELDS: tuple[Field, ...] = (
    Field("name", "str", "run", "run name; the run directory is runs/<name>", identity=False),
    Field("seed", "int", 0, "seed of the supernet's initial weights, its training and the search", flag="seed", minimum=0),
    Field("space.family", "str", "mlp", "supernet family (see `nas spaces`)", flag="space", choices=_families),
    Field("space.args", "table", {}, "the family's arguments (e.g. widths = [16, 32])"),
    Field("data.source", "str", "digits", "'digits' (scikit-learn's bundled digits) or 'package.module:function' returning the data"),
    Field("data.args", "table", {}, "arguments of the data source (digits: seed, val_fraction, test_fraction)"),
    Field("train.strategy", "str", "sandwich", "supernet training strategy", choices=_strategies),
    Field("train.strategy_args", "table", {}, "the strategy's arguments (e.g. n = 2)"),
    Field("train.epochs", "int", _TRAIN["epochs"], "training epochs (0: no training)", flag="epochs", minimum=0),
    Field("train.lr", "float", _TRAIN["lr"], "peak learning rate", minimum=0, above=True),
    Field("train.batch_size", "int", _TRAIN["batch_size"], "training batch size", minimum=1),
    Field("train.optimizer", "str", "adamw", "optimizer", choices=("adamw", "adam", "sgd")),
    Field("train.weight_decay", "float", _TRAIN["weight_decay"], "weight decay", minimum=0),
    Field("train.schedule", "str", "cosine", "learning-rate schedule", choices=("cosine", "constant")),
    Field("train.distill", "str", "default", "in-place distillation ('default': the strategy's)", choices=("default", "kl", "alpha", "off")),
    Field("train.grad_clip", "float", None, "clip the gradient norm to this value (unset: no clipping)", minimum=0, above=True),
    Field("evaluate.batch_size", "int", 256, "evaluation batch size", minimum=1),
    Field("evaluate.calibration_batches", "int", 4, "training batches that recalibrate BatchNorm per subnet", minimum=0),
    Field("evaluate.latency", "str", None, "how latency_ms is obtained (default: 'table' when it is an objective)", choices=("table", "measured")),
    Field("evaluate.latency_batch_size", "int", 1, "batch size latency is measured or predicted at", minimum=1),
    Field("search.searcher", "str", "evolution", "searcher", flag="searcher", choices=_searchers),
    Field("search.objectives", "strs", ["accuracy:max", "params:min"], "objectives, e.g. accuracy:max,params:min", flag="objectives"),
    Field("search.budget", "int", 100, "total evaluations (tangle: epochs, one recorded architecture each); raise it to extend a finished run",
          flag="budget", minimum=1, identity=False),
    Field("search.batch_size", "int", None, "configs asked and evaluated per step (unset: the backend's parallelism, at least 8; "
          "set it to resume on another backend with the same proposals)", minimum=1),
    Field("search.args", "table", {}, "the searcher's arguments (e.g. population_size = 24)"),
    Field("backend.name", "str", "local", "where evaluations run", flag="backend", choices=_backends, identity=False),
    Field("backend.address", "str", None, "Ray cluster address ('auto': the running cluster); ray backend only", flag="ray_address", identity=False),
    Field("backend.args", "table", {}, "the backend's own arguments", identity=False),
)
_BY_KEY = {f.key: f for f in FIELDS}
_ARGS_OF = ("space.family", "search.searcher")  # keys whose arguments table belongs to the chosen name
_BY_FLAG = {f.flag: f for f in FIELDS if f.flag}
SECTIONS = ("space", "data", "train", "evaluate", "search", "backend")

DEMO: dict[str, Any] = {
    "name": "demo",
    "seed": 0,
    "space": {"family": "mlp"},
    "data": {"source": "digits"},
    "train": {"strategy": "sandwich", "epochs": 100, "lr": 0.01},
    "search": {"searcher": "evolution", "objectives": ["accuracy:max", "params:min"], "budget": 200, "args": {"population_size": 24}},
    "backend": {"name": "local"},
}
"""The built-in demo (`nas search` with no spec): an MLP supernet on digits, trained and searched in under a minute."""


def flags() -> dict[str, Field]:
    """The spec keys that have a flag (``--budget``) and keyword (``budget=``), by that name."""
    return dict(_BY_FLAG)


# -- the validated spec --------------------------------------------------------------------
class RunSpec:
    """A validated run spec: every key of `FIELDS`, defaults filled in.

    Build it with `load_spec` (from a file, a dict, flags or keywords). `resolve` checks
    the names against the registries, builds the supernet and the searcher once to check
    their arguments, and fills in every default they use, so the spec written to the run
    directory repeats the run even if library defaults change.

    Example:
        >>> spec = RunSpec.from_dict({"search": {"budget": 8}})
        >>> spec["search.budget"], spec["train.optimizer"]
        (8, 'adamw')

    Args:
        values: the nested spec, already checked by `from_dict`.
        labels: how each key was given (for error messages), e.g. ``{"search.budget": "--budget"}``.
    """

    def __init__(self, values: dict[str, Any], labels: Mapping[str, str] | None = None):
        self._values = values
        self._labels = dict(labels or {})
        self._resolved = False

    # -- construction --------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> RunSpec:
        """A spec from a nested dict (a parsed TOML file); unknown keys and bad values raise `SpecError`."""
        if not isinstance(data, Mapping):
            raise SpecError(f"a spec must be a table of keys, got {type(data).__name__}")
        where = f" in {source}" if source else ""
        values: dict[str, Any] = {s: {} for s in SECTIONS}
        labels: dict[str, str] = {}
        top = [f.name for f in FIELDS if not f.section]
        for key, value in data.items():
            if key in SECTIONS:
                if not isinstance(value, Mapping):
                    raise SpecError(f"spec key {key!r}{where} must be a table ([{key}]), got {value!r}")
                allowed = [f.name for f in FIELDS if f.section == key]
                for sub, v in value.items():
                    dotted = f"{key}.{sub}"
                    if dotted not in _BY_KEY:
                        raise SpecError(f"unknown spec key {dotted!r}{where}; the keys of [{key}] are: {', '.join(allowed)}")
                    labels[dotted] = f"{dotted}{where}"
                    values[key][sub] = _check(_BY_KEY[dotted], v, labels[dotted])
            elif key in top:
                labels[key] = f"{key}{where}"
                values[key] = _check(_BY_KEY[key], value, labels[key])
            else:
                raise SpecError(
                    f"unknown spec key {key!r}{where}; the top-level keys are: {', '.join(top)}, "
                    f"and the sections: {', '.join(f'[{s}]' for s in SECTIONS)}"
                )
        for f in FIELDS:
            box = values[f.section] if f.section else values
            if f.name not in box and f.default is not None:
                box[f.name] = copy.deepcopy(f.default)
        return cls(values, labels)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RunSpec:
        """A spec from a TOML file."""
        path = Path(path)
        if path.is_dir():
            if not (path / SPEC).is_file():
                raise RunError(f"no run at {path}: it has no {SPEC}")
            path = path / SPEC
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise RunError(f"spec file {path} does not exist") from None
        except OSError as err:
            raise RunError(f"cannot read spec file {path}: {err.strerror or err}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise SpecError(f"{path} is not valid TOML: {err}") from None
        if "name" not in data and path.name != SPEC:
            data["name"] = path.stem  # runs/cnn.toml runs in runs/cnn/
        return cls.from_dict(data, str(path))

    def override(self, how: str = "keyword", **values: Any) -> RunSpec:
        """A copy with the flag-named keys set (`how`: ``"flag"`` for CLI text, ``"keyword"`` for Python values).

        A different ``space`` drops the old family's ``space.args``, and a different
        ``searcher`` the old searcher's ``search.args`` (and, to ``"tangle"``, the ``[train]`` section).
        """
        out = RunSpec(copy.deepcopy(self._values), self._labels)
        for name, value in sorted(values.items(), key=lambda item: item[0] not in ("space", "searcher")):
            if value is None:
                continue
            f = _BY_FLAG.get(name)
            if f is None:
                raise SpecError(f"unknown argument {name!r}; the arguments are: {', '.join(_BY_FLAG)}")
            label = f"--{name.replace('_', '-')}" if how == "flag" else f"the '{name}' argument"
            if how == "flag":
                value = _from_text(f, value, label)
            value = _check(f, value, label)
            if f.key in _ARGS_OF and value != out[f.key]:  # another family or searcher: its own arguments
                section, _ = f.key.split(".")
                out._values[section]["args"] = {}
                if value == TANGLE:  # it trains the supernet itself: the old training recipe goes too
                    out._reset("train")
            out._set(f.key, value)
            out._labels[f.key] = label
        return out

    # -- access --------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in _BY_KEY:
            raise KeyError(key)
        section, _, name = key.rpartition(".")
        box = self._values[section] if section else self._values
        return box.get(name)

    def _set(self, key: str, value: Any) -> None:
        section, _, name = key.rpartition(".")
        box = self._values[section] if section else self._values
        box[name] = value

    def _reset(self, section: str) -> None:
        """Set every key of `section` back to its default, as if never given."""
        self._values[section] = {f.name: copy.deepcopy(f.default) for f in FIELDS if f.section == section and f.default is not None}
        self._labels = {k: v for k, v in self._labels.items() if not k.startswith(f"{section}.")}

    @property
    def tangle(self) -> bool:
        """Whether the searcher is ``"tangle"`` (the search trains the supernet; no ``[train]``)."""
        return self["search.searcher"] == TANGLE

    def label(self, key: str) -> str:
        """How `key` was given, for messages (``"search.budget in runs/x.toml"``, ``"--budget"``)."""
        return self._labels.get(key, key)

    @property
    def name(self) -> str:
        return self["name"]

    def to_dict(self) -> dict[str, Any]:
        """The spec as a nested dict (unset keys left out)."""
        out: dict[str, Any] = {}
        for key, value in self._values.items():
            if key == "train" and self.tangle:
                continue  # the tangle search trains the supernet with its own recipe (search.args)
            if isinstance(value, dict) and key in SECTIONS:
                section = {k: copy.deepcopy(v) for k, v in value.items() if v is not None}
                if section:
                    out[key] = section
            elif value is not None:
                out[key] = value
        return out

    def to_toml(self) -> str:
        """The spec as TOML text (what ``spec.toml`` holds)."""
        head = "# nas run spec: `nas search --run DIR` repeats (or resumes) the run it describes\n"
        return head + dumps_toml(self.to_dict())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunSpec) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"RunSpec(name={self.name!r}, family={self['space.family']!r}, searcher={self['search.searcher']!r}, budget={self['search.budget']})"

    def differences(self, other: RunSpec) -> list[tuple[str, Any, Any]]:
        """``(key, mine, other's)`` for each identity key (see `Field.identity`) that differs."""
        out = []
        for f in FIELDS:
            if f.identity and _normal(self[f.key]) != _normal(other[f.key]):
                out.append((f.key, self[f.key], other[f.key]))
        return out

    # -- semantic checks and building --------------------------------------------------------
    def resolve(self) -> RunSpec:
        """Check names and arguments against the registries and fill in the defaults they use.

        Builds the supernet, the data and the searcher once (cheap); raises `SpecError`
        naming the key for anything they refuse. Returns self.
        """
        if self._resolved:
            return self
        for f in FIELDS:
            allowed = f.allowed() if f.kind == "str" else None
            value = self[f.key]
            if allowed is not None and value is not None and value not in allowed:
                raise SpecError(f"{self.label(f.key)} must be one of {allowed}, got {value!r}")
        net = self.build_net()
        self._values["space"]["args"] = _normal(dict(net.family_args))
        self._resolve_data(net)
        if self.tangle:
            self._resolve_tangle(net)
        else:
            self._resolve_train()
            self._resolve_search(net)
        self._resolve_backend()
        self._resolved = True
        return self

    def build_net(self) -> Any:
        """A new supernet of the spec's family, its initial weights drawn from the spec's seed."""
        import torch

        import search_spaces

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self["seed"])
            try:
                return search_spaces.get(self["space.family"], **self["space.args"])
            except ValueError as err:
                raise SpecError(f"{self.label('space.args')} does not suit family {self['space.family']!r}: {_first_line(err)}") from None
            except Exception as err:  # a family that rejects its arguments in its own words
                raise SpecError(f"{self.label('space.args')} does not suit family {self['space.family']!r}: {type(err).__name__}: {_first_line(err)}") from None

    def data(self, net: Any) -> Any:
        """The training and validation data (a `nas.data.Data`)."""
        from nas.data import digits, resolve

        source, args = self["data.source"], dict(self["data.args"])
        label = self.label("data.args")
        if source == "digits":
            kind = getattr(net, "data_kind", None)
            if kind is None:
                raise SpecError(f"family {self['space.family']!r} has no digits data (no data_kind); set data.source")
            try:
                return digits(kind, **args)
            except TypeError:
                allowed = [p for p in inspect.signature(digits).parameters if p != "kind"]
                bad = next((k for k in args if k not in allowed), "?")
                raise SpecError(f"unknown key {bad!r} in {label} for digits; the keys are: {', '.join(allowed)}") from None
            except ValueError as err:
                raise SpecError(f"{label}: {_first_line(err)}") from None
        module, _, attr = source.partition(":")
        if not module or not attr:
            raise SpecError(f"{self.label('data.source')} must be 'digits' or 'package.module:function', got {source!r}")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise SpecError(f"{self.label('data.source')}: cannot import {source!r} ({_first_line(err)})") from None
        try:
            return resolve(net, factory(**args))
        except (TypeError, ValueError) as err:
            raise SpecError(f"{self.label('data.source')} = {source!r} with {label} {args}: {_first_line(err)}") from None

    def strategy(self) -> Any:
        """The training `Strategy`."""
        from nas.training import get_strategy

        try:
            return get_strategy(self["train.strategy"], **self["train.strategy_args"])
        except (TypeError, ValueError) as err:
            raise SpecError(f"{self.label('train.strategy_args')} for strategy {self['train.strategy']!r}: {_first_line(err)}") from None

    def train_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `nas.training.train_supernet` (besides net, data and run)."""
        distill = {"default": None, "off": False}.get(self["train.distill"], self["train.distill"])
        return {
            "strategy": self.strategy(),
            "epochs": self["train.epochs"],
            "lr": self["train.lr"],
            "batch_size": self["train.batch_size"],
            "distill": distill,
            "optimizer": self["train.optimizer"],
            "weight_decay": self["train.weight_decay"],
            "schedule": self["train.schedule"],
            "grad_clip": self["train.grad_clip"],
            "seed": self["seed"],
        }

    def search_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `nas.search` (besides net, data and run)."""
        backend_kwargs = {
            "batch_size": self["evaluate.batch_size"],
            "calibration_batches": self["evaluate.calibration_batches"],
            "latency_batch_size": self["evaluate.latency_batch_size"],
            **self["backend.args"],
        }
        if self["backend.address"] is not None:
            backend_kwargs["address"] = self["backend.address"]
        return {
            "objectives": list(self["search.objectives"]),
            "searcher": self["search.searcher"],
            "budget": self["search.budget"],
            "backend": self["backend.name"],
            "seed": self["seed"],
            "batch_size": self["search.batch_size"],
            "latency": self["evaluate.latency"],
            "searcher_kwargs": dict(self["search.args"]),
            "backend_kwargs": backend_kwargs,
        }

    def searcher(self, net: Any) -> Any:
        """A new searcher for `net`'s space (for checking its arguments)."""
        from nas.search import get

        try:
            return get(self["search.searcher"], net.space, self["search.objectives"], seed=self["seed"], **self["search.args"])
        except (TypeError, ValueError) as err:
            raise SpecError(f"{self.label('search.args')} for searcher {self['search.searcher']!r}: {_first_line(err)}") from None

    def _resolve_data(self, net: Any) -> None:
        if self["data.source"] == "digits":
            from nas.data import digits

            self.data(net)
            defaults = {k: p.default for k, p in inspect.signature(digits).parameters.items() if k != "kind"}
            self._values["data"]["args"] = {**defaults, **self["data.args"]}
        else:
            self.data(net)

    def _resolve_train(self) -> None:
        strategy = self.strategy()
        self._values["train"]["strategy_args"] = _normal(strategy.params())

    def _resolve_objectives(self) -> list[Any]:
        from nas.pareto import parse_objectives
        from nas.search._loop import METRICS

        try:
            objectives = parse_objectives(self["search.objectives"])
        except ValueError as err:
            raise SpecError(f"{self.label('search.objectives')}: {_first_line(err)}") from None
        unknown = [o.name for o in objectives if o.name not in METRICS]
        if unknown:
            raise SpecError(f"{self.label('search.objectives')} names unknown metric {unknown[0]!r}; the metrics are: {', '.join(METRICS)}")
        self._values["search"]["objectives"] = [str(o) for o in objectives]
        return objectives

    def _resolve_search(self, net: Any) -> None:
        self._resolve_objectives()
        searcher = self.searcher(net)
        # fill in the searcher's plain defaults, so the stored spec pins them
        args = dict(self["search.args"])
        for name, param in inspect.signature(type(searcher).__init__).parameters.items():
            if name in ("self", "space", "objectives", "seed", "cost", "budget") or name in args:
                continue
            if param.default is not inspect.Parameter.empty and _plain_value(param.default):
                args[name] = _normal(param.default)
        self._values["search"]["args"] = args

    def _resolve_tangle(self, net: Any) -> None:
        """Check a tangle run: no [train], a local backend, its options; pin their defaults."""
        objectives = self._resolve_objectives()
        given = [k for k in self._labels if k.startswith("train.")]
        if given:
            raise SpecError(
                f"{self.label(given[0])} does not apply to searcher 'tangle': it trains the supernet itself, for search.budget "
                "epochs, with the recipe in search.args (lr, batch_size, optimizer, weight_decay, schedule, grad_clip)"
            )
        if self["search.batch_size"] is not None:
            raise SpecError(f"{self.label('search.batch_size')} does not apply to searcher 'tangle': it records one architecture per epoch")
        if self["backend.name"] != "local":
            raise SpecError(f"{self.label('backend.name')} must be 'local' for searcher 'tangle' (it trains the supernet in this process), got {self['backend.name']!r}")
        if self["evaluate.latency"] == "measured":
            raise SpecError(f"{self.label('evaluate.latency')} must be 'table' for searcher 'tangle' (its expected latency comes from a latency table), got 'measured'")
        self._values["search"]["args"] = _check_tangle_args(dict(self["search.args"]), self.label("search.args"), net, objectives)

    def tangle_kwargs(self, net: Any) -> dict[str, Any]:
        """Keyword arguments of `nas.tangle.search_tangle` (besides net, data, run, resume and progress)."""
        args = dict(self["search.args"])
        if isinstance(args.get("temperature"), list):
            args["temperature"] = tuple(args["temperature"])
        metrics = {o.partition(":")[0] for o in self["search.objectives"]}
        if args.get("budget_constraint") is not None:
            from nas.pareto import Constraint

            metrics.add(Constraint.parse(args["budget_constraint"]).metric)
        latency = None
        if self["evaluate.latency"] == "table" or "latency_ms" in metrics:
            from nas.latency import LatencyTable

            latency = LatencyTable.for_net(net, batch_size=self["evaluate.latency_batch_size"])
        evaluate_kwargs = {"batch_size": self["evaluate.batch_size"], "calibration_batches": self["evaluate.calibration_batches"],
                           "latency_batch_size": self["evaluate.latency_batch_size"], **self["backend.args"]}
        return {"objectives": list(self["search.objectives"]), "epochs": self["search.budget"], "seed": self["seed"],
                "latency": latency, "evaluate_kwargs": evaluate_kwargs, **args}

    def _resolve_backend(self) -> None:
        if self["backend.address"] is not None and self["backend.name"] != "ray":
            raise SpecError(f"{self.label('backend.address')} applies only to the ray backend (backend is {self['backend.name']!r})")


# -- the tangle searcher's options (search.args) ----------------------------------------------
def tangle_fields() -> dict[str, Field]:
    """The options of searcher ``"tangle"`` (`nas.tangle.search_tangle`'s) that a spec's ``search.args`` may set."""
    from nas.tangle import COMBINES, SAMPLERS
    from nas.training._loop import OPTIMIZERS, SCHEDULES

    fields = (
        Field("search.args.cost_weight", "float", None, "weight of the expected cost, as a fraction of the largest subnet's", minimum=0),
        Field("search.args.budget_constraint", "str", None, "a hard budget on a cost, e.g. 'params<=50000'"),
        Field("search.args.sampling", "str", None, "how architecture parameters become weights", choices=tuple(sorted(SAMPLERS))),
        Field("search.args.combine", "str", None, "how a layer's candidates combine", choices=tuple(COMBINES)),
        Field("search.args.temperature", "float", None, "the sampler's temperature, or [start, end] annealed", minimum=0, above=True),
        Field("search.args.second_order", "bool", None, "DARTS' unrolled architecture gradient"),
        Field("search.args.ordered_dropout", "bool", None, "also cut low-rank layers at a random rank in weight steps"),
        Field("search.args.warmup_epochs", "int", None, "first epochs train the weights only", minimum=0),
        Field("search.args.lr", "float", None, "the weights' peak learning rate", minimum=0, above=True),
        Field("search.args.batch_size", "int", None, "training batch size", minimum=1),
        Field("search.args.optimizer", "str", None, "the weights' optimizer", choices=tuple(OPTIMIZERS)),
        Field("search.args.weight_decay", "float", None, "the weights' weight decay", minimum=0),
        Field("search.args.schedule", "str", None, "the weights' learning-rate schedule", choices=tuple(SCHEDULES)),
        Field("search.args.grad_clip", "float", None, "clip the weights' gradient norm to this value", minimum=0, above=True),
        Field("search.args.arch_lr", "float", None, "learning rate of the architecture parameters", minimum=0, above=True),
        Field("search.args.arch_optimizer", "str", None, "optimizer of the architecture parameters", choices=("adam", "sgd")),
        Field("search.args.arch_weight_decay", "float", None, "weight decay of the architecture parameters", minimum=0),
    )
    return {f.name: f for f in fields}


def _check_tangle_args(args: dict[str, Any], label: str, net: Any, objectives: list[Any]) -> dict[str, Any]:
    """`args` checked as searcher ``"tangle"``'s options, with `search_tangle`'s defaults filled in."""
    from nas.tangle import search_tangle

    fields = tangle_fields()

    def named(name: str) -> str:  # "search.args in x.toml" -> "search.args.lr in x.toml"
        return label.replace("search.args", f"search.args.{name}", 1)

    out = {}
    for name, value in args.items():
        if name == "epochs":
            raise SpecError(f"{named(name)}: searcher 'tangle' runs search.budget epochs (--budget), one recorded architecture each; set the budget instead")
        if name not in fields:
            raise SpecError(f"unknown key {name!r} in {label} for searcher 'tangle'; the keys are: {', '.join(fields)}")
        out[name] = _check_temperature(value, named(name)) if name == "temperature" else _check(fields[name], value, named(name))
    if out.get("cost_weight") and not any(o.name in ("params", "macs", "latency_ms") for o in objectives):
        raise SpecError(f"{named('cost_weight')} = {out['cost_weight']:g} needs a cost objective (params, macs or latency_ms) in search.objectives")
    if "budget_constraint" in out:
        _check_budget(net, out["budget_constraint"], named("budget_constraint"))
    for name, param in inspect.signature(search_tangle).parameters.items():  # pin the defaults in the stored spec
        if name in fields and name not in out and param.default is not None and _plain_value(param.default):
            out[name] = _normal(param.default)
    return out


def _check_temperature(value: Any, label: str) -> Any:
    """A temperature > 0, or a ``[start, end]`` pair of them."""

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0

    if number(value):
        return float(value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(number(v) for v in value):
        return [float(v) for v in value]
    raise SpecError(f"{label} must be a number > 0 or a [start, end] pair of them, got {value!r}")


def _check_budget(net: Any, text: str, label: str) -> None:
    """A budget that bounds a cost from above and that some subnet meets."""
    from nas.pareto import Constraint
    from nas.tangle import Budget

    try:
        constraint = Constraint.parse(text)
        analytic = constraint.metric in ("params", "macs")  # latency is checked against its table when the search starts
        Budget(constraint, lambda config: float(net.cost(config)[constraint.metric]) if analytic else 0.0, net.space)
    except ValueError as err:
        raise SpecError(f"{label}: {_first_line(err)}") from None


def _check(f: Field, value: Any, label: str) -> Any:
    """`value` checked against `f` (ints accepted for floats); raises `SpecError` naming `label`."""
    bad = SpecError(f"{label} must be {f.describe()}, got {value!r}")
    if f.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
    elif f.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        value = float(value)
    elif f.kind == "bool":
        if not isinstance(value, bool):
            raise bad
    elif f.kind == "str":
        if not isinstance(value, str) or not value:
            raise bad
        allowed = f.allowed() if not callable(f.choices) else None  # registries are checked in resolve()
        if allowed is not None and value not in allowed:
            raise bad
        if f.key == "name" and not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise SpecError(f"{label} must be a plain name (letters, digits, '_', '-', '.'), got {value!r}")
    elif f.kind == "strs":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
            raise bad
        value = list(value)
    elif f.kind == "table":
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise bad
        value = _normal(dict(value))
    if f.minimum is not None and (value < f.minimum or (f.above and value == f.minimum)):
        raise bad
    return value


def _from_text(f: Field, text: Any, label: str) -> Any:
    """A flag's text as the field's type."""
    if not isinstance(text, str):
        return text
    try:
        if f.kind == "int":
            return int(text)
        if f.kind == "float":
            return float(text)
    except ValueError:
        raise SpecError(f"{label} must be {f.describe()}, got {text!r}") from None
    return text


def _normal(value: Any) -> Any:
    """Tuples as lists, recursively (TOML has only lists)."""
    if isinstance(value, Mapping):
        return {str(k): _normal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    return value


def _plain_value(value: Any) -> bool:
    """Whether TOML can hold `value` (so a default can be written into the spec)."""
    if isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_plain_value(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _plain_value(v) for k, v in value.items())
    return False


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    if isinstance(err, KeyError) and len(err.args) == 1:
        text = str(err.args[0])
    return text.splitlines()[0] if text else type(err).__name__


def load_spec(spec: str | os.PathLike | Mapping[str, Any] | RunSpec | None = None, *, how: str = "keyword", **overrides: Any) -> RunSpec:
    """A validated, resolved spec from a file, a dict, a `RunSpec` or None (the built-in demo), with overrides.

    Example:
        >>> load_spec(None, budget=20)["search.budget"]
        20

    Args:
        spec: a TOML file, a run directory (its ``spec.toml``), a nested dict, a `RunSpec`,
            or None for the built-in demo (`DEMO`).
        how: ``"flag"`` when `overrides` are command-line text, else ``"keyword"``.
        **overrides: keys by flag name (see `flags`): ``space``, ``searcher``, ``budget``,
            ``backend``, ``ray_address``, ``seed``, ``epochs``, ``objectives``.
    """
    if isinstance(spec, RunSpec) and spec._resolved and not any(v is not None for v in overrides.values()):
        return spec
    if spec is None:
        base = RunSpec.from_dict(DEMO, "the built-in demo")
    elif isinstance(spec, RunSpec):
        base = RunSpec(copy.deepcopy(spec._values), spec._labels)
    elif isinstance(spec, Mapping):
        base = RunSpec.from_dict(spec)
    elif isinstance(spec, (str, os.PathLike)):
        base = RunSpec.load(spec)
    else:
        raise SpecError(f"a spec is a TOML file path, a dict or a RunSpec, got {type(spec).__name__}")
    return base.override(how, **overrides).resolve()


# -- run directories -------------------------------------------------------------------------
def run_dir(spec: RunSpec, run: str | os.PathLike | None = None) -> Path:
    """Where the run of `spec` lives: `run` when given, else ``runs/<name>``."""
    return Path(run) if run is not None else RUNS / spec.name


def prepare(spec: RunSpec, run: str | os.PathLike | None = None) -> Path:
    """Check that the run directory is new or holds this same run, then write its ``spec.toml``.

    Budget and backend may change between sessions (raise the budget to extend a run);
    any other difference raises `RunError` and leaves the directory untouched.
    """
    path = run_dir(spec, run)
    if path.exists() and not path.is_dir():
        raise RunError(f"the run directory {path} is a file")
    stored_path = path / SPEC
    if stored_path.is_file():
        stored = RunSpec.load(stored_path).resolve()
        diffs = stored.differences(spec)
        if diffs:
            key, before, now = diffs[0]
            more = f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""
            raise RunError(
                f"{path} holds a run with {key} = {_short(before)}, not {_short(now)}{more}; "
                f"use another run directory (--run) or remove {path}"
            )
    elif (path / STORE).exists() or (path / CHECKPOINT).exists():
        raise RunError(f"{path} holds run files but no {SPEC}; use another run directory (--run)")
    path.mkdir(parents=True, exist_ok=True)
    tmp = stored_path.with_suffix(".toml.tmp")
    tmp.write_text(spec.to_toml())
    os.replace(tmp, stored_path)
    return path


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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
        history: the supernet's per-epoch training records (tangle: the search's per-epoch records).
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
    import torch

    net = spec.build_net()
    checkpoint = path / CHECKPOINT
    if not checkpoint.is_file():
        if spec["train.epochs"] == 0 and not spec.tangle:
            return net
        command = "search" if spec.tangle else "train"
        raise RunError(f"the run {path} has no trained supernet yet ({CHECKPOINT} is missing); run `nas {command} --run {path}`")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if spec.tangle:
        _check_tangle_finished(state, path, spec["search.budget"])
    elif int(state["epoch"]) < spec["train.epochs"]:
        raise RunError(
            f"the supernet of {path} is trained for {state['epoch']} of {spec['train.epochs']} epochs; "
            f"run `nas train --run {path}` to finish it"
        )
    net.load_state_dict(state["model"])
    net.eval()
    return net


def _check_tangle_finished(state: Mapping[str, Any], path: Path, epochs: int) -> None:
    """A tangle run's weights are final once it ran all epochs and re-evaluated its architectures with them."""
    epoch = int(state["epoch"])
    refreshed = None
    if (path / STORE).is_file():
        with EvaluationStore(path / STORE, create=False) as store:
            refreshed = store.meta("refreshed_epoch")
    if state.get("recipe", {}).get("kind") != TANGLE or epoch < epochs or refreshed != epoch:
        raise RunError(f"the tangle search of {path} has run {epoch} of {epochs} epochs; run `nas search --run {path}` to finish it")


def load_run(path: str | os.PathLike) -> Run:
    """The result of the run in directory `path` (read only: nothing there is changed).

    Example:
        >>> load_run("no/such/run")
        Traceback (most recent call last):
        ...
        nas.runs.RunError: no run at no/such/run: it has no spec.toml
    """
    path = Path(path)
    if not (path / SPEC).is_file():
        raise RunError(f"no run at {path}: it has no {SPEC}")
    spec = load_spec(path)
    from nas.pareto import parse_objectives

    objectives = parse_objectives(spec["search.objectives"])
    evaluations: list = []
    ends: list[int] = []
    reference = None
    if (path / STORE).is_file():
        with EvaluationStore(path / STORE, create=False) as store:
            evaluations, ends = store.load_batches()
            stored = store.meta("reference")
        if stored:
            reference = {k: (math.inf if v is None else float(v)) for k, v in stored.items()}
    net = None
    if reference is None:
        from nas.search._loop import _default_reference

        net = spec.build_net()
        reference = {k: (math.inf if v is None else v) for k, v in _default_reference(net, objectives).items()}
    history = []
    if (path / CHECKPOINT).is_file():
        import torch

        history = torch.load(path / CHECKPOINT, map_location="cpu", weights_only=True)["history"]
    return Run(
        evaluations=evaluations,
        objectives=objectives,
        space=(net or spec.build_net()).space,
        reference=reference,
        hypervolume_history=hypervolume_history(evaluations, objectives, reference, ends) if evaluations else [],
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
    **overrides: Any,
) -> Run:
    """Train the spec's supernet and search it, resuming whatever the run directory already holds.

    Training resumes from the last epoch's checkpoint and the search from the stored
    evaluations, so a run killed at any moment (even with SIGKILL) and started again
    ends with the same front as an uninterrupted one. Every key is validated before the
    run directory is created or touched. With searcher ``"tangle"`` there is no training
    phase: `nas.tangle.search_tangle` trains the supernet and resumes from its checkpoint.

    Args:
        spec: as `load_spec` takes it (None: the built-in demo).
        run: the run directory (default ``runs/<name>``).
        train_only: stop after training (``nas train``).
        progress: progress bars for training and search.
        **overrides: spec keys by flag name (``budget=``, ``searcher=``, ...; see `load_spec`).
    """
    from nas.search._loop import search
    from nas.training import train_supernet

    spec = load_spec(spec, **overrides)
    if train_only and spec.tangle:
        raise RunError("searcher 'tangle' trains the supernet during its search: run `nas search`, not `nas train`")
    net = spec.build_net()
    data = spec.data(net)
    path = prepare(spec, run)
    if spec.tangle:
        from nas.tangle import search_tangle

        result = search_tangle(net, data, run=path, resume=True, progress=progress, **spec.tangle_kwargs(net))
        history = result.history
    else:
        history = train_supernet(net, data, run=path, resume=True, progress=progress, **spec.train_kwargs())
        if train_only:
            result = load_run(path)
            result._net = net
            return result
        result = search(net, data, run=path, progress=progress, **spec.search_kwargs())
    return Run(
        evaluations=result.evaluations,
        objectives=result.objectives,
        space=result.space,
        reference=result.reference,
        hypervolume_history=result.hypervolume_history,
        run=path,
        spec=spec,
        history=history,
        _net=net.eval(),
    )


__all__ = [
    "DEMO",
    "FIELDS",
    "Field",
    "Run",
    "RunError",
    "RunSpec",
    "SpecError",
    "dumps_toml",
    "flags",
    "load_run",
    "load_spec",
    "prepare",
    "run_dir",
    "run_spec",
    "tangle_fields",
]
