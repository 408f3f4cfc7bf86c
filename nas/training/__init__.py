"""Supernet training (sandwich, uniform, ordered dropout) and the from-scratch baseline.

`train_supernet` trains a supernet in place with a pluggable `Strategy` (one small file
each, registered by name); `train_standalone` trains one extracted subnet alone with the
same recipe, for comparisons.
"""

from nas.training._base import STRATEGIES, Strategy, get_strategy
from nas.training._distill import DISTILLS, AlphaDivergence, kl_divergence
from nas.training._family import family_recipe
from nas.training._loop import StandaloneResult, load_checkpoint, reinitialise, train_standalone, train_supernet
from nas.training._ordered_dropout import OrderedDropout
from nas.training._sandwich import Sandwich
from nas.training._uniform import Uniform

__all__ = [
    "DISTILLS",
    "STRATEGIES",
    "AlphaDivergence",
    "OrderedDropout",
    "Sandwich",
    "StandaloneResult",
    "Strategy",
    "Uniform",
    "family_recipe",
    "get_strategy",
    "kl_divergence",
    "load_checkpoint",
    "reinitialise",
    "train_standalone",
    "train_supernet",
]
