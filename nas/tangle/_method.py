"""TangleNAS as a `nas.methods.Method`: searcher name ``"tangle"``, its options as schema fields, its run checks."""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any, ClassVar

from nas.errors import RunError, SpecError
from nas.latency import LatencyTable
from nas.methods import Method, register
from nas.metrics import costs, of
from nas.pareto import Constraint, InvalidConstraint, Objective
from nas.result import SearchResult, write_front
from nas.schema import Field, check, first_line, normal, plain_value
from nas.searchers import parse_constraints
from nas.store import FILENAME as STORE
from nas.store import EvaluationStore
from nas.tangle._budget import Budget
from nas.tangle._mode import COMBINES
from nas.tangle._sampling import SAMPLERS
from nas.tangle._search import search_tangle
from nas.training import CHECKPOINT, OPTIMIZERS, SCHEDULES

NAME = "tangle"


def tangle_fields() -> dict[str, Field]:
    """The options of searcher ``"tangle"`` (`search_tangle`'s) that a spec's ``search.args`` may set.

    Example:
        >>> list(tangle_fields())[:3]
        ['cost_weight', 'budget_constraint', 'sampling']
    """
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
        Field("search.args.optimizer", "str", None, "the weights' optimizer", choices=OPTIMIZERS),
        Field("search.args.weight_decay", "float", None, "the weights' weight decay", minimum=0),
        Field("search.args.schedule", "str", None, "the weights' learning-rate schedule", choices=SCHEDULES),
        Field("search.args.grad_clip", "float", None, "clip the weights' gradient norm to this value", minimum=0, above=True),
        Field("search.args.arch_lr", "float", None, "learning rate of the architecture parameters", minimum=0, above=True),
        Field("search.args.arch_optimizer", "str", None, "optimizer of the architecture parameters", choices=("adam", "sgd")),
        Field("search.args.arch_weight_decay", "float", None, "weight decay of the architecture parameters", minimum=0),
    )
    return {f.name: f for f in fields}


@register(NAME)
class TangleMethod(Method):
    """Bi-level gradient search (`search_tangle`): it trains the supernet itself, one recorded architecture per epoch.

    There is no training phase (no ``[train]`` section, no ``nas train``): ``search.budget``
    is its epochs, ``search.args`` its options (`tangle_fields`), and its checkpoint holds the
    supernet's weights with the architecture parameters and the search state.

    Example:
        >>> from nas.methods import for_searcher
        >>> method = for_searcher("tangle")
        >>> method.name, method.trains, "arch_lr" in method.fields()
        ('tangle', False, True)
    """

    trains = False
    files: ClassVar[dict[str, str]] = {
        CHECKPOINT: "the tangle search's checkpoint: supernet, architecture parameters, search state",
        STORE: "every recorded architecture's evaluation (SQLite)",
        "front.json": "the Pareto front",
    }
    checkpoint = "model, architecture parameters, both optimizers, schedule, RNG states, budget multiplier, per-epoch history"

    def searchers(self) -> list[str]:
        return [NAME]

    def fields(self) -> dict[str, Field]:
        return tangle_fields()

    def resolve(self, spec: Any, net: Any, objectives: list[Objective]) -> dict[str, Any]:
        """Check a tangle run: no [train], a local backend, its options; pin their defaults."""
        given = spec.given("train")
        if given:
            raise SpecError(
                f"{spec.label(given[0])} does not apply to searcher 'tangle': it trains the supernet itself, for search.budget "
                "epochs, with the recipe in search.args (lr, batch_size, optimizer, weight_decay, schedule, grad_clip)"
            )
        if spec["search.batch_size"] is not None:
            raise SpecError(f"{spec.label('search.batch_size')} does not apply to searcher 'tangle': it records one architecture per epoch")
        if spec["backend.name"] != "local":
            raise SpecError(f"{spec.label('backend.name')} must be 'local' for searcher 'tangle' (it trains the supernet in this process), got {spec['backend.name']!r}")
        if spec["evaluate.latency"] == "measured":
            raise SpecError(f"{spec.label('evaluate.latency')} must be 'table' for searcher 'tangle' (its expected latency comes from a latency table), got 'measured'")
        try:
            with_constraints(dict(spec["search.args"]), parse_constraints(spec["search.constraints"]))
        except ValueError as err:
            raise SpecError(f"{spec.label('search.constraints')}: {first_line(err)}") from None
        return _check_args(dict(spec["search.args"]), spec.label("search.args"), net, objectives)

    def search(self, net, data, *, searcher, objectives, constraints, budget, backend, run, seed, batch_size, latency, reference,
               progress, searcher_kwargs, backend_kwargs) -> SearchResult:
        """`search_tangle` for `budget` epochs; the evaluation settings (`backend_kwargs`) and latency table as a spec gives them."""
        if backend != "local":
            raise ValueError("searcher 'tangle' trains the supernet in this process; use backend='local'")
        if batch_size is not None:
            raise ValueError("The 'batch_size' parameter does not apply to searcher 'tangle': it records one architecture per epoch.")
        if reference is not None:
            raise ValueError("The 'reference' parameter does not apply to searcher 'tangle': its reference point is the largest subnet's costs.")
        if latency == "measured":
            raise ValueError("The 'latency' parameter must be 'table' for searcher 'tangle' (its expected latency comes from a latency table), got 'measured'.")
        kwargs = with_constraints(dict(searcher_kwargs or {}), constraints)
        if isinstance(kwargs.get("temperature"), list):
            kwargs["temperature"] = tuple(kwargs["temperature"])
        kwargs.setdefault("epochs", budget)
        evaluate_kwargs = dict(backend_kwargs or {})
        metrics = {o.name for o in objectives}
        if kwargs.get("budget_constraint") is not None:
            metrics.add(Constraint.parse(kwargs["budget_constraint"]).metric)
        table = None
        if latency == "table" or "latency_ms" in metrics:  # at the batch size latency is evaluated at
            table = LatencyTable.for_net(net, batch_size=evaluate_kwargs.get("latency_batch_size", 1))
        result = search_tangle(net, data, objectives, run=run, seed=seed, progress=progress, latency=table,
                               evaluate_kwargs=evaluate_kwargs, resume=run is not None, **kwargs)
        if constraints:  # every recorded architecture meets its budget: the result says so
            result.constraints = list(constraints)
            if result.run is not None and result.evaluations:
                write_front(result)
        return result

    def check_finished(self, spec: Any, path: Path, state: dict[str, Any]) -> None:
        """A tangle run's weights are final once it ran all epochs and re-evaluated its architectures with them."""
        epochs = spec["search.budget"]
        epoch = int(state["epoch"])
        refreshed = None
        if (path / STORE).is_file():
            with EvaluationStore(path / STORE, create=False) as store:
                refreshed = store.meta("refreshed_epoch")
        if state.get("recipe", {}).get("kind") != NAME or epoch < epochs or refreshed != epoch:
            raise RunError(f"the tangle search of {path} has run {epoch} of {epochs} epochs; run `nas search --run {path}` to finish it")

    def training_line(self, spec: Any) -> str:
        args = spec["search.args"]
        return f"- training: within the tangle search (bi-level), {spec['search.budget']} epochs, lr {args['lr']:g}, arch lr {args['arch_lr']:g}, seed {spec['seed']}"


