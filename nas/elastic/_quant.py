"""Bit-width as a search dimension: per-layer fake quantisation of Linear and Conv2d weights."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nas.elastic._base import ElasticModule
from nas.space import Choice

FULL_BITS = 32


def fake_quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """`weight` rounded to a symmetric per-output-channel grid of `bits` bits (32: unchanged).

    Each output channel (row) gets the scale ``max|w| / (2^(bits-1) - 1)``; values are rounded
    to the nearest multiple and clamped, so a `bits`-bit integer and one float scale per row
    hold the result exactly.

    Example:
        >>> w = torch.tensor([[0.1, -0.5, 0.26]])
        >>> fake_quantize(w, 2).tolist()
        [[0.0, -0.5, 0.5]]
    """
    if bits >= FULL_BITS:
        return weight
    levels = 2 ** (bits - 1) - 1
    scale = weight.detach().abs().flatten(1).amax(dim=1).clamp_min(1e-12) / levels
    scale = scale.view(-1, *([1] * (weight.dim() - 1)))
    return torch.clamp(torch.round(weight / scale), -levels, levels) * scale


class ElasticQuant(ElasticModule):
    """A Linear or Conv2d layer whose weight bit-width is a search dimension (fake quantisation).

    The forward pass uses `fake_quantize` of the weight at the active bit-width (with a
    straight-through gradient while training, so supernets can be trained through it); the
    bias stays in full precision. Its cost adds ``weight_bits`` (model size in bits) and
    ``bitops`` (MACs times weight bits; activations are not quantised), which
    `Supernet.cost` reports as ``model_bits`` and ``bitops``. `to_dense` returns the plain
    layer holding the quantised weights (so the extracted model computes exactly what was
    evaluated) with its bit-width in the ``weight_bits`` attribute.

    Example:
        >>> layer = ElasticQuant(nn.Linear(8, 4), Choice("bits", [4, 8, 16]))
        >>> layer(torch.zeros(2, 8)).shape
        torch.Size([2, 4])

    Args:
        layer: the `nn.Linear` or `nn.Conv2d` to quantise (held, not copied).
        bits: the bit-width dimension (ints in 2..32).
    """

    def __init__(self, layer: nn.Linear | nn.Conv2d, bits: Choice):
        super().__init__()
        if not isinstance(layer, (nn.Linear, nn.Conv2d)):
            raise TypeError(f"ElasticQuant quantises nn.Linear or nn.Conv2d layers, got {type(layer).__name__}.")
        if not isinstance(bits, Choice) or bits.kind is not int or min(bits.values) < 2 or max(bits.values) > FULL_BITS:
            raise ValueError(f"The 'bits' parameter of ElasticQuant must be a Choice of ints in 2..{FULL_BITS}, got {bits!r}.")
        self.layer = layer
        self.bits = bits
        self._own(bits)

    @property
    def in_features(self) -> int | None:
        """The input width of a wrapped Linear (None for a convolution)."""
        return self.layer.in_features if isinstance(self.layer, nn.Linear) else None

    def active_bits(self) -> int:
        """The bit-width used now."""
        return int(self._values[self.bits.name])

    def _weight(self) -> torch.Tensor:
        weight = self.layer.weight
        quantized = fake_quantize(weight, self.active_bits())
        if torch.is_grad_enabled() and weight.requires_grad:
            return weight + (quantized - weight).detach()  # straight-through estimator
        return quantized

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self._weight()  # not cached: a quantised copy would go stale when weights change in place
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, weight, self.layer.bias)
        return self.layer._conv_forward(x, weight, self.layer.bias)

    def _cost(self, inputs, output):
        layer = self.layer
        weights = layer.weight.numel()
        bias = layer.bias.numel() if layer.bias is not None else 0
        if isinstance(layer, nn.Linear):
            macs = output[0].numel() * layer.in_features
            op = "quant_linear"
        else:
            macs = output[0].numel() * (layer.in_channels // layer.groups) * layer.kernel_size[0] * layer.kernel_size[1]
            op = "quant_conv"
        bits = self.active_bits()
        attrs = {"op": op, "bits": bits, "weight_bits": weights * bits + bias * FULL_BITS, "bitops": macs * bits}
        return weights + bias, macs, attrs

    def to_dense(self, inputs, densify):
        dense = copy.deepcopy(self.layer)
        with torch.no_grad():
            dense.weight.copy_(fake_quantize(self.layer.weight, self.active_bits()))
        dense.weight_bits = self.active_bits()
        return dense


def with_bits(
    module: nn.Module,
    bits: Sequence[int] = (4, 8, 16),
    targets: Callable[[str, nn.Module], bool] | None = None,
) -> nn.Module:
    """A copy of `module` whose Linear and Conv2d layers are `ElasticQuant` layers with a ``<name>.bits`` dimension.

    Example:
        >>> from nas.supernet import Supernet
        >>> model = with_bits(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)))
        >>> net = Supernet(model, input_shape=(8,))
        >>> net.space.names()
        ['0.bits', '2.bits']
        >>> net.cost({"0.bits": 4, "2.bits": 8})["model_bits"]
        704

    Args:
        module: the model (copied; the original is not changed).
        bits: the bit-widths to choose from.
        targets: a predicate ``(name, layer) -> bool`` choosing the layers (default: all).
    """
    choices = sorted({int(b) for b in bits})
    model = copy.deepcopy(module)
    chosen = [
        (name, m) for name, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv2d)) and name and (targets is None or targets(name, m))
    ]
    if not chosen:
        raise ValueError("with_bits found no nn.Linear or nn.Conv2d layer to quantise")
    for name, layer in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, ElasticQuant(layer, Choice(f"{name}.bits", choices)))
    return model
