"""What the allocation searchers (`dp`, `evopress`) share: a budget, a fitness and per-layer levels."""

from __future__ import annotations

import math

from nas.evaluation import Evaluation
from nas.pareto import Constraint, InvalidConstraint, Objective
from nas.searchers._base import Constraints, CostFn, Searcher
from nas.space import SearchSpace


class BudgetSearcher(Searcher):
    """A searcher that allocates per-layer levels under a budget, selecting on one fitness.

    The *budget* is the first upper-bound constraint (``"params<=50000"``); the *fitness*
    is the first objective that `cost` does not give (e.g. accuracy or loss). Both are
    checked up front, with one line naming the searcher and what it was given.

    Example:
        >>> from nas import Choice, SearchSpace
        >>> from nas.searchers import DPSearcher
        >>> space = SearchSpace([Choice("l0", [1, 2]), Choice("l1", [1, 2])])
        >>> searcher = DPSearcher(space, ["loss:min", "params:min"], cost=lambda c: {"params": c["l0"] + c["l1"]},
        ...                       constraints=["params<=3"])
        >>> str(searcher.budget), searcher.fitness.name
        ('params<=3', 'loss')
    """

    def __init__(
        self,
        space: SearchSpace,
        objectives,
        *,
        constraints: Constraints = None,
        seed: int | None = None,
        cost: CostFn | None = None,
    ) -> None:
        super().__init__(space, objectives, seed=seed, cost=cost, constraints=constraints)
        budget = next((c for c in self.constraints if c.op in ("<=", "<")), None)
        if budget is None:
            raise InvalidConstraint(
                f"The 'constraints' parameter of {self.name} needs a budget, an upper bound on a cost metric "
                f"such as 'params<=50000', got {[str(c) for c in self.constraints]}."
            )
        costed = self.cost_names()
        fitness = [o for o in self.objectives if o.name not in costed]
        if not fitness:
            raise ValueError(
                f"{self.name} needs an objective that 'cost' does not give (e.g. 'accuracy:max'), "
                f"got {[str(o) for o in self.objectives]}."
            )
        self.budget: Constraint = budget
        self.fitness: Objective = fitness[0]
        self._prepare()

    def _prepare(self) -> None:
        """What a subclass sets up once the budget and the fitness are known (default: nothing)."""

    def _require_levels(self, levels: list[str]) -> list[str]:
        """`levels`, or one clear line when the space has none."""
        if not levels:
            raise ValueError(f"{self.name} needs numeric dimensions with several values (per-layer levels); the space has none.")
        return levels

    def _value(self, evaluation: Evaluation) -> float:
        """The fitness of an evaluation in maximisation units (-inf when failed or lacking it)."""
        if not evaluation.ok or self.fitness.name not in evaluation.metrics:
            return -math.inf
        return -self.fitness.sign * float(evaluation.metrics[self.fitness.name])
