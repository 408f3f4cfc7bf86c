"""`nas.search`: search a supernet with the method its searcher names (`nas.methods`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nas.backends import Backend
from nas.data import check_metrics, resolve
from nas.errors import SearchFailed
from nas.methods import for_searcher
from nas.metrics import METRICS, check_objectives
from nas.pareto import Objective, parse_objectives
from nas.result import SearchResult
from nas.searchers import Searcher


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
            the metrics are `nas.metrics.METRICS`'s.
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
    wants_latency = any(o.name == "latency_ms" for o in objectives)
    latency = latency or ("table" if wants_latency else None)
    if any(METRICS[o.name].how == "evaluated" for o in objectives) and (data is not None or hasattr(net, "data_kind")):
        check_metrics(resolve(net, data), objectives)  # no accuracy on regression data, before any work
    method = for_searcher(searcher)
    result = method.search(net, data, searcher=searcher, objectives=objectives, budget=budget, backend=backend, run=run, seed=seed,
                           batch_size=batch_size, latency=latency, reference=reference, progress=progress,
                           searcher_kwargs=searcher_kwargs, backend_kwargs=backend_kwargs)
    if result.evaluations and not any(e.ok for e in result.evaluations):
        errors = list(dict.fromkeys(e.error for e in result.evaluations))[:3]
        raise SearchFailed(f"no evaluation succeeded ({len(result.evaluations)} failed); the first errors: {' | '.join(map(str, errors))}")
    return result


__all__ = ["search"]
