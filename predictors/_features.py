"""Configs as numeric feature rows: the input of the vector predictors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nas.space import InvalidConfig, SearchSpace

_REMEMBERED = 200_000  # configs whose codes a featuriser keeps


class Featuriser:
    """Configs of one space as a float matrix, fast enough for thousands of configs.

    The ordinal codes are those of `SearchSpace.encode_many` (value index, -1 when
    inactive); from them each row gets:

    * a numeric dimension: its position scaled to [0, 1] (0 when inactive);
    * a string dimension: one-hot of its value (all zeros when inactive);
    * one active/inactive indicator per distinct condition (dimensions that share a
      condition share the column), so a linear model can give an absent block zero weight.

    Example:
        >>> from nas import Choice, SearchSpace
        >>> space = SearchSpace([Choice("depth", [1, 2]), Choice("op", ["relu", "gelu"]),
        ...                      Choice("w1", [8, 16, 32], when=("depth", [2]))])
        >>> Featuriser(space).transform([{"depth": 2, "op": "gelu", "w1": 16}]).tolist()
        [[1.0, 0.0, 1.0, 0.5, 1.0]]
        >>> Featuriser(space).names
        ['depth', 'op=relu', 'op=gelu', 'w1', 'active(depth in [2])']

    Args:
        space: the search space.
    """

    def __init__(self, space: SearchSpace):
        if not isinstance(space, SearchSpace):
            raise TypeError(f"space must be a nas.SearchSpace, got {type(space).__name__}")
        self.space = space
        dims = space.dimensions
        position = {d.name: i for i, d in enumerate(dims)}
        self._lookup = [{v: j for j, v in enumerate(d.values)} for d in dims]
        self._parent = [position[d.when[0]] if d.when else -1 for d in dims]
        self._allowed = [frozenset(d.when[1]) if d.when else frozenset() for d in dims]
        self._dim_names = [d.name for d in dims]

        # Column plan: (kind, dimension index, extra) per block of columns.
        names: list[str] = []
        self._numeric: list[tuple[int, int, float]] = []  # (dim, column, scale)
        self._onehot: list[tuple[int, int]] = []  # (dim, first column)
        self._active: list[tuple[list[int], int]] = []  # (dims sharing a condition, column)
        for i, dim in enumerate(dims):
            if dim.kind is str:
                self._onehot.append((i, len(names)))
                names.extend(f"{dim.name}={v}" for v in dim.values)
            else:
                scale = 1.0 / (len(dim.values) - 1) if len(dim.values) > 1 else 0.0
                self._numeric.append((i, len(names), scale))
                names.append(dim.name)
        conditions: dict[tuple[int, frozenset], list[int]] = {}
        for i, dim in enumerate(dims):
            if dim.when is not None:
                conditions.setdefault(self._condition_path(i), []).append(i)
        for members in conditions.values():
            first = dims[members[0]]
            self._active.append((members, len(names)))
            names.append(f"active({first.when[0]} in {list(first.when[1])})")
        self.names = names
        self._rows: dict[tuple, tuple] = {}  # codes of configs seen, by their items (and the values' types)

    def _condition_path(self, i: int) -> tuple:
        """The whole chain of conditions a dimension depends on (dims with equal chains are active together)."""
        path = []
        while self._parent[i] >= 0:
            path.append((self._parent[i], self._allowed[i]))
            i = self._parent[i]
        return tuple(path)

    @property
    def n_features(self) -> int:
        """Number of columns of `transform`'s output."""
        return len(self.names)

    def codes(self, configs: Sequence[Mapping]) -> np.ndarray:
        """The ordinal codes of `configs` (same as ``space.encode_many``), validating each config.

        A config that is not a point of the space raises the space's `InvalidConfig`. The
        codes of a config seen before are remembered (a refit or a re-score of the same
        configs does not redo them).
        """
        n_dims = len(self._dim_names)
        names, lookup, parent, allowed = self._dim_names, self._lookup, self._parent, self._allowed
        remembered = self._rows
        rows: list[tuple] = []
        for row, config in enumerate(configs):
            if type(config) is not dict and not isinstance(config, Mapping):
                raise InvalidConfig(
                    f"configs must be dicts of dimension -> value; item {row} is {type(config).__name__}"
                )
            try:
                key: tuple | None = (tuple(config.items()), tuple(map(type, config.values())))
                seen = remembered.get(key)  # type: ignore[arg-type]
            except TypeError:  # an unhashable value: not remembered
                key = seen = None
            if seen is not None:
                rows.append(seen)
                continue
            codes = [-1.0] * n_dims
            n_active = 0
            for i in range(n_dims):
                p = parent[i]
                if p >= 0 and (codes[p] < 0 or config.get(names[p]) not in allowed[i]):
                    continue
                value = config.get(names[i])
                j = lookup[i].get(value)
                if j is None or isinstance(value, bool):
                    self.space.validate(config)  # raises the precise error
                    raise InvalidConfig(f"config {row} has an invalid value {value!r} for {names[i]!r}")
                codes[i] = float(j)
                n_active += 1
            if n_active != len(config):
                self.space.validate(config)  # an unknown or inactive key: raises the precise error
            done = tuple(codes)
            rows.append(done)
            if key is not None:
                if len(remembered) >= _REMEMBERED:
                    remembered.clear()
                remembered[key] = done
        return np.array(rows, dtype=float).reshape(len(rows), n_dims)

    def transform(self, configs: Sequence[Mapping]) -> np.ndarray:
        """The feature matrix of `configs`: one row per config, `n_features` columns."""
        codes = self.codes(configs)
        out = np.zeros((len(configs), self.n_features))
        for i, col, scale in self._numeric:
            out[:, col] = np.maximum(codes[:, i], 0.0) * scale
        rows = np.arange(len(configs))
        for i, col in self._onehot:
            active = codes[:, i] >= 0
            out[rows[active], col + codes[active, i].astype(int)] = 1.0
        for members, col in self._active:
            out[:, col] = codes[:, members[0]] >= 0
        return out


_SHARED: dict[int, Featuriser] = {}


def featuriser_for(space: SearchSpace) -> Featuriser:
    """The featuriser of `space` shared by every predictor on it (so remembered codes outlive a refit).

    Example:
        >>> from nas import Choice, SearchSpace
        >>> space = SearchSpace([Choice("width", [8, 16])])
        >>> featuriser_for(space) is featuriser_for(space)
        True
    """
    featuriser = _SHARED.get(id(space))
    if featuriser is None or featuriser.space is not space:
        if len(_SHARED) >= 64:
            _SHARED.clear()
        featuriser = _SHARED[id(space)] = Featuriser(space)
    return featuriser
