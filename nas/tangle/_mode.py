"""`Tangle`: a supernet prepared for gradient search, and `tangle_mode`, the context manager that
runs its mixed forward under architecture weights."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from nas.elastic import ElasticModule, ElasticSequential, OpChoice
from nas.tangle._cost import CostModel
from nas.tangle._layout import Layout
from nas.tangle._superpose import builder
from nas.tangle._weighted import weighted_sum

COMBINES = ("superposition", "weighted_sum")
Weights = Mapping[str, torch.Tensor]
_LAYOUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def layout_of(net: nn.Module) -> Layout:
    """The supernet's `Layout`, built once per supernet object (probing runs a few hundred
    one-sample forwards at most)."""
    layout = _LAYOUTS.get(net)
    if layout is None:
        layout = _LAYOUTS[net] = Layout.build(net)
    return layout


class Tangle:
    """A supernet prepared for gradient search: mixed forwards for its layers and its expected cost.

    How candidates combine is the `combine` axis: ``"superposition"`` (TangleNAS: one mixed
    weight per layer, one forward at the largest size) or ``"weighted_sum"`` (DARTS-style:
    one forward per candidate, outputs summed). Either way depth is the weighted sum of the
    outputs after each allowed number of blocks, and an op choice the weighted sum of its
    ops. How architecture parameters become the weights is the other axis (`Sampler`).

    Example:
        >>> from search_spaces.mlp import MLP
        >>> from nas.tangle import one_hot
        >>> net = MLP(depths=(1, 2), widths=(8, 16), ranks=(2, 4))
        >>> tangle = Tangle(net)
        >>> x = torch.randn(3, 64)
        >>> config = net.smallest()
        >>> with tangle.mode(one_hot(net.space, config)):
        ...     mixed = net(x)
        >>> with net.activate(config):
        ...     torch.allclose(mixed, net(x), atol=1e-6)
        True

    Args:
        net: a `Supernet`.
        combine: ``"superposition"`` or ``"weighted_sum"``.
        latency: a `nas.latency.LatencyTable` of `net`, for an expected ``latency_ms``.
    """

    def __init__(self, net: nn.Module, combine: str = "superposition", latency: Any = None):
        if combine not in COMBINES:
            raise ValueError(f"The 'combine' parameter must be one of {list(COMBINES)}, got {combine!r}.")
        self.net, self.combine, self.latency = net, combine, latency
        self.space = net.space
        self.layout = layout_of(net)
        self._plan: list[tuple[nn.Module, Callable]] | None = None
        self._cost: CostModel | None = None

    # -- the mixed forward -----------------------------------------------------------------
    @contextmanager
    def mode(self, weights: Weights) -> Iterator[nn.Module]:
        """Inside the block, the supernet's forward is the mixed forward under `weights`
        (dimension name -> weights over its values); every layer is restored on exit."""
        self.check(weights)
        device = next(self.net.parameters()).device
        weights = {k: (w if w.device == device else w.to(device)) for k, w in weights.items()}
        state = {"weights": weights}
        patched: list[nn.Module] = []
        try:
            for module, forward in self.plan():
                if "forward" in module.__dict__:
                    raise RuntimeError(f"{type(module).__name__} already has its forward replaced (nested tangle mode?)")
                module.forward = _bound(forward, state)
                patched.append(module)
            yield self.net
        finally:
            for module in patched:
                module.__dict__.pop("forward", None)

    def check(self, weights: Weights) -> None:
        """Reject weights that miss a dimension or have the wrong length."""
        for dim in self.space.dimensions:
            w = weights.get(dim.name)
            if w is None:
                raise ValueError(f"the architecture weights miss dimension {dim.name!r}")
            if tuple(w.shape) != (len(dim.values),):
                raise ValueError(f"the weights of {dim.name!r} must have shape ({len(dim.values)},), got {tuple(w.shape)}")

    def plan(self) -> list[tuple[nn.Module, Callable]]:
        """(module, ``forward(x, weights)``) for every elastic module, built once."""
        if self._plan is None:
            plan = []
            for module in self.net.body.modules():
                if not isinstance(module, ElasticModule):
                    continue
                if isinstance(module, ElasticSequential):
                    plan.append((module, _sequential(module)))
                    continue
                if isinstance(module, OpChoice):
                    plan.append((module, _op_choice(module)))
                    continue
                unit = self.layout.unit(module)
                make = builder(module)
                if make is None or unit is None:
                    if module.dimensions():
                        raise NotImplementedError(
                            f"no mixed forward for {type(module).__name__}, which owns dimensions "
                            f"{[c.name for c in module.dimensions()]}; register one in nas.tangle._superpose.BUILDERS"
                        )
                    continue
                forward = weighted_sum(module, unit, self.space) if self.combine == "weighted_sum" else make(module, unit, self.space)
                if forward is not None:
                    plan.append((module, forward))
            self._plan = plan
        return self._plan

    # -- expected cost -------------------------------------------------------------------
    def expected_cost(self, weights: Weights) -> dict[str, torch.Tensor]:
        """Differentiable expected ``params``, ``macs`` (and ``latency_ms`` with a latency
        table) under `weights`; equal to `Supernet.cost` at one-hot weights."""
        if self._cost is None:
            self._cost = CostModel(self.layout, self.latency)
        return self._cost(weights)


def tangle_mode(net: nn.Module, weights: Weights, combine: str = "superposition"):
    """Context manager: `net` runs its mixed forward under `weights` inside the block.

    Example:
        >>> from search_spaces.mlp import MLP
        >>> from nas.tangle import one_hot
        >>> net = MLP(depths=(1,), widths=(8, 16), ranks=(2, 4))
        >>> with tangle_mode(net, one_hot(net.space, net.largest())):
        ...     net(torch.zeros(2, 64)).shape
        torch.Size([2, 10])
    """
    return Tangle(net, combine).mode(weights)


def _bound(forward: Callable, state: dict) -> Callable:
    def call(x: torch.Tensor) -> torch.Tensor:
        return forward(x, state["weights"])

    return call


def _sequential(module: ElasticSequential) -> Callable:
    """Depth: the weighted sum of the outputs after each allowed number of blocks."""

    def forward(x, weights):
        if module.depth is None:
            for block in module.blocks:
                x = block(x)
            return x
        values = list(module.depth.values)
        w = weights[module.depth.name].to(x.dtype)
        out = w[values.index(0)] * x if 0 in values else 0
        for d, block in enumerate(module.blocks[: max(values)], 1):
            x = block(x)
            if d in values:
                out = out + w[values.index(d)] * x
        return out

    return forward


def _op_choice(module: OpChoice) -> Callable:
    """An op choice: the weighted sum of its ops' outputs (each op keeps its own weights)."""
    names = list(module.choice.values)

    def forward(x, weights):
        w = weights[module.choice.name].to(x.dtype)
        out = 0
        for i, name in enumerate(names):
            out = out + w[i] * module.ops[name](x)
        return out

    return forward
