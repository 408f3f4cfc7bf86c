"""Built-in supernet families, built by name: ``search_spaces.get("mlp", widths=(32, 64))``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from nas.supernet import Supernet

_FAMILIES: dict[str, Callable[..., Supernet]] = {}
_BUILTIN = ("mlp", "cnn", "transformer", "cell")


def register(name: str) -> Callable[[Callable[..., Supernet]], Callable[..., Supernet]]:
    """Decorator registering a supernet family (a class or factory) under `name`."""

    def add(factory: Callable[..., Supernet]) -> Callable[..., Supernet]:
        _FAMILIES[name] = factory
        return factory

    return add


def _load_builtins() -> None:
    for name in _BUILTIN:
        importlib.import_module(f"search_spaces.{name}")


def names() -> list[str]:
    """Names of the registered families."""
    _load_builtins()
    return sorted(_FAMILIES)


def get(name: str, **kwargs: Any) -> Supernet:
    """A new supernet of family `name` built with `kwargs`."""
    _load_builtins()
    if name not in _FAMILIES:
        raise ValueError(f"unknown search space family {name!r}; the families are: {', '.join(sorted(_FAMILIES))}")
    factory = _FAMILIES[name]
    try:
        return factory(**kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for family {name!r}: {err}") from None


__all__ = ["get", "names", "register"]
