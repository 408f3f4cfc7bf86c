"""Gradient-boosted trees on config features."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor

from predictors._base import Predictor, _is_int, _is_number, check_param
from predictors._registry import register


@register("boosting")
class BoostingPredictor(Predictor):
    """Gradient-boosted regression trees (scikit-learn's exact `GradientBoostingRegressor`).

    The exact (unbinned) variant: on the few hundred evaluations a search has, it is as fast
    as the histogram one and needs no minimum leaf size tuned for large data.

    Example:
        >>> import predictors
        >>> from nas import Choice, SearchSpace
        >>> space = SearchSpace([Choice("width", [8, 16, 32, 64])])
        >>> configs = [{"width": w} for w in (8, 16, 32, 64)]
        >>> model = predictors.BoostingPredictor(space, subsample=1.0).fit(configs, [0.5, 0.6, 0.7, 0.8])
        >>> model.predict(configs).round(2).tolist()
        [0.5, 0.6, 0.7, 0.8]

    Args:
        space: the `nas.SearchSpace` the configs come from.
        n_estimators: number of boosting stages.
        learning_rate: shrinkage of each stage, in (0, 1].
        max_depth: depth of each tree.
        subsample: fraction of the configs each stage is fitted on, in (0, 1] (< 1: stochastic boosting).
        seed: seed of the subsampling and feature choices.
    """

    def __init__(self, space, n_estimators: int = 300, learning_rate: float = 0.05, max_depth: int = 2,
                 subsample: float = 0.8, seed: int | None = 0):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        super().__init__(space, seed)

    def _check_params(self) -> None:
        super()._check_params()
        check_param(self, "n_estimators", lambda v: _is_int(v) and v >= 1, "an int >= 1")
        check_param(self, "learning_rate", lambda v: _is_number(v) and 0 < v <= 1, "a float in (0, 1]")
        check_param(self, "max_depth", lambda v: _is_int(v) and v >= 1, "an int >= 1")
        check_param(self, "subsample", lambda v: _is_number(v) and 0 < v <= 1, "a float in (0, 1]")

    def _fit(self, configs, y):
        self.model_ = GradientBoostingRegressor(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            max_depth=self.max_depth,
            subsample=self.subsample,
            random_state=self.seed,
        )
        self.model_.fit(self._encode(configs), y)

    def _predict(self, configs) -> np.ndarray:
        return self.model_.predict(self._encode(configs))
