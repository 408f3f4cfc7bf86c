"""The `Method` protocol: how a run searches (and whether it trains first), registered by name."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from nas.errors import RunError
from nas.registry import METHODS
from nas.schema import Field

if TYPE_CHECKING:
    from nas.pareto import Constraint, Objective
    from nas.result import SearchResult


class Method:
    """A way to search a supernet: black-box search over a trained supernet, a bi-level gradient search, ...

    `nas.search`, `nas.run_spec`, `nas.load_run`, the report and the ``nas`` command know no
    method by name: they ask the method chosen by the searcher name (`for_searcher`) what
    it needs and let it run. A method declares:

    - `name`, and the searcher names that choose it (`searchers`);
    - its options as schema `Field` objects (`fields`): a spec's ``search.args`` are checked
      against them (`resolve`);
    - `trains`: whether a run trains the supernet first (the spec's ``[train]`` section and
      ``nas train``), or the search trains it itself;
    - `files`: the files it writes in a run directory, and `checkpoint`: what its checkpoint holds;
    - how it runs (`search`) and how a run is reopened (`check_finished`, `training_line`).

    Example:
        >>> from nas.methods import for_searcher
        >>> method = for_searcher("evolution")
        >>> method.name, method.trains, sorted(method.files)
        ('blackbox', True, ['evaluations.sqlite', 'front.json', 'supernet.pt'])
    """

    name: ClassVar[str] = ""
    trains: ClassVar[bool] = True
    """Whether the supernet is trained before the search (``[train]``, ``nas train``); False: the search trains it."""
    files: ClassVar[dict[str, str]] = {}
    """The files it writes in a run directory, each with what it holds."""
    checkpoint: ClassVar[str] = ""
    """What its checkpoint file holds."""

    def searchers(self) -> list[str]:
        """The ``search.searcher`` names (``searcher=`` of `nas.search`) that choose this method."""
        raise NotImplementedError

    def fields(self) -> dict[str, Field]:
        """Its options (what a spec's ``search.args`` may set), by name; empty when they are the searcher's own parameters."""
        return {}

    def resolve(self, spec: Any, net: Any, objectives: list[Objective]) -> dict[str, Any]:
        """The spec's ``search.args`` checked (`SpecError` naming the key) with the defaults they use filled in."""
        raise NotImplementedError

    def search(
        self,
        net: Any,
        data: Any,
        *,
        searcher: Any,
        objectives: list[Objective],
        constraints: list[Constraint],
        budget: int,
        backend: Any,
        run: str | Path | None,
        seed: int,
        batch_size: int | None,
        latency: str | None,
        reference: dict[str, float] | None,
        progress: bool,
        searcher_kwargs: dict[str, Any] | None,
        backend_kwargs: dict[str, Any] | None,
    ) -> SearchResult:
        """Run (or resume, with `run`) the search; `nas.search` has checked the arguments it shares.

        `constraints` are parsed hard bounds on cost metrics (empty: none), which the method
        must either keep (never evaluating a config that breaks one) or refuse.
        """
        raise NotImplementedError

    def check_finished(self, spec: Any, path: Path, state: dict[str, Any]) -> None:
        """Raise `RunError` unless the checkpoint `state` in run `path` holds the run's final weights."""
        if int(state["epoch"]) < spec["train.epochs"]:
            raise RunError(
                f"the supernet of {path} is trained for {state['epoch']} of {spec['train.epochs']} epochs; "
                f"run `nas train --run {path}` to finish it"
            )

    def training_line(self, spec: Any) -> str:
        """How the run's supernet was trained, as one line of the report."""
        return f"- training: {spec['train.strategy']}, {spec['train.epochs']} epochs, lr {spec['train.lr']:g}, seed {spec['seed']}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


register = METHODS.register
"""Register a `Method` class by name (its module is one of `nas.registry.METHODS`' plugins)."""


def names() -> list[str]:
    """The registered method names, sorted.

    Example:
        >>> import nas.methods
        >>> "blackbox" in nas.methods.names()
        True
    """
    return METHODS.names()


def get(name: str) -> Method:
    """The method registered as `name`."""
    return METHODS.build(name)


def searcher_names() -> list[str]:
    """Every searcher name some method answers to, sorted (a spec's ``search.searcher`` choices)."""
    return sorted({s for name in names() for s in get(name).searchers()})


def for_searcher(searcher: Any) -> Method:
    """The method a searcher name (or a `Searcher` object) chooses; black-box search for names no method claims.

    Example:
        >>> for_searcher("random").name
        'blackbox'
    """
    if isinstance(searcher, str):
        for name in names():
            method = get(name)
            if searcher in method.searchers():
                return method
    return get("blackbox")  # a Searcher object; an unknown name is refused by the searchers' registry


__all__ = ["METHODS", "Method", "for_searcher", "get", "names", "register", "searcher_names"]

