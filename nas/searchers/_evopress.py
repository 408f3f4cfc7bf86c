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
from nas.searchers._base import Constraints, CostFn, Told, register
from nas.searchers._budget import BudgetSearcher
from nas.searchers._operators import _repair as repair
from nas.space import Config, SearchSpace

Screen = Callable[[list[Config], float], Sequence[Evaluation]]


@register("evopress")
class EvoPressSearcher(BudgetSearcher):
    """Evolution whose mutations move compression between layers and keep the budget (EvoPress).

    Every dimension with several numeric values is a per-layer *level* (a rank, width,
    LoRA rank, kept-or-dropped flag or bit-width; values ordered cheapest first). The
    *budget* is the first upper-bound constraint (``"params<=50000"``); a config is inside
    it when it meets every constraint and its budget metric is at least ``(1 - tolerance)``
    times the bound, so every proposal it makes spends the budget. A level switch steps one layer
    down and another up, then keeps stepping random layers down (over the budget) or up
    (under it) until the config is inside again, and then up while it stays within the
    budget (so it spends what it can): where every step costs the same, the cost stays
    exactly equal (``tolerance=0``), otherwise within the tolerance. Each child takes
    ``min(u1, u2)`` switches, ``u1, u2`` uniform in 1..3.

    The search is a (1 + lambda) evolution on the first objective that `cost` does not give
    (the fitness, e.g. accuracy): the parent is the best told config that meets the
    constraints (of its chain, with restarts). The `initial` configs (the seeds: e.g. a
    uniform allocation, sensitivity priors, the `dp` solution) are proposed first, all of
    them, before any child; a seed only has to meet the constraints (it may spend less than
    the band), and since `best` is the best told config, the search never ends worse than
    its best seed on the data its evaluations measure. Then at every `ask(n)`, `offspring`
    distinct unseen children of the parent are made (random configs moved inside the budget
    while there is no parent); with a `screen` function they go through multi-step
    selection, scored at each of the growing `fidelities` (fractions of the calibration
    data) and cut geometrically from `offspring` to ``n`` survivors, so most children cost a
    fraction of one evaluation; without one, ``n`` children are proposed as they come. With
    `patience`, the search restarts when that many children in a row have not improved the
    parent: the best seed it has not started from becomes the parent (a new chain; once
    every seed has had one, the best told config), so a seed that is a local optimum (a `dp`
    solution no mutation improves) does not hold the rest of the evaluations; the answer is
    still `best`, the best told config. `spent` counts the evaluations in full-evaluation
    equivalents (told ones plus the screening) and `ask_cost(n)` bounds what the next ask
    spends, so a caller can keep to an evaluation budget. State is the told evaluations (and
    a deterministic `screen`), so a seeded run resumes exactly.

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
        initial: configs to evaluate first, each meeting the constraints (else `ValueError`).
        jump: the probability that a child is a `level_jump` (one layer to any level) rather
            than a `level_switch` (0: level switches only, as in EvoPress).
        patience: restart from the next seed after this many told children in a row that do
            not improve the parent (None: never, as in EvoPress).
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
        jump: float = 0.0,
        patience: int | None = None,
        seed: int | None = None,
        cost: CostFn | None = None,
    ) -> None:
        super().__init__(space, objectives, seed=seed, cost=cost, constraints=constraints)
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
        self.tolerance = float(tolerance)
        self.offspring = offspring
        self.screen = screen
        if isinstance(jump, bool) or not isinstance(jump, (int, float)) or not 0 <= jump <= 1:
            raise ValueError(f"The 'jump' parameter must be a probability in [0, 1], got {jump!r}.")
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
            raise ValueError(f"The 'patience' parameter must be None or an int >= 1, got {patience!r}.")
        self.fidelities = fidelities
        self.jump = float(jump)
        self.patience = patience
        self.initial = [space.validate(c) for c in initial]
        for config in self.initial:
            if not self.feasible(config):
                raise ValueError(
                    f"The 'initial' parameter has a config that breaks the constraints {[str(c) for c in self.constraints]}: "
                    f"{config} ({self.budget.metric}={self.cost_of(config)[self.budget.metric]:g})."
                )
        self._conditional = any(d.when is not None for d in space.dimensions)
        self.levels = [d.name for d in space.dimensions if d.kind is not str and len(d.values) > 1]
        self._require_levels(self.levels)
        self.lower = self.budget.value * (1 - self.tolerance)
        self.useful = self._useful_levels()
        self.parent: Config | None = None
        self.parent_value = -math.inf  # fitness in maximisation units
        self.best: Config | None = None  # the best told config meeting the constraints, over every chain
        self.best_value = -math.inf
        self._seed_keys = {space.key(c) for c in self.initial}
        self._seeds: dict[str, tuple[Config, float]] = {}  # told seeds: key -> (config, fitness)
        self._started: set[str] = set()  # the seeds a chain has started from
        self._stall = 0  # told children since the parent last improved
        self.restarts: list[int] = []  # after how many told evaluations each restart came
        self.screened = 0.0  # configs screened, in full evaluations (sum of fidelities)

    # -- the budget ----------------------------------------------------------------------
    def inside(self, config: Config, key: str | None = None) -> bool:
        """Whether `config` meets every constraint and spends at least ``(1 - tolerance)`` of the budget."""
        return self.feasible(config, key) and self.cost_of(config, key)[self.budget.metric] >= self.lower - 1e-9 * abs(self.lower)

    def _useful_levels(self) -> dict[str, list[int]]:
        """Per level dimension, the indices of its values that some larger value does not dominate.

        A value is dominated when a larger one costs no more in the budget metric, measured
        on the largest config with only that layer changed (a low-rank layer at half rank or
        more costs as much as the dense one, so stepping down to it saves nothing): level
        steps pass over such values. Without any, every value is a level.
        """
        base = self.space.largest()
        metric = self.budget.metric
        parents = {d.when[0] for d in self.space.dimensions if d.when is not None}
        useful: dict[str, list[int]] = {}
        for name in self.levels:
            values = self.space[name].values
            if name not in base or name in parents:  # others depend on it: its cost is not its own
                useful[name] = list(range(len(values)))
                continue
            costs = [self.cost_of(self.space.validate({**base, name: v}))[metric] for v in values]
            keep = [j for j in range(len(values)) if all(costs[k] > costs[j] for k in range(j + 1, len(values)))]
            useful[name] = keep if len(keep) > 1 else list(range(len(values)))
        return useful

    def _target(self, name: str, value: Any, step: int) -> int | None:
        """The index of the next useful level of `name` above (`step` 1) or below (-1) `value` (None: none)."""
        index = self.space[name].index(value)
        ahead = [j for j in self.useful[name] if (j > index if step > 0 else j < index)]
        if not ahead:
            return None
        return ahead[0] if step > 0 else ahead[-1]

    def _step(self, config: Config, name: str, step: int) -> Config:
        dim = self.space[name]
        out = dict(config)
        target = self._target(name, config[name], step)
        assert target is not None  # only _movable layers are stepped
        out[name] = dim.values[target]
        return repair(self.space, out, self.rng) if self._conditional else out

    def _movable(self, config: Config, step: int, exclude: str | None = None) -> list[str]:
        return [n for n in self.levels if n in config and n != exclude and self._target(n, config[n], step) is not None]

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
                child = self._switch(child) if child is not None else None
            if child is not None and child != config:
                return child
        return None

    def mutate(self, config: Config) -> Config | None:
        """A child of `config`: with probability `jump` a `level_jump`, else a `level_switch`."""
        if self.jump and self.rng.random() < self.jump:
            return self.level_jump(config)
        return self.level_switch(config)

    def level_jump(self, config: Config) -> Config | None:
        """A child of `config`, other than it, inside the budget: one random layer set to a random other useful
        level, then `_settle`d (other layers stepped one level at a time until it is inside; None: none found).

        A larger move than a level switch: where a layer's accuracy falls steeply just below
        its top level (a low-rank layer just under the dense cost), only a jump of several
        levels frees enough of the budget to be worth spending elsewhere.
        """
        for _attempt in range(20):
            name = self.levels[int(self.rng.integers(len(self.levels)))]
            if name not in config:
                continue
            index = self.space[name].index(config[name])
            others = [j for j in self.useful[name] if j != index]
            if not others:
                continue
            moved = dict(config)
            moved[name] = self.space[name].values[others[int(self.rng.integers(len(others)))]]
            if self._conditional:
                moved = repair(self.space, moved, self.rng)
            child = self._settle(moved)
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
    @property
    def spent(self) -> float:
        """Evaluations spent so far, in full-evaluation equivalents: those told plus the screening."""
        return len(self.evaluations) + self.screened

    def ask_cost(self, n: int = 1) -> float:
        """The most the next `ask(n)` spends, in full-evaluation equivalents (`n`, plus screening its offspring)."""
        seeds = sum(not self.taken(self.space.key(c)) for c in self.initial)
        children = n - min(seeds, n)
        if not children or self.screen is None or self.parent is None:
            return float(n)
        return n + sum(f * k for f, k in zip(self.fidelities, self._schedule(max(children, self.offspring), children)))

    def _tell(self, told: list[Told]) -> None:
        for i, t in enumerate(told):
            value = self._value(t.evaluation)
            ok = self.feasible(t.config, t.key)
            if ok and value > self.best_value:
                self.best, self.best_value = t.config, value
            if t.key in self._seed_keys:  # a seed: the first chain starts from the best of them
                if ok and math.isfinite(value):
                    self._seeds[t.key] = (t.config, value)
                if ok and value > self.parent_value:
                    self.parent, self.parent_value = t.config, value
                    self._started = {t.key}
                continue
            if ok and value > self.parent_value:
                self.parent, self.parent_value, self._stall = t.config, value, 0
            else:
                self._stall += 1
            if self.patience is not None and self._stall >= self.patience:
                self._restart(len(self.evaluations) - len(told) + i + 1)

    def _restart(self, at: int) -> None:
        """A new chain: from the best seed none has started from, else from the best told config."""
        fresh = [(value, key) for key, (_, value) in self._seeds.items() if key not in self._started]
        if fresh:
            value, key = max(fresh)
            self._started.add(key)
            self.parent, self.parent_value = self._seeds[key][0], value
        else:
            self.parent, self.parent_value = self.best, self.best_value
        self._stall = 0
        self.restarts.append(at)

    def _ask(self, n: int) -> list[Config]:
        out: list[Config] = []
        keys: set[str] = set()

        def add(config: Config | None, to: list[Config], seed: bool = False) -> bool:
            if config is None:
                return False
            key = self.space.key(config)
            if key in keys or self.taken(key) or not (self.feasible(config, key) if seed else self.inside(config, key)):
                return False
            keys.add(key)
            to.append(config)
            return True

        for config in self.initial:  # the seeds first, all of them, whatever the parent
            if len(out) < n:
                add(config, out, seed=True)
        if len(out) == n:
            return out
        if self.parent is None:
            for config in self.random_unseen(n - len(out), exclude=keys):
                add(config, out)
            if not out and not self.evaluations:
                raise ValueError(
                    f"evopress found no config inside the budget {self.budget} with tolerance {self.tolerance} "
                    f"({self.budget.metric} in [{self.lower:g}, {self.budget.value:g}]); raise 'tolerance'."
                )
            return out
        need = n - len(out)
        want = max(need, self.offspring) if self.screen is not None else need
        children: list[Config] = []
        for _ in range(20 * want):
            if len(children) >= want:
                break
            add(self.mutate(self.parent), children)
        if self.screen is not None and len(children) > need:
            children = self._select(self.screen, children, need)
        return out + children[:need]

    def _schedule(self, m: int, n: int) -> list[int]:
        """How many of `m` children are screened at each fidelity when `n` survive (cut geometrically)."""
        counts = []
        for i in range(len(self.fidelities)):
            counts.append(m)
            m = max(n, round(m * (n / m) ** (1 / (len(self.fidelities) - i))))
        return counts

    def _select(self, screen: Screen, children: list[Config], n: int) -> list[Config]:
        """Multi-step selection: score on growing fidelities, keep geometrically fewer, down to `n`."""
        counts = self._schedule(len(children), n)[1:] + [n]
        for fidelity, keep in zip(self.fidelities, counts):
            evaluations = list(screen(children, fidelity))
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
