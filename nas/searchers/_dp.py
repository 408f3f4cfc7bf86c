"""The additive baseline: per-layer error tables and an exact dynamic program under the budget."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from nas.pareto import Constraint
from nas.searchers._base import CostFn, Told, register
from nas.searchers._budget import BudgetSearcher
from nas.space import Config, SearchSpace


@register("dp")
class DPSearcher(BudgetSearcher):
    """Measure each layer's error alone, then find the best allocation by dynamic programming.

    Layer-wise allocation as the layer-adaptive pruning paper solves it: every dimension
    with several numeric values (and no dimensions depending on it) is a layer's level. The searcher first asks for the
    *tables*: the largest config, and for each layer and each of its other levels the
    largest config with only that layer changed (``1 + sum(levels - 1)`` configs; these
    break the budget on purpose, they are measurements, the only configs a searcher asks
    outside its constraints). A layer's error at a level is the fitness lost against the
    largest config (fitness: the first objective `cost` does not give). A dynamic program
    over the layers (exact: the Pareto set of (cost, error) partial sums, kept per layer)
    then finds the allocation with the least summed error whose additive cost (the largest
    config's, plus each layer's change alone, from `cost`) meets the budget, the first
    ``<=``/``<`` constraint; every proposal meets all constraints on its true cost. Later
    asks take the next cheaper allocations of that frontier. `additivity` compares the
    predicted fitness (largest minus summed errors) with the measured one of each proposal.

    Example:
        >>> from nas import Choice, Evaluation, SearchSpace
        >>> from nas.searchers import DPSearcher
        >>> space = SearchSpace([Choice(f"l{i}", [1, 2, 3]) for i in range(3)])
        >>> cost = lambda c: {"params": sum(c.values())}
        >>> fit = lambda c: {"accuracy": c["l0"] + 2 * c["l1"] + 3 * c["l2"]}
        >>> searcher = DPSearcher(space, ["accuracy:max"], cost=cost, constraints=["params<=6"])
        >>> tables = searcher.ask(10)
        >>> len(tables)
        7
        >>> searcher.tell([Evaluation(c, fit(c)) for c in tables])
        >>> best = searcher.ask(1)
        >>> best
        [{'l0': 1, 'l1': 2, 'l2': 3}]
        >>> searcher.tell([Evaluation(c, fit(c)) for c in best])
        >>> searcher.additivity[0]["predicted"], searcher.additivity[0]["measured"]
        (14.0, 14.0)

    Args:
        space: the search space (its numeric dimensions are the levels).
        objectives: objectives or their specs; the first one `cost` does not give is the fitness.
        constraints: hard bounds on `cost` metrics; the first ``<=``/``<`` one is the budget.
        seed: seed of the random fill once the frontier is used up.
        cost: analytic metrics ``config -> dict`` (required: it gives the budget metric).
    """

    def _prepare(self) -> None:
        """The levels and the table configs (the largest, then one layer changed at a time), in measuring order."""
        space = self.space
        self.base = space.largest()
        parents = {d.when[0] for d in space.dimensions if d.when is not None}
        self.levels = [
            d.name for d in space.dimensions
            if d.name in self.base and d.name not in parents and d.kind is not str and len(d.values) > 1
        ]
        self._require_levels(self.levels)
        self.tables: list[Config] = [dict(self.base)]
        self._cells: list[tuple[str, int]] = [("", -1)]
        for name in self.levels:
            for j, value in enumerate(space[name].values[:-1]):
                self.tables.append(space.validate({**self.base, name: value}))
                self._cells.append((name, j))
        self._table_keys = {space.key(c): i for i, c in enumerate(self.tables)}
        self._measured: dict[int, float] = {}
        self.errors: dict[str, np.ndarray] | None = None  # layer -> error per level (maximisation units)
        self.base_value = math.nan
        self._frontier: list[tuple[Config, float]] | None = None
        self._predicted: dict[str, float] = {}
        self.additivity: list[dict[str, float]] = []

    def feasible(self, config: Config, key: str | None = None) -> bool:
        """Whether `config` meets the constraints; the table configs are always allowed."""
        key = self.space.key(config) if key is None else key
        return key in self._table_keys or super().feasible(config, key)

    def random_unseen(self, n: int, exclude: set[str] | None = None) -> list[Config]:
        """Random feasible configs, but none while the tables are still being measured."""
        if self.errors is None:
            return []
        return super().random_unseen(n, exclude)

    # -- the protocol --------------------------------------------------------------------
    def _tell(self, told: list[Told]) -> None:
        for t in told:
            index = self._table_keys.get(t.key)
            if index is not None:
                self._measured[index] = self._value(t.evaluation)
            if t.key in self._predicted:
                value = self._value(t.evaluation)
                self.additivity.append({"predicted": self._predicted[t.key], "measured": value, "error": value - self._predicted[t.key]})
        if self.errors is None and len(self._measured) == len(self.tables):
            self._build_tables()

    def _build_tables(self) -> None:
        base = self._measured[0]
        self.base_value = base
        errors = {name: np.zeros(len(self.space[name].values)) for name in self.levels}
        for index, (name, j) in enumerate(self._cells):
            if index:
                measured = self._measured[index]
                errors[name][j] = base - measured if math.isfinite(measured) else math.inf
        self.errors = errors

    def predicted(self, config: Config) -> float:
        """The fitness the tables predict for `config`: the largest config's minus the summed errors."""
        if self.errors is None:
            raise RuntimeError("dp predicts only once its tables are told")
        return float(self.base_value - sum(self.errors[n][self.space[n].index(config[n])] for n in self.levels))

    def _ask(self, n: int) -> list[Config]:
        if self.errors is None:
            return [c for c in self.tables if not self.taken(self.space.key(c))][:n]
        if self._frontier is None:
            self._frontier = self._solve()
        out = []
        for config, value in self._frontier:
            key = self.space.key(config)
            if self.taken(key) or not self.feasible(config, key):
                continue
            self._predicted[key] = value
            out.append(config)
            if len(out) == n:
                break
        return out

    def _solve(self) -> list[tuple[Config, float]]:
        """The (cost, error) Pareto frontier of allocations meeting the budget, best predicted first."""
        assert self.errors is not None  # solved only once the tables are told
        ranked = allocate(self.space, self.errors, self.cost_of, self.budget, base=self.base)
        if not ranked:
            raise ValueError(f"dp found no allocation whose additive {self.budget.metric} meets the budget {self.budget}.")
        return [(config, float(self.base_value - error)) for config, error in ranked]


