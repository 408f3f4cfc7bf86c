"""`SliceGradients`: backward passes that add each weight slice's gradient straight into its slice of the weight's gradient."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn


class Slices(NamedTuple):
    """A sub-layer's training slices: what `forward` uses, the leaves among them with the
    slices of gradient buffers they accumulate into, and the (weight, buffer) pairs."""

    views: tuple
    leaves: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    weights: tuple[tuple[nn.Parameter, torch.Tensor], ...]


class SliceGradients:
    """Where the weight slices of one training step's subnets send their gradients.

    Autograd's backward through a weight slice writes the slice's gradient into a zero
    buffer of the whole weight's size and adds that to ``weight.grad``: graph nodes and
    full-size passes per slice, per subnet, and the slices themselves are remade by Python
    code at every forward. Inside `Supernet.sliced_gradients`, an elastic layer's slices
    are instead leaves sharing the weight's memory, made once per sub-layer and kept
    (`prepare`). Each leaf's ``.grad`` is the matching slice of a gradient buffer kept per
    weight, so autograd's own accumulation adds every slice gradient in place, where it
    belongs, in the order the backward passes run: the sums autograd would make, bit for bit.
    A step's first use of a weight (`use`) makes the zeroed buffer the weight's ``.grad``;
    a weight no subnet used keeps ``.grad`` None, as with autograd.

    Example:
        >>> w = nn.Parameter(torch.ones(3, 2))
        >>> sink = SliceGradients()
        >>> with torch.no_grad():
        ...     slices = sink.prepare((w[:2],), (w,), {})
        >>> (leaf,) = sink.use(slices)
        >>> leaf.sum().backward()
        >>> sink.close()
        >>> w.grad.tolist()
        [[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
    """

    def __init__(self) -> None:
        self._used: list[Slices] = []

    @staticmethod
    def prepare(views: Sequence[Any], own: Sequence[torch.Tensor | None], buffers: dict[nn.Parameter, torch.Tensor]) -> Slices | None:
        """`views` (made with autograd off) with each trainable weight's slice replaced by a
        leaf sharing its memory, whose ``.grad`` is that slice of the weight's buffer in
        `buffers` (made here when missing); None when some tensor is neither one of `own`
        (the layer's weights and buffers) nor a view of one (a copy: gathered, made
        contiguous, merged), whose gradient has no slice to go to."""
        out, leaves, weights = [], [], {}
        for view in views:
            if isinstance(view, torch.Tensor):
                base = view if view._base is None else view._base
                param = next((t for t in own if t is base), None)
                if param is None:
                    return None
                if isinstance(param, nn.Parameter) and param.requires_grad:
                    buffer = buffers.get(param)
                    if buffer is None:
                        buffer = torch.zeros_like(param, memory_format=torch.preserve_format)
                        if buffer.stride() != param.stride():
                            return None
                        buffers[param] = buffer
                    offset = buffer.storage_offset() + view.storage_offset() - param.storage_offset()
                    target = buffer.as_strided(view.shape, view.stride(), offset)
                    leaf = view.detach().requires_grad_()
                    leaf.grad = target
                    leaves.append((leaf, target))
                    weights[param] = buffer
                    view = leaf
            out.append(view)
        return Slices(tuple(out), tuple(leaves), tuple(weights.items()))

    def use(self, slices: Slices) -> tuple:
        """`slices.views`, for a forward pass of this step: each weight's buffer becomes its
        ``.grad`` (zeroed) unless it already is."""
        for param, buffer in slices.weights:
            grad = param.grad
            if grad is not buffer:
                if grad is None:
                    buffer.zero_()
                else:  # a gradient of autograd's own (weight used directly too, or not zeroed): carried on
                    buffer.copy_(grad)
                param.grad = buffer
        self._used.append(slices)
        return slices.views

    def close(self) -> None:
        """End the step; a backward pass with ``create_graph=True`` (which gives a leaf a new
        ``.grad`` instead of adding into it) is refused here, its gradients being incomplete."""
        replaced = False
        for slices in self._used:
            for leaf, target in slices.leaves:
                if leaf.grad is not target:
                    replaced, leaf.grad = True, target
        self._used.clear()
        if replaced:
            raise RuntimeError(
                "a backward pass with create_graph=True ran inside Supernet.sliced_gradients, whose weight gradients "
                "it cannot complete; run it outside (a Strategy with slices_gradients = False)"
            )
