"""Elastic depth of a user's stage: each skippable block runs only when the stage's depth reaches it."""

from __future__ import annotations

from torch import nn

from nas.elastic._base import ElasticModule
from nas.space import Choice


class DepthGate(ElasticModule):
    """Runs `block` when the stage depth exceeds `index`, else passes its first input through.

    The block's input and output shapes must match (a skippable residual block); a
    skipped block extracts to `nn.Identity`. The block's own dimensions exist only when it runs.

    Example:
        >>> import torch
        >>> gate = DepthGate(nn.Linear(2, 2), Choice("stage.depth", [0, 1]), index=0)
        >>> with torch.no_grad():
        ...     gate._configure({"stage.depth": 0})
        ...     gate(torch.ones(1, 2)).tolist()
        [[1.0, 1.0]]

    Args:
        block: the block (kept under the name ``block``).
        depth: the stage's depth dimension (shared by its gates).
        index: the block's position in the stage (0: the first skippable one).
    """

    leaf = False

    def __init__(self, block: nn.Module, depth: Choice, index: int):
        super().__init__()
        if depth.kind is not int or min(depth.values) < 0:
            raise ValueError(f"DepthGate depth: Choice {depth.name!r} needs int values >= 0, got {list(depth.values)}")
        self.block, self.depth, self.index = block, depth, index
        self._own(depth)

    def runs(self) -> bool:
        """Whether the block runs in the active subnet."""
        return self._values[self.depth.name] > self.index

    def block_condition(self) -> tuple[str, tuple] | None:
        """The condition under which the block runs (None: always)."""
        allowed = tuple(d for d in self.depth.values if d > self.index)
        return None if allowed == self.depth.values else (self.depth.name, allowed)

    def forward(self, x, *args, **kwargs):
        return self.block(x, *args, **kwargs) if self.runs() else x

    def to_dense(self, inputs, densify):
        return densify(self.block) if self.runs() else nn.Identity()
