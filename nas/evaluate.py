"""Evaluate configs of a supernet: accuracy and loss (BatchNorm recalibrated), params, MACs, latency."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from nas.data import Batch, Data, resolve
from nas.evaluation import Evaluation
from nas.latency import LatencyTable, measure_latency
from nas.metrics import METRICS as TABLE
from nas.metrics import of

METRICS = tuple(m.name for m in TABLE.values() if m.how != "timed")  # latency_ms: see `latency`
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def evaluate(
    net: Any,
    configs: Sequence[Mapping[str, Any]],
    data: Any = None,
    *,
    metrics: Sequence[str] = METRICS,
    latency: bool | str | Any = False,
    loss: LossFn | None = None,
    batch_size: int = 256,
    calibration_batches: int = 4,
    latency_batch_size: int = 1,
    split: str = "val",
    device: torch.device | str | None = None,
    seed: int = 0,
) -> list[Evaluation]:
    """Evaluate each config's subnet; a config that raises or yields NaN becomes a failed `Evaluation`.

    Accuracy and loss are measured on the validation split after recalibrating BatchNorm
    statistics for that subnet on `calibration_batches` training batches (BatchNorm layers
    in train mode with cumulative averaging, everything else in eval mode, batches drawn by
    `seed`). The supernet's own statistics, train/eval modes and device are restored
    afterwards, so evaluation has no side effects. Nets without BatchNorm skip recalibration.

    Example:
        >>> from search_spaces.mlp import MLP
        >>> net = MLP(depths=(1,), widths=(16,), ranks=(4, 8))
        >>> [e.status for e in evaluate(net, [net.smallest(), {"depth": 5}])]
        ['ok', 'failed']

    Args:
        net: the supernet.
        configs: the configs to evaluate.
        data: as `nas.data.resolve` takes it (None: the family's digits split).
        metrics: any of ``"accuracy"`` (classification only), ``"loss"``, ``"mae"`` and ``"r2"``
            (regression only), ``"params"``, ``"macs"``.
        latency: False; ``"measured"`` (time the extracted subnet, ``latency_ms``); ``"table"``
            (predict it from a per-layer `nas.latency.LatencyTable` built once for this net and
            device); or a `LatencyTable` to predict with.
        loss: loss function ``(outputs, targets) -> scalar``; default: cross-entropy for
            integer targets, mean squared error otherwise.
        batch_size: batch size for scoring and for BatchNorm recalibration.
        calibration_batches: training batches used to recalibrate BatchNorm (0: keep the
            supernet's running statistics).
        latency_batch_size: batch size latency is measured or predicted at.
        split: the split to score on (``"val"``; ``"test"`` for a final report).
        device: where to evaluate (default: the supernet's device); the supernet is moved
            there for the call and back afterwards.
        seed: seed of the calibration batches.
    """
    metrics = tuple(metrics)
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise ValueError(f"The 'metrics' parameter of evaluate takes names from {list(METRICS)}, got {bad[0]!r}.")
    if isinstance(configs, Mapping):
        raise TypeError("The 'configs' parameter of evaluate is a list of configs; wrap a single config in a list.")
    if latency not in (False, None, "measured", "table") and not hasattr(latency, "predict"):
        raise ValueError(
            f"The 'latency' parameter of evaluate must be False, 'measured', 'table' or a LatencyTable, got {latency!r}."
        )
    for name, value, low in (("batch_size", batch_size, 1), ("calibration_batches", calibration_batches, 0), ("latency_batch_size", latency_batch_size, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"The '{name}' parameter of evaluate must be an int >= {low}, got {value!r}.")
    configs = list(configs)
    scoring = any(m in metrics for m in of("evaluated"))
    table = None
    if latency == "table":
        table = LatencyTable.for_net(net, batch_size=latency_batch_size)
    elif latency not in (False, None, "measured"):
        table = latency

    home = net.device
    target = torch.device(device) if device is not None else home
    results: list[Evaluation] = []
    modules = list(net.modules())
    norms = norm_layers(net, modules)
    with preserved(net, norms, modules):
        if target != home:
            net.to(target)
        try:
            if scoring:  # everything that does not depend on the config, once for all configs
                data = resolve(net, data)
                loss_fn = default_loss(data, loss)
                batches = data.val_batches(batch_size, target, split)
                calibration = data.calibration_inputs(calibration_batches, batch_size, seed, target) if norms else []
            in_eval = False  # whether every module is in eval mode now (recalibrate leaves it so)
            for config in configs:
                start = time.perf_counter()
                out: dict[str, float] = {}
                try:
                    config = net.space.validate(config)
                    if scoring:
                        with net.activate(config):
                            if norms and calibration:
                                recalibrate(net, calibration, norms)
                            elif not in_eval:
                                set_eval(net, modules)
                            in_eval = True
                            scores = score(net, batches, loss_fn, data.classification)
                        out.update({k: v for k, v in scores.items() if k in metrics})
                    if "params" in metrics or "macs" in metrics:
                        out.update({k: v for k, v in net.cost(config).items() if k in metrics})
                    if latency == "measured":
                        out["latency_ms"] = measure_latency(net, config, batch_size=latency_batch_size, device=target)
                        in_eval = False
                    elif table is not None:
                        out["latency_ms"] = float(table.predict(config))
                    bad_metric = next((k for k, v in out.items() if not math.isfinite(v)), None)
                    if bad_metric is not None:
                        raise FloatingPointError(f"metric {bad_metric!r} is not finite ({out[bad_metric]})")
                    results.append(Evaluation(dict(config), out, "ok", None, time.perf_counter() - start))
                except Exception as err:  # a failing config is recorded, never a crash
                    in_eval = False
                    results.append(Evaluation(_as_dict(config), out, "failed", f"{type(err).__name__}: {err}", time.perf_counter() - start))
        finally:
            if target != home:
                net.to(home)
    return results


_DEFAULT_LOSSES = {True: nn.CrossEntropyLoss(), False: nn.MSELoss()}  # stateless: one of each (a module costs ~15 us to build)


def default_loss(data: Data, loss: LossFn | None) -> LossFn:
    """`loss`, or the default for the data: cross-entropy for class targets, else mean squared error."""
    if loss is not None:
        if not callable(loss):
            raise TypeError(f"The 'loss' parameter must be callable (outputs, targets) -> scalar, got {loss!r}.")
        return loss
    return _DEFAULT_LOSSES[bool(data.classification)]


def score(model: nn.Module, batches: Iterable[Batch], loss_fn: LossFn, classification: bool) -> dict[str, float]:
    """Mean loss, and accuracy for classification or MAE and R^2 (averaged over outputs) for regression."""
    total = 0
    loss_sum = None
    correct = None
    sums: list[torch.Tensor] | None = None  # regression: |err|, err^2, y, y^2 summed per output
    with torch.no_grad():
        for x, y in batches:
            out = model(x)
            if not bool(torch.isfinite(out).all()):
                raise FloatingPointError("the subnet's outputs are not finite (NaN or inf)")
            part = loss_fn(out, y).detach() * len(x)
            loss_sum = part if loss_sum is None else loss_sum + part
            if classification:
                hits = (out.argmax(-1) == y).sum()
                correct = hits if correct is None else correct + hits
            elif out.shape == y.shape:
                err, yd = (out - y).double(), y.double()
                parts = [err.abs().sum(0), (err**2).sum(0), yd.sum(0), (yd**2).sum(0)]
                sums = parts if sums is None else [a + b for a, b in zip(sums, parts, strict=True)]
            total += len(x)
    if total == 0:
        raise ValueError("no samples to score on (the validation data is empty)")
    result = {"loss": float(loss_sum) / total}
    if classification:
        result["accuracy"] = float(correct) / total
    elif sums is not None:
        abs_err, sq_err, y_sum, y_sq = sums
        result["mae"] = float(abs_err.mean()) / total
        spread = y_sq - y_sum**2 / total
        r2 = torch.where(spread > 0, 1 - sq_err / spread.clamp_min(1e-300), torch.zeros_like(spread))
        result["r2"] = float(r2.mean())
    return result


def _as_dict(config: Any) -> dict[str, Any]:
    return dict(config) if isinstance(config, Mapping) else {"invalid": repr(config)}


# -- BatchNorm recalibration ---------------------------------------------------------------
def norm_layers(net: nn.Module, modules: Sequence[nn.Module] | None = None) -> list[nn.Module]:
    """Layers that keep running statistics (BatchNorm and elastic BatchNorm); `modules`: ``list(net.modules())``, when known."""
    return [m for m in (net.modules() if modules is None else modules) if _keeps_statistics(m)]


def _keeps_statistics(m: nn.Module) -> bool:
    return (isinstance(_attribute(m, "running_mean"), torch.Tensor) and isinstance(getattr(m, "running_var", None), torch.Tensor)
            and hasattr(m, "momentum"))


def _attribute(module: nn.Module, name: str) -> Any:
    """``getattr(module, name, None)``, without the costly miss through `nn.Module.__getattr__`
    (an exception raised in Python) where the module cannot have it."""
    cls = type(module)
    if (name in module.__dict__ or name in module._parameters or name in module._buffers or name in module._modules
            or hasattr(cls, name) or cls.__getattr__ is not nn.Module.__getattr__):
        return getattr(module, name, None)
    return None


def set_eval(net: nn.Module, modules: Sequence[nn.Module]) -> None:
    """``net.eval()``, `modules` being ``list(net.modules())``: set module by module where none of
    them has a `train` of its own (`nn.Module.train`'s recursion costs about 2 us a module)."""
    if any(type(m).train is not nn.Module.train for m in modules):
        net.eval()
        return
    for m in modules:
        _set_training(m, False)


def _set_training(module: nn.Module, mode: bool) -> None:
    """``module.training = mode``; a plain attribute, so set without `nn.Module.__setattr__`'s checks
    unless the class has a `__setattr__` of its own."""
    if type(module).__setattr__ is nn.Module.__setattr__:
        object.__setattr__(module, "training", mode)
    else:
        module.training = mode


def recalibrate(net: nn.Module, inputs: Sequence[torch.Tensor], norms: Sequence[nn.Module]) -> None:
    """Replace the running statistics by exact averages over `inputs` for the active subnet.

    Only the normalisation layers run in train mode (dropout etc. stay in eval mode, so no
    random numbers are drawn); momentum ``1/k`` at the k-th batch makes the running
    statistics the cumulative mean of the batch statistics. Leaves the net in eval mode.
    """
    net.eval()
    for m in norms:
        m.running_mean.zero_()
        m.running_var.fill_(1.0)
        m.train()
    try:
        with torch.no_grad():
            for k, x in enumerate(inputs, 1):
                for m in norms:
                    m.momentum = 1.0 / k
                net(x)
    finally:
        for m in norms:
            m.eval()


@contextmanager
def preserved(net: nn.Module, norms: Sequence[nn.Module] | None = None, modules: Sequence[nn.Module] | None = None):
    """Restore train/eval modes and running statistics of `net` on exit (`norms`: its `norm_layers`,
    `modules`: ``list(net.modules())``, when known)."""
    modes = [(m, m.training) for m in (net.modules() if modules is None else modules)]
    saved = []
    for m in norm_layers(net) if norms is None else norms:
        tracked = getattr(m, "num_batches_tracked", None)
        saved.append((m, m.momentum, m.running_mean.clone(), m.running_var.clone(), tracked.clone() if isinstance(tracked, torch.Tensor) else None))
    try:
        yield
    finally:
        for m, momentum, mean, var, tracked in saved:
            m.momentum = momentum
            with torch.no_grad():
                m.running_mean.copy_(mean.to(m.running_mean.device))
                m.running_var.copy_(var.to(m.running_var.device))
                if tracked is not None:
                    m.num_batches_tracked.copy_(tracked.to(m.num_batches_tracked.device))
        for m, mode in modes:
            if m.training != mode:  # only what changed: a switch of many small modules stays cheap
                _set_training(m, mode)


__all__ = ["METRICS", "evaluate"]
