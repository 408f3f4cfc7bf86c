"""Search spaces: named discrete dimensions with conditions. Imports no torch."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from nas.errors import NASError

Value = int | float | str
Config = dict[str, Value]


class InvalidConfig(NASError, ValueError):
    """A config that is not a point of its search space."""


@dataclass(frozen=True)
class Choice:
    """One named discrete dimension: a value from `values`, active only `when` its parent allows.

    Example:
        >>> Choice("width", [64, 16, 32]).values
        (16, 32, 64)

    Args:
        name: dimension name, unique in its space (e.g. ``"blocks.0.width"``).
        values: the allowed values: ints, floats or strings, all of one kind. Numbers are
            sorted ascending; strings keep their order (cheapest first, by convention).
        when: ``(parent, parent_values)``: the dimension exists only when the parent
            dimension is active and takes one of ``parent_values``.
    """

    name: str
    values: tuple
    when: tuple[str, tuple] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a Choice needs a non-empty string name, got {self.name!r}")
        values = tuple(_plain(v) for v in self.values)
        if not values:
            raise ValueError(f"Choice {self.name!r} needs at least one value")
        kinds = {_kind(v) for v in values}
        if len(kinds) != 1 or None in kinds:
            raise ValueError(
                f"Choice {self.name!r} values must be all int, all float or all str, got {list(values)}"
            )
        if len(set(values)) != len(values):
            raise ValueError(f"Choice {self.name!r} has repeated values: {list(values)}")
        if kinds != {str}:
            values = tuple(sorted(values))
        object.__setattr__(self, "values", values)
        if self.when is not None:
            parent, allowed = self.when
            object.__setattr__(self, "when", (str(parent), tuple(_plain(v) for v in allowed)))

    @property
    def kind(self) -> type:
        """The Python type of the values (int, float or str)."""
        return _kind(self.values[0])

    def index(self, value: Value) -> int:
        """Position of `value` in `values`."""
        return self.values.index(value)


def _plain(value: Any) -> Any:
    """A numpy scalar as the matching Python scalar; anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def _kind(value: Any) -> type | None:
    if isinstance(value, bool):
        return None
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind
    return None


