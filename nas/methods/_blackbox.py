"""Black-box search over a trained supernet: a `Searcher` asks, a `Backend` evaluates, the store keeps every batch."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

from nas.backends import Backend
from nas.backends import get as get_backend
from nas.errors import SpecError
from nas.methods._base import Method, register
from nas.metrics import default_reference, of, open_reference
from nas.pareto import Constraint, InvalidConstraint, Objective, RunningFront
from nas.result import SearchResult, write_front
from nas.rundir import RunDir
from nas.schema import first_line, normal, plain_value
from nas.searchers import Searcher, parse_constraints
from nas.searchers import get as get_searcher
from nas.searchers import names as searcher_names
from nas.store import FILENAME as STORE
from nas.store import EvaluationStore
from nas.training import CHECKPOINT


@register("blackbox")
class BlackBox(Method):
    """Train the supernet first (``[train]``), then search it with a registered searcher through a backend.

    Its options (``search.args``) are the searcher's own constructor arguments, checked by
    building the searcher; evaluations are stored batch by batch, so a repeated run
    resumes from them and never evaluates a stored config again.
    """

    trains = True
    files: ClassVar[dict[str, str]] = {
        CHECKPOINT: "the trained supernet checkpoint",
        STORE: "every evaluation (SQLite)",
        "front.json": "the Pareto front",
    }
    checkpoint = "the trained supernet: model, optimizer, schedule, RNG states, per-epoch history"

    def searchers(self) -> list[str]:
        return searcher_names()

    def resolve(self, spec: Any, net: Any, objectives: list[Objective]) -> dict[str, Any]:
        searcher = _build_searcher(spec, net)
        # fill in the searcher's plain defaults, so the stored spec pins them
        args = dict(spec["search.args"])
        for name, param in inspect.signature(type(searcher).__init__).parameters.items():
            if name in ("self", "space", "objectives", "seed", "cost", "budget", "constraints") or name in args:
                continue
            if param.default is not inspect.Parameter.empty and plain_value(param.default):
                args[name] = normal(param.default)
        return args

    def search(self, net, data, *, searcher, objectives, constraints, budget, backend, run, seed, batch_size, latency, reference,
               progress, searcher_kwargs, backend_kwargs) -> SearchResult:
        return search_blackbox(net, data, searcher=searcher, objectives=objectives, constraints=constraints, budget=budget, backend=backend, run=run,
                               seed=seed, batch_size=batch_size, latency=latency, reference=reference, progress=progress,
                               searcher_kwargs=searcher_kwargs, backend_kwargs=backend_kwargs)


def _build_searcher(spec: Any, net: Any) -> Searcher:
    """A new searcher for `net`'s space, as the spec names it (to check its arguments)."""
    try:
        # the analytic constraints (latency ones need the latency table, built when the search starts)
        constraints = [c for c in parse_constraints(spec["search.constraints"]) if c.metric in of("analytic")]
        kwargs = {"cost": net.cost, "constraints": constraints} if constraints else {}
        return get_searcher(spec["search.searcher"], net.space, spec["search.objectives"], seed=spec["seed"], **kwargs, **spec["search.args"])
    except (TypeError, ValueError) as err:
        raise SpecError(f"{spec.label('search.args')} for searcher {spec['search.searcher']!r}: {first_line(err)}") from None


def search_blackbox(
    net: Any,
    data: Any,
    *,
    searcher: str | Searcher,
    objectives: list[Objective],
    budget: int,
    backend: str | Backend,
    constraints: list[Constraint] | None = None,
    run: str | Path | None,
    seed: int,
    batch_size: int | None,
    latency: str | None,
    reference: dict[str, float] | None,
    progress: bool,
    searcher_kwargs: dict[str, Any] | None,
    backend_kwargs: dict[str, Any] | None,
) -> SearchResult:
    """The black-box search loop (`nas.search` with a registered searcher or a `Searcher`; arguments as it takes them)."""
    args = dict(searcher=searcher, objectives=objectives, constraints=list(constraints or []), budget=budget, backend=backend, run=run, seed=seed, batch_size=batch_size,
                latency=latency, reference=reference, progress=progress, searcher_kwargs=searcher_kwargs, backend_kwargs=backend_kwargs)
    if run is None:
        return _loop(net, data, **args)
    with RunDir(run).lock():  # one writing process per run
        return _loop(net, data, **args)


