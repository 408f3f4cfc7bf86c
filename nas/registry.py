"""Name -> class registries, so specs and the command line can name a family, searcher, predictor or backend."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
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
    """

    def __init__(self, kind: str, fixed: tuple[str, ...] = (), plural: str | None = None):
        self.kind, self.fixed, self.plural = kind, fixed, plural or f"{kind}s"
        self._entries: dict[str, Callable[..., T]] = {}

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
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self.names())

    def lookup(self, name: str) -> Callable[..., T]:
        """The class registered as `name`; a clear error listing the names otherwise."""
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


def instance_or_named(value: Any, base: type, entries: Mapping[str, Callable[..., Any]], parameter: str, **kwargs: Any) -> Any:
    """`value` when it is a `base` instance, else the entry of `entries` it names, built with `kwargs`.

    Example:
        >>> instance_or_named("list", list, {"list": list}, "kind")
        []
        >>> instance_or_named("set", list, {"list": list}, "kind")
        Traceback (most recent call last):
        ValueError: The 'kind' parameter must be one of ['list'] or a list, got 'set'.
    """
    what = base.__name__.lower()
    if isinstance(value, base):
        if kwargs:
            raise ValueError(f"{what} arguments can only be given with a {what} name")
        return value
    if value not in entries:
        raise ValueError(f"The {parameter!r} parameter must be one of {sorted(entries)} or a {base.__name__}, got {value!r}.")
    return entries[value](**kwargs)
