"""Elastic convolutions: output channels as a leading slice, kernel as a centre crop.

`ElasticConvNd` holds the one implementation; `ElasticConv2d` (here) and `ElasticConv1d`
(`nas.elastic._conv1d`) name their dimensionality and the dense layer they extract to.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nas.elastic._base import ElasticModule, Rule, Size, check_size, crop
from nas.space import Choice


class ElasticConvNd(ElasticModule):
    """A conv layer whose output channels, (odd) kernel size and stride are searchable.

    A smaller kernel is the centre of the largest one (weight entanglement); a depthwise
    layer (``depthwise=True``) has as many channels as its input. Padding is ``k // 2``
    ("same" size at stride 1). Subclasses set `dims`, `dense_class`, `conv` and `op`.

    Args:
        in_channels: largest input channels.
        out_channels: largest output channels (ignored when depthwise: equals in_channels).
        kernel_size: largest kernel size (odd).
        kernel: the kernel size: fixed (None), a `Choice` of odd sizes, or a `Rule`.
        out: the output channels: fixed, a `Choice` or a `Rule`.
        stride: an int, or a `Rule` (e.g. ``Rule(Choice("down", DOWNSAMPLES), stride_of)`` in 1-D).
        depthwise: one filter per channel (groups = channels).
        bias: whether the layer has a bias.
    """

    dims: ClassVar[int]
    dense_class: ClassVar[type[nn.Module]]
    conv: ClassVar[Any]
    op: ClassVar[str]  # the graph op name ("conv", "conv1d"); depthwise layers prefix "dw"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        kernel: Size = None,
        out: Size = None,
        stride: int | Rule = 1,
        depthwise: bool = False,
        bias: bool = False,
    ):
        super().__init__()
        name = type(self).__name__
        if kernel_size % 2 != 1:
            raise ValueError(f"{name} kernel_size must be odd, got {kernel_size}")
        if isinstance(kernel, Choice) and any(k % 2 != 1 or k > kernel_size for k in kernel.values):
            raise ValueError(f"{name} kernel: Choice {kernel.name!r} needs odd sizes <= {kernel_size}, got {list(kernel.values)}")
        if not isinstance(stride, Rule) and (isinstance(stride, bool) or not isinstance(stride, int) or stride < 1):
            raise ValueError(f"{name} stride must be an int >= 1 or a Rule, got {stride!r}")
        if depthwise:
            out_channels, out = in_channels, None
        check_size(out, out_channels, f"{name} out")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.kernel, self.out, self.stride, self.depthwise = kernel, out, stride, depthwise
        self.weight = nn.Parameter(torch.empty(out_channels, 1 if depthwise else in_channels, *(kernel_size,) * self.dims))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self._own(kernel)
        self._own(out)
        if isinstance(stride, Rule):
            self._own(stride)

    def _sizes(self, c_in: int) -> tuple[int, int, int]:
        o = c_in if self.depthwise else self._resolve(self.out, self.out_channels, c_in)
        k = self._resolve(self.kernel, self.kernel_size, c_in)
        s = self.stride if isinstance(self.stride, int) else self._resolve(self.stride, 1, c_in)
        return o, k, s

    def _weight(self, c_in: int, o: int, k: int, dense: bool = True) -> torch.Tensor:
        start = (self.kernel_size - k) // 2
        w = crop(self.weight, (o, 1 if self.depthwise else c_in) + (k,) * self.dims, (0, 0) + (start,) * self.dims)
        # Strided conv weights hit a very slow CPU path; a transient dense copy is far cheaper.
        return w if not dense or w.is_contiguous() else w.contiguous()

    def _slices(self, c_in: int, dense: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, int, int, int]:
        o, k, s = self._sizes(c_in)
        bias = self.bias if self.bias is None or o == self.out_channels else self.bias[:o]
        return self._weight(c_in, o, k, dense), bias, s, k // 2, (c_in if self.depthwise else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c_in = x.shape[1]
        if torch.is_grad_enabled() and self._sink is not None:  # training: a leaf of the view, then its copy
            weight, bias, stride, padding, groups = self._leaves(c_in, lambda: self._slices(c_in, dense=False))
            weight = weight.contiguous()
        else:  # the key holds the weight's version: a cached contiguous copy never outlives an in-place update
            weight, bias, stride, padding, groups = self._cached((c_in, self.weight._version), lambda: self._slices(c_in))
        return type(self).conv(x, weight, bias, stride, padding, 1, groups)

    def _cost(self, inputs, output):
        c_in = inputs[0].shape[1]
        o, k, s = self._sizes(c_in)
        per_out = (1 if self.depthwise else c_in) * k**self.dims
        params = o * per_out + (o if self.bias is not None else 0)
        attrs = {"op": ("dw" if self.depthwise else "") + self.op, "in": c_in, "out": o, "kernel": k, "stride": s}
        return params, output[0].numel() * per_out, attrs

    def to_dense(self, inputs, densify):
        c_in = inputs[0].shape[1]
        o, k, s = self._sizes(c_in)
        dense = self.dense_class(c_in, o, k, s, k // 2, groups=c_in if self.depthwise else 1, bias=self.bias is not None)
        with torch.no_grad():
            dense.weight.copy_(self._weight(c_in, o, k))
            if self.bias is not None:
                dense.bias.copy_(self.bias[:o])
        return dense


class ElasticConv2d(ElasticConvNd):
    """A 2-D conv whose output channels, (odd, square) kernel size and stride are searchable.

    Example:
        >>> conv = ElasticConv2d(4, 8, 5, kernel=Choice("k", [3, 5]), out=Choice("c", [4, 8]))
        >>> conv(torch.zeros(1, 4, 8, 8)).shape
        torch.Size([1, 8, 8, 8])

    Takes the arguments of `ElasticConvNd`.
    """

    dims = 2
    dense_class = nn.Conv2d
    conv = staticmethod(F.conv2d)
    op = "conv"
