"""Elastic 1-D layers: convolution (output channels a leading slice, kernel a centre crop,
stride from a down-sampling choice), BatchNorm over the leading channels, and the pooling
half of a down-sampling choice."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas.elastic._base import ElasticModule
from nas.elastic._conv import ElasticConvNd
from nas.elastic._norm import BatchNormSlices
from nas.space import Choice, Value

DOWNSAMPLES = ("stride", "max", "avg", "none")
"""The down-sampling ops of a stage, cheapest first: a stride-2 conv, max or average pooling (2, stride 2), none."""


def stride_of(value: Value, in_width: int) -> int:
    """Size rule: the conv stride a down-sampling op asks for (2 for ``"stride"``, else 1)."""
    return 2 if value == "stride" else 1


class ElasticConv1d(ElasticConvNd):
    """A 1-D conv whose output channels, (odd) kernel size and stride are searchable.

    A smaller kernel is the centre of the largest one (weight entanglement). Padding is
    ``k // 2``, so at stride 1 the length is kept and at stride 2 it is ``ceil(L / 2)``
    (the stride-1 output at every other position).

    Example:
        >>> conv = ElasticConv1d(4, 8, 7, kernel=Choice("k", [3, 7]), out=Choice("c", [4, 8]))
        >>> conv(torch.zeros(2, 4, 40)).shape
        torch.Size([2, 8, 40])

    Takes the arguments of `ElasticConvNd`.
    """

    dims = 1
    dense_class = nn.Conv1d
    conv = staticmethod(F.conv1d)
    op = "conv1d"


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
