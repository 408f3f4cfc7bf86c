"""Built-in supernet families, built by name: ``search_spaces.get("mlp", widths=(32, 64))``.

Each family module registers its class with `register`; `nas.registry.FAMILIES` names
the modules and imports them on its first lookup.
"""

from __future__ import annotations

from typing import Any

from nas.registry import FAMILIES, build_family
from nas.supernet import Supernet

register = FAMILIES.register


def names() -> list[str]:
    """Names of the registered families."""
    return FAMILIES.names()


def get(name: str, **kwargs: Any) -> Supernet:
    """A new supernet of family `name` built with `kwargs`."""
    return build_family(name, **kwargs)


__all__ = ["get", "names", "register"]
