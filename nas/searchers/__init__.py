"""Searchers: who proposes the configs to evaluate.

Every searcher implements the `Searcher` protocol, ``ask(n) -> list[Config]`` and
``tell(evaluations)``, and is registered by name for specs and the command line:

    >>> import nas.searchers
    >>> nas.searchers.names()
    ['evolution', 'guided', 'optuna', 'random']
"""

from nas.searchers._base import Searcher, Told, get, names, register
from nas.searchers._evolution import EvolutionSearcher
from nas.searchers._guided import GuidedSearcher
from nas.searchers._operators import crossover, crowding_distance, mutate
from nas.searchers._optuna import OptunaSearcher
from nas.searchers._random import RandomSearcher

__all__ = [
    "EvolutionSearcher",
    "GuidedSearcher",
    "OptunaSearcher",
    "RandomSearcher",
    "Searcher",
    "Told",
    "crossover",
    "crowding_distance",
    "get",
    "mutate",
    "names",
    "register",
]