def with_constraints(kwargs: dict[str, Any], constraints: list[Constraint]) -> dict[str, Any]:
    """`kwargs` with one upper-bound constraint as its ``budget_constraint`` (tangle keeps one hard budget).

    Example:
        >>> with_constraints({}, [Constraint.parse("params<=5000")])
        {'budget_constraint': 'params<=5000'}
    """
    if not constraints:
        return kwargs
    shown = [str(c) for c in constraints]
    if len(constraints) > 1 or constraints[0].op not in ("<=", "<"):
        raise InvalidConstraint(
            f"The 'constraints' parameter {shown} cannot be kept by searcher 'tangle': it takes one upper bound "
            "on a cost (its budget_constraint), e.g. ['params<=50000']."
        )
    given = kwargs.get("budget_constraint")
    if given is not None and str(Constraint.parse(given)) != shown[0]:
        raise InvalidConstraint(
            f"The 'constraints' parameter {shown} differs from searcher 'tangle''s budget_constraint {given!r}; give one of them."
        )
    return {**kwargs, "budget_constraint": shown[0]}


def _check_args(args: dict[str, Any], label: str, net: Any, objectives: list[Any]) -> dict[str, Any]:
    """`args` checked as searcher ``"tangle"``'s options, with `search_tangle`'s defaults filled in."""
    fields = tangle_fields()

    def named(name: str) -> str:  # "search.args in x.toml" -> "search.args.lr in x.toml"
        return label.replace("search.args", f"search.args.{name}", 1)

    out = {}
    for name, value in args.items():
        if name == "epochs":
            raise SpecError(f"{named(name)}: searcher 'tangle' runs search.budget epochs (--budget), one recorded architecture each; set the budget instead")
        if name not in fields:
            raise SpecError(f"unknown key {name!r} in {label} for searcher 'tangle'; the keys are: {', '.join(fields)}")
        out[name] = _check_temperature(value, named(name)) if name == "temperature" else check(fields[name], value, named(name))
    if out.get("cost_weight") and not any(o.name in costs() for o in objectives):
        raise SpecError(f"{named('cost_weight')} = {out['cost_weight']:g} needs a cost objective (params, macs or latency_ms) in search.objectives")
    if "budget_constraint" in out:
        _check_budget(net, out["budget_constraint"], named("budget_constraint"))
    for name, param in inspect.signature(search_tangle).parameters.items():  # pin the defaults in the stored spec
        if name in fields and name not in out and param.default is not None and plain_value(param.default):
            out[name] = normal(param.default)
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
    try:
        constraint = Constraint.parse(text)
        analytic = constraint.metric in of("analytic")  # latency is checked against its table when the search starts
        Budget(constraint, lambda config: float(net.cost(config)[constraint.metric]) if analytic else 0.0, net.space)
    except ValueError as err:
        raise SpecError(f"{label}: {first_line(err)}") from None
