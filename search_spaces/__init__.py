"""Built-in supernet families, built by name: ``search_spaces.get("mlp", widths=(32, 64))``."""

from __future__ import annotations

import importlib
from typing import Any

from nas.registry import Registry
from nas.supernet import Supernet

_FAMILIES: Registry[Supernet] = Registry("search space family", plural="search space families")
_BUILTIN = ("mlp", "cnn", "cnn1d", "transformer", "cell")
register = _FAMILIES.register


def _load_builtins() -> None:
    for name in _BUILTIN:
        importlib.import_module(f"search_spaces.{name}")


def names() -> list[str]:
    """Names of the registered families."""
    _load_builtins()
    return _FAMILIES.names()


def get(name: str, **kwargs: Any) -> Supernet:
    """A new supernet of family `name` built with `kwargs`."""
    _load_builtins()
    try:
        return _FAMILIES.build(name, **kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for family {name!r}: {err}") from None


__all__ = ["get", "names", "register"]
