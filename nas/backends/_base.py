"""The backend protocol: where evaluations run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nas.evaluation import Evaluation
from nas.registry import BACKENDS
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


register = BACKENDS.register


def names() -> list[str]:
    """Names of the registered backends."""
    return BACKENDS.names()


def get(name: str, net: Any, data: Any = None, **kwargs: Any) -> Backend:
    """A backend by name, evaluating `net`'s configs on `data`."""
    return BACKENDS.build(name, net, data, **kwargs)

