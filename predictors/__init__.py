"""Learned accuracy/cost predictors over a search space: ``fit(configs, values)``, ``predict(configs)``.

Example:
    >>> import predictors
    >>> from nas import Choice, SearchSpace
    >>> space = SearchSpace([Choice("width", [8, 16, 32, 64]), Choice("rank", [1, 2, 4, 8])])
    >>> configs = list(space.enumerate())
    >>> model = predictors.get("gp", space).fit(configs[:12], [c["width"] * c["rank"] for c in configs[:12]])
    >>> model.predict(configs[12:]).shape
    (4,)
"""

from nas.registry import PREDICTOR_SELECTION
from predictors._base import InvalidParameterError, NotFittedError, Predictor
from predictors._boosting import BoostingPredictor
from predictors._ensemble import EnsemblePredictor
from predictors._features import Featuriser
from predictors._forest import ForestPredictor
from predictors._gp import GPPredictor
from predictors._graph import GraphPredictor
from predictors._mlp import MLPPredictor
from predictors._registry import get, names, register
from predictors._ridge import RidgePredictor
from predictors._selection import auto, ranking_scores, validate

PREDICTOR_SELECTION.register("auto")(auto)

__all__ = [
    "BoostingPredictor",
    "EnsemblePredictor",
    "Featuriser",
    "ForestPredictor",
    "GPPredictor",
    "GraphPredictor",
    "InvalidParameterError",
    "MLPPredictor",
    "NotFittedError",
    "Predictor",
    "RidgePredictor",
    "auto",
    "get",
    "names",
    "ranking_scores",
    "register",
    "validate",
]
