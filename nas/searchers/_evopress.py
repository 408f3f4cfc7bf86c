"""EvoPress: per-layer allocation under an exact global budget by level-switch evolution."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from nas.data import Data, resolve
from nas.evaluate import evaluate
from nas.evaluation import Evaluation
from nas.pareto import Constraint, InvalidConstraint
from nas.searchers._base import Constraints, CostFn, Searcher, Told, register
from nas.searchers._operators import _repair as repair
from nas.space import Config, SearchSpace

Screen = Callable[[list[Config], float], Sequence[Evaluation]]


@register("evopress")
class EvoPressSearcher(Searcher):
    """Evolution whose mutations move compression between layers and keep the budget (EvoPress).

    Every dimension with several numeric values is a per-layer *level* (a rank, width,
    LoRA rank, kept-or-dropped flag or bit-width; values ordered cheapest first). The
    *budget* is the first upper-bound constraint (``"params<=50000"``); a config is inside
    it when it meets every constraint and its budget metric is at least ``(1 - tolerance)``
    times the bound, so every proposal spends the budget. A level switch steps one layer
    down and another up, then keeps stepping random layers down (over the budget) or up
    (under it) until the config is inside again, and then up while it stays within the
    budget (so it spends what it can): where every step costs the same, the cost stays
    exactly equal (``tolerance=0``), otherwise within the tolerance. Each child takes
    ``min(u1, u2)`` switches, ``u1, u2`` uniform in 1..3.

    The search is a (1 + lambda) evolution on the first objective that `cost` does not give
    (the fitness, e.g. accuracy): the parent is the best told config inside the budget. At
    every `ask(n)`, `offspring` distinct unseen children of the parent are made; with a
    `screen` function they go through multi-step selection, scored at each of the growing
    `fidelities` (fractions of the calibration data) and cut geometrically from `offspring`
    to ``n`` survivors, so most children cost a fraction of one evaluation; without one, ``n``
    children are proposed as they come. The first batch is `initial` (e.g. sensitivity
    priors, a uniform allocation) and then random configs moved inside the budget. State is
    the told evaluations (and a deterministic `screen`), so a seeded run resumes exactly.

    Example:
        >>> from nas import Choice, Evaluation, SearchSpace
        >>> from nas.searchers import EvoPressSearcher
        >>> space = SearchSpace([Choice(f"l{i}", [1, 2, 3, 4]) for i in range(4)])
        >>> cost = lambda c: {"params": sum(c.values())}
        >>> searcher = EvoPressSearcher(space, ["accuracy:max"], cost=cost, constraints=["params<=10"],
        ...                             tolerance=0.0, seed=0)
        >>> for _ in range(5):
        ...     configs = searcher.ask(2)
        ...     searcher.tell([Evaluation(c, {"accuracy": -abs(c["l0"] - 4)}) for c in configs])
        >>> sorted({cost(e.config)["params"] for e in searcher.evaluations})  # every proposal spends it exactly
        [10]
        >>> searcher.parent["l0"]
        4

    Args:
        space: the search space (its numeric dimensions are the levels).
        objectives: objectives or their specs; the first one `cost` does not give is the fitness.
        constraints: hard bounds on `cost` metrics; the first ``<=``/``<`` one is the budget.
        tolerance: how far below the budget a config may spend, as a fraction of it (0: exactly).
        offspring: children made per `ask` (at least ``n``).
        screen: ``(configs, fidelity) -> evaluations`` scoring configs on a `fidelity`
            fraction of the calibration data (`subset_screen` builds one for a supernet).
        fidelities: the growing fractions of the selection steps, before the full evaluation.
        initial: configs to evaluate first (those outside the budget are dropped).
        seed: seed of every random choice.
        cost: analytic metrics ``config -> dict`` (required: it gives the budget metric).
    """

    def __init__(
        self,
        space: SearchSpace,
        objectives,
        *,
        constraints: Constraints = None,
        tolerance: float = 0.02,
        offspring: int = 16,
        screen: Screen | None = None,
        fidelities: Sequence[float] = (0.1, 0.3),
        initial: Sequence[Config] = (),
        seed: int | None = None,
        cost: CostFn | None = None,
    ) -> None:
        super().__init__(space, objectives, seed=seed, cost=cost, constraints=constraints)
        budget = next((c for c in self.constraints if c.op in ("<=", "<")), None)
        if budget is None:
            raise InvalidConstraint(
                "The 'constraints' parameter of evopress needs a budget, an upper bound on a cost metric "
                f"such as 'params<=50000', got {[str(c) for c in self.constraints]}."
            )
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
            raise ValueError(f"The 'tolerance' parameter must be a number in [0, 1), got {tolerance!r}.")
        if isinstance(offspring, bool) or not isinstance(offspring, int) or offspring < 1:
            raise ValueError(f"The 'offspring' parameter must be an int >= 1, got {offspring!r}.")
        if screen is not None and not callable(screen):
            raise TypeError(f"The 'screen' parameter must be None or a callable (configs, fidelity) -> evaluations, got {screen!r}.")
        fidelities = tuple(fidelities)
        if any(isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1 for f in fidelities) or list(
            fidelities
        ) != sorted(set(fidelities)):
            raise ValueError(f"The 'fidelities' parameter must be increasing fractions in (0, 1], got {fidelities!r}.")
        self.budget: Constraint = budget
        self.tolerance = float(tolerance)
        self.offspring = offspring
        self.screen = screen
        self.fidelities = fidelities
        self.initial = [space.validate(c) for c in initial]
        self._conditional = any(d.when is not None for d in space.dimensions)
        self.levels = [d.name for d in space.dimensions if d.kind is not str and len(d.values) > 1]
        if not self.levels:
            raise ValueError("evopress needs numeric dimensions with several values (per-layer levels); the space has none.")
        costed = self.cost_names()
        fitness = [o for o in self.objectives if o.name not in costed]
        if not fitness:
            raise ValueError(
                f"evopress needs an objective that 'cost' does not give (e.g. 'accuracy:max'), got {[str(o) for o in self.objectives]}."
            )
        self.fitness = fitness[0]
        self.lower = budget.value * (1 - self.tolerance)
        self.parent: Config | None = None
        self.parent_value = -math.inf  # fitness in maximisation units
        self.screened = 0.0  # configs screened, in full evaluations (sum of fidelities)

    # -- the budget ----------------------------------------------------------------------
    def inside(self, config: Config, key: str | None = None) -> bool:
        """Whether `config` meets every constraint and spends at least ``(1 - tolerance)`` of the budget."""
        return self.feasible(config, key) and self.cost_of(config, key)[self.budget.metric] >= self.lower - 1e-9 * abs(self.lower)

    def _step(self, config: Config, name: str, step: int) -> Config:
        dim = self.space[name]
        out = dict(config)
        out[name] = dim.values[dim.index(config[name]) + step]
        return repair(self.space, out, self.rng) if self._conditional else out

    def _movable(self, config: Config, step: int, exclude: str | None = None) -> list[str]:
        return [
            n for n in self.levels
            if n in config and n != exclude and 0 <= self.space[n].index(config[n]) + step < len(self.space[n].values)
        ]

    def _settle(self, config: Config) -> Config | None:
        """Step random layers down (over the budget) or up (under it) until `config` is inside, then `_fill` it."""
        for _ in range(4 * sum(len(self.space[n].values) for n in self.levels)):
            if self.inside(config):
                return self._fill(config)
            over = not self.feasible(config)
            movable = self._movable(config, -1 if over else 1)
            if not over:  # under the budget: only steps that stay feasible
                movable = [n for n in movable if self.feasible(self._step(config, n, 1))]
            if not movable:
                return None
            config = self._step(config, movable[int(self.rng.integers(len(movable)))], -1 if over else 1)
        return None

    def _fill(self, config: Config) -> Config:
        """`config` with layers stepped up, in random order, while it stays within the budget (spend it all)."""
        for name in [self.levels[i] for i in self.rng.permutation(len(self.levels))]:
            if name in self._movable(config, 1):
                stepped = self._step(config, name, 1)
                if self.feasible(stepped):
                    config = stepped
        return config

    def level_switch(self, config: Config, switches: int | None = None) -> Config | None:
        """A child of `config`, other than it, inside the budget after `switches` level switches (None: none found).

        Each switch steps one random layer down and another up, then `_settle`s; a switch
        that cannot get back inside the budget, or a child equal to `config`, is tried again
        (up to 20 times).
        """
        if switches is None:
            switches = int(min(self.rng.integers(1, 4), self.rng.integers(1, 4)))
        for _attempt in range(20):
            child: Config | None = config
            for _ in range(switches):
                child = self._switch(child)
                if child is None:
                    break
            if child is not None and child != config:
                return child
        return None

    def _switch(self, config: Config) -> Config | None:
        downs = self._movable(config, -1)
        if not downs:
            return None
        down = downs[int(self.rng.integers(len(downs)))]
        moved = self._step(config, down, -1)
        ups = self._movable(moved, 1, exclude=down)
        if ups:
            moved = self._step(moved, ups[int(self.rng.integers(len(ups)))], 1)
        return self._settle(moved)

    def start(self) -> Config | None:
        """A random config inside the budget: a random sample settled into it (None: none found)."""
        for _ in range(20):
            config = self._settle(self.space.sample(self.rng))
            if config is not None:
                return config
        return None

    def random_unseen(self, n: int, exclude: set[str] | None = None) -> list[Config]:
        """Up to `n` distinct unseen random configs inside the budget (`start`), not in `exclude`."""
        exclude = set() if exclude is None else exclude
        out: list[Config] = []
        keys: set[str] = set()
        for _ in range(20 * n + 50):
            if len(out) >= n:
                break
            config = self.start()
            if config is None:
                continue
            key = self.space.key(config)
            if key not in keys and key not in exclude and not self.taken(key):
                keys.add(key)
                out.append(config)
        return out

    # -- the protocol --------------------------------------------------------------------
    def _value(self, evaluation: Evaluation) -> float:
        """The fitness of an evaluation in maximisation units (-inf when failed or lacking it)."""
        if not evaluation.ok or self.fitness.name not in evaluation.metrics:
            return -math.inf
        return -self.fitness.sign * float(evaluation.metrics[self.fitness.name])

    def _tell(self, told: list[Told]) -> None:
        for t in told:
            value = self._value(t.evaluation)
            if value > self.parent_value and self.inside(t.config, t.key):
                self.parent, self.parent_value = t.config, value

    def _ask(self, n: int) -> list[Config]:
        out: list[Config] = []
        keys: set[str] = set()

        def add(config: Config | None) -> bool:
            if config is None:
                return False
            key = self.space.key(config)
            if key in keys or self.taken(key) or not self.inside(config, key):
                return False
            keys.add(key)
            out.append(config)
            return True

        if self.parent is None:
            for config in self.initial:
                if len(out) < n:
                    add(config)
            for config in self.random_unseen(n - len(out), exclude=keys):
                add(config)
            if not out and not self.evaluations:
                raise ValueError(
                    f"evopress found no config inside the budget {self.budget} with tolerance {self.tolerance} "
                    f"({self.budget.metric} in [{self.lower:g}, {self.budget.value:g}]); raise 'tolerance'."
                )
            return out
        want = max(n, self.offspring) if self.screen is not None else n
        for _ in range(20 * want):
            if len(out) >= want:
                break
            add(self.level_switch(self.parent))
        if self.screen is not None and len(out) > n:
            out = self._select(out, n)
        return out[:n]

    def _select(self, children: list[Config], n: int) -> list[Config]:
        """Multi-step selection: score on growing fidelities, keep geometrically fewer, down to `n`."""
        steps = len(self.fidelities)
        for i, fidelity in enumerate(self.fidelities):
            keep = max(n, round(len(children) * (n / len(children)) ** (1 / (steps - i))))
            evaluations = list(self.screen(children, fidelity))
            if len(evaluations) != len(children):
                raise ValueError(f"the 'screen' function returned {len(evaluations)} evaluations for {len(children)} configs.")
            self.screened += fidelity * len(children)
            values = np.array([self._value(e) for e in evaluations])
            order = np.argsort(-values, kind="stable")[:keep]
            children = [children[j] for j in order]
        return children


def subset_screen(net: Any, data: Any = None, *, seed: int = 0, **evaluate_kwargs: Any) -> Screen:
    """A `screen` for `EvoPressSearcher`: `nas.evaluate` on a seeded `fidelity` fraction of the validation split.

    The subsets are nested prefixes of one seeded permutation, so a larger fidelity sees
    the samples of every smaller one, and the same fidelity always sees the same samples.

    Example:
        >>> from search_spaces.mlp import MLP
        >>> net = MLP(depths=(1,), widths=(16,), ranks=(4, 8))
        >>> screen = subset_screen(net)
        >>> [e.ok for e in screen([net.smallest()], 0.25)]
        [True]

    Args:
        net: the supernet.
        data: as `nas.data.resolve` takes it.
        seed: seed of the permutation that orders the validation samples.
        **evaluate_kwargs: passed to `nas.evaluate` (``metrics`` defaults to accuracy and loss).
    """
    data = resolve(net, data)
    size = len(data.val)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(int(seed))).tolist()
    subsets: dict[int, Data] = {}
    kwargs = {"metrics": ("accuracy", "loss"), **evaluate_kwargs}

    def screen(configs: list[Config], fidelity: float) -> list[Evaluation]:
        k = max(1, math.ceil(float(fidelity) * size))
        if k not in subsets:
            subsets[k] = data if k >= size else Data(data.train, Subset(data.val, order[:k]))
        return evaluate(net, configs, subsets[k], **kwargs)

    return screen
