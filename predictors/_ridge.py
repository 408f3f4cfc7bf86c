"""Ridge regression on config features, optionally with degree-2 interactions."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from predictors._base import Predictor, _is_number, check_param
from predictors._registry import register


@register("ridge")
class RidgePredictor(Predictor):
    """Ridge regression on the shared config features (with ``degree=2``, on their pairwise products too).

    The fastest predictor and the baseline the others should beat.

    Example:
        >>> import predictors
        >>> from nas import Choice, SearchSpace
        >>> space = SearchSpace([Choice("width", [8, 16, 32, 64])])
        >>> model = predictors.RidgePredictor(space, alpha=0.01).fit([{"width": 8}, {"width": 64}], [0.5, 0.8])
        >>> model.predict([{"width": 16}]).round(2).tolist()
        [0.6]

    Args:
        space: the `nas.SearchSpace` the configs come from.
        alpha: L2 penalty on the standardised features (> 0).
        degree: 1 (linear) or 2 (adds every pairwise product and square of the features).
        seed: accepted for a uniform signature; ridge regression is deterministic.
    """

    def __init__(self, space, alpha: float = 1.0, degree: int = 1, seed: int | None = 0):
        self.alpha = alpha
        self.degree = degree
        super().__init__(space, seed)

    def _check_params(self) -> None:
        super()._check_params()
        check_param(self, "alpha", lambda v: _is_number(v) and v > 0, "a float > 0")
        check_param(self, "degree", lambda v: v in (1, 2) and not isinstance(v, bool), "1 or 2")

    def _fit(self, configs, y):
        steps = [PolynomialFeatures(degree=2, include_bias=False)] if self.degree == 2 else []
        self.model_ = make_pipeline(*steps, StandardScaler(), Ridge(alpha=self.alpha))
        self.model_.fit(self._encode(configs), y)

    def _predict(self, configs) -> np.ndarray:
        return self.model_.predict(self._encode(configs))
