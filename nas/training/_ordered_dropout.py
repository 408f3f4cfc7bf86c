"""`ordered_dropout`: per low-rank layer, train only the leading components up to a sampled cut-off (Maestro)."""

from __future__ import annotations

from torch import nn

from nas.training._base import STRATEGIES, Strategy, backward


def cutoff_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every layer with an ordered-dropout hook (a ``cutoff`` and ``max_rank``)."""
    return [(name, m) for name, m in net.named_modules() if hasattr(m, "cutoff") and hasattr(m, "max_rank")]


def _lowest(layer: nn.Module) -> int:
    values = getattr(getattr(layer, "rank", None), "values", None)
    return int(min(values)) if values else 1


@STRATEGIES.register("ordered_dropout")
class OrderedDropout(Strategy):
    """Ordered dropout: each step samples a subnet (widths, depth, ... from their choices)
    and, for every low-rank layer, a cut-off ``r`` uniform between its smallest rank choice
    and ``max_rank``; only the leading ``r`` components run and get gradients, which orders
    the components by importance so that truncating to any rank stays near-optimal.

    Example:
        >>> OrderedDropout(n=1)
        OrderedDropout(n=1)

    Args:
        n: subnets (each with its own cut-offs) per step.

    After a step, `last_cutoffs` maps each layer name to the cut-off of the last subnet.
    """


    def __init__(self, n: int = 1):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"The 'n' parameter of OrderedDropout must be an int >= 1, got {n!r}.")
        self.n = n
        self._last_cutoffs: dict[str, int] = {}
        self._layers: tuple[int, list] | None = None

    @property
    def last_cutoffs(self) -> dict[str, int]:
        """Layer name -> cut-off of the last subnet trained."""
        return dict(self._last_cutoffs)

    def step(self, net, x, y, rng, loss, distill):
        if self._layers is None or self._layers[0] != id(net):
            self._layers = (id(net), cutoff_layers(net))
        layers = self._layers[1]
        total = 0.0
        for _ in range(self.n):
            config = net.sample(rng)
            cutoffs = {name: int(rng.integers(_lowest(layer), layer.max_rank + 1)) for name, layer in layers}
            try:
                for name, layer in layers:
                    layer.cutoff = cutoffs[name]
                with net.activate(config):
                    value = loss(net(x), y)
            finally:
                for _, layer in layers:
                    layer.cutoff = None
            backward(value)
            total += value.item()
            self._last_cutoffs = cutoffs
        return total / self.n
