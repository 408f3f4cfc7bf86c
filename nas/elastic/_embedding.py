"""Elastic positional embedding: a learned table sliced to the input's width."""

from __future__ import annotations

import torch
from torch import nn

from nas.elastic._base import ElasticModule
from nas.layers import PositionalEmbedding


class ElasticPositionalEmbedding(ElasticModule):
    """Adds a learned per-position embedding whose width follows the input's last dimension.

    Example:
        >>> ElasticPositionalEmbedding(8, 64)(torch.zeros(2, 8, 32)).shape
        torch.Size([2, 8, 32])

    Args:
        tokens: number of positions.
        width: largest embedding width.
    """

    def __init__(self, tokens: int, width: int):
        super().__init__()
        self.tokens, self.width = tokens, width
        self.weight = nn.Parameter(torch.zeros(1, tokens, width))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = x.shape[-1]
        return x + (self.weight if e == self.width else self.weight[:, :, :e])

    def _cost(self, inputs, output):
        t, e = inputs[0].shape[-2:]
        return t * e, 0, {"op": "pos_embedding", "width": e}

    def to_dense(self, inputs, densify):
        t, e = inputs[0].shape[-2:]
        dense = PositionalEmbedding(t, e)
        with torch.no_grad():
            dense.weight.copy_(self.weight[:, :t, :e])
        return dense
