"""The spec's schema: one `Field` per key (`FIELDS`), their flags, and the checks of a value against its field."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nas.runs._errors import SpecError
from nas.training._recipe import BATCH_SIZE, EPOCHS, LR, OPTIMIZERS, SCHEDULES, WEIGHT_DECAY

TANGLE = "tangle"
"""The gradient searcher (`nas.tangle.search_tangle`): it trains the supernet itself."""


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


FIELDS: tuple[Field, ...] = (
    Field("name", "str", "run", "run name; the run directory is runs/<name>", identity=False),
    Field("seed", "int", 0, "seed of the supernet's initial weights, its training and the search", flag="seed", minimum=0),
    Field("space.family", "str", "mlp", "supernet family (see `nas spaces`)", flag="space", choices=_families),
    Field("space.args", "table", {}, "the family's arguments (e.g. widths = [16, 32])"),
    Field("data.source", "str", "digits", "'digits' (scikit-learn's bundled digits), 'mnist1d' (generated MNIST-1D) or 'package.module:function' returning the data"),
    Field("data.args", "table", {}, "arguments of the data source (digits: seed, val_fraction, test_fraction; mnist1d: samples, seed, val_fraction and the generator's)"),
    Field("train.strategy", "str", "sandwich", "supernet training strategy", choices=_strategies),
    Field("train.strategy_args", "table", {}, "the strategy's arguments (e.g. n = 2)"),
    Field("train.epochs", "int", EPOCHS, "training epochs (0: no training)", flag="epochs", minimum=0),
    Field("train.lr", "float", LR, "peak learning rate", minimum=0, above=True),
    Field("train.batch_size", "int", BATCH_SIZE, "training batch size", minimum=1),
    Field("train.optimizer", "str", "adamw", "optimizer", choices=OPTIMIZERS),
    Field("train.weight_decay", "float", WEIGHT_DECAY, "weight decay", minimum=0),
    Field("train.schedule", "str", "cosine", "learning-rate schedule", choices=SCHEDULES),
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


def flags() -> dict[str, Field]:
    """The spec keys that have a flag (``--budget``) and keyword (``budget=``), by that name."""
    return dict(_BY_FLAG)


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
