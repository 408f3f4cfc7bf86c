"""`progressive`: progressive shrinking (Once-for-All): the largest subnet first, then ever smaller choices open."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas.space import Config
from nas.training._base import STRATEGIES, steps_taken
from nas.training._sandwich import Sandwich


@STRATEGIES.register("progressive")
class Progressive(Sandwich):
    """Progressive shrinking: the sandwich rule over a space that opens from the largest subnet down.

    For the first `warm` share of the optimizer steps only the largest subnet trains; then
    each dimension opens its values from the largest down, evenly, until all are open at the
    `open` share of the steps. Each step trains the largest subnet, the smallest open one and
    `n` random open ones, the others distilled from the largest (in-place distillation, as
    in OFA's shrinking phases). With `smoothing` the largest subnet's cross-entropy (the
    default loss for class targets; another loss is used as given) smooths its labels by
    that much (Szegedy et al. 2016), which also softens the teacher of the others. From the
    `late` share of the steps on, the smallest subnet is left out and one more random open
    subnet takes its place (the same passes per step; 1.0: never). With `spread` the random
    subnets' sizes are spread over the open range: one ``u ~ U(0, 1)`` per subnet, each open
    dimension at open index ``Binomial(k - 1, u)`` (uniform draws are nearly all mid-size). The schedule survives a resume through the optimizer's step
    count (Adam, AdamW; with SGD it restarts at a resume).

    Example:
        >>> strategy = Progressive(n=2, warm=0.1, open=0.5)
        >>> [strategy.opened(t, 4) for t in (0.0, 0.2, 0.4, 0.6)]
        [1, 2, 4, 4]
    """

    def __init__(self, n: int = 4, warm: float = 0.1, open: float = 0.5, smoothing: float = 0.0, late: float = 1.0, spread: bool = False):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"The 'n' parameter of Progressive must be an int >= 0, got {n!r}.")
        if not 0 <= warm <= open <= 1:
            raise ValueError(f"The 'warm' and 'open' parameters of Progressive must satisfy 0 <= warm <= open <= 1, got {warm!r} and {open!r}.")
        if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not 0 <= smoothing < 1:
            raise ValueError(f"The 'smoothing' parameter of Progressive must be a number in [0, 1), got {smoothing!r}.")
        if isinstance(late, bool) or not isinstance(late, (int, float)) or not 0 <= late <= 1:
            raise ValueError(f"The 'late' parameter of Progressive must be a number in [0, 1], got {late!r}.")
        if not isinstance(spread, bool):
            raise ValueError(f"The 'spread' parameter of Progressive must be a bool, got {spread!r}.")
        super().__init__(n=n)
        self.warm, self.open, self.smoothing, self.late, self.spread = warm, open, smoothing, late, spread
        self._total = 1
        self._count: int | None = None
        self._t = 0.0  # the share of training the current step is at
        self._optimizer: torch.optim.Optimizer | None = None
        self._params: list[nn.Parameter] = []

    def bind(self, net: nn.Module, optimizer: torch.optim.Optimizer, total_steps: int) -> None:
        self._total, self._count, self._optimizer, self._params = total_steps, None, optimizer, list(net.parameters())

    def opened(self, t: float, values: int) -> int:
        """How many of a dimension's `values` (from the largest down) are open at share `t` of training."""
        if t < self.warm:
            return 1
        if t >= self.open or self.open == self.warm:
            return values
        return min(values, 1 + math.ceil((values - 1) * (t - self.warm) / (self.open - self.warm)))

    def sample(self, net: nn.Module, t: float, rng: np.random.Generator | None = None) -> Config:
        """A random config open at share `t` of training (None `rng`: the smallest open one)."""
        out: Config = {}
        u = rng.random() if self.spread and rng is not None else None
        for dim in net.space.dimensions:
            if net.space.is_active(dim.name, out):
                k = self.opened(t, len(dim.values))
                pick = 0 if rng is None else int(rng.binomial(k - 1, 1 - u)) if u is not None else int(rng.integers(k))
                index = len(dim.values) - k + pick
                out[dim.name] = dim.values[index]
        return out

    def step(self, net, x, y, rng, loss, distill):
        if self._count is None:  # the first step of this run (or of a resumed one: the optimizer's count)
            self._count = steps_taken(self._optimizer, self._params)
        self._t = self._count / self._total
        self._count += 1
        return super().step(net, x, y, rng, loss, distill)

    def students(self, net, rng) -> list:
        """No subnets while the largest trains alone (the first `warm` share), then the smallest open subnet and `n` random
        open ones; from the `late` share on, `n` + 1 random open ones."""
        t = self._t
        if t < self.warm:
            return []
        if t >= self.late and self.late < 1:
            return [self.sample(net, t, rng) for _ in range(self.n + 1)]
        return [self.sample(net, t)] + [self.sample(net, t, rng) for _ in range(self.n)]

    def teacher_loss(self, out, y, loss):
        """The largest subnet's loss; with `smoothing`, its cross-entropy on smoothed labels."""
        if self.smoothing and isinstance(loss, nn.CrossEntropyLoss):
            return F.cross_entropy(out, y, weight=loss.weight, ignore_index=loss.ignore_index, label_smoothing=self.smoothing)
        return loss(out, y)
