"""Differentiable expected cost: params, MACs and table latency under architecture weights."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nas.supernet import dense_macs
from nas.tangle._layout import Atom, AtomSet, Layout, Unit, merge, single_thread, with_values

METRICS = ("params", "macs", "latency_ms")


class CostModel:
    """Expected params and MACs (and latency, given a `LatencyTable`) of a supernet's subnet
    drawn from architecture weights, as a differentiable function of those weights.

    Each layer contributes ``P(it runs) * sum_inputs P(input) * sum_own P(own values) * cost``,
    with its cost tabulated once per (own values, input shape) from the layer's own
    ``_cost`` (plain layers: their parameters and dense MACs), and its latency from the
    table's entry for that variant (missing entries are timed through the table). At one-hot
    weights this is exactly `Supernet.cost` (and `LatencyTable.predict`) of that config.

    Example:
        >>> from search_spaces.mlp import MLP
        >>> from nas.tangle import one_hot
        >>> net = MLP(depths=(1, 2), widths=(8, 16), ranks=(2, 4))
        >>> model = CostModel(Layout.build(net))
        >>> config = net.smallest()
        >>> int(model(one_hot(net.space, config))["params"]) == net.cost(config)["params"]
        True

    Args:
        layout: the supernet's `Layout`.
        latency: a `nas.latency.LatencyTable` of the same supernet, or None.
    """

    def __init__(self, layout: Layout, latency: Any = None):
        self.layout, self.latency = layout, latency
        whens, rows, keys = [], [], []
        with single_thread():
            for unit in layout.units:
                for when, params, macs, key, config in _unit_rows(layout, unit):
                    whens.append(when)
                    rows.append([float(params), float(macs)])
                    keys.append((key, config))
        payload = torch.tensor(rows, dtype=torch.float64).reshape(len(rows), 2)
        if latency is not None:
            payload = torch.cat([payload, torch.tensor(_latencies(latency, keys), dtype=torch.float64)[:, None]], 1)
        self.atoms = AtomSet(layout.space, whens, payload)
        self.metrics = METRICS if latency is not None else METRICS[:2]

    def __call__(self, weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"params", "macs"[, "latency_ms"]}``: expected values, as float64 tensors."""
        values = self.atoms(weights)
        out = dict(zip(self.metrics, values.unbind()))
        if self.latency is not None:
            out["latency_ms"] = getattr(self.latency, "scale", 1.0) * out["latency_ms"] + self.latency.overhead_ms
        return out


def _unit_rows(layout: Layout, unit: Unit):
    """(constraints, params, macs, latency key, a config exercising it) for each variant of a unit."""
    space = layout.space
    memo: dict[tuple, tuple[int, int, tuple]] = {}
    own = unit.module.dimensions() if unit.elastic else []
    for atom in unit.atoms:
        base = merge(atom.when, unit.conditions)
        if base is None:
            continue
        for values in itertools.product(*(c.values for c in own)):
            chosen = {c.name: v for c, v in zip(own, values)}
            when = merge(base, {k: frozenset([v]) for k, v in chosen.items()})
            if when is None:
                continue
            memo_key = (atom.obs, values)
            if memo_key not in memo:
                memo[memo_key] = _variant_cost(unit, atom, chosen)
            params, macs, key = memo[memo_key]
            if not unit.counted:
                params = macs = 0
            yield when, params, macs, key if unit.latency_leaf else None, with_values(space, atom.config, chosen)


def _variant_cost(unit: Unit, atom: Atom, values: Mapping[str, Any]) -> tuple[int, int, tuple]:
    """(params, per-sample MACs, latency-table key without the batch) of a unit on one input."""
    module = unit.module
    device = next((p.device for p in module.parameters()), None) or _device(module)
    inputs = tuple(torch.zeros(s, dtype=d, device=device) for s, d in zip(atom.obs.shapes, atom.obs.dtypes))
    if unit.elastic:
        saved, mode = dict(module._values), module.training
        try:
            module._configure(values)
            module.train(False)
            with torch.no_grad():
                output = type(module).forward(module, *inputs)
            params, macs, attrs = module._cost(inputs, output)
        finally:
            module._configure(saved)
            module.train(mode)
    else:
        params = sum(p.numel() for p in module._parameters.values() if p is not None)
        macs = 0
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            with torch.no_grad():
                macs = dense_macs(module, inputs, module(*inputs))
        attrs = {"op": type(module).__name__}
    key = (unit.name, atom.obs.shapes, json.dumps(attrs, sort_keys=True, default=str))
    return int(params), int(macs), key


def _device(module: nn.Module) -> torch.device:
    buffer = next(module.buffers(), None)
    return buffer.device if buffer is not None else torch.device("cpu")


def _latencies(table: Any, keys: list[tuple[tuple | None, Any]]) -> list[float]:
    """Each row's table entry (0 for rows no table times), timing missing variants through the table."""
    full: list[str | None] = []
    for key, _ in keys:
        if key is None:
            full.append(None)
            continue
        name, shapes, attrs = key
        at_batch = [[table.batch_size, *s[1:]] for s in shapes]
        full.append(f"{name}|{json.dumps(at_batch)}|{attrs}")
    missing: dict[str, Any] = {}
    for k, (_, config) in zip(full, keys):
        if k is not None and k not in table.entries:
            missing.setdefault(k, config)
    for k, config in missing.items():
        if k not in table.entries:
            table.predict(config)  # times the variants this config runs, on the table's device
        if k not in table.entries:
            raise RuntimeError(f"the latency table has no entry {k!r} even after timing a config that runs it")
    return [0.0 if k is None else float(table.entries[k]) for k in full]
