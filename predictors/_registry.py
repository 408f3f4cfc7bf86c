"""Predictors by string name, for specs and the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nas.space import SearchSpace
    from predictors._base import Predictor

from nas.registry import PREDICTORS

register = PREDICTORS.register


def names() -> list[str]:
    """The registered predictor names, sorted.

    Example:
        >>> import predictors
        >>> "gp" in predictors.names()
        True
    """
    return PREDICTORS.names()


def get(name: str, space: SearchSpace, **kwargs: Any) -> Predictor:
    """A new, unfitted predictor by registered name.

    Example:
        >>> import predictors
        >>> from nas import Choice, SearchSpace
        >>> space = SearchSpace([Choice("width", [8, 16, 32])])
        >>> predictors.get("ridge", space, alpha=0.1)
        RidgePredictor(alpha=0.1)

    Args:
        name: one of `names()`.
        space: the search space the configs come from.
        **kwargs: the predictor's hyper-parameters (its constructor arguments).
    """
    return PREDICTORS.build(name, space, **kwargs)


def with_std() -> list[str]:
    """Names of the predictors that implement `predict_std`."""
    return [n for n in names() if PREDICTORS.lookup(n).supports_std]
