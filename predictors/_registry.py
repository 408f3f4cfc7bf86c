"""Predictors by string name, for specs and the command line."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nas.space import SearchSpace
    from predictors._base import Predictor

_REGISTRY: dict[str, type[Predictor]] = {}


def register(name: str) -> Callable[[type[Predictor]], type[Predictor]]:
    """Class decorator: make a `Predictor` subclass available as ``predictors.get(name, ...)``."""

    def decorate(cls: type[Predictor]) -> type[Predictor]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"predictor name {name!r} is already taken by {_REGISTRY[name].__name__}")
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return decorate


def names() -> list[str]:
    """The registered predictor names, sorted.

    Example:
        >>> import predictors
        >>> "gp" in predictors.names()
        True
    """
    return sorted(_REGISTRY)


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
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown predictor {name!r}; known predictors: {', '.join(names())}")
    cls = _REGISTRY[name]
    params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "space")]
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise TypeError(
            f"predictor {name!r} ({cls.__name__}) has no parameter {unknown[0]!r}; "
            f"its parameters are: {', '.join(params)}"
        )
    return cls(space, **kwargs)


def with_std() -> list[str]:
    """Names of the predictors that implement `predict_std`."""
    return [n for n in names() if _REGISTRY[n].supports_std]
