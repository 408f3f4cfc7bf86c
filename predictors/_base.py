"""The `Predictor` protocol: fit on evaluated configs, predict a metric for new ones."""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from nas import NASError, SearchSpace
from predictors._features import featuriser_for
from predictors._registry import with_std


class InvalidParameterError(NASError, ValueError, TypeError):
    """A predictor hyper-parameter with a value it does not allow (scikit-learn's name and wording)."""


class NotFittedError(NASError, ValueError, AttributeError):
    """`predict` called on a predictor that has not been fitted."""


class Predictor:
    """Base of the learned accuracy/cost predictors: ``fit(configs, values)``, ``predict(configs)``.

    Subclasses are scikit-learn style: hyper-parameters are constructor arguments stored as
    given, learned state ends with ``_``, `fit` returns ``self``. They implement `_fit` and
    `_predict` (and `_predict_std` when they estimate uncertainty, with
    ``supports_std = True``); this class validates the data, the parameters and the fitted
    state, and turns configs into features (`_encode`).

    Example:
        >>> import predictors
        >>> from nas import Choice, SearchSpace
        >>> space = SearchSpace([Choice("width", [8, 16, 32, 64])])
        >>> model = predictors.RidgePredictor(space).fit([{"width": w} for w in (8, 16, 64)], [1.0, 2.0, 4.0])
        >>> model.predict([{"width": 32}]).round(1).tolist()
        [2.8]

    Args:
        space: the `nas.SearchSpace` the configs come from.
        seed: seed of every random choice the predictor makes (same seed, same predictions).
    """

    name: ClassVar[str] = ""
    """Registered name (set by `predictors.register`)."""
    supports_std: ClassVar[bool] = False
    """Whether `predict_std` is implemented."""

    def __init__(self, space: SearchSpace, seed: int | None = 0):
        self.space = space
        self.seed = seed
        self._check_params()

    # -- the protocol --------------------------------------------------------------------
    def fit(
        self, configs: Sequence[Mapping], values: Sequence[float] | np.ndarray, *, features: np.ndarray | None = None
    ) -> Predictor:
        """Learn ``config -> value`` from evaluated configs; returns ``self``.

        Args:
            configs: evaluated configs of `space`.
            values: the metric of each config (finite numbers), same length.
            features: the configs' rows of ``Featuriser(space).transform(configs)`` when the
                caller keeps them (a search refitting on the same configs): used instead of
                featurising the configs again, which also skips validating them.
        """
        self._check_params()
        configs = _check_configs(configs, "configs")
        y = _check_values(values, len(configs))
        if len(configs) < 2:
            raise ValueError(f"{type(self).__name__}.fit needs at least 2 evaluated configs, got {len(configs)}")
        self.__dict__.pop("n_fitted_", None)  # a failed refit leaves the predictor unfitted
        with _one_blas_thread(), self._given(configs, features):
            self._fit(configs, y)
        self.n_fitted_ = len(configs)
        return self

    def predict(self, configs: Sequence[Mapping], *, features: np.ndarray | None = None) -> np.ndarray:
        """The predicted value of each config, as a 1-D float array (`features`: as in `fit`)."""
        self._check_fitted("predict")
        configs = _check_configs(configs, "configs")
        if not configs:
            return np.zeros(0)
        with _one_blas_thread(), self._given(configs, features):
            return np.asarray(self._predict(configs), dtype=float).reshape(len(configs))

    def predict_std(self, configs: Sequence[Mapping], *, features: np.ndarray | None = None) -> np.ndarray:
        """The predictive standard deviation of each config (same units as the values; `features`: as in `fit`)."""
        if not self.supports_std:
            raise NotImplementedError(
                f"{type(self).__name__} does not estimate uncertainty; predictors with predict_std: "
                f"{', '.join(with_std())}"
            )
        self._check_fitted("predict_std")
        configs = _check_configs(configs, "configs")
        if not configs:
            return np.zeros(0)
        with _one_blas_thread(), self._given(configs, features):
            return np.asarray(self._predict_std(configs), dtype=float).reshape(len(configs))

    def featurise(self, configs: Sequence[Mapping]) -> np.ndarray:
        """The feature rows of `configs` that `fit`, `predict` and `predict_std` take as ``features=``.

        Example:
            >>> import predictors
            >>> from nas import Choice, SearchSpace
            >>> space = SearchSpace([Choice("width", [8, 16, 32, 64])])
            >>> predictors.RidgePredictor(space).featurise([{"width": 16}]).round(3).tolist()
            [[0.333]]
        """
        return featuriser_for(self.space).transform(_check_configs(configs, "configs"))

    def predict_mean_std(
        self, configs: Sequence[Mapping], *, features: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`predict` and `predict_std` of the configs, from one posterior where the predictor can (a GP).

        Example:
            >>> import predictors
            >>> from nas import Choice, SearchSpace
            >>> space = SearchSpace([Choice("width", [8, 16, 32, 64])])
            >>> model = predictors.GPPredictor(space).fit([{"width": 8}, {"width": 64}], [0.5, 0.8])
            >>> mean, std = model.predict_mean_std([{"width": 16}])
            >>> bool(mean[0] == model.predict([{"width": 16}])[0] and std[0] == model.predict_std([{"width": 16}])[0])
            True
        """
        if not self.supports_std:
            self.predict_std(configs)  # raises, naming the predictors that have it
        self._check_fitted("predict_mean_std")
        configs = _check_configs(configs, "configs")
        if not configs:
            return np.zeros(0), np.zeros(0)
        with _one_blas_thread(), self._given(configs, features):
            mean, std = self._predict_mean_std(configs)
        n = len(configs)
        return np.asarray(mean, dtype=float).reshape(n), np.asarray(std, dtype=float).reshape(n)

    # -- for subclasses ------------------------------------------------------------------
    def _fit(self, configs: list[Mapping], y: np.ndarray) -> None:
        raise NotImplementedError

    def _predict(self, configs: list[Mapping]) -> np.ndarray:
        raise NotImplementedError

    def _predict_std(self, configs: list[Mapping]) -> np.ndarray:
        raise NotImplementedError

    def _predict_mean_std(self, configs: list[Mapping]) -> tuple[np.ndarray, np.ndarray]:
        """Both at once; override where they share work (the default makes the two calls)."""
        return self._predict(configs), self._predict_std(configs)

    def _check_params(self) -> None:
        """Validate the hyper-parameters; subclasses extend it (and call super)."""
        if not isinstance(self.space, SearchSpace):
            raise InvalidParameterError(
                f"The 'space' parameter of {type(self).__name__} must be a nas.SearchSpace, "
                f"got {type(self.space).__name__}."
            )
        check_param(self, "seed", lambda v: v is None or _is_int(v) and v >= 0, "an int >= 0 or None")

    def _encode(self, configs: Sequence[Mapping]) -> np.ndarray:
        """The shared feature matrix of `configs` (see `Featuriser`), or the rows the caller gave for them."""
        given = self._given_features(configs)
        return featuriser_for(self.space).transform(configs) if given is None else given

    def _given_features(self, configs: Sequence[Mapping]) -> np.ndarray | None:
        """The feature rows the caller of `fit` / `predict` gave for `configs` (None: not given)."""
        given = self.__dict__.get("_features_given")
        return given[1] if given is not None and given[0] is configs else None

    @contextmanager
    def _given(self, configs: list[Mapping], features: np.ndarray | None) -> Iterator[None]:
        """While fitting or predicting `configs`, `_encode(configs)` returns `features` (when given)."""
        if features is None:
            yield
            return
        features = np.asarray(features, dtype=float)
        n_features = featuriser_for(self.space).n_features
        if features.shape != (len(configs), n_features):
            raise ValueError(
                f"The 'features' parameter must have shape ({len(configs)}, {n_features}) (one "
                f"featurised row per config), got {features.shape}."
            )
        self._features_given = (configs, features)
        try:
            yield
        finally:
            del self._features_given

    def _check_fitted(self, what: str) -> None:
        if not hasattr(self, "n_fitted_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(configs, values) before {what}()"
            )

    # -- scikit-learn conveniences -------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, as given."""
        return {p: getattr(self, p) for p in self._param_names()}

    def set_params(self, **params: Any) -> Predictor:
        """Change hyper-parameters (validated); returns ``self``. Refit to use them."""
        for key in params:
            if key not in self._param_names():
                raise InvalidParameterError(
                    f"{type(self).__name__} has no parameter {key!r}; its parameters are: "
                    f"{', '.join(self._param_names())}"
                )
        for key, value in params.items():
            setattr(self, key, value)
        self._check_params()
        return self

    def clone(self) -> Predictor:
        """A new, unfitted predictor with the same hyper-parameters and space."""
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        signature = inspect.signature(type(self).__init__).parameters
        shown = [
            f"{k}={v!r}"
            for k, v in self.get_params().items()
            if k != "space" and not _same(v, signature[k].default)
        ]
        return f"{type(self).__name__}({', '.join(shown)})"


_CONTROLLER = None


def _one_blas_thread():
    """A context that limits BLAS to one thread: the matrices here are small, and multi-threaded
    BLAS on them is many times slower (an MLP fit went from 0.4 s to 6 s with 2 threads)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def check_param(owner: object, name: str, ok: Any, allowed: str) -> None:
    """Raise `InvalidParameterError` unless ``ok(value)`` holds for ``owner.<name>``."""
    value = getattr(owner, name)
    try:
        good = bool(ok(value))
    except (TypeError, ValueError):
        good = False
    if not good:
        raise InvalidParameterError(
            f"The {name!r} parameter of {type(owner).__name__} must be {allowed}, got {value!r}."
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, ValueError):
        return False


def _check_configs(configs: Any, what: str) -> list[Mapping]:
    if isinstance(configs, Mapping):
        raise TypeError(f"{what} must be a list of config dicts, got a single dict; wrap it in a list")
    if isinstance(configs, (str, bytes)) or not isinstance(configs, Sequence) and not hasattr(configs, "__iter__"):
        raise TypeError(f"{what} must be a list of config dicts, got {type(configs).__name__}")
    return list(configs)


def _check_values(values: Any, n: int) -> np.ndarray:
    try:
        y = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"values must be a sequence of numbers, got {type(values).__name__}") from None
    if y.ndim != 1:
        raise ValueError(f"values must be 1-D (one number per config), got shape {y.shape}")
    if len(y) != n:
        raise ValueError(f"got {n} configs but {len(y)} values; give one value per config")
    if n == 0:
        raise ValueError("cannot fit on no data: configs and values are empty")
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise ValueError(
            f"values must be finite; value {bad[0]} is {y[bad[0]]} ({bad.size} non-finite in all); "
            "drop failed evaluations before fitting"
        )
    return y
