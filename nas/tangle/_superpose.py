"""Entangled superposition (TangleNAS): each choice's slice zero-padded to the largest shape and
summed with its weight into ONE mixed weight, so a layer runs once, at its largest size.

For a width choice the mixed weight is the full weight with row ``j`` scaled by the mass of
the widths above ``j``; a rank choice scales the components of ``W = U V`` the same way (the
expectation of ordered dropout under the rank weights); a kernel choice scales each tap by
the mass of the kernels whose centre crop holds it. Heads and head width scale the value
and query rows of the fused QKV weight, which is exactly the weighted sum of the outputs
over head counts (the output projection is linear) and of the attention logits over head
widths. Norms follow their input's width distribution: BatchNorm is per channel, so it runs
once and is masked; LayerNorm normalises over the active width, so it is the weighted sum
over the (few) input widths. At one-hot weights every layer equals the activated subnet's.

A width or rank mask scales whole rows of a weight, so it is the same on the output; each
layer applies it where autograd keeps less memory (`_mixed`): in weight steps on the
output, in architecture steps usually in the mixed weight.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nas.elastic import (
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticLayerNorm,
    ElasticLinear,
    ElasticLoRALinear,
    ElasticLowRankLinear,
    ElasticMultiheadAttention,
    ElasticPositionalEmbedding,
)
from nas.space import Choice, SearchSpace
from nas.tangle._layout import AtomSet, Unit, When, mask_set, merge, width_axis

Weights = Mapping[str, torch.Tensor]
Forward = Callable[[torch.Tensor, Weights], torch.Tensor]


def spec_rows(unit: Unit, spec: Any, maximum: int) -> list[tuple[When, int]]:
    """(constraints, size) of a size spec for each input the layer may see (see `_resolve`)."""
    axis = width_axis(unit.module)
    rows: list[tuple[When, int]] = []
    for atom in unit.atoms:
        if spec is None or isinstance(spec, int):
            rows.append((atom.when, maximum))
            continue
        choice = spec if isinstance(spec, Choice) else spec.choice
        width = atom.obs.shapes[0][axis]
        for value in choice.values:
            when = merge(atom.when, {choice.name: frozenset([value])})
            if when is not None:
                rows.append((when, int(value) if spec is choice else spec.size(value, width)))
    return rows


def input_rows(unit: Unit) -> list[tuple[When, int]]:
    """(constraints, input width) for each input the layer may see."""
    axis = width_axis(unit.module)
    return [(a.when, a.obs.shapes[0][axis]) for a in unit.atoms]


def _max_width(unit: Unit, fallback: int) -> int:
    rows = input_rows(unit)
    return max(w for _, w in rows) if rows else fallback


def _masked(mask: AtomSet | None, weights: Weights) -> torch.Tensor | None:
    return None if mask is None else mask(weights)


def _scale_rows(t: torch.Tensor | None, m: torch.Tensor | None) -> torch.Tensor | None:
    if t is None or m is None:
        return t
    return t * m.to(t.dtype).view(-1, *([1] * (t.dim() - 1)))


def _mixed(op: Callable[..., torch.Tensor], x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, m: torch.Tensor | None,
           channel: int, **kwargs: Any) -> torch.Tensor:
    """``op(x, w * m, b * m)``: the layer with its output rows (channels) scaled by mask `m`.

    The scaling is diagonal, so scaling the weight's rows or the output's channels is the
    same. Without a gradient to `m` (weight steps) the output is scaled, which keeps
    nothing extra for the backward pass; with one (architecture steps) the scaling goes
    where autograd keeps less: into the mixed weight (a weight's size) unless the output
    is smaller than the weight."""
    if m is None:
        return op(x, w, b, **kwargs)
    if m.requires_grad and w.numel() <= x.numel() // x.shape[channel] * w.shape[0]:
        return op(x, _scale_rows(w, m), _scale_rows(b, m), **kwargs)
    y = op(x, w, b, **kwargs)
    shape = [1] * y.dim()
    shape[channel] = -1
    return y * m.to(y.dtype).view(shape)


def linear(module: ElasticLinear, unit: Unit, space: SearchSpace) -> Forward:
    out = mask_set(space, spec_rows(unit, module.out, module.out_features), module.out_features)

    def forward(x, weights):
        i = x.shape[-1]
        w = module.weight if i == module.in_features else module.weight[:, :i]
        return _mixed(F.linear, x, w, module.bias, _masked(out, weights), -1)

    return forward


def lowrank(module: ElasticLowRankLinear, unit: Unit, space: SearchSpace) -> Forward:
    out = mask_set(space, spec_rows(unit, module.out, module.out_features), module.out_features)
    rank = mask_set(space, spec_rows(unit, module.rank, module.max_rank), module.max_rank)

    def forward(x, weights):
        i = x.shape[-1]
        v = module.V if i == module.in_features else module.V[:, :i]
        r = _masked(rank, weights)
        if module.cutoff is not None:  # ordered dropout on top of the rank weights
            keep = (torch.arange(module.max_rank, device=v.device) < module.cutoff).to(v.dtype)
            r = keep if r is None else r * keep
        return _mixed(F.linear, _mixed(F.linear, x, v, None, r, -1), module.U, module.bias, _masked(out, weights), -1)

    return forward


def lora(module: ElasticLoRALinear, unit: Unit, space: SearchSpace) -> Forward:
    rank = mask_set(space, spec_rows(unit, module.rank if isinstance(module.rank, Choice) else None, module.max_rank), module.max_rank)

    def forward(x, weights):
        out = F.linear(x, module.weight, module.bias)
        if module.max_rank == 0:
            return out
        r = _masked(rank, weights)
        if module.cutoff is not None:
            keep = (torch.arange(module.max_rank, device=x.device) < module.cutoff).to(x.dtype)
            r = keep if r is None else r * keep
        return out + F.linear(_mixed(F.linear, x, module.lora_A, None, r, -1), module.lora_B) * module.scale

    return forward


def conv(module: ElasticConv2d, unit: Unit, space: SearchSpace) -> Forward:
    K = module.kernel_size
    kernel_rows = spec_rows(unit, module.kernel, K)
    kernel = None
    if any(k != K for _, k in kernel_rows):
        taps = []
        for _, k in kernel_rows:
            start = (K - k) // 2
            tap = torch.zeros(K, K)
            tap[start : start + k, start : start + k] = 1.0
            taps.append(tap.flatten())
        kernel = AtomSet(space, [w for w, _ in kernel_rows], torch.stack(taps))
    if module.depthwise:
        out = mask_set(space, input_rows(unit), _max_width(unit, module.in_channels)) if module.bias is not None else None
    else:
        out = mask_set(space, spec_rows(unit, module.out, module.out_channels), module.out_channels)

    def forward(x, weights):
        c_in = x.shape[1]
        w = module.weight
        if module.depthwise:
            w = w if c_in == module.out_channels else w[:c_in]
        elif c_in != module.in_channels:
            w = w[:, :c_in]
        if kernel is not None:
            w = w * kernel(weights).to(w.dtype).view(K, K)
        m = _masked(out, weights)
        bias = module.bias
        if module.depthwise:  # one filter per input channel: the input's width mask covers the bias
            bias = _scale_rows(bias if bias is None or c_in == module.out_channels else bias[:c_in], m)
            m = None
        w = w if w.is_contiguous() else w.contiguous()
        return _mixed(F.conv2d, x, w, bias, m, 1, stride=module.stride, padding=K // 2, groups=c_in if module.depthwise else 1)

    return forward


def batchnorm(module: ElasticBatchNorm2d, unit: Unit, space: SearchSpace) -> Forward:
    length = _max_width(unit, module.num_features)
    mask = mask_set(space, input_rows(unit), length)

    def forward(x, weights):
        c = x.shape[1]
        if module.training:
            module.num_batches_tracked.add_(1)
        mean, var, gamma, beta = module.running_mean, module.running_var, module.weight, module.bias
        if c != module.num_features:
            mean, var, gamma, beta = mean[:c], var[:c], gamma[:c], beta[:c]
        m = _masked(mask, weights)  # per channel, so the mask folds into the affine weights
        return F.batch_norm(x, mean, var, _scale_rows(gamma, m), _scale_rows(beta, m), module.training, module.momentum, module.eps)

    return forward


def layernorm(module: ElasticLayerNorm, unit: Unit, space: SearchSpace) -> Forward:
    rows = input_rows(unit)
    widths = sorted({w for _, w in rows})
    dist = None
    if len(widths) > 1:
        payload = torch.tensor([[float(w == v) for v in widths] for _, w in rows])
        dist = AtomSet(space, [w for w, _ in rows], payload)

    def forward(x, weights):
        e = x.shape[-1]
        if dist is None:
            return F.layer_norm(x, (e,), module.weight[:e], module.bias[:e], module.eps)
        probs = dist(weights).to(x.dtype)
        out = 0
        for k, c in enumerate(widths):
            y = F.layer_norm(x[..., :c], (c,), module.weight[:c], module.bias[:c], module.eps)
            out = out + probs[k] * (F.pad(y, (0, e - c)) if c < e else y)
        return out

    return forward


def positional(module: ElasticPositionalEmbedding, unit: Unit, space: SearchSpace) -> Forward:
    mask = mask_set(space, input_rows(unit), _max_width(unit, module.width))

    def forward(x, weights):
        e = x.shape[-1]
        w = module.weight if e == module.width else module.weight[:, :, :e]
        m = _masked(mask, weights)
        return x + (w if m is None else w * m.to(w.dtype))

    return forward


def attention(module: ElasticMultiheadAttention, unit: Unit, space: SearchSpace) -> Forward:
    H, D = module.max_heads, module.max_head_dim
    heads = mask_set(space, spec_rows(unit, module.heads, H), H)
    dim_rows = spec_rows(unit, module.head_dim, D)
    # per head feature j: sum_d w_d [j < d] (value mask) and sum_d w_d [j < d] / sqrt(d) (query scale)
    dims = None
    if any(d != D for _, d in dim_rows):
        masks = torch.stack([(torch.arange(D) < d).float() for _, d in dim_rows])
        scales = masks / torch.tensor([float(d) ** 0.5 for _, d in dim_rows])[:, None]
        dims = AtomSet(space, [w for w, _ in dim_rows], torch.cat([masks, scales], 1))
    out = mask_set(space, input_rows(unit), _max_width(unit, module.embed_dim))

    def forward(x, weights):
        b, t, e = x.shape
        E = module.embed_dim
        device, dtype = x.device, x.dtype
        if dims is None:
            value_dim = torch.ones(D, device=device, dtype=dtype)
            query = torch.full((D,), D ** -0.5, device=device, dtype=dtype)
        else:
            mixed = dims(weights).to(dtype)
            value_dim, query = mixed[:D], mixed[D:]
        h = _masked(heads, weights)
        value = value_dim.expand(H, D) if h is None else h.to(dtype)[:, None] * value_dim
        rows = torch.cat([query.expand(H, D).reshape(-1), torch.ones(H * D, device=device, dtype=dtype), value.reshape(-1)])
        qkv_w = module.qkv_weight if e == E else module.qkv_weight[:, :e]
        q, k, v = F.linear(x, qkv_w * rows[:, None], module.qkv_bias * rows).view(b, t, 3, H, D).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        m = _masked(out, weights)
        proj_w = module.proj_weight if e == E else module.proj_weight[:e]
        proj_b = module.proj_bias if e == E else module.proj_bias[:e]
        return F.linear(y.transpose(1, 2).reshape(b, t, H * D), _scale_rows(proj_w, m), _scale_rows(proj_b, m))

    return forward


BUILDERS: dict[type, Callable[[Any, Unit, SearchSpace], Forward]] = {
    ElasticLinear: linear,
    ElasticLowRankLinear: lowrank,
    ElasticLoRALinear: lora,
    ElasticConv2d: conv,
    ElasticBatchNorm2d: batchnorm,
    ElasticLayerNorm: layernorm,
    ElasticPositionalEmbedding: positional,
    ElasticMultiheadAttention: attention,
}


def builder(module: nn.Module) -> Callable[[Any, Unit, SearchSpace], Forward] | None:
    """The superposed forward's builder for a layer type (its nearest registered base class)."""
    for cls in type(module).__mro__:
        if cls in BUILDERS:
            return BUILDERS[cls]
    return None
