"""Name -> class registries, so specs and the command line can name a family, searcher, predictor, backend or method.

Every pluggable kind has one `Registry`. Its entries register themselves with the
`register` decorator when their module is imported; the modules that hold them are named
once, as the registry's `plugins`, and imported on the first lookup, so that `nas` reaches
plugin packages (``search_spaces``, ``predictors``) only through its registries, lazily.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Classes (or factories) registered under names; one per kind of pluggable part.

    Example:
        >>> searchers = Registry("searcher")
        >>> @searchers.register("noop")
        ... class Noop:
        ...     def __init__(self, seed=0): self.seed = seed
        >>> searchers.build("noop", seed=3).seed
        3
        >>> searchers.build("nope")
        Traceback (most recent call last):
        ValueError: unknown searcher 'nope'; known searchers: noop

    Args:
        kind: what is registered, as error messages name it ("searcher", "backend", ...).
        fixed: leading constructor arguments every build passes positionally (not listed as
            the class's parameters in errors).
        plural: the plural of `kind` (default: kind + "s").
        plugins: modules whose import registers entries, imported on the first lookup.
    """

    def __init__(self, kind: str, fixed: tuple[str, ...] = (), plural: str | None = None, plugins: tuple[str, ...] = ()):
        self.kind, self.fixed, self.plural = kind, fixed, plural or f"{kind}s"
        self.plugins = plugins
        self._entries: dict[str, Callable[..., T]] = {}
        self._loaded = not plugins

    def load(self) -> None:
        """Import the plugin modules (once), so that their entries are registered."""
        if self._loaded:
            return
        self._loaded = True
        for module in self.plugins:
            importlib.import_module(module)

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: make a class available under `name`."""

        def add(cls: Callable[..., T]) -> Callable[..., T]:
            taken = self._entries.get(name)
            if taken is not None and taken is not cls:
                raise ValueError(f"{self.kind} name {name!r} is already taken by {getattr(taken, '__name__', taken)}")
            self._entries[name] = cls
            if isinstance(cls, type):
                cls.name = name  # type: ignore[attr-defined]
            return cls

        return add

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self.load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries

    def entries(self) -> dict[str, Callable[..., T]]:
        """Name -> registered class, for every entry."""
        self.load()
        return dict(self._entries)

    def __iter__(self):
        return iter(self.names())

    def lookup(self, name: str) -> Callable[..., T]:
        """The class registered as `name`; a clear error listing the names otherwise."""
        self.load()
        if not isinstance(name, str) or name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; known {self.plural}: {', '.join(self.names())}")
        return self._entries[name]

    def build(self, name: str, *args: Any, **kwargs: Any) -> T:
        """An instance of `name` built with `args` and `kwargs`, unknown keywords named clearly."""
        cls = self.lookup(name)
        signature = inspect.signature(cls)
        if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
            params = [p for p in signature.parameters if p not in self.fixed]
            unknown = [k for k in kwargs if k not in params]
            if unknown:
                raise TypeError(
                    f"{self.kind} {name!r} ({getattr(cls, '__name__', cls)}) has no parameter {unknown[0]!r}; "
                    f"its parameters are: {', '.join(params)}"
                )
        return cls(*args, **kwargs)


def instance_or_built(value: Any, base: type, registry: Registry, parameter: str, **kwargs: Any) -> Any:
    """`value` when it is a `base` instance, else the entry of `registry` it names, built with `kwargs`.

    Example:
        >>> class Kind: ...
        >>> kinds = Registry("kind")
        >>> _ = kinds.register("plain")(Kind)
        >>> type(instance_or_built("plain", Kind, kinds, "kind")).__name__
        'Kind'
        >>> instance_or_built("fancy", Kind, kinds, "kind")
        Traceback (most recent call last):
        ValueError: The 'kind' parameter must be one of ['plain'] or a Kind, got 'fancy'.
    """
    what = base.__name__.lower()
    if isinstance(value, base):
        if kwargs:
            raise ValueError(f"{what} arguments can only be given with a {what} name")
        return value
    if not isinstance(value, str) or value not in registry:
        raise ValueError(f"The {parameter!r} parameter must be one of {registry.names()} or a {base.__name__}, got {value!r}.")
    return registry.build(value, **kwargs)


# -- the registries: every pluggable kind, and the modules whose import registers its entries --
FAMILIES: Registry[Any] = Registry(
    "search space family", plural="search space families",
    plugins=("search_spaces.mlp", "search_spaces.cnn", "search_spaces.cnn1d", "search_spaces.transformer", "search_spaces.cell"),
)
"""Supernet families (`search_spaces`), built with their arguments."""
SEARCHERS: Registry[Any] = Registry("searcher", fixed=("space", "objectives"), plugins=("nas.searchers",))
"""Searchers of black-box search (`nas.searchers`), built on a space and objectives."""
PREDICTORS: Registry[Any] = Registry("predictor", fixed=("space",), plugins=("predictors",))
"""Learned predictors (`predictors`), built on a space."""
PREDICTOR_SELECTION: Registry[Any] = Registry("predictor selection", plugins=("predictors",))
"""Functions that choose and fit a predictor (``"auto"``: the best cross-validated one)."""
BACKENDS: Registry[Any] = Registry("backend", fixed=("net", "data"), plugins=("nas.backends",))
"""Where evaluations run (`nas.backends`), built on a supernet and its data."""
METHODS: Registry[Any] = Registry("method", plugins=("nas.methods._blackbox", "nas.tangle"))
"""How a run searches (`nas.methods`)."""
STRATEGIES: Registry[Any] = Registry("strategy", plural="strategies", plugins=("nas.training",))
"""Supernet training strategies (`nas.training`): which subnets a step trains."""
SAMPLERS: Registry[Any] = Registry("sampler", plugins=("nas.tangle",))
"""TangleNAS samplers (`nas.tangle`): how architecture parameters become weights."""


def build_family(name: str, **kwargs: Any) -> Any:
    """A new supernet of family `name` built with `kwargs` (bad arguments raise `ValueError`).

    Example:
        >>> build_family("mlp", widths=(16,), depths=(1,), ranks=(4,)).family
        'mlp'
    """
    try:
        return FAMILIES.build(name, **kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for family {name!r}: {err}") from None

