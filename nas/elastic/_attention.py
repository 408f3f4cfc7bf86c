"""Elastic multi-head self-attention: number of heads and head width are searchable."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nas.elastic._base import ElasticModule, Size, check_size
from nas.layers import Attention


def _strided(t: torch.Tensor, sizes: tuple[int, ...], strides: tuple[int, ...]) -> torch.Tensor:
    """A view of the contiguous `t` read as `strides` (its blocked layout), cut to `sizes`."""
    return t.as_strided(sizes, strides, t.storage_offset()) if t.is_contiguous() else t.contiguous().as_strided(sizes, strides)


class ElasticMultiheadAttention(ElasticModule):
    """Self-attention over the first ``h`` heads, each using its first ``d`` dimensions.

    The embedding width is read from the input (leading slice); the output has the same
    width. Weights are stored as ``(3, heads, head_dim, embed)`` for Q, K, V and
    ``(embed, heads, head_dim)`` for the output projection.

    Example:
        >>> from nas.space import Choice
        >>> mha = ElasticMultiheadAttention(32, 4, 8, heads=Choice("heads", [2, 4]))
        >>> mha(torch.zeros(2, 5, 16)).shape
        torch.Size([2, 5, 16])

    Args:
        embed_dim: largest embedding width.
        max_heads: heads allocated.
        max_head_dim: width per head allocated.
        heads: number of heads: fixed (None), a `Choice` or a `Rule`.
        head_dim: width per head: fixed, a `Choice` or a `Rule`.
    """

    def __init__(self, embed_dim: int, max_heads: int, max_head_dim: int, heads: Size = None, head_dim: Size = None):
        super().__init__()
        check_size(heads, max_heads, "ElasticMultiheadAttention heads")
        check_size(head_dim, max_head_dim, "ElasticMultiheadAttention head_dim")
        self.embed_dim, self.max_heads, self.max_head_dim = embed_dim, max_heads, max_head_dim
        self.heads, self.head_dim = heads, head_dim
        inner = max_heads * max_head_dim
        self.qkv_weight = nn.Parameter(torch.empty(3 * inner, embed_dim))
        self.qkv_bias = nn.Parameter(torch.zeros(3 * inner))
        self.proj_weight = nn.Parameter(torch.empty(embed_dim, inner))
        self.proj_bias = nn.Parameter(torch.zeros(embed_dim))
        nn.init.kaiming_uniform_(self.qkv_weight, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.proj_weight, a=math.sqrt(5))
        self._own(heads)
        self._own(head_dim)

    def _sizes(self, e: int) -> tuple[int, int]:
        return self._resolve(self.heads, self.max_heads, e), self._resolve(self.head_dim, self.max_head_dim, e)

    def _head_slices(self, e: int, h: int, d: int) -> tuple[torch.Tensor, ...]:
        """The four tensors' slices, one strided view each (one autograd node each)."""
        H, D, E = self.max_heads, self.max_head_dim, self.embed_dim
        if (h, d, e) == (H, D, E):
            return self.qkv_weight, self.qkv_bias, self.proj_weight, self.proj_bias
        qkv_w = _strided(self.qkv_weight, (3, h, d, e), (H * D * E, D * E, E, 1))
        qkv_b = _strided(self.qkv_bias, (3, h, d), (H * D, D, 1))
        proj_w = _strided(self.proj_weight, (e, h, d), (H * D, D, 1))
        return qkv_w, qkv_b, proj_w, self.proj_bias[:e]

    @staticmethod
    def _dense_layout(qkv_w, qkv_b, proj_w, proj_b) -> tuple[torch.Tensor, ...]:
        """The views copied into the dense layers' layout (no copy for the whole tensors)."""
        e = proj_w.shape[0]
        return qkv_w.reshape(-1, e), qkv_b.reshape(-1), proj_w.reshape(e, -1), proj_b

    def _slices(self, e: int, h: int, d: int) -> tuple[torch.Tensor, ...]:
        return self._dense_layout(*self._head_slices(e, h, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, e = x.shape
        h, d = self._sizes(e)
        if torch.is_grad_enabled() and self._sink is not None:  # training: leaves of the views, then the copies
            qkv_w, qkv_b, proj_w, proj_b = self._dense_layout(*self._leaves(e, lambda: self._head_slices(e, h, d)))
        else:
            qkv_w, qkv_b, proj_w, proj_b = self._cached((e, self.qkv_weight._version, self.proj_weight._version), lambda: self._slices(e, h, d))
        q, k, v = F.linear(x, qkv_w, qkv_b).view(b, t, 3, h, d).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return F.linear(out.transpose(1, 2).reshape(b, t, h * d), proj_w, proj_b)

    def _cost(self, inputs, output):
        _, t, e = inputs[0].shape
        h, d = self._sizes(e)
        inner = h * d
        params = 3 * inner * e + 3 * inner + e * inner + e
        macs = t * (3 * inner * e + inner * e) + 2 * t * t * inner
        return params, macs, {"op": "attention", "width": e, "heads": h, "head_dim": d}

    def to_dense(self, inputs, densify):
        e = inputs[0].shape[-1]
        h, d = self._sizes(e)
        dense = Attention(e, h, d)
        qkv_w, qkv_b, proj_w, proj_b = self._slices(e, h, d)
        with torch.no_grad():
            dense.qkv.weight.copy_(qkv_w)
            dense.qkv.bias.copy_(qkv_b)
            dense.proj.weight.copy_(proj_w)
            dense.proj.bias.copy_(proj_b)
        return dense
