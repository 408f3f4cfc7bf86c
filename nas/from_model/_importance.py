"""Importance ordering: permute each group's channels once so the leading slices are the most important.

The permutation is applied to every layer that writes, normalises or reads the group's
channels, so the full model computes exactly what it did before.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nas.from_model._groups import Group


def weight_scores(model: nn.Module, group: Group) -> torch.Tensor:
    """Per channel: the L2 norm of each producer's output filter, each producer scaled to mean 1, summed."""
    score = torch.zeros(group.channels, dtype=torch.float64)
    for name in group.producers + group.depthwise:
        w = model.get_submodule(name).weight.detach().to(torch.float64)
        norms = w.reshape(w.shape[0], -1).norm(dim=1)
        score += norms / norms.mean().clamp_min(1e-12)
    return score


def activation_scores(model: nn.Module, groups: Sequence[Group], batches: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per group: the mean absolute output of each producer per channel over `batches`, scaled to mean 1, summed."""
    sums: dict[str, torch.Tensor] = {}
    owner = {name: g for g in groups for name in g.producers}

    def hook(name):
        def record(module, args, output):
            out = output.detach().to(torch.float64).abs()
            dim = 1 if isinstance(module, (nn.Conv1d, nn.Conv2d)) else out.dim() - 1
            per = out.movedim(dim, 0).reshape(out.shape[dim], -1).mean(dim=1)
            sums[name] = sums.get(name, 0) + per
        return record

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in owner]
    mode = model.training
    try:
        model.eval()
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        model.train(mode)
        for h in handles:
            h.remove()
    scores: dict[str, torch.Tensor] = {}
    for g in groups:
        total = torch.zeros(g.channels, dtype=torch.float64)
        for n in g.producers:
            if n in sums:
                total += sums[n] / sums[n].mean().clamp_min(1e-12)
        scores[g.name] = total
    return scores


def permute_group(model: nn.Module, group: Group, order: torch.Tensor) -> None:
    """Reorder the group's channels to `order` (new position i holds old channel order[i]) in every layer."""
    with torch.no_grad():
        for name in group.producers + group.depthwise + group.norms:
            layer = model.get_submodule(name)
            for tensor_name in ("weight", "bias", "running_mean", "running_var"):
                t = getattr(layer, tensor_name, None)
                if isinstance(t, torch.Tensor) and t.dim() >= 1 and t.shape[0] == group.channels:
                    t.copy_(t[order])
        for name, per in group.consumers:
            layer = model.get_submodule(name)
            index = (order[:, None] * per + torch.arange(per)).reshape(-1)
            layer.weight.copy_(layer.weight[:, index])


def order_by_importance(model: nn.Module, groups: Sequence[Group], batches: Sequence[torch.Tensor] | None = None) -> None:
    """Permute every group's channels, most important first (activation-based when `batches` are given)."""
    scores = activation_scores(model, groups, batches) if batches else {g.name: weight_scores(model, g) for g in groups}
    for g in groups:
        order = torch.sort(scores[g.name], descending=True, stable=True).indices
        permute_group(model, g, order)
