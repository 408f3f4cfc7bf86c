"""The `Searcher` protocol: ``ask(n) -> list[Config]`` and ``tell(evaluations)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np

from nas.evaluation import Evaluation
from nas.pareto import Constraint, InvalidConstraint, MissingMetric, Objective, parse_objectives
from nas.registry import SEARCHERS
from nas.searchers._operators import _repair as repair
from nas.space import Config, SearchSpace

CostFn = Callable[[Config], Mapping[str, float]]
Constraints = Sequence[Constraint | str] | str | Constraint | None
_UPPER = ("<=", "<")
_LOWER = (">=", ">")
_ENUMERATE_LIMIT = 100_000  # configs walked for feasible ones before giving up


class Told(NamedTuple):
    """A told evaluation with its config validated (plain values) and its `SearchSpace.key`."""

    evaluation: Evaluation
    config: Config
    key: str


class Searcher:
    """Proposes configs to evaluate and learns from their evaluations.

    A searcher's whole state is rebuilt from the evaluations it is told: to resume a run,
    build a new searcher and `tell` it every stored evaluation (nothing is pickled). The
    base class guarantees that no config is proposed twice: `ask` never returns a config
    already told or still pending (asked, not yet told), and returns fewer configs than
    asked (possibly none) once the space is used up.

    A subclass implements `_ask(n)` (up to ``n`` configs; the base drops repeats and fills
    the rest with random unseen configs) and optionally `_tell(told)` (a list of `Told`). It uses
    `self.rng` (re-seeded at every `ask` from the seed and the number of evaluations told,
    so a resumed run proposes what the uninterrupted one would have), `self.taken(key)`
    and `self.objective_values(evaluations)`.

    Example:
        >>> from nas import Choice, Evaluation, SearchSpace
        >>> from nas.searchers import RandomSearcher
        >>> space = SearchSpace([Choice("width", [8, 16, 32])])
        >>> searcher = RandomSearcher(space, ["accuracy:max"], seed=0)
        >>> configs = searcher.ask(2)
        >>> searcher.tell([Evaluation(c, {"accuracy": c["width"] / 32}) for c in configs])
        >>> len(searcher.ask(5))  # only one config is left
        1

    Args:
        space: the search space.
        objectives: `Objective` objects or specs such as ``"accuracy:max"``, ``"params:min"``.
        seed: seed of every random choice; equal seeds and evaluations give equal proposals.
        cost: optional ``config -> {metric: value}`` giving analytic metrics (params, MACs,
            table latency). Searchers compute these metrics with it and never predict them;
            they also fill objectives missing from a told evaluation's metrics.
        constraints: hard bounds on `cost` metrics, e.g. ``["params<=50000", "latency_ms<=2"]``
            (or one comma-separated string): a config that breaks one is never asked. Checked
            up front: each metric must be one `cost` gives, and the smallest (for upper
            bounds) or largest (lower bounds) subnet must meet it, else `InvalidConstraint`.
    """

    name: ClassVar[str] = ""

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective | str | tuple[str, str]] | str,
        *,
        seed: int | None = None,
        cost: CostFn | None = None,
        constraints: Constraints = None,
    ) -> None:
        if not isinstance(space, SearchSpace):
            raise TypeError(f"The 'space' parameter must be a SearchSpace, got {type(space).__name__}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"The 'seed' parameter must be None or an int >= 0, got {seed!r}.")
        if cost is not None and not callable(cost):
            raise TypeError(f"The 'cost' parameter must be None or a callable config -> dict, got {cost!r}.")
        self.space = space
        self.objectives: list[Objective] = parse_objectives(objectives)
        self.seed = seed
        self.cost = cost
        self.evaluations: list[Evaluation] = []
        self._rng: np.random.Generator | None = None
        self._entropy = int(seed) if seed is not None else int(np.random.SeedSequence().entropy)
        self._signs = np.array([o.sign for o in self.objectives])
        self._told: set[str] = set()
        self._pending: set[str] = set()
        self._size = space.size()
        self._cost_names: frozenset[str] | None = None
        self._costs: dict[str, dict[str, float]] = {}
        self.constraints: list[Constraint] = parse_constraints(constraints)
        if self.constraints:
            self._check_constraints()

    # -- the protocol --------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Config]:
        """Up to `n` new configs, none told or pending; fewer when the space runs out."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"The 'n' parameter of ask() must be an int >= 0, got {n!r}.")
        n = min(int(n), self.remaining())
        if n == 0:
            return []
        self._rng = None  # re-seeded on first use, from the seed and the history's length
        out: list[Config] = []
        keys: list[str] = []
        seen: set[str] = set()
        for config in self._ask(n)[:n]:
            config = self.space.canonical(self.space.validate(config))  # one config per subnet
            key = self.space.key(config)
            if key in seen or self.taken(key) or not self.feasible(config, key):
                continue
            seen.add(key)
            keys.append(key)
            out.append(config)
        if len(out) < n:
            for config in self.random_unseen(n - len(out), exclude=seen):
                key = self.space.key(config)
                seen.add(key)
                keys.append(key)
                out.append(config)
        self._pending |= seen
        self._on_asked(out, keys)
        return out

    def tell(self, evaluations: Iterable[Evaluation]) -> None:
        """Record finished evaluations (ok or failed), in order; they are never proposed again."""
        new = []
        for ev in evaluations:  # check them all before recording any
            if not isinstance(ev, Evaluation):
                raise TypeError(f"tell() takes Evaluation objects, got {type(ev).__name__}.")
            config = self.space.validate(ev.config)
            new.append(Told(ev, config, self.space.key(config)))
        if not new:
            return
        for t in new:
            self._pending.discard(t.key)
            self._told.add(t.key)
        self.evaluations.extend(t.evaluation for t in new)
        self._tell(new)

    def resume(self, evaluations: Sequence[Evaluation], batches: Sequence[int]) -> None:
        """Rebuild the state of a stored search: its evaluations, and where each asked batch ends.

        A fresh searcher given a run's evaluations this way proposes next what the
        uninterrupted searcher would have. The default tells them all at once, which is
        exact for searchers whose state depends only on the told evaluations and their order;
        a searcher whose state also depends on how it was asked (a sampler's own random
        stream) replays the batches instead.
        """
        self.tell(evaluations)

    # -- hooks for subclasses ------------------------------------------------------------
    def _ask(self, n: int) -> list[Config]:
        """Up to `n` proposals; repeats are dropped and the shortfall is filled at random."""
        return []

    def _tell(self, told: list[Told]) -> None:
        """React to newly told evaluations (already appended to `self.evaluations`)."""

    def _on_asked(self, configs: list[Config], keys: list[str]) -> None:
        """Called with exactly the configs `ask` returns (after repeats were replaced) and their keys."""

    # -- helpers -------------------------------------------------------------------------
    @property
    def rng(self) -> np.random.Generator:
        """The random generator of the current `ask`, seeded by (seed, told, pending)."""
        if self._rng is None:
            self._rng = np.random.default_rng([self._entropy, len(self.evaluations), len(self._pending)])
        return self._rng

    def remaining(self) -> int:
        """How many configs are neither told nor pending."""
        return self._size - len(self._told) - len(self._pending)

    def taken(self, key: str) -> bool:
        """Whether the config with this `space.key` is told or pending."""
        return key in self._told or key in self._pending

    def metrics(self, evaluation: Evaluation) -> dict[str, float]:
        """The evaluation's metrics, with objectives it lacks filled in by `cost`."""
        metrics = evaluation.metrics
        missing = [o.name for o in self.objectives if o.name not in metrics]
        if missing and self.cost is not None:
            metrics = {**self.cost(evaluation.config), **metrics}
            missing = [m for m in missing if m not in metrics]
        if missing:
            raise MissingMetric(
                f"The evaluation of {evaluation.config} has no metric {missing[0]!r} (it has "
                f"{sorted(evaluation.metrics)}) and no 'cost' function gives it."
            )
        return metrics

    def objective_values(self, evaluations: Sequence[Evaluation]) -> np.ndarray:
        """The n x k minimisation matrix of the evaluations' objectives (max ones negated)."""
        values = np.empty((len(evaluations), len(self.objectives)))
        for i, ev in enumerate(evaluations):
            metrics = self.metrics(ev)
            values[i] = [metrics[o.name] for o in self.objectives]
        return values * self._signs

    def cost_names(self) -> frozenset[str]:
        """The objectives that `cost` computes (so they are never predicted)."""
        if self._cost_names is None:
            if self.cost is None:
                self._cost_names = frozenset()
            else:
                given = self.cost(self.space.smallest())
                self._cost_names = frozenset(o.name for o in self.objectives if o.name in given)
        return self._cost_names

    # -- constraints ---------------------------------------------------------------------
    def cost_of(self, config: Config, key: str | None = None) -> dict[str, float]:
        """`cost(config)`, computed once per config (empty without a `cost` function)."""
        if self.cost is None:
            return {}
        key = self.space.key(config) if key is None else key
        row = self._costs.get(key)
        if row is None:
            row = self._costs[key] = {k: float(v) for k, v in self.cost(config).items()}
        return row

    def feasible(self, config: Config, key: str | None = None) -> bool:
        """Whether `config` meets every constraint (always, without constraints)."""
        if not self.constraints:
            return True
        metrics = self.cost_of(config, key)
        return all(c.holds(metrics) for c in self.constraints)

    def violations(self, config: Config, key: str | None = None) -> list[float]:
        """One value per constraint, <= 0 where it holds (Optuna's convention), relative to the bound."""
        metrics = self.cost_of(config, key)
        return [constraint_violation(c, metrics[c.metric]) for c in self.constraints]

    def violation(self, config: Config, key: str | None = None) -> float:
        """The total relative amount by which `config` breaks the constraints (0: feasible)."""
        return float(sum(max(0.0, v) for v in self.violations(config, key))) if self.constraints else 0.0

    def _check_constraints(self) -> None:
        """Every constraint on a `cost` metric, and met by the smallest (or largest) subnet."""
        shown = [str(c) for c in self.constraints]
        if self.cost is None:
            raise InvalidConstraint(
                f"The 'constraints' parameter {shown} needs a 'cost' function that computes the "
                "constrained metrics without evaluation."
            )
        small, large = self.cost_of(self.space.smallest()), self.cost_of(self.space.largest())
        for c in self.constraints:
            if c.metric not in small:
                raise InvalidConstraint(
                    f"The constraint {str(c)!r} is on metric {c.metric!r}, which is not known before "
                    f"evaluation; constrain one of the cost metrics {sorted(small)}."
                )
            low, high = sorted((small[c.metric], large[c.metric]))
            if c.op in _UPPER and not c.holds({c.metric: low}) or c.op in _LOWER and not c.holds({c.metric: high}) or (
                c.op == "==" and not low <= c.value <= high
            ):
                raise InvalidConstraint(
                    f"The constraint {str(c)!r} cannot be met: {c.metric} ranges from {low:g} (smallest "
                    f"subnet) to {high:g} (largest subnet)."
                )

    def _toward_feasible(self, config: Config) -> Config | None:
        """`config` with random numeric dimensions stepped down (or up, for lower bounds) until feasible."""
        out = dict(config)
        for _ in range(sum(len(d.values) for d in self.space.dimensions)):
            metrics = self.cost_of(out)
            broken = [c for c in self.constraints if not c.holds(metrics)]
            if not broken:
                return out
            step = 1 if broken[0].op in _LOWER else -1
            movable = [
                d for d in self.space.dimensions
                if d.name in out and d.kind is not str and 0 <= d.index(out[d.name]) + step < len(d.values)
            ]
            if not movable:
                return None
            dim = movable[int(self.rng.integers(len(movable)))]
            out[dim.name] = dim.values[dim.index(out[dim.name]) + step]
            out = repair(self.space, out, self.rng)
        return None

    def random_unseen(self, n: int, exclude: set[str] | None = None) -> list[Config]:
        """Up to `n` distinct random feasible configs that are not told, pending or in `exclude`.

        With constraints, a random config that breaks one is moved toward feasibility
        (numeric dimensions stepped down for upper bounds) before it is dropped.
        """
        exclude = set() if exclude is None else exclude
        out: list[Config] = []
        keys: set[str] = set()

        def fresh(config: Config | None) -> bool:
            if config is None:
                return False
            config = self.space.canonical(config)
            key = self.space.key(config)
            if key in keys or key in exclude or self.taken(key) or not self.feasible(config, key):
                return False
            keys.add(key)
            out.append(config)
            return True

        tries = 20 * n + 50
        while len(out) < n and tries > 0:
            tries -= 1
            config = self.space.sample(self.rng)
            if not fresh(config) and self.constraints and not self.feasible(config):
                fresh(self._toward_feasible(config))
        if len(out) < n:  # nearly used up: walk the space in a random order instead
            limit = _ENUMERATE_LIMIT if self.constraints else None
            for i, config in enumerate(self.space.enumerate(self.rng)):
                if fresh(config) and len(out) == n or limit is not None and i >= limit:
                    break
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(objectives={[str(o) for o in self.objectives]}, "
            f"told={len(self.evaluations)}, pending={len(self._pending)})"
        )


