"""Elastic 2-D convolution: output channels as a leading slice, kernel as a centre crop."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nas.elastic._base import ElasticModule, Size, check_size
from nas.space import Choice


class ElasticConv2d(ElasticModule):
    """A conv layer whose output channels and (odd, square) kernel size are searchable.

    A smaller kernel is the centre of the largest one (weight entanglement); a depthwise
    layer (``depthwise=True``) has as many channels as its input. Padding keeps "same" size.

    Example:
        >>> conv = ElasticConv2d(4, 8, 5, kernel=Choice("k", [3, 5]), out=Choice("c", [4, 8]))
        >>> conv(torch.zeros(1, 4, 8, 8)).shape
        torch.Size([1, 8, 8, 8])

    Args:
        in_channels: largest input channels.
        out_channels: largest output channels (ignored when depthwise: equals in_channels).
        kernel_size: largest kernel size (odd).
        kernel: the kernel size: fixed (None), a `Choice` of odd sizes, or a `Rule`.
        out: the output channels: fixed, a `Choice` or a `Rule`.
        stride: the stride.
        depthwise: one filter per channel (groups = channels).
        bias: whether the layer has a bias.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        kernel: Size = None,
        out: Size = None,
        stride: int = 1,
        depthwise: bool = False,
        bias: bool = False,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"ElasticConv2d kernel_size must be odd, got {kernel_size}")
        if isinstance(kernel, Choice) and any(k % 2 != 1 or k > kernel_size for k in kernel.values):
            raise ValueError(f"ElasticConv2d kernel: Choice {kernel.name!r} needs odd sizes <= {kernel_size}, got {list(kernel.values)}")
        if depthwise:
            out_channels, out = in_channels, None
        check_size(out, out_channels, "ElasticConv2d out")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.kernel, self.out, self.stride, self.depthwise = kernel, out, stride, depthwise
        self.weight = nn.Parameter(torch.empty(out_channels, 1 if depthwise else in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self._own(kernel)
        self._own(out)

    def _sizes(self, c_in: int) -> tuple[int, int]:
        o = c_in if self.depthwise else self._resolve(self.out, self.out_channels, c_in)
        return o, self._resolve(self.kernel, self.kernel_size, c_in)

    def _weight(self, c_in: int, o: int, k: int) -> torch.Tensor:
        start = (self.kernel_size - k) // 2
        w = self.weight
        if k != self.kernel_size:
            w = w[:, :, start : start + k, start : start + k]
        if self.depthwise:
            w = w[:o] if o != self.out_channels else w
        elif o != self.out_channels or c_in != self.in_channels:
            w = w[:o, :c_in]
        # Strided conv weights hit a very slow CPU path; a transient dense copy is far cheaper.
        return w if w.is_contiguous() else w.contiguous()

    def _slices(self, c_in: int) -> tuple[torch.Tensor, torch.Tensor | None, int, int]:
        o, k = self._sizes(c_in)
        bias = self.bias if self.bias is None or o == self.out_channels else self.bias[:o]
        return self._weight(c_in, o, k), bias, k // 2, (c_in if self.depthwise else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c_in = x.shape[1]
        # the key holds the weight's version: a cached contiguous copy never outlives an in-place update
        weight, bias, padding, groups = self._cached((c_in, self.weight._version), lambda: self._slices(c_in))
        return F.conv2d(x, weight, bias, self.stride, padding, 1, groups)

    def _cost(self, inputs, output):
        c_in = inputs[0].shape[1]
        o, k = self._sizes(c_in)
        per_out = (1 if self.depthwise else c_in) * k * k
        params = o * per_out + (o if self.bias is not None else 0)
        macs = output[0].numel() * per_out
        attrs = {"op": "dwconv" if self.depthwise else "conv", "in": c_in, "out": o, "kernel": k, "stride": self.stride}
        return params, macs, attrs

    def to_dense(self, inputs, densify):
        c_in = inputs[0].shape[1]
        o, k = self._sizes(c_in)
        groups = c_in if self.depthwise else 1
        dense = nn.Conv2d(c_in, o, k, self.stride, k // 2, groups=groups, bias=self.bias is not None)
        with torch.no_grad():
            dense.weight.copy_(self._weight(c_in, o, k))
            if self.bias is not None:
                dense.bias.copy_(self.bias[:o])
        return dense
