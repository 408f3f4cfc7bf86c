"""What every layer of a supernet sees, as a function of the config: found once by probing.

A gradient search runs every layer at its largest size, so a layer whose behaviour depends
on its *input* width (a norm over the active channels, a size `Rule` such as
``expand x input``, a layer's params and MACs) needs the distribution of that width under
the architecture weights. `Layout.build` finds it without knowing the family: it runs the
supernet on a one-sample input under a few configs, records each layer's input shapes, finds
the dimensions they depend on (varying one dimension at a time), and tabulates the shapes
over those dimensions (branching first on dimensions that switch others on, such as depth).
The result, per layer, is a list of atoms, "under these dimension values, the input is
this": the probability of an atom is the product of its dimensions' weights, so at one-hot
weights exactly one atom holds.

Limits: dependencies are found one dimension at a time from the largest config and from its
variants with one switch (parent) dimension changed, so a dependency invisible from all of
those is missed (the tests check, for every built-in family, the mixed forward against
`activate` and the expected cost against `Supernet.cost` on random configs); a layer whose
input depends jointly on more than `MAX_GRID` value combinations is rejected
(NotImplementedError); a layer called several times per forward is described by its first
call; a layer that only runs under non-default op choices is probed only along the
dimensions that change some layer's input under the largest config.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nas.elastic import ElasticBatchNorm2d, ElasticConv2d, ElasticModule, ElasticSequential, OpChoice
from nas.space import Config, SearchSpace

MAX_GRID = 512
When = dict[str, frozenset]


@dataclass(frozen=True)
class Observation:
    """A layer's inputs (shapes, dtypes) and first output's shape in one probe run (batch 1)."""

    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[torch.dtype, ...]
    out_shape: tuple[int, ...] | None


@dataclass
class Atom:
    """Under the dimension values in `when` (dimension -> allowed values) the layer sees `obs`."""

    when: When
    obs: Observation
    config: Config  # a config under which it does


@dataclass
class Unit:
    """A layer that the cost of a subnet counts or its latency table times."""

    module: nn.Module
    name: str  # path below the supernet's body, as `LatencyTable` names it
    elastic: bool  # an elastic leaf (owns dimensions or follows its input width)
    latency_leaf: bool  # timed as one op by a latency table (elastic leaf or childless module)
    counted: bool  # counted by `Supernet.cost`
    conditions: When  # it runs only when these dimensions take these values (depth, op choice)
    atoms: list[Atom] = field(default_factory=list)


def width_axis(module: nn.Module) -> int:
    """The axis of a layer's input that carries its width (channels for 2-D conv and norm)."""
    return 1 if isinstance(module, (ElasticConv2d, ElasticBatchNorm2d)) else -1


def merge(a: Mapping[str, frozenset], b: Mapping[str, frozenset]) -> When | None:
    """Both sets of constraints at once; None when they contradict."""
    out = dict(a)
    for k, v in b.items():
        both = out[k] & v if k in out else v
        if not both:
            return None
        out[k] = both
    return out


def with_values(space: SearchSpace, base: Mapping[str, Any], changes: Mapping[str, Any]) -> Config:
    """`base` with `changes`, its active dimensions recomputed (newly active ones: largest value)."""
    out: Config = {}
    for dim in space.dimensions:
        if dim.when is None or (dim.when[0] in out and out[dim.when[0]] in dim.when[1]):
            out[dim.name] = changes[dim.name] if dim.name in changes else base.get(dim.name, dim.values[-1])
    return out


