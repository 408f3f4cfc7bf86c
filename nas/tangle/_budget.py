"""A target budget such as ``params<=50000`` for a gradient search (HardCoRe-NAS spirit).

Two parts: a Lagrangian penalty ``lambda * (E[cost] / budget - 1)`` on the expected cost,
with ``lambda >= 0`` raised by dual ascent while the expected cost exceeds the budget (and
lowered when it is under), steers the architecture distribution below the budget; and the
recorded architecture is the *constrained* argmax: the most likely config (sum of log
probabilities) that meets the budget, found greedily, so the constraint holds at every
recorded architecture, not only in expectation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from nas.pareto import Constraint
from nas.space import Config, SearchSpace
from nas.tangle._arch import ArchParameters
from nas.tangle._layout import with_values

COST_METRICS = ("params", "macs", "latency_ms")


class Budget:
    """A hard upper bound on one cost metric, kept at the recorded architecture.

    Example:
        >>> from search_spaces.mlp import MLP
        >>> from nas.tangle import ArchParameters, Tangle, one_hot
        >>> net = MLP(depths=(1, 2), widths=(8, 16), ranks=(2, 4))
        >>> tangle = Tangle(net)
        >>> cost = lambda c: float(tangle.expected_cost(one_hot(net.space, c))["params"])
        >>> budget = Budget("params<=1000", cost, net.space)
        >>> arch = ArchParameters(net.space)
        >>> arch.load_config(net.largest())
        >>> budget.holds(budget.decode(arch))
        True

    Args:
        constraint: ``"metric<=value"`` (or ``<``) on ``params``, ``macs`` or ``latency_ms``.
        cost: ``config -> value`` of the metric (exact).
        space: the search space.
        step: the dual-ascent step of the penalty weight per architecture step.
    """

    def __init__(self, constraint: str | Constraint, cost: Callable[[Config], float], space: SearchSpace, step: float = 0.05):
        self.constraint = constraint if isinstance(constraint, Constraint) else Constraint.parse(constraint)
        if self.constraint.metric not in COST_METRICS or self.constraint.op not in ("<=", "<"):
            raise ValueError(
                f"The 'budget_constraint' parameter must bound one of {list(COST_METRICS)} from above "
                f"('params<=50000'), got {str(self.constraint)!r}."
            )
        if not self.constraint.value > 0:
            raise ValueError(f"The budget {str(self.constraint)!r} must be positive.")
        self.metric, self.value = self.constraint.metric, self.constraint.value
        self.cost, self.space, self.step = cost, space, step
        self.lam = 0.0
        smallest = cost(space.smallest())
        if not self.holds(space.smallest()):
            raise ValueError(f"no subnet meets {str(self.constraint)!r}: the smallest has {self.metric} {smallest:g}")

    def holds(self, config: Config) -> bool:
        """Whether `config` meets the budget."""
        return self.constraint.holds({self.metric: self.cost(config)})

    def penalty(self, expected: torch.Tensor) -> torch.Tensor:
        """``lambda * (expected / budget - 1)``, then one dual-ascent step on ``lambda``."""
        excess = expected / self.value - 1.0
        term = self.lam * excess
        self.lam = max(0.0, self.lam + self.step * float(excess.detach()))
        return term

    def decode(self, arch: ArchParameters) -> Config:
        """The most likely config under `arch` that meets the budget (greedy)."""
        logp = {n: torch.log_softmax(a.detach().double(), -1) for n, a in zip(arch.names, arch.alphas)}

        def score(config: Mapping) -> float:
            return float(sum(logp[n][self.space[n].index(v)] for n, v in config.items()))

        config = arch.argmax()
        cost = self.cost(config)
        while not self.holds(config):  # cheapest log-probability loss per unit of cost saved
            best, best_rate = None, float("inf")
            for name, value in config.items():
                for other in self.space[name].values:
                    if other == value:
                        continue
                    cand = self.space.validate(with_values(self.space, config, {name: other}))
                    saved = cost - self.cost(cand)
                    if saved > 0:
                        rate = max(score(config) - score(cand), 0.0) / saved
                        if rate < best_rate:
                            best, best_rate = cand, rate
            if best is None:
                return self.space.smallest()
            config, cost = best, self.cost(best)
        while True:  # then take back any single change that is more likely and still fits
            best, gain = None, 0.0
            for name in config:
                for other in self.space[name].values:
                    cand = self.space.validate(with_values(self.space, config, {name: other}))
                    delta = score(cand) - score(config)
                    if delta > gain + 1e-12 and self.holds(cand):
                        best, gain = cand, delta
            if best is None:
                return config
            config = best
