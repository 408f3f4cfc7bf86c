"""Supernet training (sandwich, uniform, ordered dropout, a mixture of K weight copies) and the from-scratch baseline.

`fit` is the one training loop: it runs a `Step` (what one batch does) over the epochs,
with one checkpoint format and one resume. `train_supernet` trains a supernet in place with
a pluggable `Strategy` (one small file each, registered by name in `STRATEGIES`);
`train_standalone` trains one extracted subnet alone with the same recipe, for comparisons.
TangleNAS' bi-level search (`nas.tangle.search_tangle`) is another `Step` of the same loop.
"""

from nas.training._base import STRATEGIES, Strategy, backward, get_strategy, steps_taken
from nas.training._distill import DISTILLS, AlphaDivergence, kl_divergence
from nas.training._distributed import DistributedError, Replica, check_address, train_distributed
from nas.training._family import family_recipe
from nas.training._fit import Diverged, Step, fit, read_checkpoint, save_checkpoint
from nas.training._loop import (
    CHECKPOINT,
    StandaloneResult,
    Supervised,
    load_checkpoint,
    reinitialise,
    train_standalone,
    train_supernet,
    trained_on,
)
from nas.training._mixture import Mixture, WeightMixture
from nas.training._ordered_dropout import OrderedDropout
from nas.training._progressive import Progressive
from nas.training._recipe import (
    BATCH_SIZE,
    EPOCHS,
    LR,
    OPTIMIZERS,
    SCHEDULES,
    WEIGHT_DECAY,
    Recipe,
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
    "Diverged",
    "DistributedError",
    "Mixture",
    "OrderedDropout",
    "Progressive",
    "Recipe",
    "Replica",
    "Sandwich",
    "StandaloneResult",
    "Step",
    "Strategy",
    "Supervised",
    "Uniform",
    "WeightMixture",
    "backward",
    "check_address",
    "check_recipe",
    "fit",
    "family_recipe",
    "get_strategy",
    "kl_divergence",
    "load_checkpoint",
    "make_optimizer",
    "make_schedule",
    "read_checkpoint",
    "reinitialise",
    "save_checkpoint",
    "steps_per_epoch",
    "steps_taken",
    "train_distributed",
    "train_standalone",
    "train_supernet",
    "trained_on",
]
