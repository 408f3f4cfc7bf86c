"""Plain (non-elastic) layers that supernets and their extracted models share."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Residual(nn.Module):
    """``x + body(x)`` when shapes agree, else ``body(x)`` (a stride or width change).

    Example:
        >>> Residual(nn.Identity())(torch.ones(2)).tolist()
        [2.0, 2.0]
    """

    merges = True  # the graph tracer adds an "add" node joining input and body

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if out.shape == x.shape else out


class Zero(nn.Module):
    """The "none" op: zeros shaped like the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class Attention(nn.Module):
    """Dense multi-head self-attention (what an elastic attention layer extracts to).

    Example:
        >>> Attention(16, heads=2, head_dim=8)(torch.zeros(3, 5, 16)).shape
        torch.Size([3, 5, 16])
    """

    def __init__(self, embed_dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.qkv = nn.Linear(embed_dim, 3 * heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))


class PositionalEmbedding(nn.Module):
    """Adds a learned embedding per token position."""

    def __init__(self, tokens: int, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, tokens, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight


class Patchify(nn.Module):
    """Images ``(B, C, H, W)`` to tokens ``(B, H*W/p^2, C*p^2)`` of ``p x p`` patches; p=0: rows."""

    def __init__(self, patch: int = 0):
        super().__init__()
        self.patch = patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            return x
        if self.patch == 0:
            return x.flatten(1, 2) if x.shape[1] == 1 else x.permute(0, 2, 1, 3).flatten(2)
        p = self.patch
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, (h // p) * (w // p), c * p * p)


class MeanTokens(nn.Module):
    """Average over the token dimension: ``(B, T, E) -> (B, E)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


class GlobalAvgPool(nn.Module):
    """Average over the spatial dimensions: ``(B, C, H, W) -> (B, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))