def parse_constraints(constraints: Constraints) -> list[Constraint]:
    """Constraints from `Constraint` objects or text (a list, or one comma-separated string).

    Example:
        >>> [str(c) for c in parse_constraints("params<=50000, latency_ms<=2")]
        ['params<=50000', 'latency_ms<=2']
    """
    if constraints is None:
        return []
    if isinstance(constraints, (str, Constraint)):
        constraints = [constraints] if isinstance(constraints, Constraint) else [c for c in constraints.split(",") if c.strip()]
    if not isinstance(constraints, Sequence):
        raise InvalidConstraint(
            f"The 'constraints' parameter must be a list of constraints such as ['params<=50000'], got {constraints!r}."
        )
    return [c if isinstance(c, Constraint) else Constraint.parse(c) for c in constraints]


def constraint_violation(constraint: Constraint, value: float) -> float:
    """How far `value` is from meeting `constraint`, relative to its bound: <= 0 where it holds.

    Example:
        >>> constraint_violation(Constraint.parse("params<=100"), 150)
        0.5
    """
    scale = max(abs(constraint.value), 1e-12)
    if constraint.op in _UPPER:
        gap = (value - constraint.value) / scale
    elif constraint.op in _LOWER:
        gap = (constraint.value - value) / scale
    else:
        gap = abs(value - constraint.value) / scale
    if not constraint.holds({constraint.metric: value}):
        gap = max(gap, 1e-12)  # a strict bound met with equality is still broken
    return float(gap)


register = SEARCHERS.register


def names() -> list[str]:
    """The registered searcher names, sorted.

    Example:
        >>> import nas.searchers
        >>> nas.searchers.names()
        ['dp', 'evolution', 'evopress', 'guided', 'optuna', 'random']
    """
    return SEARCHERS.names()


def get(name: str, space: SearchSpace, objectives: Any, **kwargs: Any) -> Searcher:
    """A new searcher by registered name.

    Example:
        >>> import nas.searchers
        >>> from nas import Choice, SearchSpace
        >>> space = SearchSpace([Choice("width", [8, 16, 32])])
        >>> nas.searchers.get("evolution", space, ["accuracy:max"], population_size=8, seed=0)
        EvolutionSearcher(objectives=['accuracy:max'], told=0, pending=0)

    Args:
        name: one of `names()`.
        space: the search space.
        objectives: objectives or their specs (``"accuracy:max"``).
        **kwargs: the searcher's other constructor arguments (``seed``, ``cost``, ...).
    """
    if "budget" in kwargs and "budget" not in inspect.signature(SEARCHERS.lookup(name)).parameters:
        kwargs.pop("budget")  # only searchers that plan around the budget take it
    return SEARCHERS.build(name, space, objectives, **kwargs)
