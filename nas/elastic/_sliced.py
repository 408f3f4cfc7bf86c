"""A user's own conv and norm layers, sliced: what `nas.from_model` converts them to.

Each keeps a weightless copy of the layer it replaces (on the meta device), so extraction
returns the same class with the same settings and smaller tensors.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from nas.elastic._base import ElasticModule, Size, check_size, crop
from nas.space import Choice

_CONV = {1: F.conv1d, 2: F.conv2d}


def _template(layer: nn.Module) -> nn.Module:
    """A copy of `layer` without its tensors (kept out of the module tree and the state dict)."""
    return copy.deepcopy(layer).to("meta")


def _dense(template: nn.Module, attrs: dict, tensors: dict[str, torch.Tensor | None]) -> nn.Module:
    dense = copy.deepcopy(template)
    for name, value in attrs.items():
        setattr(dense, name, value)
    for name, tensor in tensors.items():
        if tensor is None:
            continue
        if name in dense._parameters:
            dense._parameters[name] = nn.Parameter(tensor.detach().clone(), requires_grad=dense._parameters[name].requires_grad)
        else:
            dense._buffers[name] = tensor.detach().clone()
    return dense


class SlicedConv(ElasticModule):
    """An `nn.Conv1d`/`nn.Conv2d` whose output channels (leading slice) and kernel (centre crop) are searchable.

    Input channels are read from the input; a depthwise layer (groups = channels) follows
    its input's channels. A smaller kernel keeps the output size (its padding shrinks with it).

    Example:
        >>> conv = SlicedConv(nn.Conv2d(4, 8, 5, padding=2), out=Choice("c", [4, 8]), kernel=Choice("k", [3, 5]))
        >>> conv(torch.zeros(1, 2, 8, 8)).shape
        torch.Size([1, 8, 8, 8])

    Args:
        conv: the layer to take weights and settings from (copied).
        out: output channels: None (fixed) or a `Choice`.
        kernel: kernel size: None (fixed) or a `Choice` of odd sizes up to the layer's.
    """

    def __init__(self, conv: nn.Conv1d | nn.Conv2d, out: Size = None, kernel: Choice | None = None):
        super().__init__()
        if not isinstance(conv, (nn.Conv1d, nn.Conv2d)) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"SlicedConv takes an nn.Conv1d/nn.Conv2d with zero padding given as numbers, got {conv!r}")
        self.depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
        if conv.groups > 1 and not self.depthwise:
            raise ValueError(f"SlicedConv slices plain or depthwise convs, not grouped ones: {conv!r}")
        if self.depthwise and out is not None:
            raise ValueError("a depthwise SlicedConv follows its input's channels; it takes no 'out'")
        check_size(out, conv.out_channels, "SlicedConv out")
        self.dims = len(conv.kernel_size)
        self.full_kernel = conv.kernel_size[0]
        if kernel is not None and (
            len(set(conv.kernel_size)) != 1
            or any(k % 2 != 1 or k > self.full_kernel for k in kernel.values)
            or any(p != d * (self.full_kernel - 1) // 2 for p, d in zip(conv.padding, conv.dilation))
        ):
            raise ValueError(f"SlicedConv kernel choice {list(kernel.values)} needs a square odd 'same'-padded kernel, got {conv!r}")
        self.out, self.kernel = out, kernel
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.weight = nn.Parameter(conv.weight.detach().clone())
        self.bias = nn.Parameter(conv.bias.detach().clone()) if conv.bias is not None else None
        self.__dict__["_template"] = _template(conv)
        self._own(out)
        self._own(kernel)

    def _sizes(self, c_in: int) -> tuple[int, int]:
        o = c_in if self.depthwise else self._resolve(self.out, self.out_channels, c_in)
        return o, self._resolve(self.kernel, self.full_kernel, c_in)

    def _slices(self, c_in: int) -> tuple[torch.Tensor, torch.Tensor | None, tuple, int]:
        o, k = self._sizes(c_in)
        start = (self.full_kernel - k) // 2
        w = crop(self.weight, (o, 1 if self.depthwise else c_in) + (k,) * self.dims, (0, 0) + (start,) * self.dims)
        padding = self.padding
        if k != self.full_kernel:
            padding = tuple(d * (k - 1) // 2 for d in self.dilation)
        if not w.is_contiguous():  # strided conv weights hit a very slow CPU path
            w = w.contiguous()
        bias = self.bias if self.bias is None or o == self.out_channels else self.bias[:o]
        return w, bias, padding, (c_in if self.depthwise else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c_in = x.shape[1]
        w, bias, padding, groups = self._cached((c_in, self.weight._version), lambda: self._slices(c_in))
        return _CONV[self.dims](x, w, bias, self.stride, padding, self.dilation, groups)

    def _cost(self, inputs, output):
        c_in = inputs[0].shape[1]
        o, k = self._sizes(c_in)
        per_out = (1 if self.depthwise else c_in) * k**self.dims
        params = o * per_out + (o if self.bias is not None else 0)
        attrs = {"op": "dwconv" if self.depthwise else "conv", "in": c_in, "out": o, "kernel": k, "stride": self.stride[0]}
        return params, output[0].numel() * per_out, attrs

    def to_dense(self, inputs, densify):
        c_in = inputs[0].shape[1]
        o, k = self._sizes(c_in)
        w, bias, padding, groups = self._slices(c_in)
        attrs = {"in_channels": c_in, "out_channels": o, "kernel_size": (k,) * self.dims, "padding": padding, "groups": groups}
        return _dense(self._template, attrs, {"weight": w, "bias": bias})


class SlicedNorm(ElasticModule):
    """A BatchNorm (over dim 1) or LayerNorm (over the last dim) sliced to its input's width.

    Example:
        >>> SlicedNorm(nn.BatchNorm2d(16))(torch.zeros(2, 8, 4, 4)).shape
        torch.Size([2, 8, 4, 4])

    Args:
        norm: an `nn.BatchNorm1d`/`2d` or an `nn.LayerNorm` over one dimension (copied).
    """

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.batch = isinstance(norm, nn.modules.batchnorm._BatchNorm)
        if not self.batch and not (isinstance(norm, nn.LayerNorm) and len(norm.normalized_shape) == 1):
            raise ValueError(f"SlicedNorm takes a BatchNorm or a one-dimensional LayerNorm, got {norm!r}")
        self.width = norm.num_features if self.batch else norm.normalized_shape[0]
        self.eps = norm.eps
        for name, p in norm._parameters.items():
            self.register_parameter(name, nn.Parameter(p.detach().clone()) if p is not None else None)
        for name, b in norm._buffers.items():
            self.register_buffer(name, b.detach().clone() if b is not None else None)
        if self.batch:
            self.momentum, self.track_running_stats = norm.momentum, norm.track_running_stats
        self.__dict__["_template"] = _template(norm)

    def _slices(self, c: int) -> tuple:
        names = ("running_mean", "running_var", "weight", "bias") if self.batch else ("weight", "bias")
        tensors = tuple(getattr(self, n, None) for n in names)
        return tensors if c == self.width else tuple(t[:c] if t is not None else None for t in tensors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.batch:
            c = x.shape[-1]
            weight, bias = self._cached(c, lambda: self._slices(c))
            return F.layer_norm(x, (c,), weight, bias, self.eps)
        c = x.shape[1]
        mean, var, weight, bias = self._cached(c, lambda: self._slices(c))
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        momentum = self.momentum
        if momentum is None:  # cumulative moving average, as nn.BatchNorm does
            momentum = 1.0 / float(self.num_batches_tracked) if self.num_batches_tracked is not None else 0.0
        use_batch = self.training or mean is None
        return F.batch_norm(x, mean if not self.training or self.track_running_stats else None,
                            var if not self.training or self.track_running_stats else None,
                            weight, bias, use_batch, momentum, self.eps)

    def _cost(self, inputs, output):
        c = inputs[0].shape[1 if self.batch else -1]
        params = sum(c for name in ("weight", "bias") if getattr(self, name, None) is not None)
        return params, 0, {"op": "batchnorm" if self.batch else "layernorm", "channels": c}

    def to_dense(self, inputs, densify):
        c = inputs[0].shape[1 if self.batch else -1]
        tensors = {n: (t[:c] if t is not None and t.dim() else t) for n, t in {**self._parameters, **self._buffers}.items()}
        attrs = {"num_features": c} if self.batch else {"normalized_shape": (c,)}
        return _dense(self._template, attrs, tensors)


def conv_macs(conv: nn.Module, output: torch.Tensor) -> int:
    """Per-sample MACs of a plain `nn.Conv1d`/`nn.Conv2d`."""
    return output[0].numel() * (conv.in_channels // conv.groups) * math.prod(conv.kernel_size)


class SlicedLinear(ElasticModule):
    """An `nn.Linear` (or a Hugging Face ``Conv1D``, weight stored transposed) with a searchable output width.

    The input width is read from the input. With ``segments=k`` the output is ``k`` equal
    blocks (e.g. GPT-2's fused Q, K, V) and the width applies to each block's leading rows.

    Example:
        >>> layer = SlicedLinear(nn.Linear(4, 6), out=Choice("w", [1, 3]), segments=2)
        >>> layer(torch.zeros(1, 4)).shape
        torch.Size([1, 6])

    Args:
        layer: the layer to take weights and settings from (copied).
        out: output width (per segment): None (fixed), a `Choice` or a `Rule`.
        segments: equal output blocks the width applies to.
    """

    def __init__(self, layer: nn.Module, out: Size = None, segments: int = 1):
        super().__init__()
        self.transposed = not isinstance(layer, nn.Linear)
        weight = layer.weight.detach()
        weight = weight.t() if self.transposed else weight
        self.out_features, self.in_features = weight.shape
        if self.out_features % segments:
            raise ValueError(f"SlicedLinear: {self.out_features} outputs do not split into {segments} segments")
        self.segments, self.out = segments, out
        check_size(out, self.out_features // segments, "SlicedLinear out")
        self.weight = nn.Parameter(weight.contiguous().clone())
        self.bias = nn.Parameter(layer.bias.detach().clone()) if getattr(layer, "bias", None) is not None else None
        self.__dict__["_template"] = _template(layer)
        self._own(out)

    def _rows(self, i: int) -> slice | torch.Tensor:
        per_full = self.out_features // self.segments
        per = self._resolve(self.out, per_full, i)
        if self.segments == 1 or per == per_full:
            return slice(0, per * self.segments)
        return torch.cat([torch.arange(s * per_full, s * per_full + per) for s in range(self.segments)])

    def _slices(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        rows = self._rows(i)
        if isinstance(rows, slice) and rows.stop == self.out_features and i == self.in_features:
            return self.weight, self.bias
        weight = crop(self.weight, (rows.stop, i)) if isinstance(rows, slice) else self.weight[rows, :i]
        return weight, (self.bias[rows] if self.bias is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = x.shape[-1]
        weight, bias = self._cached((i, self.weight._version), lambda: self._slices(i))  # a gathered copy: keyed by version
        return F.linear(x, weight, bias)

    def _cost(self, inputs, output):
        i = inputs[0].shape[-1]
        o = output.shape[-1]
        rows = inputs[0][0].numel() // i
        return o * i + (o if self.bias is not None else 0), rows * o * i, {"op": "linear", "in": i, "out": o}

    def to_dense(self, inputs, densify):
        i = inputs[0].shape[-1]
        weight, bias = self._slices(i)
        o = weight.shape[0]
        if self.transposed:  # Hugging Face Conv1D: weight (in, out), sizes nx, nf
            return _dense(self._template, {"nf": o, "nx": i}, {"weight": weight.t().contiguous(), "bias": bias})
        return _dense(self._template, {"in_features": i, "out_features": o}, {"weight": weight, "bias": bias})