class AtomSet:
    """Rows of (constraints, payload): ``value(weights) = sum_rows P(row) * payload[row]``.

    ``P(row)`` is the product over dimensions of the weight mass on the values the row allows,
    so it is differentiable in the weights and is 0 or 1 at one-hot weights.

    Args:
        space: the search space (orders the dimensions).
        whens: one constraint dict per row.
        payload: ``(rows, m)`` tensor.
    """

    def __init__(self, space: SearchSpace, whens: Sequence[Mapping[str, frozenset]], payload: torch.Tensor):
        self.rows = len(whens)
        names = {k for w in whens for k in w}
        self.dims = [d.name for d in space.dimensions if d.name in names]
        self.masks = []
        for name in self.dims:
            values = space[name].values
            mask = torch.ones(self.rows, len(values), dtype=payload.dtype)
            for r, when in enumerate(whens):
                if name in when:
                    mask[r] = torch.tensor([v in when[name] for v in values], dtype=payload.dtype)
            self.masks.append(mask)
        self.payload = payload
        self._placed: dict[torch.device, tuple[list[torch.Tensor], torch.Tensor]] = {}

    def _on(self, device: torch.device) -> tuple[list[torch.Tensor], torch.Tensor]:
        placed = self._placed.get(device)
        if placed is None:
            placed = self._placed[device] = ([m.to(device) for m in self.masks], self.payload.to(device))
        return placed

    def probs(self, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``P(row)`` for every row."""
        device = next(iter(weights.values())).device
        masks, payload = self._on(device)
        p = None
        for name, mask in zip(self.dims, masks):
            factor = mask @ weights[name].to(payload.dtype)
            p = factor if p is None else p * factor
        return p if p is not None else torch.ones(self.rows, dtype=payload.dtype, device=device)

    def __call__(self, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The expected payload row."""
        _, payload = self._on(next(iter(weights.values())).device)
        return self.probs(weights) @ payload


def mask_set(space: SearchSpace, rows: Sequence[tuple[When, int]], length: int) -> AtomSet | None:
    """Expected ``[j < size]`` masks of length `length` (None when every size is `length`)."""
    if not rows or all(size >= length for _, size in rows):
        return None
    sizes = torch.tensor([min(size, length) for _, size in rows])
    payload = (torch.arange(length)[None, :] < sizes[:, None]).float()
    return AtomSet(space, [w for w, _ in rows], payload)


class Layout:
    """Per-layer run conditions and input atoms of a supernet (see the module docstring).

    Example:
        >>> from search_spaces.mlp import MLP
        >>> net = MLP(depths=(1, 2), widths=(8, 16), ranks=(2, 4))
        >>> layout = Layout.build(net)
        >>> head = layout.units[-1]
        >>> sorted({a.obs.shapes[0][-1] for a in head.atoms})
        [8, 16]
    """

    def __init__(self, net: nn.Module, units: list[Unit], probes: int):
        self.net = net
        self.space: SearchSpace = net.space
        self.units = units
        self.probes = probes
        self._by_module = {id(u.module): u for u in units}

    def unit(self, module: nn.Module) -> Unit | None:
        """The unit of a module (None for containers)."""
        return self._by_module.get(id(module))

    @classmethod
    def build(cls, net: nn.Module) -> Layout:
        """Probe `net` (a `Supernet`) and tabulate its layers' inputs."""
        space: SearchSpace = net.space
        units = _units(net.body)
        probe = _Prober(net, units)
        parents = {d.when[0] for d in space.dimensions if d.when is not None}
        order = [d.name for d in space.dimensions]
        deps_memo: dict[tuple, dict[int, set[str]]] = {}

        def deps(base: Config, fixed: frozenset, candidates: frozenset | None) -> dict[int, set[str]]:
            # One dimension at a time from `base` and from each variant of `base` with one
            # unfixed parent dimension changed: at the largest config every depth gives the
            # same widths, so a switch like depth is only seen from such variants.
            key = (space.key(base), fixed, candidates)
            if key in deps_memo:
                return deps_memo[key]
            free = [d for d in space.dimensions if d.name in base and d.name not in fixed
                    and (candidates is None or d.name in candidates)]
            starts = [(None, base)] + [(d.name, with_values(space, base, {d.name: v})) for d in free
                                       if d.name in parents for v in d.values if v != base[d.name]]
            out: dict[int, set[str]] = {u: set() for u in probe(base)}
            for switched, start in starts:
                seen = probe(start)
                for dim in free:
                    if dim.name not in start:
                        continue
                    for value in dim.values:
                        if value == start[dim.name]:
                            continue
                        for u, obs in probe(with_values(space, start, {dim.name: value})).items():
                            if u in seen and u in out and obs.shapes != seen[u].shapes and dim.name not in out[u]:
                                out[u].add(dim.name)
                                if switched is not None:  # visible only once the parent changed
                                    out[u].add(switched)
            deps_memo[key] = out
            return out

        def atoms(u: int, base: Config, fixed: dict[str, Any], candidates: frozenset | None) -> list[Atom]:
            found = deps(base, frozenset(fixed), candidates).get(u)
            if found is None:
                return []
            branch = [n for n in order if n in found and n in parents]
            if branch:
                p = branch[0]
                out: list[Atom] = []
                for value in space[p].values:
                    child = with_values(space, base, {p: value})
                    if u in probe(child):
                        out += atoms(u, child, {**fixed, p: value}, candidates)
                return out
            grid = [n for n in order if n in found]
            size = math.prod(len(space[n].values) for n in grid)
            if size > MAX_GRID:
                raise NotImplementedError(
                    f"the input of layer {units[u].name!r} depends on {len(grid)} dimensions jointly "
                    f"({', '.join(grid)}; {size} combinations > {MAX_GRID}); gradient search cannot tabulate it"
                )
            out = []
            for combo in itertools.product(*(space[n].values for n in grid)):
                config = with_values(space, base, dict(zip(grid, combo)))
                obs = probe(config).get(u)
                if obs is not None:
                    when = {k: frozenset([v]) for k, v in fixed.items()}
                    when.update({k: frozenset([v]) for k, v in zip(grid, combo)})
                    out.append(Atom(when, obs, config))
            return out

        largest = space.largest()
        with single_thread():
            return cls._tabulate(net, units, probe, deps, atoms, largest)

    @classmethod
    def _tabulate(cls, net, units, probe, deps, atoms, largest) -> Layout:
        space = net.space
        root = probe(largest)
        relevant = frozenset().union(*deps(largest, frozenset(), None).values()) if root else frozenset()
        for u, unit in enumerate(units):
            if u in root:
                unit.atoms = atoms(u, largest, {}, None)
                continue
            picks = {k: [v for v in space[k].values if v in allowed][-1] for k, allowed in unit.conditions.items() if allowed}
            witness = with_values(space, largest, picks)
            unit.atoms = atoms(u, witness, {}, relevant) if u in probe(witness) else []
        return cls(net, units, len(probe.cache))


def _units(body: nn.Module) -> list[Unit]:
    """Every elastic leaf and every plain module that `Supernet.cost` counts or a latency table times."""
    conditions: dict[int, tuple[str, frozenset]] = {}
    for module in body.modules():
        if isinstance(module, ElasticSequential):
            for i, block in enumerate(module.blocks):
                cond = module.block_condition(i)
                if cond is not None:
                    conditions[id(block)] = (cond[0], frozenset(cond[1]))
        elif isinstance(module, OpChoice):
            for name, op in module.ops.items():
                conditions[id(op)] = (module.choice.name, frozenset([name]))
    units: list[Unit] = []

    def walk(module: nn.Module, name: str, when: When) -> None:
        if id(module) in conditions:
            dim, allowed = conditions[id(module)]
            when = merge(when, {dim: allowed}) or {dim: frozenset()}
        if isinstance(module, ElasticModule) and module.leaf:
            units.append(Unit(module, name, True, True, True, when))
            return
        children = list(module.named_children())
        if not isinstance(module, ElasticModule):
            merges = bool(getattr(module, "merges", False))
            own = any(p is not None for p in module._parameters.values())
            if not children or (own and not merges):
                units.append(Unit(module, name, False, not children, not merges, when))
        for child_name, child in children:
            walk(child, f"{name}.{child_name}" if name else child_name, when)

    walk(body, "", {})
    return units


@contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op CPU thread inside the block (restored after): one-sample probes run 10-40x
    faster than with several threads contending on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _Prober:
    """Runs the supernet on one zero sample under a config and records each unit's inputs (cached)."""

    def __init__(self, net: nn.Module, units: list[Unit]):
        self.net, self.units = net, units
        self.index = {id(u.module): i for i, u in enumerate(units)}
        self.cache: dict[str, dict[int, Observation]] = {}

    def __call__(self, config: Config) -> dict[int, Observation]:
        key = self.net.space.key(config)
        found = self.cache.get(key)
        if found is not None:
            return found
        seen: dict[int, Observation] = {}

        def hook(module, args, output):
            i = self.index[id(module)]
            if i not in seen:
                tensors = [a for a in args if isinstance(a, torch.Tensor)]
                out = output if isinstance(output, torch.Tensor) else None
                seen[i] = Observation(
                    tuple(tuple(t.shape) for t in tensors), tuple(t.dtype for t in tensors), tuple(out.shape) if out is not None else None
                )

        handles = [u.module.register_forward_hook(hook) for u in self.units]
        modes = [(m, m.training) for m in self.net.modules()]
        try:
            self.net.eval()
            with torch.no_grad(), self.net.activate(config):
                self.net(self.net.example_input(1))
        finally:
            for h in handles:
                h.remove()
            for m, mode in modes:
                m.training = mode
        self.cache[key] = seen
        return seen
