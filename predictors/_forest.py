"""Random forest / extra trees on config features."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor

from predictors._base import Predictor, _is_int, _is_number, check_param
from predictors._registry import register


@register("forest")
class ForestPredictor(Predictor):
    """An ensemble of regression trees (random forest or extra trees) on the shared config features.

    `predict_std` is the spread (standard deviation) of the individual trees' predictions.

    Example:
        >>> import predictors
        >>> from nas import Choice, SearchSpace
        >>> space = SearchSpace([Choice("width", [8, 16, 32, 64])])
        >>> model = predictors.ForestPredictor(space, n_estimators=10).fit(
        ...     [{"width": 8}, {"width": 16}, {"width": 64}], [0.5, 0.6, 0.8])
        >>> model.predict_std([{"width": 32}]).shape
        (1,)

    Args:
        space: the `nas.SearchSpace` the configs come from.
        n_estimators: number of trees.
        kind: ``"extra"`` (extremely randomised trees: random split points, smoother on small
            data) or ``"random"`` (bootstrap random forest).
        max_features: fraction of the features tried at each split, in (0, 1].
        min_samples_leaf: minimum number of configs in a leaf.
        seed: seed of the trees' randomness.
    """

    supports_std = True

    def __init__(self, space, n_estimators: int = 200, kind: str = "extra", max_features: float = 0.5,
                 min_samples_leaf: int = 1, seed: int | None = 0):
        self.n_estimators = n_estimators
        self.kind = kind
        self.max_features = max_features
        self.min_samples_leaf = min_samples_leaf
        super().__init__(space, seed)

    def _check_params(self) -> None:
        super()._check_params()
        check_param(self, "n_estimators", lambda v: _is_int(v) and v >= 1, "an int >= 1")
        check_param(self, "kind", lambda v: v in ("extra", "random"), "'extra' or 'random'")
        check_param(self, "max_features", lambda v: _is_number(v) and 0 < v <= 1, "a float in (0, 1]")
        check_param(self, "min_samples_leaf", lambda v: _is_int(v) and v >= 1, "an int >= 1")

    def _fit(self, configs, y):
        cls = ExtraTreesRegressor if self.kind == "extra" else RandomForestRegressor
        self.model_ = cls(
            n_estimators=self.n_estimators,
            max_features=float(self.max_features),
            min_samples_leaf=self.min_samples_leaf,
            random_state=self.seed,
        )
        self.model_.fit(self._encode(configs), y)

    def _predict(self, configs) -> np.ndarray:
        return self.model_.predict(self._encode(configs))

    def _predict_std(self, configs) -> np.ndarray:
        X = self._encode(configs)
        return np.std([tree.predict(X) for tree in self.model_.estimators_], axis=0)
