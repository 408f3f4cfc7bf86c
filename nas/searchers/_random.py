"""Uniform random search over unseen configs."""

from __future__ import annotations

from nas.searchers._base import Searcher, register
from nas.space import Config


@register("random")
class RandomSearcher(Searcher):
    """Random search: each config drawn with `SearchSpace.sample`, never one already seen.

    The baseline every other searcher must beat ("Evaluating the Search Phase of NAS").

    Example:
        >>> from nas import Choice, SearchSpace
        >>> from nas.searchers import RandomSearcher
        >>> space = SearchSpace([Choice("width", [8, 16, 32]), Choice("op", ["conv", "sep"])])
        >>> searcher = RandomSearcher(space, ["accuracy:max", "params:min"], seed=0)
        >>> len(searcher.ask(4))
        4

    Args:
        space: the search space.
        objectives: objectives or their specs (``"accuracy:max"``).
        seed: seed of the random draws.
        cost: optional analytic metrics ``config -> dict`` (unused by random search itself).
    """

    def _ask(self, n: int) -> list[Config]:
        return self.random_unseen(n)
