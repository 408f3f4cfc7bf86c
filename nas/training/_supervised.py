"""`Supervised`: the `Step` of supernet and standalone training (one optimizer, a forward-backward callable)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.data import Data
from nas.training._fit import Step
from nas.training._recipe import Recipe


class Supervised(Step):
    """A `Step` with one optimizer: `forward_backward(x, y)` accumulates the gradients and
    returns the loss to report; the step zeroes them first, clips them and steps the optimizer.

    Args:
        model: the trained module.
        forward_backward: ``(x, y) -> loss`` (after its backward passes).
        recipe: the optimizer, schedule and clipping.
        data: the data (the schedule's length).
        validate: the epoch's validation record.
        rng: the generator of the step's random choices.
    """

    fused_optimizer = False  # torch's fused optimizer kernel (`make_optimizer`'s ``fused``); one process: the per-parameter loop

    def __init__(self, model: nn.Module, forward_backward: Callable[[torch.Tensor, torch.Tensor], float], recipe: Recipe,
                 data: Data, validate: Callable[[], dict[str, float]], rng: np.random.Generator):
        self.model, self.forward_backward, self.validate, self.rng = model, forward_backward, validate, rng
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.grad_clip = recipe.grad_clip
        opt, sched = recipe.build(self.params, data, fused=self.fused_optimizer)
        self.optimizers, self.schedulers = {"weights": opt}, {"weights": sched}

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> float:
        opt = self.optimizers["weights"]
        opt.zero_grad(set_to_none=True)
        value = self.forward_backward(x, y)
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        opt.step()
        return value

    def end_epoch(self, epoch: int, loss: float) -> dict[str, Any]:
        return {"loss": loss, "lr": self.optimizers["weights"].param_groups[0]["lr"], **self.validate()}

    def state_dict(self) -> dict[str, Any]:
        remembered = getattr(self.model, "trained_on", None)  # the data's fingerprint (nas.data.fingerprint)
        return {"data": remembered} if remembered is not None else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("data") is not None:
            self.model.trained_on = state["data"]

    @staticmethod
    def postfix(record: Mapping[str, Any]) -> dict[str, str]:
        out = {"loss": f"{record['loss']:.4f}"}
        for which in ("largest", "smallest"):
            if f"{which}_accuracy" in record:
                out[which] = f"{record[f'{which}_accuracy']:.3f}"
            elif f"{which}_loss" in record:
                out[which] = f"{record[f'{which}_loss']:.4f}"
        if "val_accuracy" in record:
            out["val"] = f"{record['val_accuracy']:.3f}"
        return out
