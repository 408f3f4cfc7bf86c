"""The training loop shared by supernets and standalone subnets: optimizer, schedule, checkpoints."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from nas.data import Data, resolve
from nas.evaluate import default_loss, evaluate, score
from nas.training._base import LossFn, Strategy, get_strategy
from nas.training._distill import DistillFn, make_distill
from nas.training._family import family_recipe
from nas.training._recipe import (
    BATCH_SIZE,
    EPOCHS,
    LR,
    WEIGHT_DECAY,
    OptimizerSpec,
    ScheduleSpec,
    check_recipe,
    make_optimizer,
    make_schedule,
    steps_per_epoch,
)

CHECKPOINT = "supernet.pt"


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
) -> list[dict[str, Any]]:
    """Train a supernet in place so that its subnets need no retraining; returns the per-epoch history.

    Example:
        >>> from search_spaces.mlp import MLP
        >>> net = MLP(depths=(1,), widths=(16, 32), ranks=(4, 8))
        >>> history = train_supernet(net, epochs=1, progress=False)
        >>> sorted(history[0])
        ['epoch', 'largest_accuracy', 'largest_loss', 'loss', 'lr', 'seconds', 'smallest_accuracy', 'smallest_loss']

    Args:
        net: the supernet (trained in place, on the device of its parameters).
        data: as `nas.data.resolve` takes it (None: the family's digits split).
        strategy: ``"sandwich"``, ``"uniform"``, ``"ordered_dropout"`` or a `Strategy`.
            None (and None for epochs, lr, batch_size, weight_decay, distill): the family's
            ``recipe`` (`nas.training.family_recipe`, scaled by the data size), else sandwich.
        loss: ``(outputs, targets) -> scalar``; default cross-entropy for class targets,
            mean squared error otherwise (then the validation loss is the metric).
        epochs: passes over the training data.
        lr: peak learning rate.
        batch_size: batch size (a `DataLoader` keeps its own).
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
        run: a directory; after every epoch a checkpoint (``supernet.pt``: model,
            optimizer, scheduler, random states, epoch, history, recipe) is written there.
        resume: continue from the checkpoint in `run` (if there is one), bit-for-bit as
            the uninterrupted run would have gone; the recipe must match it.
        progress: show a tqdm bar (epoch, loss, largest/smallest validation accuracy).
        callback: called with each epoch's history record; returning True stops training.

    Each history record holds ``epoch``, ``loss`` (mean training loss of the reported
    subnet), ``lr``, ``largest_accuracy``/``largest_loss`` and ``smallest_accuracy``/
    ``smallest_loss`` (validation, BatchNorm recalibrated; accuracy for class targets only)
    and ``seconds``.
    """
    data = resolve(net, data)
    given = {"strategy": strategy, "epochs": epochs, "lr": lr, "batch_size": batch_size, "weight_decay": weight_decay, "distill": distill}
    defaults = family_recipe(net, data, **given)  # the family's recipe for what was not given
    strategy, epochs, lr, batch_size, weight_decay, distill = (defaults[k] for k in given)
    strat = get_strategy(strategy)
    loss_fn = default_loss(data, loss)
    distill_fn, distill_name = make_distill(distill, strat.distills_by_default, strat.supports_distill, data.classification, strat.name)
    recipe = {
        "kind": "supernet",
        "family": getattr(net, "family", None),
        "family_args": _plain(getattr(net, "family_args", None)),
        "strategy": strat.name or type(strat).__name__,
        "strategy_params": _plain(strat.params()),
        "distill": distill_name,
    }
    rng = np.random.default_rng(seed)

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        return strat.step(net, x, y, rng, loss_fn, distill_fn)

    def validate() -> dict[str, float]:
        record: dict[str, float] = {}
        evals = evaluate(net, [net.largest(), net.smallest()], data, metrics=("accuracy", "loss"), loss=loss_fn)
        for which, ev in zip(("largest", "smallest"), evals):
            for k, v in ev.metrics.items():
                record[f"{which}_{k}"] = v
            if not ev.ok:
                record[f"{which}_loss"] = math.nan
        return record

    return _fit(
        net, step, validate, data, rng,
        epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, weight_decay=weight_decay,
        schedule=schedule, grad_clip=grad_clip, seed=seed, run=run, resume=resume, progress=progress,
        callback=callback, recipe=recipe, desc=f"train {getattr(net, 'family', 'supernet')}",
    )


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
    data = resolve(net, data)
    loss_fn = default_loss(data, loss)
    model = net.extract(config)
    torch.manual_seed(seed)
    if init == "scratch":
        reinitialise(model)
    device = next(model.parameters()).device

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        value = loss_fn(model(x), y)
        value.backward()
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

    recipe = {"kind": "standalone", "config": dict(config), "init": init}
    history = _fit(
        model, step, validate, data, np.random.default_rng(seed),
        epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, weight_decay=weight_decay,
        schedule=schedule, grad_clip=grad_clip, seed=seed, run=None, resume=False, progress=progress,
        callback=None, recipe=recipe, desc="train subnet",
    )
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
    """Load the supernet weights of the checkpoint in `run` into `net`; returns its history."""
    state = torch.load(Path(run) / CHECKPOINT, map_location="cpu", weights_only=True)
    net.load_state_dict(state["model"])
    return state["history"]


# -- the loop ------------------------------------------------------------------------------
def _fit(
    model: nn.Module,
    step: Callable[[torch.Tensor, torch.Tensor], float],
    validate: Callable[[], dict[str, float]],
    data: Data,
    rng: np.random.Generator,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    optimizer: OptimizerSpec,
    weight_decay: float,
    schedule: ScheduleSpec,
    grad_clip: float | None,
    seed: int,
    run: str | os.PathLike | None,
    resume: bool,
    progress: bool,
    callback: Callable[[dict[str, Any]], bool | None] | None,
    recipe: dict[str, Any],
    desc: str,
) -> list[dict[str, Any]]:
    check_recipe(epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, grad_clip=grad_clip, seed=seed)
    if resume and run is None:
        raise ValueError("resume=True needs the run directory: pass run=...")
    recipe = dict(recipe, lr=lr, batch_size=batch_size, optimizer=_name(optimizer), weight_decay=weight_decay,
                  schedule=_name(schedule), grad_clip=grad_clip, seed=seed)
    device = _device(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(optimizer, params, lr, weight_decay)
    sched = make_schedule(schedule, opt, max(1, epochs * steps_per_epoch(data, batch_size)))
    torch.manual_seed(seed)
    history: list[dict[str, Any]] = []
    start = 0
    path = Path(run) / CHECKPOINT if run is not None else None
    if resume and path is not None and path.exists():
        state = torch.load(path, map_location="cpu", weights_only=True)
        _check_resumable(state["recipe"], recipe, path)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state["scheduler"] is not None:
            sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        rng.bit_generator.state = _unjson(state["rng"]["numpy"])
        history = list(state["history"])
        start = int(state["epoch"])

    from tqdm.auto import tqdm

    bar = tqdm(total=epochs, initial=start, desc=desc, disable=not progress, leave=False, mininterval=0)
    try:
        for epoch in range(start, epochs):
            began = time.perf_counter()
            model.train()
            total, count = 0.0, 0
            for x, y in data.train_batches(batch_size, seed * 1_000_003 + epoch, device):
                opt.zero_grad(set_to_none=True)
                total += step(x, y)
                count += 1
                if grad_clip is not None:
                    nn.utils.clip_grad_norm_(params, grad_clip)
                opt.step()
                if sched is not None:
                    sched.step()
            record: dict[str, Any] = {"epoch": epoch + 1, "loss": total / max(count, 1), "lr": opt.param_groups[0]["lr"]}
            record.update(validate())
            record["seconds"] = time.perf_counter() - began
            history.append(record)
            if path is not None:
                _save(path, model, opt, sched, rng, epoch + 1, history, recipe)
            bar.set_postfix(_postfix(record), refresh=False)
            bar.update(1)
            if callback is not None and callback(record):
                break
    finally:
        bar.close()
    model.train()
    return history


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _name(spec: Any) -> Any:
    if spec is None or isinstance(spec, str):
        return spec
    return getattr(spec, "__qualname__", type(spec).__name__)


def _plain(value: Any) -> Any:
    """Tuples as lists, so a recipe compares equal after a save and load."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _check_resumable(stored: Mapping[str, Any], current: Mapping[str, Any], path: Path) -> None:
    diffs = [k for k in sorted(set(stored) | set(current)) if stored.get(k) != current.get(k)]
    if diffs:
        detail = "; ".join(f"{k}: checkpoint {stored.get(k)!r}, now {current.get(k)!r}" for k in diffs)
        raise ValueError(f"cannot resume from {path}: the recipe differs ({detail}); use a new run directory or resume=False")


def _json(state: Any) -> Any:
    """numpy bit-generator state with its 128-bit integers as strings (safe for weights_only loading)."""
    if isinstance(state, dict):
        return {k: _json(v) for k, v in state.items()}
    if isinstance(state, int) and not isinstance(state, bool):
        return str(state)
    return state


def _unjson(state: Any) -> Any:
    if isinstance(state, dict):
        return {k: _unjson(v) for k, v in state.items()}
    if isinstance(state, str) and state.lstrip("-").isdigit():
        return int(state)
    return state


def _save(path: Path, model: nn.Module, opt, sched, rng: np.random.Generator, epoch: int, history: list, recipe: dict) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict() if sched is not None else None,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": _json(rng.bit_generator.state),
        },
        "epoch": epoch,
        "history": history,
        "recipe": recipe,
    }
    save_checkpoint(path, state)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a kill mid-write leaves the previous one intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _postfix(record: Mapping[str, Any]) -> dict[str, str]:
    out = {"loss": f"{record['loss']:.4f}"}
    for which in ("largest", "smallest"):
        if f"{which}_accuracy" in record:
            out[which] = f"{record[f'{which}_accuracy']:.3f}"
        elif f"{which}_loss" in record:
            out[which] = f"{record[f'{which}_loss']:.4f}"
    if "val_accuracy" in record:
        out["val"] = f"{record['val_accuracy']:.3f}"
    return out
