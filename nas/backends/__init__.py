"""Backends: where evaluations run (this process, or Ray Tune on a Ray cluster)."""

from nas.backends._base import Backend, get, names, register
from nas.backends._local import LocalBackend
from nas.backends._ray import RayBackend  # imports Ray only when used

__all__ = ["Backend", "LocalBackend", "RayBackend", "get", "names", "register"]
