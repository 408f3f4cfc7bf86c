"""Elastic 1-D layers: convolution (output channels a leading slice, kernel a centre crop,
stride from a down-sampling choice), BatchNorm over the leading channels, and the pooling
half of a down-sampling choice."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nas.elastic._base import ElasticModule, Rule, Size, check_size
from nas.elastic._norm import BatchNormSlices
from nas.space import Choice, Value

DOWNSAMPLES = ("stride", "max", "avg", "none")
"""The down-sampling ops of a stage, cheapest first: a stride-2 conv, max or average pooling (2, stride 2), none."""


def stride_of(value: Value, in_width: int) -> int:
    """Size rule: the conv stride a down-sampling op asks for (2 for ``"stride"``, else 1)."""
    return 2 if value == "stride" else 1


class ElasticConv1d(ElasticModule):
    """A 1-D conv whose output channels, (odd) kernel size and stride are searchable.

    A smaller kernel is the centre of the largest one (weight entanglement). Padding is
    ``k // 2``, so at stride 1 the length is kept and at stride 2 it is ``ceil(L / 2)``
    (the stride-1 output at every other position).

    Example:
        >>> conv = ElasticConv1d(4, 8, 7, kernel=Choice("k", [3, 7]), out=Choice("c", [4, 8]))
        >>> conv(torch.zeros(2, 4, 40)).shape
        torch.Size([2, 8, 40])

    Args:
        in_channels: largest input channels.
        out_channels: largest output channels (ignored when depthwise: equals in_channels).
        kernel_size: largest kernel size (odd).
        kernel: the kernel size: fixed (None), a `Choice` of odd sizes, or a `Rule`.
        out: the output channels: fixed, a `Choice` or a `Rule`.
        stride: an int, or a `Rule` (e.g. ``Rule(Choice("down", DOWNSAMPLES), stride_of)``).
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
        stride: int | Rule = 1,
        depthwise: bool = False,
        bias: bool = False,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"ElasticConv1d kernel_size must be odd, got {kernel_size}")
        if isinstance(kernel, Choice) and any(k % 2 != 1 or k > kernel_size for k in kernel.values):
            raise ValueError(f"ElasticConv1d kernel: Choice {kernel.name!r} needs odd sizes <= {kernel_size}, got {list(kernel.values)}")
        if not isinstance(stride, Rule) and (isinstance(stride, bool) or not isinstance(stride, int) or stride < 1):
            raise ValueError(f"ElasticConv1d stride must be an int >= 1 or a Rule, got {stride!r}")
        if depthwise:
            out_channels, out = in_channels, None
        check_size(out, out_channels, "ElasticConv1d out")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.kernel, self.out, self.stride, self.depthwise = kernel, out, stride, depthwise
        self.weight = nn.Parameter(torch.empty(out_channels, 1 if depthwise else in_channels, kernel_size))
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

    def _weight(self, c_in: int, o: int, k: int) -> torch.Tensor:
        w = self.weight
        if k != self.kernel_size:
            start = (self.kernel_size - k) // 2
            w = w[:, :, start : start + k]
        if self.depthwise:
            w = w[:o] if o != self.out_channels else w
        elif o != self.out_channels or c_in != self.in_channels:
            w = w[:o, :c_in]
        # Strided conv weights hit a slow CPU path; a transient dense copy is far cheaper.
        return w if w.is_contiguous() else w.contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c_in = x.shape[1]
        o, k, s = self._sizes(c_in)
        bias = self.bias if self.bias is None or o == self.out_channels else self.bias[:o]
        return F.conv1d(x, self._weight(c_in, o, k), bias, s, k // 2, 1, c_in if self.depthwise else 1)

    def _cost(self, inputs, output):
        c_in = inputs[0].shape[1]
        o, k, s = self._sizes(c_in)
        per_out = (1 if self.depthwise else c_in) * k
        params = o * per_out + (o if self.bias is not None else 0)
        attrs = {"op": "dwconv1d" if self.depthwise else "conv1d", "in": c_in, "out": o, "kernel": k, "stride": s}
        return params, output[0].numel() * per_out, attrs

    def to_dense(self, inputs, densify):
        c_in = inputs[0].shape[1]
        o, k, s = self._sizes(c_in)
        dense = nn.Conv1d(c_in, o, k, s, k // 2, groups=c_in if self.depthwise else 1, bias=self.bias is not None)
        with torch.no_grad():
            dense.weight.copy_(self._weight(c_in, o, k))
            if self.bias is not None:
                dense.bias.copy_(self.bias[:o])
        return dense


class ElasticBatchNorm1d(BatchNormSlices):
    """BatchNorm over the leading ``C`` channels of a ``(B, C, L)`` input (``C`` read from the input).

    Example:
        >>> ElasticBatchNorm1d(16)(torch.zeros(2, 8, 40)).shape
        torch.Size([2, 8, 40])

    Args:
        num_features: largest number of channels.
        eps: added to the variance.
        momentum: running-statistics momentum.
    """

    dense_class = nn.BatchNorm1d


class ElasticPool1d(ElasticModule):
    """The pooling half of a down-sampling choice: max or average pooling (2, stride 2) for
    ``"max"`` / ``"avg"``, the identity for ``"stride"`` (done by a strided conv) and ``"none"``.

    Example:
        >>> pool = ElasticPool1d(Choice("down", ["max"]))
        >>> pool(torch.zeros(1, 4, 40)).shape
        torch.Size([1, 4, 20])

    Args:
        op: a `Choice` over (a subset of) `DOWNSAMPLES`.
    """

    def __init__(self, op: Choice):
        super().__init__()
        if not isinstance(op, Choice) or any(v not in DOWNSAMPLES for v in op.values):
            raise ValueError(f"ElasticPool1d op must be a Choice over {list(DOWNSAMPLES)}, got {op!r}")
        self.op = op
        self._own(op)

    def _active(self) -> str:
        return str(self._values[self.op.name])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        op = self._active()
        if op == "max":
            return F.max_pool1d(x, 2, 2)
        if op == "avg":
            return F.avg_pool1d(x, 2, 2)
        return x

    def _cost(self, inputs, output):
        op = self._active()
        return 0, 0, {"op": f"{op}pool1d" if op in ("max", "avg") else "identity"}

    def to_dense(self, inputs, densify):
        op = self._active()
        if op == "max":
            return nn.MaxPool1d(2, 2)
        if op == "avg":
            return nn.AvgPool1d(2, 2)
        return nn.Identity()
