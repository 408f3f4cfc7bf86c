"""Pareto fronts, hypervolume and picking one model from a front.

Objectives are metric names with a direction (``"accuracy:max"``, ``"params:min"``).
Internally every objective is minimised: maximised metrics are negated. Only ``ok``
evaluations take part in fronts, hypervolume, knees and picks; failed ones are ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from nas.errors import NASError
from nas.evaluation import Evaluation
from nas.metrics import METRICS, worse_than

Direction = Literal["max", "min"]

DEFAULT_DIRECTIONS: dict[str, Direction] = {**{m.name: m.direction for m in METRICS.values()}, "top1": "max", "error": "min"}
_DIRECTIONS = ("max", "min")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
}
_CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=|==|<|>)\s*(\S+)\s*$")


class InvalidObjective(NASError, ValueError):
    """An objective spec with a bad name or direction."""


class InvalidConstraint(NASError, ValueError):
    """A constraint (or a `pick` rule) that cannot be parsed."""


class MissingMetric(NASError, ValueError):
    """An evaluation lacks a metric that an objective or constraint needs."""


class Infeasible(NASError, ValueError):
    """No ok evaluation meets the constraints."""


@dataclass(frozen=True)
class Objective:
    """A metric to optimise and its direction.

    Example:
        >>> Objective.parse("accuracy")
        Objective(name='accuracy', direction='max')
        >>> Objective.parse(("params", "min")).sign
        1.0

    Args:
        name: metric name, a key of ``Evaluation.metrics``.
        direction: ``"max"`` or ``"min"``.
    """

    name: str
    direction: Direction

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidObjective(
                f"The 'name' of an objective must be a non-empty string, got {self.name!r}."
            )
        if self.direction not in _DIRECTIONS:
            raise InvalidObjective(
                f"The 'direction' of objective {self.name!r} must be one of "
                f"{list(_DIRECTIONS)}, got {self.direction!r}."
            )

    @property
    def sign(self) -> float:
        """+1 for a minimised objective, -1 for a maximised one (multiply to minimise)."""
        return 1.0 if self.direction == "min" else -1.0

    @classmethod
    def parse(cls, spec: str | tuple[str, str] | Objective) -> Objective:
        """An objective from ``"name"``, ``"name:max"``, ``("name", "min")`` or an Objective."""
        if isinstance(spec, Objective):
            return spec
        if isinstance(spec, tuple) and len(spec) == 2:
            name, direction = spec
        elif isinstance(spec, str):
            name, _, direction = spec.partition(":")
            name, direction = name.strip(), direction.strip()
            if not direction:
                if name not in DEFAULT_DIRECTIONS:
                    raise InvalidObjective(
                        f"The objective {spec!r} has no direction and {name!r} is not in the "
                        f"default table {sorted(DEFAULT_DIRECTIONS)}; write "
                        f"'{name}:max' or '{name}:min'."
                    )
                direction = DEFAULT_DIRECTIONS[name]
        else:
            raise InvalidObjective(
                "An objective must be a string 'name' or 'name:max'/'name:min', a tuple "
                f"(name, direction) or an Objective, got {spec!r}."
            )
        return cls(name, direction)

    def __str__(self) -> str:
        return f"{self.name}:{self.direction}"


def parse_objectives(specs: str | Iterable[str | tuple[str, str] | Objective]) -> list[Objective]:
    """Objectives from specs (a list, or one comma-separated string); at least one, no repeats."""
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    elif isinstance(specs, Objective):
        specs = [specs]
    objectives = [Objective.parse(s) for s in specs]
    if not objectives:
        raise InvalidObjective(
            "The 'objectives' parameter needs at least one objective, such as "
            "['accuracy:max', 'params:min'], got none."
        )
    names = [o.name for o in objectives]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidObjective(
            f"The 'objectives' parameter names each metric once, but {repeated} is repeated "
            f"in {[str(o) for o in objectives]}."
        )
    return objectives


def objective_matrix(evaluations: Sequence[Evaluation], objectives: Sequence) -> np.ndarray:
    """The n x k matrix of objective values, all turned into minimisation (max ones negated)."""
    objectives = parse_objectives(objectives)
    values = np.empty((len(evaluations), len(objectives)))
    for i, ev in enumerate(evaluations):
        for j, obj in enumerate(objectives):
            values[i, j] = obj.sign * _metric(ev, obj.name)
    return values


def non_dominated_sort(values: np.ndarray) -> list[np.ndarray]:
    """Fronts of row indices of a minimisation matrix, best front first; equal rows share a front."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(
            f"The 'values' parameter must be a 2-D array (n x k), got shape {values.shape}."
        )
    if np.isnan(values).any():
        raise ValueError("The 'values' parameter must not contain NaN.")
    if len(values) == 0:
        return []
    unique, inverse = np.unique(values, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    # dominates[i, j]: unique row i dominates row j (no worse anywhere; the rows differ,
    # so it is better somewhere).
    dominates = np.ones((len(unique), len(unique)), dtype=bool)
    for column in unique.T:
        dominates &= column[:, None] <= column[None, :]
    np.fill_diagonal(dominates, False)
    n_dominators = dominates.sum(axis=0)
    rank = np.full(len(unique), -1)
    current = np.flatnonzero(n_dominators == 0)
    depth = 0
    while current.size:
        rank[current] = depth
        n_dominators -= dominates[current].sum(axis=0)
        n_dominators[current] = -1
        current = np.flatnonzero(n_dominators == 0)
        depth += 1
    point_rank = rank[inverse]
    return [np.flatnonzero(point_rank == r) for r in range(depth)]


def pareto_front(evaluations: Sequence[Evaluation], objectives: Sequence) -> list[Evaluation]:
    """The non-dominated ok evaluations, best first in the first objective (ties: the next ones)."""
    objectives = parse_objectives(objectives)
    ok = [ev for ev in evaluations if ev.ok]
    if not ok:
        return []
    values = objective_matrix(ok, objectives)
    front = non_dominated_sort(values)[0]
    order = front[np.lexsort(values[front].T[::-1])]
    return [ok[i] for i in order]


def hypervolume(
    points_or_evaluations: np.ndarray | Sequence[Evaluation],
    reference: Mapping[str, float] | Sequence[float] | np.ndarray,
    objectives: Sequence | None = None,
) -> float:
    """The volume dominated by the points and bounded by the reference point.

    Either a minimisation matrix with a reference in minimisation space, or evaluations
    with ``objectives`` and a reference in the objectives' own units (a dict name -> value
    or a sequence in objective order). Points that do not strictly dominate the reference
    count for nothing.

    Example:
        >>> hypervolume(np.array([[1, 3], [2, 2], [3, 1]]), [4, 4])
        6.0
    """
    if objectives is not None:
        objectives = parse_objectives(objectives)
        evaluations = list(points_or_evaluations)
        not_evaluations = [e for e in evaluations if not isinstance(e, Evaluation)]
        if not_evaluations:
            raise TypeError(
                "With 'objectives', 'points_or_evaluations' must hold Evaluation objects, got "
                f"{type(not_evaluations[0]).__name__}."
            )
        points = objective_matrix([e for e in evaluations if e.ok], objectives)
        ref = _reference_vector(reference, objectives)
    else:
        if not isinstance(points_or_evaluations, np.ndarray) and any(
            isinstance(e, Evaluation) for e in points_or_evaluations
        ):
            raise InvalidObjective(
                "The 'objectives' parameter is required when hypervolume() gets evaluations, "
                "e.g. objectives=['accuracy:max', 'params:min']."
            )
        if isinstance(reference, Mapping):
            raise ValueError(
                "A dict 'reference' needs 'objectives'; for a minimisation matrix pass the "
                "reference as a sequence in minimisation space."
            )
        ref = np.asarray(reference, dtype=float).reshape(-1)
        points = np.asarray(points_or_evaluations, dtype=float)
        if points.size == 0:
            points = points.reshape(0, len(ref))
    if points.ndim != 2 or points.shape[1] != len(ref):
        raise ValueError(
            f"The 'reference' point has {len(ref)} values but the points have shape {points.shape}; "
            "give one reference value per objective."
        )
    if np.isnan(ref).any() or np.isnan(points).any():
        raise ValueError(f"hypervolume() got NaN in the points or the reference {ref.tolist()}.")
    points = points[np.all(points < ref, axis=1)]
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(ref[0] - points.min())
    return float(_hypervolume_backend(points.shape[1])(points, ref))


def reference_point(
    evaluations: Sequence[Evaluation], objectives: Sequence, margin: float = 0.1
) -> dict[str, float]:
    """A reference point in objective units: each objective's worst ok value plus `margin` x range."""
    objectives = parse_objectives(objectives)
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise ValueError(f"The 'margin' parameter must be a finite number >= 0, got {margin!r}.")
    values = objective_matrix(_ok(evaluations), objectives)
    worst, best = values.max(axis=0), values.min(axis=0)
    spread = np.where(worst > best, worst - best, np.maximum(np.abs(worst), 1.0))
    ref = worst + margin * spread
    return {o.name: float(o.sign * r) for o, r in zip(objectives, ref)}


class RunningFront:
    """The Pareto front of the evaluations added so far, batch by batch, and its hypervolume after each batch.

    The reference point's undecided entries (None) are decided by the first batch that has
    an ok evaluation (`nas.metrics.worse_than`: half again as bad as its worst value). Searches keep one while they
    run; `nas.result.hypervolume_history` replays stored batches through one.

    Example:
        >>> front = RunningFront(["accuracy:max", "params:min"], {"accuracy": 0.0, "params": 100.0})
        >>> front.add([Evaluation({}, {"accuracy": 0.5, "params": 50})], 1)
        25.0
        >>> front.add([Evaluation({}, {"accuracy": 0.8, "params": 80})], 2), front.history
        (31.0, [(1, 25.0), (2, 31.0)])
    """

    def __init__(self, objectives: Sequence, reference: Mapping[str, float | None], *, constraints: Sequence[Constraint] = ()):
        self.objectives = parse_objectives(objectives)
        self.constraints = list(constraints)
        self.reference: dict[str, float | None] = dict(reference)
        self.points = np.zeros((0, len(self.objectives)))
        self.history: list[tuple[int, float]] = []

    def add(self, evaluations: Sequence[Evaluation], total: int | None = None) -> float:
        """Add one batch (only its ok evaluations that meet the constraints count); returns the hypervolume after it (recorded against `total` evaluations so far, when given)."""
        ok = [e for e in feasible(evaluations, self.constraints) if all(o.name in e.metrics for o in self.objectives)]
        if ok:
            values = objective_matrix(ok, self.objectives)
            for o in self.objectives:
                if self.reference.get(o.name) is None:
                    self.reference[o.name] = worse_than(o, [e.metrics[o.name] for e in ok])
            points = np.vstack([self.points, values])
            self.points = points[non_dominated_sort(points)[0]]
        volume = self.hypervolume()
        if total is not None:
            self.history.append((total, volume))
        return volume

    def reference_dict(self) -> dict[str, float]:
        """The reference point, undecided entries as infinity."""
        return {k: (v if v is not None else math.inf) for k, v in self.reference.items()}

    def hypervolume(self) -> float:
        """The hypervolume of the front so far (0 while it is empty)."""
        if not len(self.points):
            return 0.0
        ref = np.array([o.sign * self.reference[o.name] for o in self.objectives])
        return hypervolume(self.points, ref)


def knee_point(evaluations: Sequence[Evaluation], objectives: Sequence) -> Evaluation:
    """The front member farthest (towards the ideal) from the hyperplane through the front's extremes.

    Each objective is normalised to [0, 1] over the front first. With one or two front
    members, the one best in the first objective is returned.
    """
    objectives = parse_objectives(objectives)
    front = pareto_front(_ok(evaluations), objectives)
    if len(front) <= 2 or len(objectives) == 1:
        return front[0]
    values = objective_matrix(front, objectives)
    low, high = values.min(axis=0), values.max(axis=0)
    scaled = (values - low) / np.where(high > low, high - low, 1.0)
    total = scaled.sum(axis=1)
    extremes = np.unique([scaled[np.lexsort((total, column))[0]] for column in scaled.T], axis=0)
    normal = _hyperplane_normal(extremes, scaled.shape[1])
    distance = (extremes[0] - scaled) @ normal  # > 0 on the ideal side of the hyperplane
    return front[int(np.argmax(distance))]


@dataclass(frozen=True)
class Constraint:
    """A bound on one metric, such as ``latency_ms<=2``.

    Example:
        >>> c = Constraint.parse("latency_ms<=2")
        >>> c.holds({"latency_ms": 1.5}), str(c)
        (True, 'latency_ms<=2')

    Args:
        metric: metric name, a key of ``Evaluation.metrics``.
        op: one of ``<=``, ``<``, ``>=``, ``>``, ``==``.
        value: the bound.
    """

    metric: str
    op: str
    value: float

    def __post_init__(self) -> None:
        if self.op not in _OPERATORS:
            raise InvalidConstraint(
                f"The 'op' of a constraint must be one of {list(_OPERATORS)}, got {self.op!r}."
            )
        value = _to_float(self.value)
        if value is None or not math.isfinite(value):
            raise InvalidConstraint(
                f"The 'value' of the constraint on {self.metric!r} must be a finite number, "
                f"got {self.value!r}."
            )
        object.__setattr__(self, "value", value)

    @classmethod
    def parse(cls, text: str) -> Constraint:
        """A constraint from ``"metric<op>number"``, e.g. ``"params<=50000"``."""
        match = _CONSTRAINT_RE.match(text) if isinstance(text, str) else None
        value = _to_float(match.group(3)) if match else None
        if value is None or not math.isfinite(value):
            raise InvalidConstraint(
                f"Cannot parse the constraint {text!r}; write 'metric<op>number' with op one of "
                f"{list(_OPERATORS)}, e.g. 'latency_ms<=2' or 'params<=50000'."
            )
        return cls(match.group(1), match.group(2), value)

    def holds(self, metrics: Mapping[str, float]) -> bool:
        """Whether the metric value in `metrics` meets the bound."""
        if self.metric not in metrics:
            raise MissingMetric(
                f"The constraint {str(self)!r} needs metric {self.metric!r}; "
                f"the metrics are {sorted(metrics)}."
            )
        return _OPERATORS[self.op](float(metrics[self.metric]), self.value)

    def __str__(self) -> str:
        value = self.value
        return f"{self.metric}{self.op}{int(value) if value.is_integer() else value}"


def feasible(evaluations: Sequence[Evaluation], constraints: Sequence[Constraint]) -> list[Evaluation]:
    """The ok evaluations whose own metrics meet every constraint (one lacking a constrained metric does not).

    Example:
        >>> evs = [Evaluation({"w": w}, {"params": w}) for w in (8, 16)]
        >>> [e.config["w"] for e in feasible(evs, [Constraint.parse("params<=10")])]
        [8]
    """
    return [
        ev for ev in evaluations
        if ev.ok and all(c.metric in ev.metrics and c.holds(ev.metrics) for c in constraints)
    ]


def parse_constraint(text: str) -> Constraint:
    """A `Constraint` from text such as ``"latency_ms<=2"``."""
    return Constraint.parse(text)


def pick(
    evaluations: Sequence[Evaluation],
    objectives: Sequence,
    how: str | Constraint | Sequence[str | Constraint] = "knee",
) -> Evaluation:
    """One ok evaluation: the knee, the best in a metric, or the best meeting constraints.

    `how` is ``"knee"``, ``"best:<metric>"``, or constraints (``"params<=50000,latency_ms<=2"``
    or a list); with constraints, the feasible evaluation best in the first objective wins.

    Example:
        >>> evs = [Evaluation({"w": w}, {"accuracy": a, "params": w}) for w, a in [(8, .8), (16, .9)]]
        >>> pick(evs, ["accuracy", "params"], "params<=10").config
        {'w': 8}
    """
    objectives = parse_objectives(objectives)
    ok = _ok(evaluations)
    if isinstance(how, str) and how.strip() == "knee":
        return knee_point(ok, objectives)
    if isinstance(how, str) and how.strip().startswith("best:"):
        name = how.strip()[len("best:"):].strip()
        _require_metric(ok, name)
        given = {o.name: o for o in objectives}
        if name not in given and name not in DEFAULT_DIRECTIONS:
            raise InvalidObjective(
                f"pick(how={how!r}) needs the direction of {name!r}: add '{name}:max' or "
                f"'{name}:min' to the objectives."
            )
        return _best(ok, [given.get(name) or Objective.parse(name), *objectives])
    constraints = _parse_constraints(how)
    for c in constraints:
        _require_metric(ok, c.metric)
    feasible = [ev for ev in ok if all(c.holds(ev.metrics) for c in constraints)]
    if not feasible:
        closest = ", ".join(f"{c}: best reached {c.metric}={_closest(ok, c):g}" for c in constraints)
        raise Infeasible(
            f"No ok evaluation (of {len(ok)}) meets {[str(c) for c in constraints]} ({closest})."
        )
    return _best(feasible, objectives)


def _metric(ev: Evaluation, name: str) -> float:
    if name not in ev.metrics:
        raise MissingMetric(
            f"The evaluation of {ev.config} has no metric {name!r}; "
            f"its metrics are {sorted(ev.metrics)}."
        )
    return float(ev.metrics[name])


def _ok(evaluations: Sequence[Evaluation]) -> list[Evaluation]:
    ok = [ev for ev in evaluations if ev.ok]
    if not ok:
        raise ValueError(f"There is no ok evaluation among the {len(evaluations)} given.")
    return ok


def _require_metric(evaluations: Sequence[Evaluation], name: str) -> None:
    available = sorted(set().union(*(ev.metrics for ev in evaluations)))
    if name not in available:
        raise MissingMetric(f"Unknown metric {name!r}; the evaluations have {available}.")
    for ev in evaluations:
        _metric(ev, name)


def _best(evaluations: Sequence[Evaluation], objectives: Sequence[Objective]) -> Evaluation:
    """The evaluation best in the first objective, ties broken by the next ones."""
    values = np.stack([[o.sign * _metric(ev, o.name) for o in objectives] for ev in evaluations])
    return evaluations[int(np.lexsort(values.T[::-1])[0])]


def _parse_constraints(how: str | Constraint | Sequence[str | Constraint]) -> list[Constraint]:
    if isinstance(how, Constraint):
        return [how]
    if isinstance(how, str):
        parts = [p for p in how.split(",") if p.strip()]
    elif isinstance(how, Sequence):
        parts = list(how)
    else:
        parts = []
    if not parts:
        raise InvalidConstraint(
            f"The 'how' parameter of pick() must be 'knee', 'best:<metric>' or constraints such "
            f"as 'params<=50000,latency_ms<=2' (or a list of them), got {how!r}."
        )
    return [p if isinstance(p, Constraint) else Constraint.parse(p) for p in parts]


def _closest(evaluations: Sequence[Evaluation], c: Constraint) -> float:
    """The metric value that came nearest to meeting the constraint."""
    values = np.array([float(ev.metrics[c.metric]) for ev in evaluations])
    if c.op == "==":
        return float(values[np.argmin(np.abs(values - c.value))])
    return float(values.min() if c.op in ("<=", "<") else values.max())


def _to_float(value: object) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _reference_vector(
    reference: Mapping[str, float] | Sequence[float] | np.ndarray, objectives: list[Objective]
) -> np.ndarray:
    """A reference in objective units (dict or sequence) as a minimisation-space vector."""
    names = [o.name for o in objectives]
    if isinstance(reference, Mapping):
        missing = [n for n in names if n not in reference]
        extra = sorted(set(reference) - set(names))
        if missing or extra:
            raise ValueError(
                f"The 'reference' dict must have one value for each objective {names}; "
                f"missing {missing}, unexpected {extra}."
            )
        raw = [reference[n] for n in names]
    else:
        raw = list(np.asarray(reference, dtype=float).reshape(-1))
        if len(raw) != len(names):
            raise ValueError(
                f"The 'reference' has {len(raw)} values but there are {len(names)} objectives {names}."
            )
    return np.array([o.sign * float(r) for o, r in zip(objectives, raw)])


def _hyperplane_normal(extremes: np.ndarray, k: int) -> np.ndarray:
    """Unit normal of the hyperplane through the extreme points, pointing to worse values."""
    if len(extremes) == k:
        _, singular, vt = np.linalg.svd(extremes[1:] - extremes[0])
        if len(singular) == k - 1 and singular[-1] > 1e-12 * max(singular[0], 1.0):
            normal = vt[-1]
            if normal.sum() < 0:
                normal = -normal
            if np.all(normal >= -1e-12):
                return normal
    return np.full(k, 1.0 / math.sqrt(k))  # degenerate extremes: the plane sum(x) = const


def _hypervolume_backend(k: int) -> Callable[[np.ndarray, np.ndarray], float]:
    """Optuna's exact hypervolume (private API, may move), else our 2-D sweep."""
    try:
        from optuna._hypervolume import compute_hypervolume
    except ImportError:
        compute_hypervolume = None
    if compute_hypervolume is not None:
        return compute_hypervolume
    if k == 2:
        return _hypervolume_2d
    raise ImportError(
        f"hypervolume() of {k} objectives needs optuna._hypervolume.compute_hypervolume, which this "
        "optuna does not have; only 2 objectives are supported without it."
    )


def _hypervolume_2d(points: np.ndarray, reference: np.ndarray) -> float:
    """Exact 2-D hypervolume by a sweep over the first objective (points dominate the reference)."""
    points = points[np.lexsort(points.T[::-1])]
    lowest = np.minimum.accumulate(points[:, 1])
    previous = np.concatenate([[reference[1]], lowest[:-1]])
    return float(np.sum((reference[0] - points[:, 0]) * (previous - lowest)))
