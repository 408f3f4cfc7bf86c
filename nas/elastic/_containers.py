"""Elastic containers: depth (the first d blocks) and op choice (one of several modules)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nas.elastic._base import ElasticModule
from nas.space import Choice


class ElasticSequential(ElasticModule):
    """Runs the first ``depth`` of its blocks; deeper blocks' dimensions exist only when reached.

    Example:
        >>> seq = ElasticSequential([nn.Identity(), nn.Identity()], Choice("depth", [1, 2]))
        >>> seq(torch.ones(1)).tolist()
        [1.0]

    Args:
        blocks: the blocks, in order.
        depth: a `Choice` of depths (each between 1 and the number of blocks), or None: all.
    """

    leaf = False

    def __init__(self, blocks: Sequence[nn.Module], depth: Choice | None = None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        if depth is not None and (depth.kind is not int or min(depth.values) < 0 or max(depth.values) > len(self.blocks)):
            raise ValueError(f"ElasticSequential depth: Choice {depth.name!r} values must lie in 0..{len(self.blocks)}, got {list(depth.values)}")
        self.depth = depth
        self._own(depth)

    def active_depth(self) -> int:
        """The number of blocks run now."""
        return self._resolve(self.depth, len(self.blocks))

    def block_condition(self, index: int) -> tuple[str, tuple] | None:
        """The condition under which block `index` runs (None: always)."""
        if self.depth is None:
            return None
        allowed = tuple(d for d in self.depth.values if d > index)
        return None if allowed == self.depth.values else (self.depth.name, allowed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = self.blocks._modules.values()
        for block, _ in zip(blocks, range(self._resolve(self.depth, len(self.blocks)))):
            x = block(x)
        return x

    def to_dense(self, inputs, densify):
        return nn.Sequential(*[densify(b) for b in self.blocks[: self.active_depth()]])


class OpChoice(ElasticModule):
    """One of several ops, each with its own weights (weight sharing over different ops).

    Example:
        >>> from nas.layers import Zero
        >>> ops = OpChoice({"zero": Zero(), "skip": nn.Identity()}, "edge")
        >>> ops(torch.ones(2)).tolist()
        [1.0, 1.0]

    Args:
        ops: name -> module, cheapest first (the order of the dimension's values).
        name: the dimension's name (several OpChoices may share one name and so one choice).
    """

    leaf = False

    def __init__(self, ops: Mapping[str, nn.Module], name: str):
        super().__init__()
        if not ops:
            raise ValueError(f"OpChoice {name!r} needs at least one op")
        self.ops = nn.ModuleDict(ops)
        self.choice = Choice(name, list(ops))
        self._own(self.choice)

    def active(self) -> str:
        """The name of the op run now."""
        return self._values[self.choice.name]  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops[self.active()](x)

    def to_dense(self, inputs, densify):
        return densify(self.ops[self.active()])
