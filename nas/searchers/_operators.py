"""Variation and selection operators over configs, shared by the evolutionary searchers.

Crossover and mutation walk the space's dimensions in order, so a child's conditions
always hold: a dimension is set only when its parent makes it active, dimensions that
become inactive are dropped, and newly active ones take a parent's value or a random one.
"""

from __future__ import annotations

import numpy as np

from nas.pareto import non_dominated_sort
from nas.space import Config, SearchSpace


def crossover(space: SearchSpace, a: Config, b: Config, rng: np.random.Generator) -> Config:
    """A uniform crossover of two configs that is a valid config of `space`.

    Example:
        >>> from nas import Choice, SearchSpace
        >>> space = SearchSpace([Choice("depth", [1, 2]), Choice("w2", [8, 16], when=("depth", [2]))])
        >>> child = crossover(space, {"depth": 1}, {"depth": 2, "w2": 16}, np.random.default_rng(0))
        >>> space.contains(child)
        True

    Each active dimension takes the value of one parent chosen at random; when only one
    parent has it, that parent's value; when neither does, a random value.
    """
    out: Config = {}
    coins = rng.random(len(space.dimensions))
    for i, dim in enumerate(space.dimensions):
        if dim.when is not None and not (dim.when[0] in out and out[dim.when[0]] in dim.when[1]):
            continue
        in_a, in_b = dim.name in a, dim.name in b
        if in_a and in_b:
            out[dim.name] = a[dim.name] if coins[i] < 0.5 else b[dim.name]
        elif in_a or in_b:
            out[dim.name] = a[dim.name] if in_a else b[dim.name]
        else:
            out[dim.name] = dim.values[int(rng.integers(len(dim.values)))]
    return out


def mutate(space: SearchSpace, config: Config, rng: np.random.Generator, rate: float | None = None) -> Config:
    """A copy of `config` with each active dimension changed with probability `rate`.

    Example:
        >>> from nas import Choice, SearchSpace
        >>> space = SearchSpace([Choice("depth", [1, 2]), Choice("w2", [8, 16], when=("depth", [2]))])
        >>> child = mutate(space, {"depth": 1}, np.random.default_rng(0), rate=1.0)
        >>> child["depth"], space.contains(child)
        (2, True)

    A changed numeric dimension moves to a neighbouring value half of the time and to any
    other value otherwise; a string dimension to any other value. At least one dimension
    with more than one value changes, so the child differs from `config` (when it can).
    Newly active dimensions take a random value. `rate` defaults to 1 / (active dimensions).
    """
    out: Config = {}
    dims = space.dimensions
    draws = rng.random((len(dims), 2))
    changed = False
    mutable: list[str] = []
    for i, dim in enumerate(dims):
        if dim.when is not None and not (dim.when[0] in out and out[dim.when[0]] in dim.when[1]):
            continue
        if dim.name not in config:
            out[dim.name] = dim.values[int(rng.integers(len(dim.values)))]
            changed = True
            continue
        value = config[dim.name]
        if len(dim.values) > 1:
            mutable.append(dim.name)
            if rate is None:
                rate = 1.0 / max(1, len(config))
            if draws[i, 0] < rate:
                value = _other_value(dim, value, rng, draws[i, 1] < 0.5)
                changed = True
        out[dim.name] = value
    if not changed and mutable:
        # force one change; re-walk so that children of the changed dimension stay consistent
        name = mutable[int(rng.integers(len(mutable)))]
        forced = dict(config)
        forced[name] = _other_value(space[name], config[name], rng, bool(rng.random() < 0.5))
        return _repair(space, forced, rng)
    return out


def _other_value(dim, value, rng: np.random.Generator, step: bool):
    """A value of `dim` other than `value`: a neighbour (numbers, when `step`) or any other."""
    k = len(dim.values)
    i = dim.index(value)
    if step and dim.kind is not str:
        j = i + (1 if rng.random() < 0.5 else -1)
        j = 1 if j < 0 else (k - 2 if j >= k else j)
        return dim.values[j]
    j = int(rng.integers(k - 1))
    return dim.values[j + (j >= i)]


def _repair(space: SearchSpace, config: Config, rng: np.random.Generator) -> Config:
    """`config` restricted to its active dimensions, newly active ones drawn at random."""
    out: Config = {}
    for dim in space.dimensions:
        if dim.when is not None and not (dim.when[0] in out and out[dim.when[0]] in dim.when[1]):
            continue
        if dim.name in config:
            out[dim.name] = config[dim.name]
        else:
            out[dim.name] = dim.values[int(rng.integers(len(dim.values)))]
    return out