def _loop(net, data, *, searcher, objectives, constraints, budget, backend, run, seed, batch_size, latency, reference, progress,
          searcher_kwargs, backend_kwargs) -> SearchResult:
    owned = not isinstance(backend, Backend)
    if owned:
        kwargs = dict(backend_kwargs or {})
        if latency:
            kwargs.setdefault("latency", latency)
        backend = get_backend(backend, net, data, **kwargs)
    cost = _cost_function(net, backend if latency == "table" else None)
    shown = [str(c) for c in constraints]
    try:
        if isinstance(searcher, str):
            kwargs = dict(searcher_kwargs or {})
            if "constraints" in kwargs:
                given = [str(c) for c in parse_constraints(kwargs.pop("constraints"))]
                if given != shown and constraints:
                    raise InvalidConstraint(
                        f"The 'constraints' parameter {shown} differs from searcher_kwargs['constraints'] {given}; give them once."
                    )
                shown, constraints = given, parse_constraints(given)
            searcher = get_searcher(searcher, net.space, objectives,
                                    **{"seed": seed, "cost": cost, "budget": budget, **kwargs, "constraints": constraints})
        elif not isinstance(searcher, Searcher):
            raise TypeError(f"The 'searcher' parameter must be a searcher name or a Searcher, got {type(searcher).__name__}.")
        elif [str(c) for c in searcher.constraints] != shown:
            raise InvalidConstraint(
                f"The 'constraints' parameter {shown} differs from the given searcher's constraints "
                f"{[str(c) for c in searcher.constraints]}; build the searcher with the same constraints."
            )
    except BaseException:
        if owned:
            backend.close()
        raise

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
            stored = store.meta("constraints") or []
            if stored != shown:
                raise InvalidConstraint(
                    f"the run {run} was searched with constraints {stored}, not {shown}; "
                    "use a new run directory for other constraints"
                )
            if reference is None:
                reference = open_reference(store.meta("reference"))
        largest = net.cost(net.largest())
        tracker = RunningFront(objectives, reference or default_reference(objectives, {m: largest[m] for m in of("analytic") if m in largest}),
                               constraints=constraints)
        start = 0
        for end in batches:  # batch by batch, as the uninterrupted search saw them
            tracker.add(evaluations[start:end], end)
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
            tracker.add(results, len(evaluations) + len(results))
            if store is not None:
                facts = {"objectives": names, "constraints": shown} if not evaluations else {}
                if tracker.reference_dict() != written:
                    written = facts["reference"] = tracker.reference_dict()
                store.append(results, [net.space.key(c) for c in configs], facts)
            searcher.tell(results)
            evaluations.extend(results)
            if bar is not None:
                bar.update(len(results))
                bar.set_postfix(hv=f"{tracker.history[-1][1]:.4g}", front=len(tracker.points), refresh=False)
    finally:
        if bar is not None:
            bar.close()
        if owned:
            backend.close()
        if store is not None:
            store.close()

    result = SearchResult(
        evaluations=evaluations,
        objectives=objectives,
        constraints=constraints,
        space=net.space,
        reference=tracker.reference_dict(),
        hypervolume_history=tracker.history,
        run=Path(run) if run is not None else None,
    )
    if run is not None:
        write_front(result)
    return result


def _cost_function(net: Any, backend: Backend | None):
    """Analytic metrics of a config: params and MACs, plus table latency when used."""
    table = getattr(backend, "latency_table", None) if backend is not None else None

    def cost(config):
        out = dict(net.cost(config))
        if table is not None:
            out["latency_ms"] = float(table.predict(config))
        return out

    return cost


def _progress(enabled: bool, total: int, done: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="search", unit="eval", dynamic_ncols=True)
