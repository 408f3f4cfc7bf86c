"""The tangle searcher's options: what a spec's ``search.args`` may set with ``searcher = "tangle"``, and their checks."""

from __future__ import annotations

import inspect
import math
from typing import Any

from nas.runs._errors import SpecError
from nas.runs._schema import Field, _check, _first_line, _normal, _plain_value
from nas.training._recipe import OPTIMIZERS, SCHEDULES


def tangle_fields() -> dict[str, Field]:
    """The options of searcher ``"tangle"`` (`nas.tangle.search_tangle`'s) that a spec's ``search.args`` may set."""
    from nas.tangle import COMBINES, SAMPLERS

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