class SearchSpace:
    """An ordered set of `Choice` dimensions; configs are plain dicts over the active ones.

    Example:
        >>> space = SearchSpace([Choice("depth", [1, 2]), Choice("w1", [8, 16], when=("depth", [2]))])
        >>> space.size()
        3
        >>> space.validate({"depth": 1})
        {'depth': 1}

    Args:
        dimensions: the dimensions; a conditioned one must come after its parent.
        graph: optional ``config -> networkx.DiGraph`` builder (supernets supply theirs).
        canonical: optional ``config -> config`` mapping each config to the representative of
            the configs with the same effective architecture (supernets supply theirs, from
            what their layers and family know); `key` goes through it, so equivalent configs
            share one key.
    """

    def __init__(
        self,
        dimensions: Sequence[Choice],
        graph: Callable[[Config], nx.DiGraph] | None = None,
        canonical: Callable[[Config], Config] | None = None,
    ):
        self.dimensions: tuple[Choice, ...] = tuple(dimensions)
        self._by_name: dict[str, Choice] = {}
        for dim in self.dimensions:
            if not isinstance(dim, Choice):
                raise TypeError(f"dimensions must be Choice objects, got {dim!r}")
            if dim.name in self._by_name:
                raise ValueError(f"dimension {dim.name!r} is declared twice")
            if dim.when is not None:
                parent = self._by_name.get(dim.when[0])
                if parent is None:
                    raise ValueError(
                        f"dimension {dim.name!r} depends on {dim.when[0]!r}, which must be declared before it"
                    )
                bad = [v for v in dim.when[1] if v not in parent.values]
                if bad:
                    raise ValueError(f"dimension {dim.name!r} depends on {parent.name!r} values {bad}, not in {list(parent.values)}")
            self._by_name[dim.name] = dim
        self._graph = graph
        self._canonical = canonical
        self._draws = tuple((dim.name, dim.values, len(dim.values), dim.when) for dim in self.dimensions)
        self._extremes = (self._extreme(0), self._extreme(-1))  # the smallest and largest configs, copied out

    # -- basic facts ---------------------------------------------------------------------
    def names(self) -> list[str]:
        """Names of all dimensions, in order."""
        return [d.name for d in self.dimensions]

    def __getitem__(self, name: str) -> Choice:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self.dimensions)

    def __repr__(self) -> str:
        dims = ", ".join(f"{d.name}={list(d.values)}" for d in self.dimensions[:6])
        more = f", ... ({len(self.dimensions)} dimensions)" if len(self.dimensions) > 6 else ""
        return f"SearchSpace({dims}{more}; {self.size():,} configs)"

    def is_active(self, name: str, config: Mapping[str, Value]) -> bool:
        """Whether dimension `name` exists under `config` (its conditions hold)."""
        dim = self._by_name[name]
        while dim.when is not None:
            parent, allowed = dim.when
            if config.get(parent) not in allowed:
                return False
            dim = self._by_name[parent]
        return True

    def active_names(self, config: Mapping[str, Value]) -> list[str]:
        """Names of the dimensions active under `config`, in order."""
        active: set[str] = set()
        out = []
        for dim in self.dimensions:
            if dim.when is None or (dim.when[0] in active and config.get(dim.when[0]) in dim.when[1]):
                active.add(dim.name)
                out.append(dim.name)
        return out

    # -- validation ----------------------------------------------------------------------
    def validate(self, config: Mapping[str, Any]) -> Config:
        """The config normalised to plain values; raises `InvalidConfig` naming any problem."""
        if not isinstance(config, Mapping):
            raise InvalidConfig(f"a config must be a dict of dimension -> value, got {type(config).__name__}")
        unknown = [k for k in config if k not in self._by_name]
        if unknown:
            raise InvalidConfig(
                f"unknown dimension {unknown[0]!r}; the space has: {', '.join(self.names())}"
            )
        out: Config = {}
        for dim in self.dimensions:
            present = dim.name in config
            if dim.when is not None and not (dim.when[0] in out and out[dim.when[0]] in dim.when[1]):
                if present:
                    parent, allowed = dim.when
                    got = out.get(parent, "inactive")
                    raise InvalidConfig(
                        f"dimension {dim.name!r} is inactive: it exists only when {parent!r} is one of "
                        f"{list(allowed)} (got {parent}={got}); remove it from the config"
                    )
                continue
            if not present:
                raise InvalidConfig(f"missing dimension {dim.name!r}: one of {list(dim.values)}")
            value = config[dim.name]
            if type(value) is dim.values[0].__class__ and value in dim.values:  # the common case, checked fast
                out[dim.name] = value
                continue
            value = _plain(value)
            if _kind(value) is not dim.kind:
                raise InvalidConfig(
                    f"dimension {dim.name!r} takes {dim.kind.__name__} values {list(dim.values)}, "
                    f"got {value!r} ({type(value).__name__})"
                )
            if value not in dim.values:
                raise InvalidConfig(f"dimension {dim.name!r} must be one of {list(dim.values)}, got {value!r}")
            out[dim.name] = value
        return out

    def contains(self, config: Mapping[str, Any]) -> bool:
        """Whether `config` is a valid point of this space."""
        try:
            self.validate(config)
        except InvalidConfig:
            return False
        return True

    # -- sampling and enumeration --------------------------------------------------------
    def sample(self, rng: np.random.Generator | int | None = None) -> Config:
        """A random config: each active dimension drawn uniformly."""
        integers = (rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)).integers
        out: Config = {}
        for name, values, n, when in self._draws:  # per training step: attribute lookups hoisted
            if when is None or out.get(when[0], _MISSING) in when[1]:
                out[name] = values[integers(n)]
        return out

    def largest(self) -> Config:
        """The config taking every dimension's last (largest) value."""
        return dict(self._extremes[1])

    def smallest(self) -> Config:
        """The config taking every dimension's first (smallest) value."""
        return dict(self._extremes[0])

    def _extreme(self, pos: int) -> Config:
        out: Config = {}
        for dim in self.dimensions:
            if dim.when is None or out.get(dim.when[0], _MISSING) in dim.when[1]:
                out[dim.name] = dim.values[pos]
        return out

    def enumerate(self, rng: np.random.Generator | None = None) -> Iterator[Config]:
        """Every config of the space once: in a fixed order, or a random depth-first order given `rng` (lazy)."""
        dims = self.dimensions
        config: Config = {}

        def walk(i: int) -> Iterator[Config]:
            if i == len(dims):
                yield dict(config)
                return
            dim = dims[i]
            if dim.when is not None and config.get(dim.when[0], _MISSING) not in dim.when[1]:
                yield from walk(i + 1)
                return
            order = dim.values if rng is None else [dim.values[j] for j in rng.permutation(len(dim.values))]
            for value in order:
                config[dim.name] = value
                yield from walk(i + 1)
            del config[dim.name]

        return walk(0)

    def size(self) -> int:
        """Number of distinct configs, counted without enumerating."""
        children: dict[str | None, list[Choice]] = {}
        for dim in self.dimensions:
            children.setdefault(dim.when[0] if dim.when else None, []).append(dim)

        def count(dim: Choice) -> int:
            total = 0
            for value in dim.values:
                total += math.prod(count(c) for c in children.get(dim.name, []) if value in c.when[1])
            return total

        return math.prod(count(d) for d in children.get(None, []))

    # -- representations -----------------------------------------------------------------
    def canonical(self, config: Mapping[str, Value]) -> Config:
        """The representative of the configs with `config`'s effective architecture (its active values only).

        Example:
            >>> space = SearchSpace([Choice("depth", [1, 2]), Choice("w1", [8, 16], when=("depth", [2]))])
            >>> space.canonical({"depth": 1, "w1": 8})
            {'depth': 1}
        """
        return self.representative({n: _plain(config[n]) for n in self.active_names(config)})

    def representative(self, valid: Config) -> Config:
        """`canonical` of a config that `validate` returned (its active values only, plain already).

        Example:
            >>> space = SearchSpace([Choice("depth", [1, 2]), Choice("w1", [8, 16], when=("depth", [2]))])
            >>> space.representative(space.validate({"depth": 2, "w1": 8}))
            {'depth': 2, 'w1': 8}
        """
        if self._canonical is None:
            return dict(valid)
        out = self._canonical(valid)
        return {n: _plain(out[n]) for n in self.active_names(out)}

    def key(self, config: Mapping[str, Value]) -> str:
        """A string naming the config's subnet: equal for equal or equivalent configs (see `canonical`)."""
        config = self.canonical(config)
        return json.dumps([[n, config[n]] for n in self.active_names(config)], separators=(",", ":"))

    def from_key(self, key: str) -> Config:
        """The config whose `key` is `key`."""
        return {n: v for n, v in json.loads(key)}

    def encode(self, config: Mapping[str, Value]) -> np.ndarray:
        """Ordinal vector, one entry per dimension: the value's index, -1 when inactive."""
        out = np.full(len(self.dimensions), -1.0)
        active = set(self.active_names(config))
        for i, dim in enumerate(self.dimensions):
            if dim.name in active:
                out[i] = dim.index(_plain(config[dim.name]))
        return out

    def encode_many(self, configs: Sequence[Mapping[str, Value]]) -> np.ndarray:
        """`encode` for several configs, as a 2-D array."""
        if not configs:
            return np.zeros((0, len(self.dimensions)))
        return np.stack([self.encode(c) for c in configs])

    def to_graph(self, config: Mapping[str, Value]) -> nx.DiGraph:
        """The subnet of `config` as a DAG of typed op nodes (attribute ``op``) with their sizes."""
        config = self.validate(config)
        if self._graph is not None:
            return self._graph(config)
        graph = nx.DiGraph()
        graph.add_node("input", op="input")
        previous = "input"
        for name in self.active_names(config):
            graph.add_node(name, op=name.rsplit(".", 1)[-1], value=config[name])
            graph.add_edge(previous, name)
            previous = name
        graph.add_node("output", op="output")
        graph.add_edge(previous, "output")
        return graph

    # -- plain-data round trip -----------------------------------------------------------
    def to_dict(self) -> list[dict[str, Any]]:
        """The dimensions as JSON-ready dicts."""
        return [
            {"name": d.name, "values": list(d.values), **({"when": [d.when[0], list(d.when[1])]} if d.when else {})}
            for d in self.dimensions
        ]

    @classmethod
    def from_dict(cls, data: Sequence[Mapping[str, Any]]) -> SearchSpace:
        """A space from `to_dict` output."""
        return cls([Choice(d["name"], d["values"], tuple(d["when"]) if d.get("when") else None) for d in data])


_MISSING = object()
