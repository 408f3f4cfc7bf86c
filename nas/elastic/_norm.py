"""Elastic normalisation layers: statistics and affine weights sliced to the input width."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas.elastic._base import ElasticModule


class BatchNormSlices(ElasticModule):
    """BatchNorm over the leading ``C`` channels of its input (``C`` read from the input); subclasses name the dense layer they extract to (`dense_class`)."""

    dense_class: type[nn.Module]

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if self.training:
            self.num_batches_tracked.add_(1)
        mean, var, weight, bias = self._cached(c, lambda: self._slices(c))
        return F.batch_norm(x, mean, var, weight, bias, self.training, self.momentum, self.eps)

    def _slices(self, c: int) -> tuple[torch.Tensor, ...]:
        tensors = (self.running_mean, self.running_var, self.weight, self.bias)
        return tensors if c == self.num_features else tuple(t[:c] for t in tensors)

    def _cost(self, inputs, output):
        c = inputs[0].shape[1]
        return 2 * c, output[0].numel(), {"op": "batchnorm", "channels": c}

    def to_dense(self, inputs, densify):
        c = inputs[0].shape[1]
        dense = self.dense_class(c, eps=self.eps, momentum=self.momentum)
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(dense, name).copy_(getattr(self, name)[:c])
            dense.num_batches_tracked.copy_(self.num_batches_tracked)
        return dense


class ElasticBatchNorm2d(BatchNormSlices):
    """BatchNorm over the leading ``C`` channels of its input (``C`` read from the input).

    Example:
        >>> ElasticBatchNorm2d(16)(torch.zeros(2, 8, 4, 4)).shape
        torch.Size([2, 8, 4, 4])

    Args:
        num_features: largest number of channels.
        eps: added to the variance.
        momentum: running-statistics momentum.
    """

    dense_class = nn.BatchNorm2d


class ElasticLayerNorm(ElasticModule):
    """LayerNorm over the last dimension, whose width is read from the input.

    Example:
        >>> ElasticLayerNorm(64)(torch.zeros(2, 5, 32)).shape
        torch.Size([2, 5, 32])

    Args:
        normalized_shape: largest width.
        eps: added to the variance.
    """

    def __init__(self, normalized_shape: int, eps: float = 1e-5):
        super().__init__()
        self.normalized_shape, self.eps = normalized_shape, eps
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-1]
        weight, bias = self._cached(c, lambda: (self.weight, self.bias) if c == self.normalized_shape else (self.weight[:c], self.bias[:c]))
        return F.layer_norm(x, (c,), weight, bias, self.eps)

    def _cost(self, inputs, output):
        c = inputs[0].shape[-1]
        return 2 * c, output[0].numel(), {"op": "layernorm", "width": c}

    def to_dense(self, inputs, densify):
        c = inputs[0].shape[-1]
        dense = nn.LayerNorm(c, eps=self.eps)
        with torch.no_grad():
            dense.weight.copy_(self.weight[:c])
            dense.bias.copy_(self.bias[:c])
        return dense
