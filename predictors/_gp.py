"""Gaussian-process regression with a Matern + white-noise kernel."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from predictors._base import Predictor, _is_int, _is_number, check_param
from predictors._registry import register


@register("gp")
class GPPredictor(Predictor):
    """Gaussian process on the shared config features: ``C * Matern(nu) + White``, targets normalised.

    Kernel hyper-parameters are fitted by maximum marginal likelihood; `predict_std` gives the
    posterior standard deviation (noise included), for acquisition functions.

    Example:
        >>> import predictors
        >>> from nas import Choice, SearchSpace
        >>> space = SearchSpace([Choice("width", [8, 16, 32, 64])])
        >>> model = predictors.GPPredictor(space).fit([{"width": 8}, {"width": 64}], [0.5, 0.8])
        >>> model.predict_std([{"width": 16}, {"width": 64}]).shape
        (2,)

    Args:
        space: the `nas.SearchSpace` the configs come from.
        nu: Matern smoothness: 0.5, 1.5, 2.5 or ``inf`` (RBF).
        ard: one length scale per feature (automatic relevance determination) instead of one for all.
        noise: initial noise level of the white kernel (fitted within [1e-8, 1]  in units of the
            normalised targets).
        restarts: extra random restarts of the kernel optimiser.
        seed: seed of the optimiser's restarts.
    """

    supports_std = True

    def __init__(self, space, nu: float = 2.5, ard: bool = True, noise: float = 1e-2, restarts: int = 0,
                 seed: int | None = 0):
        self.nu = nu
        self.ard = ard
        self.noise = noise
        self.restarts = restarts
        super().__init__(space, seed)

    def _check_params(self) -> None:
        super()._check_params()
        check_param(self, "nu", lambda v: v in (0.5, 1.5, 2.5, np.inf), "one of 0.5, 1.5, 2.5, inf")
        check_param(self, "ard", lambda v: isinstance(v, bool), "a bool")
        check_param(self, "noise", lambda v: _is_number(v) and 0 < v <= 1, "a float in (0, 1]")
        check_param(self, "restarts", lambda v: _is_int(v) and v >= 0, "an int >= 0")

    def _fit(self, configs, y):
        X = self._encode(configs)
        length = np.ones(X.shape[1]) if self.ard else 1.0
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(length, (1e-2, 1e3), nu=self.nu) + WhiteKernel(
            self.noise, (1e-8, 1.0)
        )
        self.model_ = GaussianProcessRegressor(
            kernel, normalize_y=True, n_restarts_optimizer=self.restarts, random_state=self.seed
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # a length scale at its bound is fine
            self.model_.fit(X, y)

    def _predict(self, configs) -> np.ndarray:
        return self.model_.predict(self._encode(configs))

    def _predict_std(self, configs) -> np.ndarray:
        return self.model_.predict(self._encode(configs), return_std=True)[1]

    def _predict_mean_std(self, configs) -> tuple[np.ndarray, np.ndarray]:
        return self.model_.predict(self._encode(configs), return_std=True)  # one kernel between configs and data
