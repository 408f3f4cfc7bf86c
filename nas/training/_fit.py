"""`fit`: the one training loop. A `Step` says what one batch does; `fit` owns the rest.

The epochs, the data order, the learning-rate schedules, the divergence check, the progress
bar, the callback and the checkpoint: one format for every kind of training (supernet,
standalone subnet, TangleNAS' bi-level search) and one resume. A checkpoint
(``supernet.pt``) holds the model, every optimizer and scheduler, the step's own state,
the epoch and optimizer-step counts, the history, the recipe, and every random state
(Python's, NumPy's global and the step's generator, torch's CPU and, when present, CUDA),
so a resumed run goes on bit for bit as the uninterrupted one would have. It is written
after every epoch, atomically, under the run directory's lock (`nas.rundir`).

Checkpoints written before this format (``format`` missing: nas before the one-loop
change) still load as trained supernets (`load_checkpoint`, `nas.load_run`), but cannot be
resumed: resuming one raises a clear error.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.data import Data
from nas.errors import NASError
from nas.rundir import CorruptFile, RunDir, atomic_write
from nas.training._recipe import Recipe

FORMAT = 2  # the checkpoint layout written by `fit`


class Diverged(NASError, RuntimeError):
    """Training produced a non-finite loss (or weights); the last finite checkpoint is kept."""

    __module__ = "nas.training"


class Step:
    """What `fit` runs: one batch's update, and what an epoch records.

    A subclass sets `model`, `optimizers` and `schedulers` (name -> optimizer, name ->
    per-batch LR scheduler or None; `fit` steps the schedulers after every batch and
    checkpoints all of them) and `rng` (the generator of its random choices), and
    implements `__call__`. `state_dict`/`load_state_dict` carry any other state a resume
    needs (architecture parameters, a Lagrange multiplier).

    Example:
        >>> class Regress(Step):
        ...     def __init__(self, model):
        ...         self.model, self.rng = model, np.random.default_rng(0)
        ...         self.optimizers = {"weights": torch.optim.SGD(model.parameters(), lr=0.1)}
        ...         self.schedulers = {"weights": None}
        ...     def __call__(self, x, y):
        ...         self.optimizers["weights"].zero_grad()
        ...         loss = torch.nn.functional.cross_entropy(self.model(x), y)
        ...         loss.backward()
        ...         self.optimizers["weights"].step()
        ...         return loss.item()
        >>> from nas.data import digits
        >>> history = fit(Regress(nn.Linear(64, 10)), digits("flat"), Recipe(epochs=2), progress=False)
        >>> [sorted(h) for h in history] == [["epoch", "loss", "seconds"]] * 2
        True
    """

    model: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]
    rng: np.random.Generator

    def begin_epoch(self, epoch: int) -> None:
        """Called before the first batch of `epoch` (0-based)."""

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Update on one training batch (gradients, clipping, optimizer steps); return its loss."""
        raise NotImplementedError

    def batches(self, data: Data, batch_size: int, seed: int, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's training batches (`Data.train_batches`); a distributed step serves its shard of each."""
        return data.train_batches(batch_size, seed, device)

    def end_epoch(self, epoch: int, loss: float) -> dict[str, Any]:
        """The epoch's record, given its mean training loss (validation goes here)."""
        return {"loss": loss}

    def state_dict(self) -> dict[str, Any]:
        """State besides the model, optimizers, schedulers and random generators that a resume needs."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    def postfix(self, record: Mapping[str, Any]) -> dict[str, str]:
        """What the progress bar shows of an epoch's record."""
        return {"loss": f"{record['loss']:.4f}"} if "loss" in record else {}


def fit(
    step: Step,
    data: Data,
    recipe: Recipe,
    *,
    identity: Mapping[str, Any] | None = None,
    run: str | Path | RunDir | None = None,
    resume: bool = False,
    other_kinds: str = "error",
    progress: bool = True,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
    desc: str = "train",
    lock: bool = True,
    save: bool = True,
) -> list[dict[str, Any]]:
    """Run `step` over `recipe.epochs` passes of `data`'s training split; returns the per-epoch history.

    Args:
        step: the `Step`.
        data: the data (its ``train_batches`` in an order fixed by the seed and epoch).
        recipe: epochs, batch size and seed (the optimizers are the step's).
        identity: what the run is (``kind``, family, strategy, ...): the checkpoint's
            recipe is `identity` plus `recipe.record()`, and a resume must match it.
        run: a run directory: after every epoch a checkpoint is written there, under its
            lock (`nas.rundir.RunLocked` when another process writes it).
        resume: continue from the run's checkpoint, if there is one.
        other_kinds: a checkpoint of another ``kind`` found when resuming: ``"error"``
            (refuse) or ``"restart"`` (start afresh and replace it).
        progress: show a progress bar.
        callback: called with each epoch's record; returning True stops training.
        lock: take the run directory's lock (False: a process that holds it, such as the
            driver of a distributed run, writes through this one).
        save: write the checkpoint after every epoch (False: read it to resume, never
            write it: a distributed worker other than rank 0).

    Raises:
        Diverged: a non-finite loss or non-finite weights, naming the epoch and step and
            the fix; the last checkpoint written (all finite) is kept.
    """
    if resume and run is None:
        raise ValueError("resume=True needs the run directory: pass run=...")
    if other_kinds not in ("error", "restart"):
        raise ValueError(f"The 'other_kinds' parameter must be 'error' or 'restart', got {other_kinds!r}.")
    rundir = RunDir(run) if run is not None and not isinstance(run, RunDir) else run
    full = {**dict(identity or {}), **recipe.record()}
    with rundir.lock() if rundir is not None and lock else contextlib.nullcontext():
        torch.manual_seed(recipe.seed)
        history: list[dict[str, Any]] = []
        start = steps = 0
        if resume and rundir.checkpoint.is_file():
            state = read_checkpoint(rundir.checkpoint)
            stored = state.get("recipe") or {}
            if other_kinds == "error" or stored.get("kind") == full.get("kind"):
                _check_resumable(state, full, rundir.checkpoint)
                _restore(step, state)
                history, start, steps = list(state["history"]), int(state["epoch"]), int(state["step"])
        return _loop(step, data, recipe, full, rundir if save else None, history, start, steps, progress, callback, desc)


def _loop(step, data, recipe, full, rundir, history, start, steps, progress, callback, desc) -> list[dict[str, Any]]:
    from tqdm.auto import tqdm

    device = _device(step.model)
    schedulers = [s for s in step.schedulers.values() if s is not None]
    bar = tqdm(total=recipe.epochs, initial=start, desc=desc, disable=not progress, leave=False, mininterval=0)
    try:
        for epoch in range(start, recipe.epochs):
            began = time.perf_counter()
            step.model.train()
            step.begin_epoch(epoch)
            total, count = 0.0, 0
            for x, y in step.batches(data, recipe.batch_size, recipe.seed * 1_000_003 + epoch, device):
                value = step(x, y)
                count += 1
                if not math.isfinite(value):
                    raise Diverged(_diverged(f"the loss is {value}", epoch, count, recipe, rundir, history))
                total += value
                for scheduler in schedulers:
                    scheduler.step()
            steps += count
            if not all(bool(torch.isfinite(p).all()) for p in step.model.parameters()):
                raise Diverged(_diverged("the weights are no longer finite", epoch, count, recipe, rundir, history))
            record: dict[str, Any] = {"epoch": epoch + 1, **step.end_epoch(epoch, total / max(count, 1))}
            record["seconds"] = time.perf_counter() - began
            history.append(record)
            if rundir is not None:
                save_checkpoint(rundir.checkpoint, _state(step, epoch + 1, steps, history, full))
            bar.set_postfix(step.postfix(record), refresh=False)
            bar.update(1)
            if callback is not None and callback(record):
                break
    finally:
        bar.close()
    step.model.train()
    return history


def _diverged(what: str, epoch: int, batch: int, recipe: Recipe, rundir: RunDir | None, history: list) -> str:
    kept = (
        f"; {rundir.checkpoint} keeps epoch {history[-1]['epoch']}, the last finite one"
        if rundir is not None and history else "; nothing was saved"
    )
    return (
        f"training diverged at epoch {epoch + 1}, step {batch}: {what}; "
        f"lower the learning rate (lr={recipe.lr:g}) or set grad_clip{kept}"
    )


# -- checkpoints ---------------------------------------------------------------------------
def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at `path` (``weights_only`` loading); `CorruptFile` naming it when it is damaged.

    Example:
        >>> import tempfile
        >>> bad = Path(tempfile.mkdtemp()) / "supernet.pt"
        >>> _ = bad.write_bytes(b"PK\\x03\\x04 cut short")
        >>> read_checkpoint(bad)
        Traceback (most recent call last):
        ...
        nas.rundir.CorruptFile: .../supernet.pt is damaged (truncated, or not a nas checkpoint: ...); remove it to train again from scratch, or restore it from a copy
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as err:  # noqa: BLE001 (a damaged file: torch raises EOFError, OSError, RuntimeError, UnpicklingError...)
        reason = " ".join(str(err).split())[:120] or type(err).__name__
        raise CorruptFile(
            f"{path} is damaged (truncated, or not a nas checkpoint: {reason}); "
            "remove it to train again from scratch, or restore it from a copy"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise CorruptFile(f"{path} is not a nas checkpoint (it has no model weights); remove it or use another run directory")
    return state


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write a checkpoint atomically: a kill mid-write leaves the previous one intact."""
    atomic_write(path, lambda p: torch.save(dict(state), p))


def _state(step: Step, epoch: int, steps: int, history: list, recipe: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "model": step.model.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in step.optimizers.items()},
        "schedulers": {k: s.state_dict() if s is not None else None for k, s in step.schedulers.items()},
        "step_state": step.state_dict(),
        "rng": rng_state(step.rng),
        "epoch": epoch,
        "step": steps,
        "history": history,
        "recipe": dict(recipe),
    }


def _restore(step: Step, state: Mapping[str, Any]) -> None:
    step.model.load_state_dict(state["model"])
    for k, o in step.optimizers.items():
        o.load_state_dict(state["optimizers"][k])
    for k, s in step.schedulers.items():
        if s is not None and state["schedulers"].get(k) is not None:
            s.load_state_dict(state["schedulers"][k])
    step.load_state_dict(state["step_state"])
    set_rng_state(state["rng"], step.rng)


def _check_resumable(state: Mapping[str, Any], current: Mapping[str, Any], path: Path) -> None:
    if state.get("format") != FORMAT:
        raise ValueError(
            f"cannot resume from {path}: it was written by an older nas (checkpoint format {state.get('format', 1)}, "
            f"now {FORMAT}); its weights still load (nas.load_run, load_checkpoint), but to train on use a new run directory"
        )
    stored = state.get("recipe") or {}
    diffs = [k for k in sorted(set(stored) | set(current)) if stored.get(k) != current.get(k)]
    if diffs:
        detail = "; ".join(f"{k}: checkpoint {stored.get(k)!r}, now {current.get(k)!r}" for k in diffs)
        raise ValueError(f"cannot resume from {path}: the recipe differs ({detail}); use a new run directory or resume=False")


def rng_state(generator: np.random.Generator | None = None) -> dict[str, Any]:
    """Every random state (Python, NumPy's global and `generator`, torch CPU and CUDA) in a form
    ``torch.load(weights_only=True)`` reads back."""
    legacy = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy_global": [legacy[0], legacy[1].tolist(), *legacy[2:]],
        "numpy": _json(generator.bit_generator.state) if generator is not None else None,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: Mapping[str, Any], generator: np.random.Generator | None = None) -> None:
    """Restore what `rng_state` returned (CUDA's only where CUDA is present)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy_global"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    if generator is not None and state.get("numpy") is not None:
        generator.bit_generator.state = _unjson(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
