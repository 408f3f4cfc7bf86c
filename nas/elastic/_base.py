"""The elastic-module protocol: a layer that owns search dimensions and slices its weights."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nas.elastic._grads import SliceGradients
from nas.space import Choice, Value


@dataclass(frozen=True)
class Rule:
    """A size computed from a dimension's value and the layer's input width.

    Example:
        >>> from functools import partial
        >>> rule = Rule(Choice("expand", [2, 4]), times_input)
        >>> rule.size(4, 16)
        64

    Args:
        choice: the dimension whose value drives the size.
        fn: ``fn(value, in_width) -> size``; a module-level function or partial (picklable).
    """

    choice: Choice
    fn: Callable[[Value, int], int]

    def size(self, value: Value, in_width: int) -> int:
        """The size for `value` at input width `in_width`."""
        return int(self.fn(value, in_width))


def times_input(value: Value, in_width: int) -> int:
    """Size rule: the value (a ratio) times the input width."""
    return int(round(float(value) * in_width))


def scaled(base: int, value: Value, in_width: int, divisor: int = 1) -> int:
    """Size rule: `base` times the value (a multiplier), rounded to a multiple of `divisor`."""
    size = max(divisor, int(round(base * float(value) / divisor)) * divisor)
    return size


Size = int | Choice | Rule | None


class ElasticModule(nn.Module):
    """A module that owns search dimensions and runs the sub-layer picked by the active config.

    Subclasses declare their dimensions with `_own(spec)`; the supernet calls `_configure`
    with each validated config. Leaves (`leaf = True`) hold their weights directly and
    implement `_cost` and `to_dense`; containers (depth, op choice) hold sub-modules.
    """

    leaf: bool = True
    _sink: SliceGradients | None = None  # set inside `Supernet.sliced_gradients`

    def __init__(self) -> None:
        super().__init__()
        self._choices: list[Choice] = []
        self._values: dict[str, Value] = {}
        self._views: dict = {}  # inference-only cache of weight views for the active subnet
        self._leaf_views: dict = {}  # training leaves per (input size, values): `_leaves`
        self._grad_buffers: dict = {}  # the weights' gradient buffers for those leaves
        self._key: tuple = ()  # the values, as a key
        self._defaults: tuple[tuple[str, Value], ...] = ()  # (name, largest value) per dimension

    def __getstate__(self) -> dict[str, Any]:
        """The module without its caches (weight views, training leaves, gradient buffers): a
        copy or a pickle (a Ray worker's supernet) carries the weights once and rebuilds them."""
        state = self.__dict__.copy()
        state["_views"], state["_leaf_views"], state["_grad_buffers"] = {}, {}, {}
        state.pop("_sink", None)
        return state

    def _own(self, spec: Size) -> None:
        """Register the dimension behind a size spec, defaulting it to its largest value."""
        choice = spec.choice if isinstance(spec, Rule) else spec
        if isinstance(choice, Choice):
            if choice.name not in {c.name for c in self._choices}:
                self._choices.append(choice)
                self._defaults = (*self._defaults, (choice.name, choice.values[-1]))
            self._values[choice.name] = choice.values[-1]
            self._key = tuple(self._values.values())

    def dimensions(self) -> list[Choice]:
        """The dimensions this module owns."""
        return list(self._choices)

    def equivalent(self, config: Mapping[str, Value], in_width: int | None = None) -> dict[str, Value]:
        """Values of this module's dimensions to use instead of `config`'s, for the same sub-layer.

        A layer declares configs with the same effective sub-layer here (none by default);
        `Supernet.canonical` applies a replacement when every layer sharing the dimension
        proposes it. `in_width`: the input width when the caller knows it (else the largest).
        """
        return {}

    def _configure(self, config: Mapping[str, Value]) -> None:
        """Take this module's values from `config` (absent ones: largest); cached views go when a value changes."""
        values, changed = self._values, False
        for name, largest in self._defaults:
            value = config.get(name, largest)
            if values[name] != value:
                values[name], changed = value, True
        if changed:
            self._views.clear()
            self.__dict__["_key"] = tuple(values.values())

    def _cached(self, key: object, make: Callable[[], Any]) -> Any:
        """`make()` (views of the weights), memoised per input size when autograd is off.

        Only views are cached, or copies keyed by the weight's version, so in-place weight
        updates stay visible; the cache goes when this module's values change (`_configure`)
        or the weights move (`Supernet._apply`).
        """
        if torch.is_grad_enabled():
            sink = self._sink
            if sink is None:
                return make()
            slices = self._leaf_views.get((key, self._key))  # `_leaves`' common case, inlined: kept leaves
            return sink.use(slices) if slices else self._leaves(key, make)
        views = self._views.get(key)
        if views is None:
            views = self._views[key] = make()
        return views

    def _leaves(self, key: object, make: Callable[[], Any]) -> Any:
        """`make()`'s slices as leaves whose gradients accumulate straight into the weights'
        gradients (inside `Supernet.sliced_gradients`: `SliceGradients`), kept per input size
        and values while the weights stay where they are; `make()` itself when they are copies."""
        key = (key, self._key)
        slices = self._leaf_views.get(key)
        if slices is None:
            with torch.no_grad():
                views = make()
            own = (*self._parameters.values(), *self._buffers.values())
            if len(self._leaf_views) >= 256:
                self._leaf_views.clear()
            slices = self._leaf_views[key] = self._sink.prepare(views, own, self._grad_buffers) or False  # type: ignore[union-attr]
        if slices is False:  # copies: autograd's way
            return make()
        return self._sink.use(slices)  # type: ignore[union-attr]

    def _resolve(self, spec: Size, maximum: int, in_width: int = 0) -> int:
        """The active size of a spec given the input width."""
        if spec is None or isinstance(spec, int):
            return maximum
        if isinstance(spec, Choice):
            return self._values[spec.name]  # type: ignore[return-value]
        return spec.size(self._values[spec.choice.name], in_width)

    def _cost(self, inputs: tuple, output: Any) -> tuple[int, int, dict[str, Any]]:
        """(params, per-sample MACs, graph attributes) of the active sub-layer for these inputs."""
        raise NotImplementedError

    def to_dense(self, inputs: tuple, densify: Callable[[nn.Module], nn.Module]) -> nn.Module:
        """A plain module holding copies of the active slices (inputs: the traced inputs)."""
        raise NotImplementedError


def crop(t: torch.Tensor, sizes: Sequence[int], starts: Sequence[int] | None = None) -> torch.Tensor:
    """``t[s0:s0+n0, s1:s1+n1, ...]`` over the leading dimensions (starts default 0), as one view.

    One `as_strided` view is one autograd node: its backward writes the gradient into one
    zero buffer of the weight's size, where per-dimension indexing chains a node and a
    full-size zero buffer per sliced dimension. Same values, same gradients.

    Example:
        >>> w = torch.arange(12.0).view(3, 4)
        >>> torch.equal(crop(w, (2, 3)), w[:2, :3]), torch.equal(crop(w, (1, 2), (1, 1)), w[1:2, 1:3])
        (True, True)
    """
    n = len(sizes)
    shape = t.shape
    if n > len(shape):
        return t[tuple(slice(0, size) for size in sizes)]  # plain indexing's error
    stride = t.stride()
    offset, whole = t.storage_offset(), True
    for k in range(n):
        s, size, full = (0 if starts is None else starts[k]), sizes[k], shape[k]
        if s < 0 or s + size > full:  # out of range: plain indexing's clamping and errors
            return t[tuple(slice(s, s + size) for s, size in zip(starts or (0,) * n, sizes))]
        if size != full:
            whole = False
        if s:
            offset += s * stride[k]
            whole = False
    if whole:
        return t
    return t.as_strided((*sizes, *shape[n:]), stride, offset)


def check_size(spec: Size, maximum: int, what: str) -> None:
    """Reject a Choice whose values exceed the allocated maximum."""
    if isinstance(spec, Choice):
        if spec.kind is not int:
            raise ValueError(f"{what}: Choice {spec.name!r} must have int values, got {list(spec.values)}")
        if max(spec.values) > maximum or min(spec.values) < 1:
            raise ValueError(f"{what}: Choice {spec.name!r} values {list(spec.values)} must lie in 1..{maximum}")
