"""Cross-validated ranking quality of a predictor, and picking the best one for the data."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import kendalltau, spearmanr
from sklearn.model_selection import KFold

from nas.space import SearchSpace
from predictors._base import Predictor, _check_configs, _check_values, _is_int
from predictors._registry import get, names


def _build(predictor: Predictor | str, space: SearchSpace, seed: int) -> Predictor:
    if isinstance(predictor, Predictor):
        if predictor.space is not space:
            raise ValueError(f"{predictor!r} was built on another search space than the one given")
        return predictor.clone()
    if isinstance(predictor, str):
        return get(predictor, space, seed=seed)
    raise TypeError(f"expected a predictor name (one of {', '.join(names())}) or a Predictor, got {predictor!r}")


def _label(predictor: Predictor | str) -> str:
    return predictor if isinstance(predictor, str) else repr(predictor)


def ranking_scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Kendall tau, Spearman rho and mean absolute error of `predicted` against `truth`.

    A constant prediction ranks nothing: its tau and rho are 0 (scipy would give NaN).
    """
    truth, predicted = np.asarray(truth, dtype=float), np.asarray(predicted, dtype=float)
    mae = float(np.mean(np.abs(truth - predicted)))
    if np.ptp(truth) == 0:
        return {"kendall_tau": math.nan, "spearman_rho": math.nan, "mae": mae}
    if np.ptp(predicted) == 0:
        return {"kendall_tau": 0.0, "spearman_rho": 0.0, "mae": mae}
    return {
        "kendall_tau": float(kendalltau(truth, predicted).statistic),
        "spearman_rho": float(spearmanr(truth, predicted).statistic),
        "mae": mae,
    }


def validate(
    predictor: Predictor | str,
    space: SearchSpace,
    configs: Sequence[Mapping],
    values: Sequence[float],
    folds: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """K-fold cross-validated ranking quality of a predictor on evaluated configs.

    Each fold is predicted by a fresh copy fitted on the other folds; the scores are the
    means over folds (each fold's Kendall tau ranks only configs the model did not see).

    Example:
        >>> import predictors
        >>> from nas import Choice, SearchSpace
        >>> space = SearchSpace([Choice("width", [8, 16, 32, 64]), Choice("rank", [1, 2, 4, 8])])
        >>> configs = list(space.enumerate())
        >>> values = [c["width"] * c["rank"] for c in configs]
        >>> scores = predictors.validate("forest", space, configs, values, folds=4)
        >>> sorted(scores)
        ['folds', 'kendall_tau', 'kendall_tau_std', 'mae', 'n', 'predictor', 'spearman_rho']

    Args:
        predictor: a registered name (built with `seed`) or a `Predictor` (cloned per fold).
        space: the search space of the configs.
        configs: evaluated configs.
        values: their metric values.
        folds: number of folds, 2 <= folds <= len(configs).
        seed: seed of the fold shuffle and of predictors built by name.

    Returns:
        ``{"kendall_tau", "spearman_rho", "mae"}`` (fold means), ``"kendall_tau_std"`` (over
        folds), ``"folds"``, ``"n"`` (number of configs) and ``"predictor"`` (its name or repr).
    """
    configs = _check_configs(configs, "configs")
    y = _check_values(values, len(configs))
    if not _is_int(folds) or not 2 <= folds <= len(configs):
        raise ValueError(f"folds must be an int in [2, {len(configs)}] (the number of configs), got {folds!r}")
    _build(predictor, space, seed)  # fail on a bad name or space before any fitting
    per_fold = []
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(configs):
        model = _build(predictor, space, seed).fit([configs[i] for i in train], y[train])
        per_fold.append(ranking_scores(y[test], model.predict([configs[i] for i in test])))
    # A fold whose values are all equal has no ranking to score (NaN); the others count.
    ranked = [s for s in per_fold if not math.isnan(s["kendall_tau"])]
    taus = [s["kendall_tau"] for s in ranked]
    return {
        "kendall_tau": float(np.mean(taus)) if ranked else math.nan,
        "spearman_rho": float(np.mean([s["spearman_rho"] for s in ranked])) if ranked else math.nan,
        "mae": float(np.mean([s["mae"] for s in per_fold])),
        "kendall_tau_std": float(np.std(taus)) if ranked else math.nan,
        "folds": folds,
        "n": len(configs),
        "predictor": _label(predictor),
    }


DEFAULT_CANDIDATES = ("ridge", "gp", "forest", "boosting", "mlp", "graph")


def auto(
    space: SearchSpace,
    configs: Sequence[Mapping],
    values: Sequence[float],
    candidates: Sequence[Predictor | str] | None = None,
    seed: int = 0,
    folds: int = 5,
) -> Predictor:
    """The candidate with the best cross-validated Kendall tau, fitted on all the data.

    Ties go to the earlier candidate. The returned predictor's ``auto_scores_`` holds every
    candidate's `validate` result, best first.

    Example:
        >>> import predictors
        >>> from nas import Choice, SearchSpace
        >>> space = SearchSpace([Choice("width", [8, 16, 32, 64]), Choice("rank", [1, 2, 4, 8])])
        >>> configs = list(space.enumerate())
        >>> model = predictors.auto(space, configs, [c["width"] + c["rank"] for c in configs],
        ...                         candidates=["ridge", "forest"], folds=4)
        >>> type(model).__name__
        'RidgePredictor'

    Args:
        space: the search space of the configs.
        configs: evaluated configs.
        values: their metric values.
        candidates: predictor names and/or `Predictor` objects; default
            ``("ridge", "gp", "forest", "boosting", "mlp", "graph")``.
        seed: seed of the folds and of candidates built by name.
        folds: cross-validation folds (fewer when there are fewer configs).
    """
    configs = _check_configs(configs, "configs")
    y = _check_values(values, len(configs))
    if len(configs) < 2:
        raise ValueError(f"auto needs at least 2 evaluated configs to cross-validate, got {len(configs)}")
    candidates = DEFAULT_CANDIDATES if candidates is None else candidates
    if isinstance(candidates, (str, Predictor)) or len(candidates) == 0:
        raise ValueError(f"candidates must be a non-empty list of predictor names or Predictors, got {candidates!r}")
    for candidate in candidates:
        _build(candidate, space, seed)  # fail on a bad candidate before any fitting
    folds = min(folds, len(configs))
    scored = []
    for order, candidate in enumerate(candidates):
        scores = validate(candidate, space, configs, y, folds=folds, seed=seed)
        tau = scores["kendall_tau"]
        scored.append((-(tau if not math.isnan(tau) else -math.inf), order, candidate, scores))
    scored.sort(key=lambda item: item[:2])
    best = _build(scored[0][2], space, seed).fit(configs, y)
    best.auto_scores_ = [item[3] for item in scored]
    return best
