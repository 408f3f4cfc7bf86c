"""One bi-level training step (DARTS): architecture parameters on a validation batch, then the
supernet's weights on a training batch, both through the mixed forward; `BiLevelStep` runs
it in `nas.training.fit`, the one training loop."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.tangle._arch import ArchParameters
from nas.tangle._budget import Budget
from nas.tangle._mode import Tangle
from nas.tangle._sampling import Sampler
from nas.training import Step, backward

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class CostObjective:
    """The cost terms of the architecture loss: ``weight * E[cost] / scale`` plus a budget's penalty.

    The expectation is taken under the sampler's deterministic weights (softmax, the
    Dirichlet mean), so it is the architecture distribution's expected cost.

    Example:
        >>> from search_spaces.mlp import MLP
        >>> from nas.tangle import Softmax
        >>> net = MLP(depths=(1,), widths=(8, 16), ranks=(2, 4))
        >>> objective = CostObjective(Tangle(net), Softmax(), metric="params", weight=1.0, scale=1000.0)
        >>> term, info = objective(ArchParameters(net.space))
        >>> sorted(info)
        ['expected_macs', 'expected_params']

    Args:
        tangle: the prepared supernet (its `expected_cost`).
        sampler: the sampler whose deterministic weights define the distribution.
        metric: the weighted cost (``params``, ``macs`` or ``latency_ms``), or None.
        weight: its weight.
        scale: the cost that counts as 1 (the largest subnet's).
        budget: a `Budget` whose Lagrangian penalty is added, or None.
    """

    def __init__(self, tangle: Tangle, sampler: Sampler, metric: str | None = None, weight: float = 0.0, scale: float = 1.0, budget: Budget | None = None):
        self.tangle, self.sampler, self.metric, self.weight, self.scale, self.budget = tangle, sampler, metric, weight, scale, budget

    @property
    def active(self) -> bool:
        """Whether there is any cost term."""
        return bool(self.weight) or self.budget is not None

    def __call__(self, arch: ArchParameters) -> tuple[torch.Tensor, dict[str, float]]:
        expected = self.tangle.expected_cost(arch.weights(self.sampler, training=False))
        term = torch.zeros((), dtype=torch.float64, device=next(iter(expected.values())).device)
        if self.weight:
            term = term + self.weight * expected[self.metric] / self.scale
        if self.budget is not None:
            term = term + self.budget.penalty(expected[self.budget.metric])
        return term.float(), {f"expected_{k}": float(v.detach()) for k, v in expected.items()}


class BiLevel:
    """Bi-level gradient search steps over a `Tangle`-prepared supernet.

    `arch_step` moves the architecture parameters down the validation loss plus the cost
    terms (first order, or DARTS' unrolled second order); `weight_step` moves the weights
    down the training loss under freshly drawn architecture weights, with ordered dropout
    on low-rank layers (a random rank cut-off each step, Maestro) when asked. The caller
    owns the optimizers, zeroing and the LR schedule.

    Example:
        >>> from search_spaces.mlp import MLP
        >>> from nas.tangle import Dirichlet
        >>> net = MLP(depths=(1,), widths=(8, 16), ranks=(2, 4))
        >>> arch = ArchParameters(net.space)
        >>> steps = BiLevel(Tangle(net), arch, Dirichlet(), nn.CrossEntropyLoss(),
        ...                 torch.optim.Adam(net.parameters()), torch.optim.Adam(arch.parameters()))
        >>> x, y = torch.randn(8, 64), torch.randint(0, 10, (8,))
        >>> loss, info = steps.arch_step(x, y, x, y)
        >>> steps.weight_step(x, y) > 0
        True

    Args:
        tangle: the prepared supernet.
        arch: the architecture parameters.
        sampler: how they become weights.
        loss: ``(outputs, targets) -> scalar``.
        weight_optimizer: optimizer of the supernet's weights.
        arch_optimizer: optimizer of `arch`.
        cost: the `CostObjective` (None: no cost terms).
        ordered_dropout: cut low-rank layers at a random rank in weight steps.
        second_order: DARTS' unrolled architecture gradient.
        grad_clip: clip the weights' gradient norm (None: no clipping).
        rng: the generator of the ordered-dropout cut-offs.
    """

    def __init__(
        self,
        tangle: Tangle,
        arch: ArchParameters,
        sampler: Sampler,
        loss: LossFn,
        weight_optimizer: torch.optim.Optimizer,
        arch_optimizer: torch.optim.Optimizer,
        cost: CostObjective | None = None,
        ordered_dropout: bool = True,
        second_order: bool = False,
        grad_clip: float | None = None,
        rng: np.random.Generator | None = None,
    ):
        self.tangle, self.net, self.arch, self.sampler, self.loss = tangle, tangle.net, arch, sampler, loss
        self.opt_w, self.opt_a, self.cost = weight_optimizer, arch_optimizer, cost
        self.second_order, self.grad_clip = second_order, grad_clip
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        self.ranked = [m for m in self.net.modules() if hasattr(m, "cutoff") and hasattr(m, "max_rank")] if ordered_dropout else []

    def _loss(self, weights: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.tangle.mode(weights):
            return self.loss(self.net(x), y)

    def _cost(self) -> tuple[torch.Tensor, dict[str, float]]:
        if self.cost is None or not self.cost.active:
            return torch.zeros((), device=self.params[0].device), {}
        return self.cost(self.arch)

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimizer step of the weights on a training batch; returns its loss."""
        self.opt_w.zero_grad(set_to_none=True)
        with torch.no_grad():
            weights = self.arch.weights(self.sampler, training=True)
        try:
            for layer in self.ranked:
                values = getattr(getattr(layer, "rank", None), "values", None)
                layer.cutoff = int(self.rng.integers(int(min(values)) if values else 1, layer.max_rank + 1))
            value = self._loss(weights, x, y)
        finally:
            for layer in self.ranked:
                layer.cutoff = None
        backward(value)
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.opt_w.step()
        return value.item()

    def arch_step(self, x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor) -> tuple[float, dict[str, float]]:
        """One optimizer step of the architecture parameters on a validation batch (the
        training batch serves the second-order term); returns its loss and the expected costs."""
        alphas = list(self.arch.parameters())
        self.opt_a.zero_grad(set_to_none=True)
        if self.second_order:
            value, info, grads = self._unrolled(x, y, xv, yv)
        else:
            value = self._loss(self.arch.weights(self.sampler, training=True), xv, yv)
            term, info = self._cost()
            grads = torch.autograd.grad(value + term, alphas, allow_unused=True)
        for a, g in zip(alphas, grads):
            a.grad = g if g is not None else torch.zeros_like(a)
        self.opt_a.step()
        return value.item(), info

    def _unrolled(self, x, y, xv, yv) -> tuple[torch.Tensor, dict[str, float], list[torch.Tensor]]:
        """``grad_a L_val(w - xi grad_w L_train(w, a), a)``, the Hessian-vector product by finite differences."""
        alphas, params = list(self.arch.parameters()), self.params
        xi = self.opt_w.param_groups[0]["lr"]
        backup = [p.detach().clone() for p in params]
        with torch.no_grad():
            fixed = self.arch.weights(self.sampler, training=True)
        grads = torch.autograd.grad(self._loss(fixed, x, y), params, allow_unused=True)
        try:
            with torch.no_grad():
                for p, g in zip(params, grads):
                    if g is not None:
                        p.sub_(xi * g)
            value = self._loss(self.arch.weights(self.sampler, training=True), xv, yv)
            term, info = self._cost()
            out = torch.autograd.grad(value + term, alphas + params, allow_unused=True)
            d_alpha = [g if g is not None else torch.zeros_like(a) for g, a in zip(out[: len(alphas)], alphas)]
            d_w = out[len(alphas) :]
            norm = sum(float((g.detach() ** 2).sum()) for g in d_w if g is not None) ** 0.5
            if norm == 0.0:
                return value, info, d_alpha
            eps = 0.01 / norm
            train_weights = self.arch.weights(self.sampler, training=True)  # one draw for both sides
            sides = []
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    for p, b, g in zip(params, backup, d_w):
                        p.copy_(b if g is None else b + sign * eps * g)
                sides.append(torch.autograd.grad(self._loss(train_weights, x, y), alphas, allow_unused=True, retain_graph=True))
            for i, (plus, minus) in enumerate(zip(*sides)):
                if plus is not None and minus is not None:
                    d_alpha[i] = d_alpha[i] - xi * (plus - minus) / (2 * eps)
            return value, info, d_alpha
        finally:
            with torch.no_grad():
                for p, b in zip(params, backup):
                    p.copy_(b)



class BiLevelStep(Step):
    """`BiLevel` as a step of `nas.training.fit`: each training batch gets an architecture
    step on the next validation batch (once the warm-up epochs are over), then a weight step.

    Each epoch sets the sampler's temperature and shuffles the order in which validation
    batches serve the architecture steps (with the step's generator). Its record holds
    ``train_loss``, ``val_loss`` (mean architecture-step loss; NaN during warm-up),
    ``temperature`` and the expected costs of the last architecture step.

    Args:
        steps: the `BiLevel` steps (its optimizers, generator and cost terms).
        data: the data whose validation split the architecture steps use.
        batch_size: the validation batch size.
        temperatures: the sampler's temperature for each epoch.
        warmup_epochs: first epochs without architecture steps.
        scheduler: the weights' per-batch LR scheduler, or None.
    """

    def __init__(self, steps: BiLevel, data: Any, batch_size: int, temperatures: list[float], warmup_epochs: int = 0, scheduler: Any = None):
        self.steps, self.data, self.batch_size, self.temperatures, self.warmup_epochs = steps, data, batch_size, temperatures, warmup_epochs
        self.model, self.rng = steps.net, steps.rng
        self.optimizers = {"weights": steps.opt_w, "arch": steps.opt_a}
        self.schedulers = {"weights": scheduler}
        self._val: list = []
        self._order: np.ndarray = np.zeros(0, dtype=int)
        self._arch_steps, self._val_sum, self._info = 0, 0.0, {}

    @property
    def budget(self) -> Budget | None:
        """The budget whose multiplier the checkpoint keeps."""
        return self.steps.cost.budget if self.steps.cost is not None else None

    def begin_epoch(self, epoch: int) -> None:
        self.steps.sampler.temperature = self.temperatures[epoch]
        self._warm = epoch >= self.warmup_epochs
        self._val = self.data.val_batches(self.batch_size, self.steps.params[0].device)
        self._order = self.rng.permutation(len(self._val))
        self._arch_steps, self._val_sum, self._info = 0, 0.0, {}

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> float:
        if self._warm:
            xv, yv = self._val[self._order[self._arch_steps % len(self._order)]]
            value, self._info = self.steps.arch_step(x, y, xv, yv)
            if not (math.isfinite(value) and all(bool(torch.isfinite(a).all()) for a in self.steps.arch.parameters())):
                return math.nan  # diverged: `fit` stops before a weight step under non-finite architecture weights
            self._val_sum += value
            self._arch_steps += 1
        return self.steps.weight_step(x, y)

    def end_epoch(self, epoch: int, loss: float) -> dict[str, Any]:
        val = self._val_sum / self._arch_steps if self._arch_steps else math.nan
        return {"train_loss": loss, "val_loss": val, "temperature": self.steps.sampler.temperature, **self._info}

    def state_dict(self) -> dict[str, Any]:
        budget = self.budget
        return {"arch": self.steps.arch.state_dict(), "arch_names": self.steps.arch.names, "lambda": budget.lam if budget is not None else 0.0}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.steps.arch.load_state_dict(state["arch"])
        if self.budget is not None:
            self.budget.lam = float(state["lambda"])

    def postfix(self, record: Mapping[str, Any]) -> dict[str, str]:
        return {"loss": f"{record['train_loss']:.4f}"}
