"""`nas.search`: search a supernet with the method its searcher names (`nas.methods`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nas.backends import Backend
from nas.data import check_metrics, resolve
from nas.errors import SearchFailed
from nas.methods import for_searcher
from nas.metrics import METRICS, check_constraints, check_objectives, of
from nas.pareto import Constraint, InvalidConstraint, Objective, parse_objectives
from nas.result import SearchResult
from nas.searchers import Searcher, parse_constraints


def search(
    net: Any,
    data: Any = None,
    *,
    objectives: Sequence[str | Objective] | str = ("accuracy:max", "params:min"),
    constraints: Sequence[str | Constraint] | str | None = None,
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
            the metrics are `nas.metrics.METRICS`'s.
        constraints: hard bounds on cost metrics, e.g. ``["params<=50000", "latency_ms<=2"]``
            (or one comma-separated string): a config that breaks one is never evaluated, and
            the front, hypervolume and `SearchResult.pick` hold only configs that meet them.
        searcher: a `Searcher`, or a name (``nas.methods.searcher_names()``) that chooses the
            method (`nas.methods.for_searcher`): a registered searcher (``nas.searchers.names()``)
            runs black-box search; another method's name runs that method, e.g. a gradient
            search that trains the supernet itself (`budget` is then its epochs).
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
    check_objectives(objectives)
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"The 'budget' parameter of search must be an int >= 1, got {budget!r}.")
    if latency not in (None, "table", "measured"):
        raise ValueError(f"The 'latency' parameter of search must be 'table' or 'measured', got {latency!r}.")
    try:
        constraints = parse_constraints(constraints)
        check_constraints(constraints)
    except ValueError as err:
        raise InvalidConstraint(str(err)) from None
    check_reachable(net, constraints)
    wants_latency = any(o.name == "latency_ms" for o in objectives) or any(c.metric == "latency_ms" for c in constraints)
    if latency == "measured" and any(c.metric == "latency_ms" for c in constraints):
        raise InvalidConstraint(
            "The 'constraints' parameter bounds latency_ms, which must be known before evaluation: "
            "use latency='table' (the default), not 'measured'."
        )
    latency = latency or ("table" if wants_latency else None)
    if any(METRICS[o.name].how == "evaluated" for o in objectives) and (data is not None or hasattr(net, "data_kind")):
        check_metrics(resolve(net, data), objectives)  # no accuracy on regression data, before any work
    method = for_searcher(searcher)
    result = method.search(net, data, searcher=searcher, objectives=objectives, constraints=constraints, budget=budget, backend=backend, run=run,
                           seed=seed, batch_size=batch_size, latency=latency, reference=reference, progress=progress,
                           searcher_kwargs=searcher_kwargs, backend_kwargs=backend_kwargs)
    if result.evaluations and not any(e.ok for e in result.evaluations):
        errors = list(dict.fromkeys(e.error for e in result.evaluations))[:3]
        raise SearchFailed(f"no evaluation succeeded ({len(result.evaluations)} failed); the first errors: {' | '.join(map(str, errors))}")
    return result


def check_reachable(net: Any, constraints: Sequence[Constraint]) -> None:
    """Raise `InvalidConstraint` (one line) for a constraint on an analytic cost that no subnet of `net` meets.

    The analytic costs grow with the subnet, so the smallest and the largest subnet bound
    them; latency constraints are checked by the searcher once the latency table exists.

    Example:
        >>> import search_spaces
        >>> net = search_spaces.get("mlp", depths=(1,), widths=(16,), ranks=(4,))
        >>> check_reachable(net, [Constraint.parse("params<=10")])
        Traceback (most recent call last):
        ...
        nas.pareto.InvalidConstraint: The constraint 'params<=10' cannot be met: params ranges from 506 (smallest subnet) to 506 (largest subnet).
    """
    analytic = [c for c in constraints if c.metric in of("analytic")]
    if not analytic:
        return
    small, large = net.cost(net.smallest()), net.cost(net.largest())
    for c in analytic:
        if c.metric not in small:
            raise InvalidConstraint(
                f"The constraint {str(c)!r} is on {c.metric!r}, which this supernet does not have "
                f"(no layer has a bit-width); its cost metrics are {sorted(small)}."
            )
        low, high = sorted((small[c.metric], large[c.metric]))
        if not (c.holds({c.metric: low}) or c.holds({c.metric: high})) or c.op == "==" and not low <= c.value <= high:
            raise InvalidConstraint(
                f"The constraint {str(c)!r} cannot be met: {c.metric} ranges from {low:g} (smallest "
                f"subnet) to {high:g} (largest subnet)."
            )


__all__ = ["check_reachable", "search"]
