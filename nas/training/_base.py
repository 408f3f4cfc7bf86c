"""The training `Strategy` protocol: which subnets one step trains, and how their losses combine."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from nas.registry import STRATEGIES, instance_or_built

try:  # what `torch.autograd.backward` calls once it has handled its arguments (logging hooks, context)
    from torch.autograd.graph import _engine_run_backward
    from torch.autograd.graph import log as _engine_log
    from torch.autograd.variable import Variable as _Variable

    _ENGINE = _Variable._execution_engine
except ImportError:  # pragma: no cover - another torch: `Tensor.backward` itself
    _engine_run_backward = None

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Strategy:
    """Samples the subnets of one training step and accumulates their gradients.

    A subclass implements `step` and is registered in `STRATEGIES` under its name (which
    sets its `name`). Constructor arguments are its hyper-parameters, stored as given (they
    go into the checkpoint's recipe through `params`).

    Example:
        >>> @STRATEGIES.register("largest_only")
        ... class Largest(Strategy):
        ...     def step(self, net, x, y, rng, loss, distill):
        ...         with net.activate(net.largest()):
        ...             value = loss(net(x), y)
        ...         backward(value)  # value.backward(), a little faster
        ...         return value.item()
        >>> get_strategy("largest_only")
        Largest()
    """

    name: ClassVar[str] = ""
    #: whether in-place distillation is on when ``distill=None``
    distills_by_default: ClassVar[bool] = False
    #: whether the strategy can use a distillation loss at all
    supports_distill: ClassVar[bool] = False
    #: whether its steps run inside `Supernet.sliced_gradients` (False for higher-order gradients)
    slices_gradients: ClassVar[bool] = True

    def step(
        self,
        net: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        rng: np.random.Generator,
        loss: LossFn,
        distill: LossFn | None,
    ) -> float:
        """Run forward and backward passes for one batch (gradients accumulate; the caller
        zeroes them and steps the optimizer); return the loss to report."""
        raise NotImplementedError

    def prepare(self, net: nn.Module) -> None:
        """Called once by `train_supernet` before the optimizer is built (a strategy that adds
        weights to the supernet adds them here); nothing by default."""

    def bind(self, net: nn.Module, optimizer: torch.optim.Optimizer, total_steps: int) -> None:
        """Called once by `train_supernet` after the optimizer is built, with the number of
        optimizer steps the run takes (a strategy that edits weights or follows a schedule of
        its own keeps them); nothing by default."""

    def params(self) -> dict[str, Any]:
        """The hyper-parameters (public attributes)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def backward(loss: torch.Tensor) -> None:
    """``loss.backward()`` for a scalar loss, without `torch.autograd.backward`'s per-call argument handling.

    A training step runs one small backward pass per subnet; on a CPU that handling (the
    tuple conversions, the override checks, making the ones gradient, copying the context
    for device threads a CPU pass does not use) costs about 35 µs a call, 6-10% of a small
    model's sandwich step (`bench/throughput.py`). The engine call,
    and so every gradient, is the one ``loss.backward()`` makes. Anything else (a tensor
    subclass, a non-scalar, one that needs no gradient) goes to ``loss.backward()``, which
    handles or refuses it as usual. The built-in strategies call it; a strategy of your
    own may.

    Example:
        >>> weight = nn.Parameter(torch.ones(2))
        >>> backward((weight * 3).sum())
        >>> weight.grad.tolist()
        [3.0, 3.0]
    """
    if (_engine_run_backward is None or type(loss) is not torch.Tensor or loss.dim() or not loss.requires_grad
            or not loss.is_floating_point() or loss.is_nested):
        loss.backward()
        return
    ones = (torch.ones_like(loss, memory_format=torch.preserve_format),)
    if loss.device.type == "cpu" and not _engine_log.isEnabledFor(logging.DEBUG):
        # On a CPU the engine runs the pass on this thread, which holds the context that `_engine_run_backward`
        # copies for device threads (~13 us a call), and it has no logging hooks to attach: the engine itself.
        _ENGINE.run_backward((loss,), ones, False, False, (), allow_unreachable=True, accumulate_grad=True)
        return
    _engine_run_backward((loss,), ones, False, False, (), allow_unreachable=True, accumulate_grad=True)


def steps_taken(optimizer: torch.optim.Optimizer | None, params: list[nn.Parameter]) -> int:
    """Optimizer steps taken so far, read from the state of the first of `params` that counts them
    (Adam, AdamW; a resumed run's optimizer holds its checkpoint's count); 0 if none does (SGD, a new run).

    Example:
        >>> weight = nn.Parameter(torch.zeros(2))
        >>> optimizer = torch.optim.AdamW([weight])
        >>> steps_taken(optimizer, [weight])
        0
        >>> weight.grad = torch.ones(2)
        >>> optimizer.step()
        >>> steps_taken(optimizer, [weight])
        1
    """
    if optimizer is not None:
        for p in params:
            step = optimizer.state.get(p, {}).get("step")
            if step is not None:
                return int(step)
    return 0


def get_strategy(strategy: str | Strategy, **kwargs: Any) -> Strategy:
    """A strategy instance from a registry name (built with `kwargs`) or an instance."""
    return instance_or_built(strategy, Strategy, STRATEGIES, "strategy", **kwargs)