def allocate(
    space: SearchSpace,
    errors: Mapping[str, Sequence[float] | np.ndarray],
    cost: CostFn,
    budget: Constraint,
    *,
    base: Config | None = None,
) -> list[tuple[Config, float]]:
    """The allocations of least summed per-layer error under an additive budget, by exact dynamic programming.

    `errors` maps each layer's dimension to its error at each of its values (in the
    dimension's order); other dimensions keep their value in `base` (default: the largest
    config). A layer's cost change is ``cost(base with only that layer changed) - cost(base)``
    in the budget's metric; the program keeps, layer by layer, every (cost, error) partial
    sum that no cheaper one beats, and returns the final frontier that meets the budget,
    least error first, as ``(config, summed error)``.

    Example:
        >>> from nas import Choice, SearchSpace
        >>> space = SearchSpace([Choice("a", [1, 2, 3]), Choice("b", [1, 2, 3])])
        >>> errors = {"a": [2.0, 1.0, 0.0], "b": [5.0, 1.0, 0.0]}
        >>> cost = lambda c: {"params": c["a"] + c["b"]}
        >>> allocate(space, errors, cost, Constraint.parse("params<=4"))[0]
        ({'a': 1, 'b': 3}, 2.0)
    """
    base = dict(space.largest() if base is None else base)
    names = [n for n in space.names() if n in errors]
    metric = budget.metric
    base_cost = float(cost(base)[metric])
    deltas = {
        name: np.array([float(cost(space.validate({**base, name: v}))[metric]) - base_cost for v in space[name].values])
        for name in names
    }
    table = {name: np.asarray(errors[name], dtype=float) for name in names}
    slack = budget.value - base_cost  # summed cost changes must stay at or below this
    least_after = np.cumsum([deltas[n].min() for n in names][::-1])[::-1].tolist() + [0.0]
    costs, errs = np.zeros(1), np.zeros(1)
    pointers: list[tuple[np.ndarray, np.ndarray]] = []
    for i, name in enumerate(names):
        c = (costs[:, None] + deltas[name][None, :]).ravel()
        e = (errs[:, None] + table[name][None, :]).ravel()
        parent = np.repeat(np.arange(len(costs)), len(deltas[name]))
        level = np.tile(np.arange(len(deltas[name])), len(costs))
        reachable = np.flatnonzero((c + least_after[i + 1] <= slack + 1e-9 * max(1.0, abs(slack))) & np.isfinite(e))
        order = reachable[np.lexsort((e[reachable], c[reachable]))]
        if len(order):  # keep a state only when every cheaper one has more error
            best = np.minimum.accumulate(e[order])
            order = order[np.r_[True, e[order][1:] < best[:-1]]]
        costs, errs = c[order], e[order]
        pointers.append((parent[order], level[order]))
    out = []
    for s in np.argsort(errs, kind="stable"):
        config = dict(base)
        state = int(s)
        for name, (parent, level) in zip(reversed(names), reversed(pointers)):
            config[name] = space[name].values[int(level[state])]
            state = int(parent[state])
        out.append((space.validate(config), float(errs[s])))
    return out