def crowding_distance(values: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row of one front (inf at each objective's extremes)."""
    values = np.asarray(values, dtype=float)
    n, k = values.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(k):
        order = np.argsort(values[:, j], kind="stable")
        column = values[order, j]
        span = column[-1] - column[0]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (column[2:] - column[:-2]) / span
    return distance


def rank_and_crowding(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's non-domination rank (0 = first front) and crowding distance within its front."""
    rank = np.zeros(len(values), dtype=int)
    crowd = np.zeros(len(values))
    for r, front in enumerate(non_dominated_sort(values)):
        rank[front] = r
        crowd[front] = crowding_distance(values[front])
    return rank, crowd


def select(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` best rows by NSGA-II survival: whole fronts, then the least crowded."""
    if k >= len(values):
        return np.arange(len(values))
    rank, crowd = rank_and_crowding(values)
    # crowding is negated so that larger distances come first within a rank
    return np.lexsort((-crowd, rank))[:k]


def tournament(rank: np.ndarray, crowd: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` winners of binary tournaments: lower rank wins, then larger crowding distance."""
    a = rng.integers(len(rank), size=n)
    b = rng.integers(len(rank), size=n)
    if n <= 8:  # a few (a pair of parents per child): Python scalars cost less than numpy's calls
        return np.array([i if rank[i] < rank[j] or rank[i] == rank[j] and crowd[i] >= crowd[j] else j
                         for i, j in zip(a.tolist(), b.tolist())], dtype=a.dtype)
    a_wins = (rank[a] < rank[b]) | ((rank[a] == rank[b]) & (crowd[a] >= crowd[b]))
    return np.where(a_wins, a, b)


def spread(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of `k` rows spread over a front: each objective's best, then farthest-point picks.

    Objectives are scaled to [0, 1] first, so every objective counts alike.
    """
    n = len(values)
    if k >= n:
        return np.arange(n)
    low, high = values.min(axis=0), values.max(axis=0)
    scaled = (values - low) / np.where(high > low, high - low, 1.0)
    chosen: list[int] = []
    for j in range(values.shape[1]):
        best = int(np.lexsort((scaled.sum(axis=1), scaled[:, j]))[0])
        if best not in chosen:
            chosen.append(best)
    chosen = chosen[:k]
    nearest = np.min(np.linalg.norm(scaled[:, None, :] - scaled[chosen][None, :, :], axis=2), axis=1)
    nearest[chosen] = -1.0
    while len(chosen) < k:
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(scaled - scaled[pick], axis=1))
        nearest[pick] = -1.0
    return np.array(chosen)


def first_front(values: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Indices of the non-dominated rows of a minimisation matrix (equal rows all kept).

    Unlike a full non-dominated sort this needs no n x n matrix: rows are swept in
    lexicographic order (a row can only be dominated by earlier ones) in blocks checked
    against the front found so far, so it stays fast for tens of thousands of rows.
    """
    values = np.asarray(values, dtype=float)
    order = np.lexsort(values.T[::-1])
    ordered = values[order]
    if values.shape[1] == 2 and len(values):
        # a row is dominated iff an earlier, different row is no worse in the second objective
        new_run = np.r_[True, (ordered[1:] != ordered[:-1]).any(axis=1)]
        run_start = np.maximum.accumulate(np.where(new_run, np.arange(len(ordered)), 0))
        best_before = np.r_[np.inf, np.minimum.accumulate(ordered[:, 1])[:-1]]
        return order[best_before[run_start] > ordered[:, 1]]
    front = np.zeros((0, values.shape[1]))
    kept: list[np.ndarray] = []
    for start in range(0, len(ordered), chunk):
        block = ordered[start : start + chunk]
        dominated = np.zeros(len(block), dtype=bool)
        for others in (front, block):
            if len(others):
                no_worse = (others[None, :, :] <= block[:, None, :]).all(axis=2)
                better = (others[None, :, :] < block[:, None, :]).any(axis=2)
                dominated |= (no_worse & better).any(axis=1)
        front = np.vstack([front, block[~dominated]])
        kept.append(order[start : start + chunk][~dominated])
    return np.concatenate(kept) if kept else np.zeros(0, dtype=int)


def best_spread(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of `k` rows: whole fronts best first, the last one thinned by `spread`."""
    remaining = np.arange(len(values))
    chosen: list[np.ndarray] = []
    need = min(k, len(values))
    while need > 0:
        front = remaining[first_front(values[remaining])]
        if len(front) > need:
            front = front[spread(values[front], need)]
        chosen.append(front)
        need -= len(front)
        remaining = np.setdiff1d(remaining, front, assume_unique=True)
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=int)
