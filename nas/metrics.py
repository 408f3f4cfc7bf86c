"""The metrics a search can optimise: one table (name, direction, how each is computed) and the reference-point rule.

Example:
    >>> from nas.metrics import METRICS, names
    >>> names()
    ['accuracy', 'loss', 'mae', 'r2', 'params', 'macs', 'model_bits', 'bitops', 'latency_ms']
    >>> METRICS["params"].direction, METRICS["params"].how
    ('min', 'analytic')
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Metric:
    """One metric of an evaluation.

    Args:
        name: its key in `Evaluation.metrics`.
        direction: ``"max"`` or ``"min"``: which way is better.
        how: ``"evaluated"`` (scored on the validation data), ``"analytic"`` (from the
            supernet's cost model, no data) or ``"timed"`` (measured, or predicted from a
            per-layer latency table).
        help: one line for docs.
    """

    name: str
    direction: Literal["max", "min"]
    how: Literal["evaluated", "analytic", "timed"]
    help: str

    @property
    def cost(self) -> bool:
        """Whether it is a cost of the subnet (params, MACs, latency) rather than a score on data."""
        return self.how != "evaluated"


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "max", "evaluated", "validation accuracy (classification data)"),
        Metric("loss", "min", "evaluated", "validation loss"),
        Metric("mae", "min", "evaluated", "validation mean absolute error (regression data)"),
        Metric("r2", "max", "evaluated", "validation coefficient of determination R^2 (regression data)"),
        Metric("params", "min", "analytic", "parameters of the subnet"),
        Metric("macs", "min", "analytic", "multiply-accumulates of one forward pass"),
        Metric("model_bits", "min", "analytic", "model size in bits (supernets with a bit-width dimension)"),
        Metric("bitops", "min", "analytic", "MACs times weight bits (supernets with a bit-width dimension)"),
        Metric("latency_ms", "min", "timed", "milliseconds per forward pass (measured, or from a latency table)"),
    )
}
"""Every metric a search can optimise, in the order they are listed."""


def names() -> list[str]:
    """The metric names, in table order."""
    return list(METRICS)


def of(how: str) -> tuple[str, ...]:
    """The metrics computed `how` (``"evaluated"``, ``"analytic"`` or ``"timed"``).

    Example:
        >>> of("analytic")
        ('params', 'macs', 'model_bits', 'bitops')
    """
    return tuple(m.name for m in METRICS.values() if m.how == how)


def costs() -> tuple[str, ...]:
    """The cost metrics (params, macs, model_bits, bitops, latency_ms)."""
    return tuple(m.name for m in METRICS.values() if m.cost)


def check_objectives(objectives: Iterable[Any]) -> None:
    """Raise `ValueError` naming the first objective whose metric is not in the table."""
    unknown = [o.name for o in objectives if o.name not in METRICS]
    if unknown:
        raise ValueError(f"unknown objective metric {unknown[0]!r}; the metrics are: {', '.join(METRICS)}")


def check_constraints(constraints: Iterable[Any], *, name: str = "constraints") -> None:
    """Raise `ValueError` naming the first constraint whose metric is not a cost metric of the table.

    Example:
        >>> from nas import Constraint
        >>> check_constraints([Constraint.parse("params<=100")])
        >>> check_constraints([Constraint.parse("accuracy>=0.9")])
        Traceback (most recent call last):
        ...
        ValueError: The 'constraints' parameter has 'accuracy>=0.9' on metric 'accuracy', which is not known before evaluation; constrain one of the cost metrics: params, macs, model_bits, bitops, latency_ms.
    """
    for c in constraints:
        if c.metric not in METRICS or not METRICS[c.metric].cost:
            known = "unknown metric" if c.metric not in METRICS else "metric"
            why = "" if c.metric not in METRICS else ", which is not known before evaluation"
            raise ValueError(
                f"The {name!r} parameter has {str(c)!r} on {known} {c.metric!r}{why}; "
                f"constrain one of the cost metrics: {', '.join(costs())}."
            )


def default_reference(
    objectives: Sequence[Any], largest: Mapping[str, float], evaluations: Sequence[Any] | None = None
) -> dict[str, float | None]:
    """The hypervolume reference point: the one rule every search uses.

    Accuracy 0; a cost known for the largest subnet (`largest`) 1.1x that; any other metric
    half again as bad as the worst ok value in `evaluations` (None while there is none:
    decided by the first batch that has one).

    Example:
        >>> from nas import Objective
        >>> from nas.evaluation import Evaluation
        >>> objectives = [Objective("accuracy", "max"), Objective("params", "min"), Objective("loss", "min")]
        >>> default_reference(objectives, {"params": 1000})
        {'accuracy': 0.0, 'params': 1100.0, 'loss': None}
        >>> default_reference(objectives, {"params": 1000}, [Evaluation({}, {"loss": 2.0})])["loss"]
        3.000000001
    """
    out: dict[str, float | None] = {}
    for o in objectives:
        if o.name == "accuracy":
            out[o.name] = 0.0
        elif o.name in largest:
            out[o.name] = 1.1 * largest[o.name]
        else:
            seen = [e.metrics[o.name] for e in evaluations or () if e.ok and o.name in e.metrics]
            out[o.name] = worse_than(o, seen) if seen else None
    return out


def worse_than(objective: Any, seen: Sequence[float]) -> float:
    """Half again as bad as the worst of `seen` (plus 1e-9), in `objective`'s direction: an undecided reference entry."""
    worst = max(objective.sign * v for v in seen)  # in minimisation units
    return objective.sign * (worst + 0.5 * abs(worst) + 1e-9)


def finite_reference(reference: Mapping[str, float | None]) -> dict[str, float]:
    """A reference point with undecided entries (None) as infinity, as stored and reported."""
    return {k: (math.inf if v is None else float(v)) for k, v in reference.items()}


def open_reference(stored: Mapping[str, float | None] | None) -> dict[str, float | None] | None:
    """A stored reference point with its undecided entries (None or infinite) as None, to be decided again."""
    if not stored:
        return None
    return {k: (None if v is None or not math.isfinite(v) else float(v)) for k, v in stored.items()}


__all__ = ["METRICS", "Metric", "check_constraints", "check_objectives", "costs", "default_reference", "finite_reference", "names", "of", "open_reference", "worse_than"]
