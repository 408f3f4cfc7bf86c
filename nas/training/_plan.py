"""`plan_supernet` and `supernet_step`: `train_supernet`'s arguments resolved once (a `Plan`), and its step."""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from nas.data import Data, fingerprint, resolve
from nas.devices import PRECISIONS, autocast
from nas.evaluate import default_loss, evaluate
from nas.training._base import LossFn, Strategy, get_strategy
from nas.training._distill import DistillFn, make_distill
from nas.training._family import family_recipe
from nas.training._fit import _device
from nas.training._recipe import Recipe, steps_per_epoch
from nas.training._supervised import Supervised


class Plan(NamedTuple):
    """What `train_supernet` trains with, resolved once (and shipped to distributed workers)."""

    data: Data
    recipe: Recipe
    strategy: Strategy
    loss: LossFn
    distill: DistillFn | None
    identity: dict[str, Any]
    precision: str


def plan_supernet(net: nn.Module, data: Any, strategy: Any, loss: Any, *, epochs, lr, batch_size, distill, optimizer,
                  weight_decay, schedule, grad_clip, seed, precision) -> Plan:
    """`train_supernet`'s arguments resolved against the family's recipe and the data (checked up front)."""
    if precision not in PRECISIONS:
        raise ValueError(f"The 'precision' parameter of train_supernet must be one of {list(PRECISIONS)}, got {precision!r}.")
    data = resolve(net, data, compare=False)
    given = {"strategy": strategy, "epochs": epochs, "lr": lr, "batch_size": batch_size, "weight_decay": weight_decay, "distill": distill}
    defaults = family_recipe(net, data, **given)  # the family's recipe for what was not given
    strategy, epochs, lr, batch_size, weight_decay, distill = (defaults[k] for k in given)
    recipe = Recipe(epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, weight_decay=weight_decay,
                    schedule=schedule, grad_clip=grad_clip, seed=seed)
    strat = get_strategy(strategy)
    strat.prepare(net)  # before the optimizer: a strategy may add weights (mixture)
    loss_fn = default_loss(data, loss)
    distill_fn, distill_name = make_distill(distill, strat.distills_by_default, strat.supports_distill, data.classification, strat.name)
    identity = {
        "kind": "supernet",
        "family": getattr(net, "family", None),
        "family_args": _plain(getattr(net, "family_args", None)),
        "strategy": strat.name or type(strat).__name__,
        "strategy_params": _plain(strat.params()),
        "distill": distill_name,
    }
    if precision != "fp32":  # recorded only when not the default: older checkpoints still resume
        identity["precision"] = precision
    return Plan(data, recipe, strat, loss_fn, distill_fn, identity, precision)


def supernet_step(net: nn.Module, plan: Plan, step_class: type[Supervised] | None = None, **extra: Any) -> Supervised:
    """The `Supervised` step training `net` by `plan` (the strategy's step under the precision's autocast)."""
    rng = np.random.default_rng(plan.recipe.seed)
    data, strat, loss_fn, distill_fn = plan.data, plan.strategy, plan.loss, plan.distill
    device = _device(net)

    def validate() -> dict[str, float]:
        record: dict[str, float] = {}
        evals = evaluate(net, [net.largest(), net.smallest()], data, metrics=("accuracy", "loss"), loss=loss_fn)
        for which, ev in zip(("largest", "smallest"), evals):
            for k, v in ev.metrics.items():
                record[f"{which}_{k}"] = v
            if not ev.ok:
                record[f"{which}_loss"] = math.nan
        return record

    def forward_backward(x: torch.Tensor, y: torch.Tensor) -> float:
        with autocast(plan.precision, device), net.sliced_gradients() if strat.slices_gradients else nullcontext():
            return strat.step(net, x, y, rng, loss_fn, distill_fn)

    net.trained_on = fingerprint(data)  # a resumed checkpoint's own replaces it (Supervised.load_state_dict)
    step = (step_class or Supervised)(net, forward_backward, plan.recipe, data, validate, rng, **extra)
    total = max(1, plan.recipe.epochs * steps_per_epoch(data, plan.recipe.batch_size))
    strat.bind(net, step.optimizers["weights"], total)
    return step


def _plain(value: Any) -> Any:
    """Tuples as lists, so a recipe compares equal after a save and load."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)
