"""The backend protocol: where evaluations run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nas.evaluation import Evaluation
from nas.registry import Registry
from nas.space import Config



class Backend:
    """Evaluates configs of a supernet; the same configs give the same results on every backend.

    A failing config comes back as an `Evaluation` with status ``"failed"``, never as an
    exception. Subclasses implement `evaluate` and, when they hold resources, `close`.
    """

    name = ""

    def evaluate(self, configs: Sequence[Config]) -> list[Evaluation]:
        """One `Evaluation` per config, in order."""
        raise NotImplementedError

    @property
    def parallelism(self) -> int:
        """How many configs it evaluates at once (the search asks for batches of this size or more)."""
        return 1

    def close(self) -> None:
        """Release workers or clusters this backend started."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_BACKENDS: Registry[Backend] = Registry("backend", fixed=("net", "data"))
register = _BACKENDS.register


def names() -> list[str]:
    """Names of the registered backends."""
    _load()
    return _BACKENDS.names()


def get(name: str, net: Any, data: Any = None, **kwargs: Any) -> Backend:
    """A backend by name, evaluating `net`'s configs on `data`."""
    _load()
    return _BACKENDS.build(name, net, data, **kwargs)


def _load() -> None:
    import importlib
    import pkgutil

    import nas.backends

    for info in pkgutil.iter_modules(nas.backends.__path__):
        if not info.name.startswith("_") or info.name == "_base":
            continue
        importlib.import_module(f"nas.backends.{info.name}")
