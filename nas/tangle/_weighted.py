"""Weighted sum (DARTS-style): every candidate of a layer runs on its own input slice, and the
zero-padded outputs are summed with their weights. Exact for any layer, but a layer runs once
per candidate, so memory and time grow with the number of choices: the baseline that the
entangled superposition (`_superpose`) avoids.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F

from nas.space import SearchSpace
from nas.tangle._layout import AtomSet, Unit, merge, width_axis
from nas.tangle._superpose import Forward


def weighted_sum(module: Any, unit: Unit, space: SearchSpace) -> Forward | None:
    """The weighted-sum forward of an elastic leaf (None when it never runs)."""
    if not unit.atoms:
        return None
    axis = width_axis(module)
    own = module.dimensions()
    keys: list[tuple[int, tuple]] = []
    rows, cols = [], []
    for atom in unit.atoms:
        width = atom.obs.shapes[0][axis]
        for values in itertools.product(*(c.values for c in own)):
            when = merge(atom.when, {c.name: frozenset([v]) for c, v in zip(own, values)})
            if when is None:
                continue
            key = (width, values)
            if key not in keys:
                keys.append(key)
            rows.append(when)
            cols.append(keys.index(key))
    payload = torch.zeros(len(rows), len(keys))
    payload[torch.arange(len(rows)), torch.tensor(cols)] = 1.0
    dist = AtomSet(space, rows, payload)
    out_width = max(a.obs.out_shape[axis] for a in unit.atoms)
    forward = type(module).forward
    ranked = hasattr(module, "cutoff") and hasattr(module, "rank")

    def run(x: torch.Tensor, weights) -> torch.Tensor:
        probs = dist(weights).to(x.dtype)
        saved, cutoff = dict(module._values), getattr(module, "cutoff", None)
        total = 0
        try:
            for k, (width, values) in enumerate(keys):
                module._configure({c.name: v for c, v in zip(own, values)})
                if ranked and cutoff is not None:  # ordered dropout: never above the candidate's rank
                    module.cutoff = min(cutoff, module._resolve(module.rank, module.max_rank, width))
                y = forward(module, x.narrow(axis, 0, width) if width < x.shape[axis] else x)
                missing = out_width - y.shape[axis]
                if missing > 0:
                    dim = axis % y.dim()
                    y = F.pad(y, [0, 0] * (y.dim() - 1 - dim) + [0, missing])
                total = total + probs[k] * y
        finally:
            module._configure(saved)
            if ranked:
                module.cutoff = cutoff
        return total

    return run
