"""Trace a user's model with torch.fx, keeping the layers fx cannot trace as opaque leaves."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

log = logging.getLogger("nas.from_model")


class _Tracer(fx.Tracer):
    """fx's tracer that also treats `opaque` modules as leaves and remembers which module it is inside."""

    def __init__(self, opaque: set[str]):
        super().__init__()
        self.opaque = opaque
        self.inside: list[str] = []

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.opaque or super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        self.inside.append(self.path_of_module(m))
        out = super().call_module(m, forward, args, kwargs)
        self.inside.pop()
        return out


def trace(model: nn.Module, example: torch.Tensor) -> tuple[fx.GraphModule, dict[str, str]]:
    """The model's fx graph with tensor shapes, and the layers left opaque (name -> why).

    A module whose forward fx cannot trace (data-dependent control flow, ...) becomes a
    leaf of the graph, so the rest of the model is still analysed; when the model's own
    forward cannot be traced, a ValueError names it and fx's reason.
    """
    opaque: dict[str, str] = {}
    while True:
        tracer = _Tracer(set(opaque))
        try:
            graph = tracer.trace(model)
            break
        except Exception as err:  # fx raises TraceError, TypeError, NotImplementedError, ...
            name = tracer.inside[-1] if tracer.inside else ""
            if not name or name in opaque:
                where = f"layer {name!r} ({type(model.get_submodule(name)).__name__})" if name else f"{type(model).__name__}.forward"
                raise ValueError(
                    f"from_model: torch.fx cannot trace {where}: {type(err).__name__}: {err}. "
                    "Make that forward traceable (no Python control flow on tensor values), or pass targets= to "
                    "convert only layers outside it."
                ) from err
            reason = f"torch.fx cannot trace it ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
            log.info("from_model: %s (%s): %s; kept as one fixed layer", name, type(model.get_submodule(name)).__name__, reason)
            opaque[name] = reason
    gm = fx.GraphModule(tracer.root, graph)
    ShapeProp(gm).propagate(example)
    return gm, opaque


def shape_of(node: Any) -> tuple[int, ...] | None:
    """The traced tensor shape of an fx node (None: not a tensor)."""
    meta = getattr(node, "meta", {}).get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None
