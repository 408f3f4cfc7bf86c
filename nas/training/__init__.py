"""Supernet training (sandwich, uniform, ordered dropout) and the from-scratch baseline.

`train_supernet` trains a supernet in place with a pluggable `Strategy` (one small file
each, registered by name); `train_standalone` trains one extracted subnet alone with the
same recipe, for comparisons.
"""

from nas.training._base import STRATEGIES, Strategy, get_strategy
from nas.training._distill import DISTILLS, AlphaDivergence, kl_divergence
from nas.training._loop import CHECKPOINT, StandaloneResult, load_checkpoint, reinitialise, save_checkpoint, train_standalone, train_supernet
from nas.training._ordered_dropout import OrderedDropout
from nas.training._recipe import (
    BATCH_SIZE,
    EPOCHS,
    LR,
    OPTIMIZERS,
    SCHEDULES,
    WEIGHT_DECAY,
    check_recipe,
    make_optimizer,
    make_schedule,
    steps_per_epoch,
)
from nas.training._sandwich import Sandwich
from nas.training._uniform import Uniform

__all__ = [
    "BATCH_SIZE",
    "CHECKPOINT",
    "DISTILLS",
    "EPOCHS",
    "LR",
    "OPTIMIZERS",
    "SCHEDULES",
    "STRATEGIES",
    "WEIGHT_DECAY",
    "AlphaDivergence",
    "OrderedDropout",
    "Sandwich",
    "StandaloneResult",
    "Strategy",
    "Uniform",
    "check_recipe",
    "get_strategy",
    "kl_divergence",
    "load_checkpoint",
    "make_optimizer",
    "make_schedule",
    "reinitialise",
    "save_checkpoint",
    "steps_per_epoch",
    "train_standalone",
    "train_supernet",
]
