"""The mean of several member predictors."""

from __future__ import annotations

import numpy as np

from predictors._base import InvalidParameterError, Predictor
from predictors._registry import get, names, register


@register("ensemble")
class EnsemblePredictor(Predictor):
    """The mean prediction of several member predictors; `predict_std` is their spread.

    Example:
        >>> import predictors
        >>> from nas import Choice, SearchSpace
        >>> space = SearchSpace([Choice("width", [8, 16, 32, 64])])
        >>> model = predictors.EnsemblePredictor(space, members=("ridge", "forest")).fit(
        ...     [{"width": 8}, {"width": 16}, {"width": 64}], [0.5, 0.6, 0.8])
        >>> [type(m).__name__ for m in model.members_]
        ['RidgePredictor', 'ForestPredictor']

    Args:
        space: the `nas.SearchSpace` the configs come from.
        members: registered predictor names (built with this ensemble's seed) or unfitted
            `Predictor` objects on the same space (cloned, so they keep their own parameters).
        seed: seed given to the members named by string.
    """

    supports_std = True

    def __init__(self, space, members=("gp", "mlp", "boosting"), seed: int | None = 0):
        self.members = members
        super().__init__(space, seed)

    def _check_params(self) -> None:
        super()._check_params()
        members = self.members
        if isinstance(members, (str, Predictor)) or not hasattr(members, "__iter__") or len(members) == 0:
            raise InvalidParameterError(
                f"The 'members' parameter of EnsemblePredictor must be a non-empty sequence of predictor "
                f"names or Predictor objects, got {members!r}."
            )
        for member in members:
            if isinstance(member, Predictor):
                if member.space is not self.space:
                    raise InvalidParameterError(
                        f"The 'members' parameter of EnsemblePredictor holds {member!r}, built on another "
                        "search space; build members on the ensemble's space."
                    )
            elif member == "ensemble" or member not in names():
                allowed = ", ".join(n for n in names() if n != "ensemble")
                raise InvalidParameterError(
                    f"The 'members' parameter of EnsemblePredictor must name predictors among {allowed} "
                    f"(or be Predictor objects), got {member!r}."
                )

    def _build(self, member) -> Predictor:
        return member.clone() if isinstance(member, Predictor) else get(member, self.space, seed=self.seed)

    def _fit(self, configs, y):
        given = self._passed(configs)  # the caller's feature rows go on to the members
        self.members_ = [self._build(m).fit(configs, y, **given) for m in self.members]

    def _all(self, configs) -> np.ndarray:
        given = self._passed(configs)
        return np.stack([m.predict(configs, **given) for m in self.members_])

    def _passed(self, configs) -> dict:
        features = self._given_features(configs)
        return {} if features is None else {"features": features}

    def _predict(self, configs) -> np.ndarray:
        return self._all(configs).mean(axis=0)

    def _predict_std(self, configs) -> np.ndarray:
        return self._all(configs).std(axis=0)

    def _predict_mean_std(self, configs) -> tuple[np.ndarray, np.ndarray]:
        every = self._all(configs)  # the members predict once for both
        return every.mean(axis=0), every.std(axis=0)
