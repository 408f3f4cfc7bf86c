"""`uniform`: one uniformly sampled subnet per step (single-path one-shot, SPOS)."""

from __future__ import annotations

from nas.training._base import STRATEGIES, Strategy, backward


@STRATEGIES.register("uniform")
class Uniform(Strategy):
    """Single-path one-shot training: each step trains one uniformly sampled subnet.

    Example:
        >>> Uniform()
        Uniform()
    """

    def step(self, net, x, y, rng, loss, distill):
        with net.activate(net.sample(rng)):
            value = loss(net(x), y)
        backward(value)
        return value.item()
