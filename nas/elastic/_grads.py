"""`SliceGradients`: backward passes that add each weight slice's gradient into its slice of the weight's gradient."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

Entry = tuple[torch.Tensor, nn.Parameter, torch.Tensor, torch.Tensor]  # (leaf, its weight, the weight's gradient buffer, the slice of it)


class SliceGradients:
    """Where the weight slices of one training step's subnets send their gradients.

    Autograd's backward through a weight slice writes the slice's gradient into a zero
    buffer of the whole weight's size and adds that to ``weight.grad``: graph nodes and
    full-size passes per slice, per subnet, and the slices themselves are remade by Python
    code at every forward. Inside `Supernet.sliced_gradients`, an elastic layer's slices
    are leaves sharing the weight's memory, made once per sub-layer and kept (`prepare`);
    their slice-sized gradients are added into the matching slice of the weight's gradient
    by `fold`, in the order the subnets ran: the same sums as autograd's, bit for bit. The
    gradient is a buffer kept per weight, zeroed when a step first writes to it.

    Example:
        >>> w = nn.Parameter(torch.ones(3, 2))
        >>> sink = SliceGradients()
        >>> with torch.no_grad():
        ...     (leaf,), entries = sink.prepare((w[:2],), (w,), {})
        >>> sink.register(entries)
        >>> leaf.sum().backward()
        >>> sink.fold()
        >>> w.grad.tolist()
        [[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
    """

    def __init__(self) -> None:
        self._entries: list[Entry] = []

    @staticmethod
    def prepare(views: Sequence[Any], own: Sequence[torch.Tensor | None],
                buffers: dict[nn.Parameter, torch.Tensor]) -> tuple[tuple, tuple[Entry, ...]] | None:
        """`views` (made with autograd off) with each trainable weight's slice replaced by a
        leaf sharing its memory, and the leaves' entries for `register`; None when some
        tensor is neither one of `own` (the layer's weights and buffers) nor a view of one
        (a copy: gathered, made contiguous, merged), whose gradient has no slice to go to.
        `buffers`: the layer's gradient buffer per weight (filled here)."""
        out, entries = [], []
        for view in views:
            if isinstance(view, torch.Tensor):
                base = view if view._base is None else view._base
                param = next((t for t in own if t is base), None)
                if param is None:
                    return None
                if isinstance(param, nn.Parameter) and param.requires_grad:
                    buffer = buffers.get(param)
                    if buffer is None:
                        buffer = buffers[param] = torch.zeros_like(param, memory_format=torch.preserve_format)
                        if buffer.stride() != param.stride():
                            return None
                    target = buffer.as_strided(view.shape, view.stride(), buffer.storage_offset() + view.storage_offset() - param.storage_offset())
                    leaf = view.detach().requires_grad_()
                    entries.append((leaf, param, buffer, target))
                    view = leaf
            out.append(view)
        return tuple(out), tuple(entries)

    def register(self, entries: Sequence[Entry]) -> None:
        """Remember that these leaves ran in this step's graph (their gradients go to `fold`)."""
        self._entries.extend(entries)

    def fold(self, *, final: bool = True) -> None:
        """Add the leaves' gradients into their weights' gradients, in the order the leaves ran
        (`final`: then forget every leaf; else keep those still without a gradient)."""
        keep: list[Entry] = []
        targets: list[torch.Tensor] = []
        grads: list[torch.Tensor] = []
        seen: set[int] = set()  # weights with a slice in `targets`: a second one waits (no overlapping adds)
        for entry in self._entries:
            leaf, param, buffer, target = entry
            g = leaf.grad
            if g is None:
                if not final:
                    keep.append(entry)
                continue
            leaf.grad = None
            grad = param.grad
            if grad is not buffer:
                if grad is not None:  # a gradient tensor of someone else's: the same slice of it
                    full = torch.zeros_like(param)
                    full.as_strided(target.shape, target.stride(), full.storage_offset() + target.storage_offset() - buffer.storage_offset()).copy_(g)
                    grad.add_(full)
                    continue
                buffer.zero_()  # the step's first gradient for this weight
                param.grad = buffer
            if id(param) in seen:
                torch._foreach_add_(targets, grads)
                targets, grads, seen = [], [], set()
            seen.add(id(param))
            targets.append(target)
            grads.append(g)
        if targets:
            torch._foreach_add_(targets, grads)
        self._entries = keep
