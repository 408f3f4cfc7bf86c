"""Backends: where evaluations run (this process, or Ray Tune on a Ray cluster)."""

from nas.backends._base import Backend, get, names, register
from nas.backends._local import LocalBackend
from nas.backends._ray import RayBackend  # imports Ray only when used
from nas.backends._ray import _init_ray as init_ray  # the Ray helpers, shared with nas.training
from nas.backends._ray import _raw_address as raw_address
from nas.backends._ray import _single_machine_mode as single_machine_mode

__all__ = ["Backend", "LocalBackend", "RayBackend", "get", "init_ray", "names", "raw_address", "register", "single_machine_mode"]
