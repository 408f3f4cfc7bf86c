"""Seeded random batches shaped for a supernet's input, for the tests that train a few steps."""

from __future__ import annotations

import torch


def random_batch(net, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` inputs (token ids 0/1 for a long input, else normal) and class targets 0-9, seeded."""
    gen = torch.Generator().manual_seed(seed)
    if net.input_dtype == torch.long:
        x = torch.randint(0, 2, (n, *net.input_shape), generator=gen)
    else:
        x = torch.randn(n, *net.input_shape, generator=gen)
    return x, torch.randint(0, 10, (n,), generator=gen)
