"""A family's default training recipe: what `train_supernet(net, data)` uses for each argument not given."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nas.data import Data
from nas.training._base import get_strategy
from nas.training._recipe import BATCH_SIZE, EPOCHS, LR, WEIGHT_DECAY, steps_per_epoch

RECIPE_KEYS = ("strategy", "strategy_args", "epochs", "steps", "max_epochs", "lr", "batch_size", "weight_decay", "distill")
"""Keys a family's ``recipe`` mapping may hold (``steps``: total optimizer steps, turned into
epochs for the data at hand, at most ``max_epochs``; ``epochs`` wins over ``steps``)."""


def family_recipe(net: Any, data: Data, **given: Any) -> dict[str, Any]:
    """Strategy, distill, epochs, lr, batch size and weight decay for `net` on `data`.

    A value in `given` that is not None wins; else the family's ``recipe`` (a class
    attribute, see `RECIPE_KEYS`); else the library's defaults (sandwich, 40 epochs, lr 3e-3).
    A recipe in ``steps`` scales with the data: the same number of optimizer steps whatever
    the training set's size, so a small data set gets more epochs and a large one fewer.

    Example:
        >>> from nas.data import mnist1d
        >>> from search_spaces.cnn1d import CNN1D
        >>> recipe = family_recipe(CNN1D(), mnist1d("signal"))
        >>> recipe["epochs"] == round(CNN1D.recipe["steps"] / (3200 // recipe["batch_size"]))
        True
        >>> family_recipe(CNN1D(), mnist1d("signal"), epochs=3)["epochs"]
        3
    """
    family: Mapping[str, Any] = getattr(net, "recipe", None) or {}
    unknown = sorted(set(family) - set(RECIPE_KEYS))
    if unknown:
        raise ValueError(f"{type(net).__name__}.recipe has unknown key {unknown[0]!r}; the keys are: {', '.join(RECIPE_KEYS)}.")
    out: dict[str, Any] = {"strategy": "sandwich", "distill": None, "epochs": EPOCHS, "lr": LR, "batch_size": BATCH_SIZE,
                           "weight_decay": WEIGHT_DECAY}
    out.update({k: v for k, v in family.items() if k in out})
    if given.get("batch_size") is not None:
        out["batch_size"] = given["batch_size"]
    if "steps" in family and "epochs" not in family:
        epochs = max(1, round(family["steps"] / steps_per_epoch(data, out["batch_size"])))
        out["epochs"] = min(epochs, family.get("max_epochs", epochs))
    if given.get("strategy") is None and family.get("strategy_args"):
        out["strategy"] = get_strategy(out["strategy"], **family["strategy_args"])
    out.update({k: v for k, v in given.items() if v is not None})
    return out
