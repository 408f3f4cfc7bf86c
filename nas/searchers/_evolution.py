"""NSGA-II over configs: our own multi-objective evolution."""

from __future__ import annotations

import numpy as np

from nas.searchers._base import Constraints, CostFn, Searcher, Told, register
from nas.searchers._operators import crossover, mutate, rank_and_crowding, select, tournament
from nas.space import Config, SearchSpace


@register("evolution")
class EvolutionSearcher(Searcher):
    """Multi-objective evolution (NSGA-II) over configs, with condition-aware operators.

    The first generation is random. Evaluations are grouped into generations of
    `population_size` in the order they are told; after each generation, the population
    is the NSGA-II survivors of the old population plus the new generation (whole fronts,
    then the least crowded). Offspring come from binary tournaments on (rank, crowding
    distance), uniform `crossover` and per-dimension `mutate`; a child already seen is
    mutated again, up to `max_retries` times, and then replaced by a random unseen config.
    Failed evaluations take part in no selection. Since the state depends only on the told
    evaluations and their order, a resumed search with a seed continues exactly.

    With `constraints`, a child that breaks one is never proposed (it is retried like a
    repeat), and survival uses Deb's constrained domination: feasible configs first (by
    NSGA-II), then the told configs that break a constraint (a run resumed with a tighter
    budget than its stored evaluations), least violation first.

    Example:
        >>> from nas import Choice, Evaluation, SearchSpace
        >>> from nas.searchers import EvolutionSearcher
        >>> space = SearchSpace([Choice("width", [8, 16, 32, 64]), Choice("op", ["conv", "sep"])])
        >>> searcher = EvolutionSearcher(space, ["accuracy:max", "params:min"], population_size=4, seed=0)
        >>> for _ in range(2):
        ...     configs = searcher.ask(4)
        ...     searcher.tell([Evaluation(c, {"accuracy": c["width"] / 64, "params": c["width"]}) for c in configs])
        >>> len(searcher.population)
        4

    Args:
        space: the search space.
        objectives: objectives or their specs (``"accuracy:max"``, ``"params:min"``).
        population_size: configs per generation and survivors kept; default: a tenth of
            `budget` between 8 and 50 (50 without a budget), so a search gets about ten
            generations and small budgets still evolve.
        budget: the expected number of evaluations (only sets the default population).
        crossover_prob: probability that a child is a crossover of two parents (else a
            copy of one) before mutation.
        mutation_rate: per-dimension mutation probability; ``None``: 1 / (active dimensions).
        max_retries: new tries for a child that is already seen, before a random config.
        seed: seed of every random choice.
        cost: optional analytic metrics ``config -> dict`` for objectives that evaluations lack.
        constraints: hard bounds on `cost` metrics (``["params<=50000"]``), see `Searcher`.
    """

    def __init__(
        self,
        space: SearchSpace,
        objectives,
        *,
        population_size: int | None = None,
        budget: int | None = None,
        crossover_prob: float = 0.9,
        mutation_rate: float | None = None,
        max_retries: int = 20,
        seed: int | None = None,
        cost: CostFn | None = None,
        constraints: Constraints = None,
    ) -> None:
        super().__init__(space, objectives, seed=seed, cost=cost, constraints=constraints)
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
            raise ValueError(f"The 'budget' parameter must be None or an int >= 1, got {budget!r}.")
        if population_size is None:
            population_size = min(50, max(8, budget // 10)) if budget else 50
        if isinstance(population_size, bool) or not isinstance(population_size, int) or population_size < 2:
            raise ValueError(f"The 'population_size' parameter must be an int >= 2, got {population_size!r}.")
        if not (isinstance(crossover_prob, (int, float)) and 0 <= crossover_prob <= 1):
            raise ValueError(f"The 'crossover_prob' parameter must be a number in [0, 1], got {crossover_prob!r}.")
        if mutation_rate is not None and not (isinstance(mutation_rate, (int, float)) and 0 < mutation_rate <= 1):
            raise ValueError(f"The 'mutation_rate' parameter must be None or a number in (0, 1], got {mutation_rate!r}.")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"The 'max_retries' parameter must be an int >= 0, got {max_retries!r}.")
        self.population_size = population_size
        self.budget = budget
        self.crossover_prob = crossover_prob
        self.mutation_rate = mutation_rate
        self.max_retries = max_retries
        self.population: list[Config] = []
        self._values = np.zeros((0, len(self.objectives)))
        self._rank = np.zeros(0, dtype=int)
        self._crowd = np.zeros(0)
        self._generation: list[Told] = []

    def _tell(self, told: list[Told]) -> None:
        for t in told:
            self._generation.append(t)
            if len(self._generation) == self.population_size:
                self._next_generation()

    def _next_generation(self) -> None:
        ok = [t for t in self._generation if t.evaluation.ok]
        self._generation = []
        if not ok:
            return
        configs = self.population + [t.config for t in ok]
        values = np.vstack([self._values, self.objective_values([t.evaluation for t in ok])])
        violation = np.array([self.violation(c) for c in configs])
        keep = constrained_select(values, violation, self.population_size)
        self.population = [configs[i] for i in keep]
        self._values = values[keep]
        self._rank, self._crowd = rank_and_crowding(self._values)
        broken = violation[keep] > 0
        if broken.any():  # Deb's rule: every feasible rank beats any violation, then less violation wins
            order = np.argsort(np.argsort(violation[keep][broken], kind="stable"), kind="stable")
            self._rank[broken] = self._rank[~broken].max(initial=-1) + 1 + order

    def _ask(self, n: int) -> list[Config]:
        if not self.population:
            return self.random_unseen(n)
        rng, space = self.rng, self.space
        out: list[Config] = []
        keys: set[str] = set()
        for _ in range(n):
            for attempt in range(self.max_retries + 1):
                a, b = tournament(self._rank, self._crowd, 2, rng)
                pa, pb = self.population[a], self.population[b]
                child = crossover(space, pa, pb, rng) if rng.random() < self.crossover_prob else pa
                # later tries mutate harder, to leave a well-explored neighbourhood
                rate = self.mutation_rate
                if attempt:
                    rate = min(1.0, (rate or 1.0 / max(1, len(child))) * (1 + attempt))
                child = mutate(space, child, rng, rate)
                key = space.key(child)
                if key not in keys and not self.taken(key) and self.feasible(child, key):
                    keys.add(key)
                    out.append(child)
                    break
        return out


def constrained_select(values: np.ndarray, violation: np.ndarray, k: int) -> np.ndarray:
    """Indices of `k` survivors by Deb's rule: feasible rows by NSGA-II survival, then the least violating.

    Example:
        >>> values = np.array([[0.0, 1.0], [1.0, 0.0], [-5.0, -5.0]])
        >>> constrained_select(values, np.array([0.0, 0.0, 0.3]), 2).tolist()
        [0, 1]
    """
    feasible = np.flatnonzero(violation <= 0)
    if len(feasible) >= k:
        return feasible[select(values[feasible], k)]
    broken = np.flatnonzero(violation > 0)
    broken = broken[np.argsort(violation[broken], kind="stable")]
    return np.concatenate([feasible, broken[: k - len(feasible)]])
