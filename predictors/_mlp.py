"""A small multi-layer perceptron on standardised config features."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from predictors._base import Predictor, _is_int, _is_number, check_param
from predictors._registry import register


@register("mlp")
class MLPPredictor(Predictor):
    """A multi-layer perceptron (scikit-learn's `MLPRegressor`) on standardised features and targets.

    Trained with L-BFGS, which suits the few hundred points a search has and is deterministic
    for a given seed (the seed sets the initial weights).

    Example:
        >>> import predictors
        >>> from nas import Choice, SearchSpace
        >>> space = SearchSpace([Choice("width", [8, 16, 32, 64])])
        >>> model = predictors.MLPPredictor(space, hidden=(16,)).fit([{"width": 8}, {"width": 64}], [0.5, 0.8])
        >>> model.predict([{"width": 64}]).shape
        (1,)

    Args:
        space: the `nas.SearchSpace` the configs come from.
        hidden: sizes of the hidden layers.
        alpha: L2 penalty on the weights (>= 0).
        max_iter: L-BFGS iterations.
        seed: seed of the initial weights.
    """

    def __init__(self, space, hidden: tuple[int, ...] = (32, 32), alpha: float = 0.1, max_iter: int = 1000,
                 seed: int | None = 0):
        self.hidden = hidden
        self.alpha = alpha
        self.max_iter = max_iter
        super().__init__(space, seed)

    def _check_params(self) -> None:
        super()._check_params()
        check_param(
            self, "hidden",
            lambda v: len(v) >= 1 and all(_is_int(h) and h >= 1 for h in v),
            "a non-empty sequence of ints >= 1",
        )
        check_param(self, "alpha", lambda v: _is_number(v) and v >= 0, "a float >= 0")
        check_param(self, "max_iter", lambda v: _is_int(v) and v >= 1, "an int >= 1")

    def _fit(self, configs, y):
        self.y_mean_, self.y_scale_ = float(y.mean()), float(y.std()) or 1.0
        self.model_ = make_pipeline(
            StandardScaler(),
            MLPRegressor(
                hidden_layer_sizes=tuple(self.hidden),
                alpha=self.alpha,
                solver="lbfgs",
                max_iter=self.max_iter,
                random_state=self.seed,
            ),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is a budget, not a failure
            self.model_.fit(self._encode(configs), (y - self.y_mean_) / self.y_scale_)

    def _predict(self, configs) -> np.ndarray:
        return self.model_.predict(self._encode(configs)) * self.y_scale_ + self.y_mean_
