"""`train_supernet` and `train_standalone`: the `Supervised` step of `nas.training.fit`, and the checkpoint reader."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from nas.data import resolve
from nas.devices import check_precision, resolve_device
from nas.evaluate import default_loss, score
from nas.rundir import CHECKPOINT, RunDir
from nas.training._base import LossFn, Strategy, backward
from nas.training._distill import DistillFn
from nas.training._fit import _device, fit, read_checkpoint
from nas.training._plan import Plan, plan_supernet, supernet_step
from nas.training._recipe import (
    BATCH_SIZE,
    EPOCHS,
    LR,
    WEIGHT_DECAY,
    OptimizerSpec,
    Recipe,
    ScheduleSpec,
)
from nas.training._supervised import Supervised

__all__ = ["CHECKPOINT", "Plan", "StandaloneResult", "Supervised", "load_checkpoint", "reinitialise", "train_standalone", "train_supernet", "trained_on"]


def train_supernet(
    net: nn.Module,
    data: Any = None,
    strategy: str | Strategy | None = None,
    loss: LossFn | None = None,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    distill: str | DistillFn | bool | None = None,
    optimizer: OptimizerSpec = "adamw",
    weight_decay: float | None = None,
    schedule: ScheduleSpec = "cosine",
    grad_clip: float | None = None,
    seed: int = 0,
    run: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    backend: str = "local",
    workers: int | None = None,
    use_gpu: bool | None = None,
    ray_address: str | None = None,
    cpus_per_worker: float = 1,
    max_failures: int = 3,
) -> list[dict[str, Any]]:
    """Train a supernet in place so that its subnets need no retraining; returns the per-epoch history.

    Example:
        >>> from search_spaces.mlp import MLP
        >>> net = MLP(depths=(1,), widths=(16, 32), ranks=(4, 8))
        >>> history = train_supernet(net, epochs=1, progress=False)
        >>> sorted(history[0])
        ['epoch', 'largest_accuracy', 'largest_loss', 'loss', 'lr', 'seconds', 'smallest_accuracy', 'smallest_loss']

    Args:
        net: the supernet (trained in place, on the device of its parameters unless `device` is given).
        data: as `nas.data.resolve` takes it (None: the family's digits split).
        strategy: ``"sandwich"``, ``"uniform"``, ``"ordered_dropout"`` or a `Strategy`.
            None (and None for epochs, lr, batch_size, weight_decay, distill): the family's
            ``recipe`` (`nas.training.family_recipe`, scaled by the data size), else sandwich.
        loss: ``(outputs, targets) -> scalar``; default cross-entropy for class targets,
            mean squared error otherwise (then the validation loss is the metric).
        epochs: passes over the training data.
        lr: peak learning rate.
        batch_size: batch size (a `DataLoader` keeps its own); with ``backend="ray"`` the
            global batch, split evenly over the workers.
        distill: in-place distillation of the others from the largest subnet: ``"kl"``,
            ``"alpha"`` (AlphaNet's adaptive alpha-divergence), a callable
            ``(student, teacher) -> scalar``, False (off), or None (the strategy's default:
            KL for sandwich on class targets, off otherwise).
        optimizer: ``"adamw"``, ``"adam"``, ``"sgd"`` (momentum 0.9, Nesterov) or
            ``callable(params, lr) -> Optimizer``.
        weight_decay: weight decay of the named optimizers.
        schedule: ``"cosine"`` (per step, to zero), ``"constant"`` (or None), or
            ``callable(optimizer, total_steps) -> LR scheduler`` stepped once per batch.
        grad_clip: clip the gradient norm to this value (None: no clipping).
        seed: seeds subnet sampling, data order and torch's generator: equal seeds give
            equal weights on CPU.
        run: a directory; after every epoch a checkpoint (``supernet.pt``, the format of
            `nas.training.fit`: model, optimizer, scheduler, every random state, epoch,
            history, recipe) is written there, under the directory's lock (another process
            training or searching in it raises `nas.rundir.RunLocked`).
        resume: continue from the checkpoint in `run` (if there is one), bit-for-bit as
            the uninterrupted run would have gone; the recipe must match it.
        progress: show a tqdm bar (epoch, loss, largest/smallest validation accuracy).
        callback: called with each epoch's history record; returning True stops training
            (local backend only).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``: the
            supernet is moved there once and stays there; None: where it is
            (`nas.devices.resolve_device`; CUDA where there is none raises `nas.devices.DeviceError`).
            With ``backend="ray"`` it says whether the workers get GPUs (``"auto"``: when the
            cluster has them) unless `use_gpu` is given.
        precision: ``"fp32"``, or ``"bf16"``: each step's forward and backward passes under
            CUDA bf16 autocast (weights, optimizer and checkpoint stay float32); CUDA only.
        backend: ``"local"`` (this process) or ``"ray"``: data-parallel training on a Ray
            cluster through Ray Train (`nas.training.train_distributed`; the same subnets on
            every worker each step, one gradient all-reduce per step, each worker its shard
            of every batch). The strategies are unchanged.
        workers: with ``backend="ray"``, the training processes (default: one per GPU when
            the workers use GPUs, else one per `cpus_per_worker` CPUs of the cluster).
        use_gpu: with ``backend="ray"``, one GPU per worker (None: when the cluster has GPUs).
        ray_address: with ``backend="ray"``: None (join ``RAY_ADDRESS`` when set, else start a
            private Ray on 127.0.0.1 for the call), ``"auto"`` or ``"host:port"``.
        cpus_per_worker: with ``backend="ray"``, CPUs (and torch threads) per worker.
        max_failures: with ``backend="ray"``, restarts of the worker group after a worker
            dies; each restart resumes from the last epoch's checkpoint.

    Each history record holds ``epoch``, ``loss`` (mean training loss of the reported
    subnet), ``lr``, ``largest_accuracy``/``largest_loss`` and ``smallest_accuracy``/
    ``smallest_loss`` (validation, BatchNorm recalibrated; accuracy for class targets only)
    and ``seconds``; with ``backend="ray"`` also ``cpu_seconds`` (worker 0's CPU time) and
    ``elapsed_seconds`` (worker 0's wall-clock since its first epoch began, start-up apart).

    A non-finite loss stops training with `nas.training.Diverged` (naming the epoch and
    step); the checkpoint of the last finite epoch is kept.

    The net remembers the data it was trained on (``net.trained_on``, `nas.data.fingerprint`,
    kept in the checkpoint): evaluating, searching or exporting it on other data warns.
    """
    if backend not in ("local", "ray"):
        raise ValueError(f"The 'backend' parameter of train_supernet must be 'local' or 'ray', got {backend!r}.")
    if backend == "local":
        for name, value in (("workers", workers), ("use_gpu", use_gpu), ("ray_address", ray_address)):
            if value is not None:
                raise ValueError(f"The '{name}' parameter of train_supernet applies only to backend='ray' (backend is 'local').")
    plan = plan_supernet(net, data, strategy, loss, epochs=epochs, lr=lr, batch_size=batch_size, distill=distill,
                         optimizer=optimizer, weight_decay=weight_decay, schedule=schedule, grad_clip=grad_clip,
                         seed=seed, precision=precision)
    if backend == "ray":
        from nas.training._distributed import train_distributed

        if callback is not None:
            raise ValueError("The 'callback' parameter of train_supernet applies only to backend='local' (the workers run elsewhere).")
        return train_distributed(net, plan, run=run, resume=resume, workers=workers, use_gpu=use_gpu, device=device,
                                 address=ray_address, cpus_per_worker=cpus_per_worker, max_failures=max_failures,
                                 progress=progress)
    if device is not None:
        net.to(resolve_device(device))  # once: the supernet stays on the device
    check_precision(precision, _device(net))
    step = supernet_step(net, plan)
    return fit(step, plan.data, plan.recipe, identity=plan.identity, run=run, resume=resume, progress=progress,
               callback=callback, desc=f"train {getattr(net, 'family', 'supernet')}")


class StandaloneResult(NamedTuple):
    """What `train_standalone` returns."""

    model: nn.Module
    """the trained dense subnet"""
    accuracy: float | None
    """its validation accuracy (None for regression targets)"""
    loss: float
    """its validation loss"""
    history: list[dict[str, Any]]
    """per-epoch records (``epoch``, ``loss``, ``lr``, ``val_accuracy``, ``val_loss``, ``seconds``)"""


def train_standalone(
    net: nn.Module,
    config: Mapping[str, Any],
    data: Any = None,
    loss: LossFn | None = None,
    *,
    init: str = "scratch",
    epochs: int = EPOCHS,
    lr: float = LR,
    batch_size: int = BATCH_SIZE,
    optimizer: OptimizerSpec = "adamw",
    weight_decay: float = WEIGHT_DECAY,
    schedule: ScheduleSpec = "cosine",
    grad_clip: float | None = None,
    seed: int = 0,
    progress: bool = False,
) -> StandaloneResult:
    """Train `config`'s extracted subnet alone with the supernet recipe (the from-scratch baseline).

    Example:
        >>> from search_spaces.mlp import MLP
        >>> net = MLP(depths=(1,), widths=(16,), ranks=(4,))
        >>> result = train_standalone(net, net.smallest(), epochs=1)
        >>> 0 <= result.accuracy <= 1
        True

    Args:
        net: the supernet whose subnet is trained (left unchanged).
        config: the subnet.
        data, loss, epochs, lr, batch_size, optimizer, weight_decay, schedule, grad_clip,
            seed, progress: as for `train_supernet`.
        init: ``"scratch"`` (re-initialise every layer, seeded) or ``"supernet"`` (start
            from the inherited weights: fine-tuning).
    """
    if init not in ("scratch", "supernet"):
        raise ValueError(f"The 'init' parameter of train_standalone must be 'scratch' or 'supernet', got {init!r}.")
    recipe = Recipe(epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, weight_decay=weight_decay,
                    schedule=schedule, grad_clip=grad_clip, seed=seed)
    data = resolve(net, data)
    loss_fn = default_loss(data, loss)
    model = net.extract(config, data)
    torch.manual_seed(seed)
    if init == "scratch":
        reinitialise(model)
    device = next(model.parameters()).device

    def forward_backward(x: torch.Tensor, y: torch.Tensor) -> float:
        value = loss_fn(model(x), y)
        backward(value)
        return value.item()

    def validate() -> dict[str, float]:
        mode = model.training
        model.eval()
        try:
            scores = score(model, data.val_batches(256, device), loss_fn, data.classification)
        except FloatingPointError:
            scores = {"loss": math.nan}
        finally:
            model.train(mode)
        return {f"val_{k}": v for k, v in scores.items()}

    step = Supervised(model, forward_backward, recipe, data, validate, np.random.default_rng(seed))
    history = fit(step, data, recipe, identity={"kind": "standalone", "config": dict(config), "init": init},
                  progress=progress, desc="train subnet")
    model.eval()
    final = history[-1] if history else validate()
    return StandaloneResult(model, final.get("val_accuracy"), final["val_loss"], history)


def reinitialise(model: nn.Module) -> None:
    """Re-initialise every layer of `model` (``reset_parameters``; other weights: small normal)."""
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        else:
            with torch.no_grad():
                for p in module._parameters.values():
                    if p is not None:
                        nn.init.trunc_normal_(p, std=0.02)


def load_checkpoint(net: nn.Module, run: str | os.PathLike) -> list[dict[str, Any]]:
    """Load the supernet weights of the checkpoint in `run` into `net`; returns its history.

    A damaged checkpoint raises `nas.rundir.CorruptFile` naming it.
    """
    state = read_checkpoint(RunDir(run).checkpoint)
    net.load_state_dict(state["model"])
    net.trained_on = trained_on(state)
    return state["history"]


def trained_on(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """The fingerprint of the data a checkpoint's supernet was trained on (None: not recorded)."""
    step_state = state.get("step_state")
    return step_state.get("data") if isinstance(step_state, Mapping) else None
