"""The supernet `nas.from_model` returns: the user's model with elastic layers, and what was made elastic."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from nas.supernet import Supernet


def tensor_output(out: Any, output: str | None = None) -> torch.Tensor:
    """The tensor a model's output object holds: itself, ``out[output]``, ``out.logits``, or its first tensor."""
    if isinstance(out, torch.Tensor):
        return out
    if output is not None:
        return out[output] if isinstance(out, Mapping) or hasattr(out, "keys") else getattr(out, output)
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, Mapping):
        out = tuple(out.values())
    if isinstance(out, (tuple, list)):
        for item in out:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(f"the model returned {type(out).__name__}, which holds no tensor; pass output= to name one")


class ModelSupernet(Supernet):
    """A user's model whose convertible layers are elastic; `forward` returns its output tensor.

    Built by `nas.from_model`. `extract` returns the user's own class with smaller layers
    (and, for a Hugging Face model, a smaller config); `describe` says what was made
    elastic and what was left fixed, and why.

    Args:
        body: the converted copy of the user's model.
        example: an example input batch (its sample shape and dtype define the input).
        notes: lines saying what was made elastic or left fixed.
        output: which field of the model's output object `forward` returns (None: the
            tensor itself, ``logits``, or the first tensor).
        finish: called on each extracted model (e.g. to shrink a Hugging Face config).
    """

    def __init__(
        self,
        body: nn.Module,
        example: torch.Tensor,
        notes: list[str],
        output: str | None = None,
        finish: Callable[[nn.Module, Mapping[str, Any]], nn.Module] | None = None,
    ):
        floating = example.is_floating_point()
        super().__init__(body, tuple(example.shape[1:]), family="custom", family_args={}, input_dtype=None if floating else example.dtype)
        self.notes = list(notes)
        self.output = output
        self._finish = finish

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tensor_output(self.body(x), self.output)

    def describe(self) -> str:
        """What `from_model` made elastic and what it left fixed, and why: one line each."""
        return "\n".join(self.notes)

    def _extract(self, config):
        dense = super()._extract(config)
        return self._finish(dense, config) if self._finish is not None else dense
