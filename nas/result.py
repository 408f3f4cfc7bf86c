"""The outcome of a search: every evaluation, the Pareto front and its hypervolume over time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nas.evaluation import Evaluation
from nas.metrics import METRICS
from nas.pareto import Constraint, Infeasible, Objective, RunningFront, feasible, hypervolume, pareto_front, pick
from nas.rundir import RunDir
from nas.space import SearchSpace


@dataclass
class SearchResult:
    """What `nas.search` returns.

    Attributes:
        evaluations: every `Evaluation`, failed ones included, in the order evaluated.
        objectives: the objectives searched.
        space: the search space.
        reference: the hypervolume reference point, in the objectives' units.
        hypervolume_history: ``(evaluations so far, hypervolume)`` after each batch.
        run: the run directory, when the search had one.
        constraints: the search's hard bounds on costs; the front, the hypervolume and
            `pick` hold only the evaluations that meet them.
    """

    evaluations: list[Evaluation]
    objectives: list[Objective]
    space: SearchSpace
    reference: dict[str, float]
    hypervolume_history: list[tuple[int, float]] = field(default_factory=list)
    run: Path | None = None
    constraints: list[Constraint] = field(default_factory=list)

    @property
    def feasible(self) -> list[Evaluation]:
        """The ok evaluations that meet the constraints (by their own metrics)."""
        return feasible(self.evaluations, self.constraints)

    @property
    def front(self) -> list[Evaluation]:
        """The Pareto-optimal evaluations among the feasible ones, sorted by the first objective."""
        return pareto_front(self.feasible, self.objectives)

    @property
    def hypervolume(self) -> float:
        """Hypervolume of the front against `reference`."""
        front = self.front
        return hypervolume(front, self.reference, self.objectives) if front else 0.0

    def pick(self, how: str = "knee") -> Evaluation:
        """One feasible evaluation: ``"knee"`` of the front, ``"best:accuracy"`` or more constraints like ``"params<=5000"``.

        The search's constraints always hold; `Infeasible` (one line) when no evaluation meets them.
        """
        if self.constraints and not self.feasible:
            raise Infeasible(self.infeasible_line())
        return pick(self.feasible if self.constraints else self.evaluations, self.objectives, how)

    def infeasible_line(self) -> str:
        """The one line saying that no ok evaluation meets the constraints."""
        ok = sum(e.ok for e in self.evaluations)
        return f"No feasible evaluation: none of the {ok} ok evaluations meets the constraints {[str(c) for c in self.constraints]}."

    def table(self, limit: int = 12) -> str:
        """The front as a short text table."""
        front = self.front
        metrics = [o.name for o in self.objectives]
        extra = [m for m in METRICS if m != "loss" and m not in metrics and front and m in front[0].metrics]
        columns = metrics + extra
        rows = [[_fmt(e.metrics.get(c)) for c in columns] for e in front[:limit]]
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
        if len(front) > limit:
            lines.append(f"... {len(front) - limit} more on the front")
        return "\n".join(lines)

    def summary(self) -> str:
        """A few lines: counts, hypervolume, the front table and where the files are."""
        failed = sum(not e.ok for e in self.evaluations)
        head = f"{len(self.evaluations)} evaluations ({failed} failed), {len(self.front)} on the Pareto front, hypervolume {self.hypervolume:.4g}"
        where = f"\nrun directory: {self.run}" if self.run else ""
        if self.constraints:
            head += f"\nconstraints: {', '.join(str(c) for c in self.constraints)} ({len(self.feasible)} feasible)"
            if not self.feasible:
                return f"{head}\n{self.infeasible_line()}{where}"
        return f"{head}\n{self.table()}{where}"


def hypervolume_history(
    evaluations: Sequence[Evaluation], objectives: Sequence[Objective], reference: dict[str, float], batches: Sequence[int],
    constraints: Sequence[Constraint] = (),
) -> list[tuple[int, float]]:
    """Hypervolume of the front of the first n evaluations that meet `constraints`, for each n in `batches` (as the search saw them, batch by batch)."""
    front = RunningFront(objectives, reference, constraints=constraints)
    start = 0
    for n in batches:
        front.add(evaluations[start:n], n)
        start = max(start, n)
    return front.history


def write_front(result: SearchResult) -> None:
    """Write the result's Pareto front, objectives, reference and hypervolume to front.json in its run directory."""
    front = [e.to_dict() for e in result.front]
    payload = {
        "objectives": [[o.name, o.direction] for o in result.objectives],
        "constraints": [str(c) for c in result.constraints],
        "reference": result.reference,
        "hypervolume": result.hypervolume,
        "front": front,
    }
    RunDir(result.run).write_front(payload)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.4g}"
