"""Searchers: who proposes the configs to evaluate.

Every searcher implements the `Searcher` protocol, ``ask(n) -> list[Config]`` and
``tell(evaluations)``, and is registered by name for specs and the command line:

    >>> import nas.searchers
    >>> nas.searchers.names()
    ['dp', 'evolution', 'evopress', 'guided', 'optuna', 'random']
"""

from nas.searchers._base import Searcher, Told, get, names, parse_constraints, register
from nas.searchers._dp import DPSearcher, allocate
from nas.searchers._evolution import EvolutionSearcher
from nas.searchers._evopress import EvoPressSearcher, subset_screen
from nas.searchers._guided import GuidedSearcher
from nas.searchers._operators import crossover, crowding_distance, mutate
from nas.searchers._optuna import OptunaSearcher
from nas.searchers._random import RandomSearcher

__all__ = [
    "DPSearcher",
    "EvoPressSearcher",
    "EvolutionSearcher",
    "GuidedSearcher",
    "OptunaSearcher",
    "RandomSearcher",
    "Searcher",
    "Told",
    "allocate",
    "crossover",
    "crowding_distance",
    "get",
    "mutate",
    "names",
    "parse_constraints",
    "register",
    "subset_screen",
]
