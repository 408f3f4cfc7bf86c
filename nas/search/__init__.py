"""Searchers: who proposes the configs to evaluate.

Every searcher implements the `Searcher` protocol, ``ask(n) -> list[Config]`` and
``tell(evaluations)``, and is registered by name for specs and the command line:

    >>> import nas.search
    >>> nas.search.names()
    ['dp', 'evolution', 'evopress', 'guided', 'optuna', 'random']
"""

from nas.search._base import Searcher, Told, get, names, register
from nas.search._dp import DPSearcher
from nas.search._evolution import EvolutionSearcher
from nas.search._evopress import EvoPressSearcher, subset_screen
from nas.search._guided import GuidedSearcher
from nas.search._operators import crossover, crowding_distance, mutate
from nas.search._optuna import OptunaSearcher
from nas.search._random import RandomSearcher

__all__ = [
    "DPSearcher",
    "EvoPressSearcher",
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
    "subset_screen",
]

# `nas.search` is both this package (the searchers) and the search loop itself, so that
# ``nas.search(net, ...)`` runs a search and ``nas.search.get("guided", ...)`` builds a searcher.
import sys as _sys
import types as _types

from nas.search._loop import search as run


class _CallableModule(_types.ModuleType):
    def __call__(self, *args, **kwargs):
        return run(*args, **kwargs)


_CallableModule.__call__.__doc__ = run.__doc__
_sys.modules[__name__].__class__ = _CallableModule
__all__.append("run")
