"""The training recipe shared by supernet training and tangle search: defaults, checks, optimizer, schedule."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.data import Data

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "constant")

OptimizerSpec = str | Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer]
ScheduleSpec = str | None | Callable[[torch.optim.Optimizer, int], Any]

# The default recipe, shared by `train_supernet` and `train_standalone` (tuned with bench/ranking.py).
EPOCHS = 40
LR = 3e-3
BATCH_SIZE = 64
WEIGHT_DECAY = 1e-4


def check_recipe(**values: Any) -> None:
    """Validate epochs, lr, batch_size, weight_decay, grad_clip and seed; raise ValueError naming the first bad one."""
    for name in ("epochs", "batch_size"):
        v = values[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "epochs" else 1):
            raise ValueError(f"The '{name}' parameter must be an int >= {0 if name == 'epochs' else 1}, got {v!r}.")
    for name in ("lr", "weight_decay"):
        v = values[name]
        if not isinstance(v, (int, float)) or v < 0 or (name == "lr" and v == 0):
            raise ValueError(f"The '{name}' parameter must be a number {'> 0' if name == 'lr' else '>= 0'}, got {v!r}.")
    if values["grad_clip"] is not None and not values["grad_clip"] > 0:
        raise ValueError(f"The 'grad_clip' parameter must be None or > 0, got {values['grad_clip']!r}.")
    seed = values["seed"]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"The 'seed' parameter must be an int >= 0, got {seed!r}.")


def make_optimizer(spec: OptimizerSpec, params: list[nn.Parameter], lr: float, weight_decay: float, *,
                   fused: bool = False) -> torch.optim.Optimizer:
    """The optimizer named by `spec` (or built by it, when callable) over `params`.

    ``fused=True`` asks a named optimizer for torch's fused kernel (one call per step over
    all of `params` instead of a Python loop over them: the same update up to float
    rounding; for SGD, and where the parameters' device has no fused kernel, the
    multi-tensor ``foreach`` one); a callable `spec` builds what it builds. The default per-parameter
    loop stays what single-process training uses (its results are pinned bit for bit).

    Example:
        >>> w = [nn.Parameter(torch.zeros(2))]
        >>> make_optimizer("adamw", w, 0.1, 0.0, fused=True).defaults["fused"]
        True
    """
    if callable(spec):
        return spec(params, lr)
    kernel: dict[str, Any] = {}
    if fused:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        supported = set(_get_fused_kernels_supported_devices())
        # SGD's fused kernel fails on a momentum buffer not made yet (a weight's first gradient after
        # other weights' steps, as a supernet's unused weights have): it takes the foreach one
        kernel = {"fused": True} if spec != "sgd" and all(p.device.type in supported for p in params) else {"foreach": True}
    if spec == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **kernel)
    if spec == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **kernel)
    if spec == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay, **kernel)
    raise ValueError(f"The 'optimizer' parameter must be one of {list(OPTIMIZERS)} or a callable (params, lr) -> Optimizer, got {spec!r}.")


def make_schedule(spec: ScheduleSpec, opt: torch.optim.Optimizer, total_steps: int) -> Any:
    """The per-step LR scheduler named by `spec` (or built by it, when callable); None for a constant rate."""
    if spec is None or spec == "constant":
        return None
    if callable(spec):
        return spec(opt, total_steps)
    if spec == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, _Cosine(total_steps))
    raise ValueError(f"The 'schedule' parameter must be one of {list(SCHEDULES)}, None or a callable (optimizer, total_steps) -> scheduler, got {spec!r}.")


class _Cosine:
    """LR factor: cosine from 1 to 0 over `total` steps."""

    def __init__(self, total: int):
        self.total = total

    def __call__(self, step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, self.total) / self.total))


def steps_per_epoch(data: Data, batch_size: int) -> int:
    """Optimizer steps in one pass over `data`'s training split at `batch_size` (a DataLoader's own length)."""
    from torch.utils.data import DataLoader

    if isinstance(data.train, DataLoader):
        return len(data.train)
    n = len(data.train)  # type: ignore[arg-type]
    return n // batch_size if n >= batch_size else 1


@dataclass(frozen=True)
class Recipe:
    """How weights are trained: epochs, learning rate, batch size, optimizer, schedule, clipping, seed.

    Checked on construction (a `ValueError` naming the first bad value).

    Example:
        >>> Recipe(epochs=2, lr=1e-2).record()["lr"]
        0.01
        >>> Recipe(batch_size=0)
        Traceback (most recent call last):
        ...
        ValueError: The 'batch_size' parameter must be an int >= 1, got 0.
    """

    epochs: int = EPOCHS
    lr: float = LR
    batch_size: int = BATCH_SIZE
    optimizer: OptimizerSpec = "adamw"
    weight_decay: float = WEIGHT_DECAY
    schedule: ScheduleSpec = "cosine"
    grad_clip: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_recipe(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, weight_decay=self.weight_decay, grad_clip=self.grad_clip, seed=self.seed)

    def record(self) -> dict[str, Any]:
        """What a checkpoint stores of it (all but the epochs, which a resume may raise)."""
        return {
            "lr": self.lr, "batch_size": self.batch_size, "optimizer": _name(self.optimizer), "weight_decay": self.weight_decay,
            "schedule": _name(self.schedule), "grad_clip": self.grad_clip, "seed": self.seed,
        }

    def build(self, params: list[nn.Parameter], data: Data, *, fused: bool = False) -> tuple[torch.optim.Optimizer, Any]:
        """The optimizer over `params` and its per-step schedule over all epochs of `data` (None: constant);
        ``fused``: as `make_optimizer` takes it."""
        opt = make_optimizer(self.optimizer, params, self.lr, self.weight_decay, fused=fused)
        return opt, make_schedule(self.schedule, opt, max(1, self.epochs * steps_per_epoch(data, self.batch_size)))


def _name(spec: Any) -> Any:
    if spec is None or isinstance(spec, str):
        return spec
    return getattr(spec, "__qualname__", type(spec).__name__)
