"""Backends: where evaluations run (this process, or Ray Tune on a Ray cluster)."""

from nas.backends._base import Backend, get, names, register
from nas.backends._local import LocalBackend

__all__ = ["Backend", "LocalBackend", "get", "names", "register"]
