"""Latency: measured on the current device, or predicted from a per-layer lookup table.

`measure_latency` times a subnet's extracted dense model (warm-up, then the median of
repeats). `LatencyTable` times each layer variant a net's configs use once per device (the
extracted dense layer at the input shape it sees), stores the timings as JSON keyed by the
device, and predicts a config's latency from the sum of its layers' entries, times a scale
plus a constant overhead fitted on a few measured configs, without running the subnet.
Timings are taken in interleaved rounds, so slow phases of a shared machine hit all alike.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import statistics
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.elastic import ElasticModule
from nas.rundir import CorruptFile, atomic_write

_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def device_key(device: torch.device | str | None = None) -> str:
    """A name for the timing environment: the device's model (and torch threads on CPU)."""
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"{device.type}:{_cpu_name()}:threads={torch.get_num_threads()}"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device, warmup: int, repeats: int, number: int = 1) -> float:
    """Median milliseconds of one `fn()` call over `repeats` timed blocks of `number` calls."""
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        _sync(device)
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            _sync(device)
            samples.append((time.perf_counter() - start) * 1000.0 / number)
    return float(statistics.median(samples))


def _is_supernet(model: Any) -> bool:
    return hasattr(model, "extract") and hasattr(model, "space") and hasattr(model, "input_shape")


def measure_latency(
    model: nn.Module,
    config: Mapping[str, Any] | None = None,
    batch_size: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    device: torch.device | str | None = None,
    input_shape: Sequence[int] | None = None,
) -> float:
    """Median milliseconds of one forward pass, after warm-up.

    Example:
        >>> from search_spaces.mlp import MLP
        >>> net = MLP(depths=(1,), widths=(16,), ranks=(4,))
        >>> measure_latency(net, net.smallest(), repeats=5) > 0
        True

    Args:
        model: a supernet (its `config` subnet is extracted and timed; default: the largest)
            or any module (then give `input_shape` unless it has an ``input_shape`` attribute).
        config: the supernet config to time.
        batch_size: samples per forward pass.
        warmup: untimed passes first.
        repeats: timed passes; the median is returned.
        device: where to time (default: the model's device).
        input_shape: one sample's shape, for a plain module.
    """
    run, device = _runner(model, config, batch_size, device, input_shape)
    return _time(run, device, warmup, repeats)


def _runner(model: nn.Module, config: Mapping[str, Any] | None, batch_size: int, device, input_shape) -> tuple[Any, torch.device]:
    """A no-argument callable running one forward pass of the (extracted) model, and its device."""
    if _is_supernet(model):
        dense = model.extract(config if config is not None else model.largest(), calibrate=False)  # timing only
        shape = model.input_shape
    else:
        if config is not None:
            raise ValueError("a config can only be given with a supernet; pass the module to time alone")
        dense = copy.deepcopy(model)
        shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
        if shape is None:
            raise ValueError("The 'input_shape' parameter is required to time a plain module without an 'input_shape' attribute.")
    params = next(dense.parameters(), None)
    device = torch.device(device) if device is not None else (params.device if params is not None else torch.device("cpu"))
    dense = dense.to(device).eval()
    x = torch.zeros(batch_size, *shape, device=device, dtype=params.dtype if params is not None else torch.float32)
    return (lambda: dense(x)), device


def _rounds(fns: Sequence[Any], device: torch.device, warmup: int, repeats: int, rounds: int, number: int = 1) -> list[float]:
    """Time each callable in `rounds` interleaved rounds; per callable, the median of its round medians.

    Interleaving spreads slow phases of a shared machine over all callables alike.
    """
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(max(1, rounds)):
        for i, fn in enumerate(fns):
            samples[i].append(_time(fn, device, warmup, repeats, number))
    return [float(statistics.median(s)) for s in samples]


class _Op:
    """A layer variant seen while tracing: its table key, a dense copy and its input shapes."""

    __slots__ = ("key", "module", "inputs")

    def __init__(self, key: str, module: nn.Module | None, inputs: list[tuple[tuple[int, ...], torch.dtype]]):
        self.key, self.module, self.inputs = key, module, inputs


class LatencyTable:
    """Per-layer latency lookup table of one supernet on one device.

    Example:
        >>> from search_spaces.mlp import MLP
        >>> net = MLP(depths=(1, 2), widths=(16, 32), ranks=(4, 8))
        >>> table = LatencyTable.build(net, samples=8, fit_configs=4, repeats=5)
        >>> table.predict(net.smallest()) > 0
        True

    Args:
        net: the supernet the table describes.
        entries: layer-variant key -> milliseconds.
        overhead_ms: constant added to every prediction (fitted by `build`).
        scale: factor on the sum of layer entries (fitted by `build`: layers timed alone run
            hotter in cache than inside the whole net).
        device: the device key the entries were timed on (see `device_key`).
        batch_size: the batch size the entries were timed at.

    Build one with `build` (or `for_net`, which also caches it in memory and on disk).
    """

    def __init__(
        self,
        net: nn.Module,
        entries: Mapping[str, float],
        overhead_ms: float = 0.0,
        device: str | None = None,
        batch_size: int = 1,
        scale: float = 1.0,
    ):
        self.net = net
        self.entries: dict[str, float] = dict(entries)
        self.overhead_ms = float(overhead_ms)
        self.scale = float(scale)
        self.device = device if device is not None else device_key(net.device)
        self.batch_size = int(batch_size)
        self.warmup, self.repeats, self.rounds = 5, 20, 3
        self._keys: OrderedDict[str, list[str]] = OrderedDict()

    def __repr__(self) -> str:
        return (
            f"LatencyTable({len(self.entries)} entries, scale {self.scale:.3f}, overhead {self.overhead_ms:.4f} ms, "
            f"{self.device}, batch {self.batch_size})"
        )

    # -- building ------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        net: nn.Module,
        configs: Sequence[Mapping[str, Any]] | None = None,
        samples: int = 200,
        batch_size: int = 1,
        warmup: int = 5,
        repeats: int = 20,
        fit_configs: int = 16,
        rounds: int = 3,
        seed: int = 0,
    ) -> LatencyTable:
        """Time every layer variant used by `configs` (default: largest, smallest and `samples`
        random ones) on the net's device, then fit the overhead on `fit_configs` of them.

        Each timing is the median of `repeats`, taken in `rounds` interleaved rounds.
        """
        if configs is None:
            rng = np.random.default_rng(seed)
            configs = [net.largest(), net.smallest()] + [net.sample(rng) for _ in range(samples)]
        configs = [net.space.validate(c) for c in configs]
        table = cls(net, {}, 0.0, device_key(net.device), batch_size)
        table.warmup, table.repeats, table.rounds = warmup, repeats, rounds
        pending: dict[str, _Op] = {}
        for config in configs:
            table._layer_keys(config, pending)
        table._time_ops(pending)
        picks = sorted(set(np.linspace(0, len(configs) - 1, min(fit_configs, len(configs))).round().astype(int).tolist()))
        fit = [configs[i] for i in picks]
        measured = np.array(_measure_many(net, fit, batch_size, warmup, repeats * 2, rounds))
        sums = np.array([table._layer_sum(c) for c in fit])
        table.scale, table.overhead_ms = _fit_line(sums, measured)
        return table

    @classmethod
    def for_net(cls, net: nn.Module, path: str | os.PathLike | None = None, batch_size: int = 1, **build_args: Any) -> LatencyTable:
        """The table for `net` on its current device: cached in memory, loaded from `path`
        if it holds one for this device, else built (and saved to `path` if given)."""
        key = f"{device_key(net.device)}|batch={batch_size}"
        cached = _TABLES.setdefault(net, {})
        if key in cached and path is None:
            return cached[key]
        table = None
        if path is not None and Path(path).exists():
            try:
                table = cls.load(path, net, batch_size=batch_size)
            except KeyError:
                table = None
        if table is None:
            table = cls.build(net, batch_size=batch_size, **build_args)
            if path is not None:
                table.save(path)
        cached[key] = table
        return table

    # -- prediction ----------------------------------------------------------------------
    def predict(self, config: Mapping[str, Any]) -> float:
        """Predicted milliseconds of `config`'s subnet: ``scale * (sum of its layers' entries) + overhead``."""
        return self.scale * self._layer_sum(config) + self.overhead_ms

    def predict_many(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """`predict` for several configs."""
        return np.array([self.predict(c) for c in configs])

    def error(self, configs: Sequence[Mapping[str, Any]], repeats: int = 50, rounds: int = 3) -> float:
        """Median relative error ``|predicted - measured| / measured`` over `configs` (each
        measured as the median of `repeats`, in `rounds` interleaved rounds)."""
        measured = _measure_many(self.net, configs, self.batch_size, 10, repeats, rounds)
        errors = [abs(self.predict(c) - m) / m for c, m in zip(configs, measured)]
        return float(np.median(errors))

    def _layer_sum(self, config: Mapping[str, Any]) -> float:
        return float(sum(self.entries[k] for k in self._layer_keys(config)))

    def _time_ops(self, ops: Mapping[str, _Op]) -> None:
        """Time the dense copies of `ops` (interleaved rounds) into the entries."""
        if not ops:
            return
        device = self.net.device
        fns = []
        for op in ops.values():
            inputs = [torch.randn(s, device=device, dtype=d) if d.is_floating_point else torch.zeros(s, device=device, dtype=d) for s, d in op.inputs]
            module = op.module.to(device).eval()
            fns.append(lambda m=module, a=inputs: m(*a))
        for key, ms in zip(ops, _rounds(fns, device, self.warmup, self.repeats, self.rounds, number=5)):
            self.entries[key] = ms

    def _layer_keys(self, config: Mapping[str, Any], pending: dict[str, _Op] | None = None) -> list[str]:
        """The table keys of the layers `config` runs. Variants missing from the table are
        timed now (or added to `pending`, to be timed together) if this is their device."""
        config = self.net.space.validate(config)
        ckey = self.net.space.key(config)
        keys = self._keys.get(ckey)
        if keys is not None:
            self._keys.move_to_end(ckey)
            return keys
        ops = _trace_ops(self.net, config, self.batch_size, self.entries)
        missing = [op for op in ops if op.key not in self.entries]
        if missing:
            here = device_key(self.net.device)
            if here != self.device:
                raise KeyError(
                    f"latency table built on {self.device!r} has no entry for {missing[0].key!r}, "
                    f"and this process runs on {here!r}; rebuild the table here"
                )
            todo = {op.key: op for op in missing if op.module is not None}
            if pending is not None:
                for key, op in todo.items():
                    pending.setdefault(key, op)
            else:
                self._time_ops(todo)
        keys = [op.key for op in ops]
        self._keys[ckey] = keys
        if len(self._keys) > 4096:
            self._keys.popitem(last=False)
        return keys

    # -- storage -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready contents (one device's table)."""
        return {
            "batch_size": self.batch_size,
            "family": getattr(self.net, "family", None),
            "family_args": getattr(self.net, "family_args", None),
            "overhead_ms": self.overhead_ms,
            "scale": self.scale,
            "entries": dict(sorted(self.entries.items())),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the table into the JSON file at `path`, beside other devices' tables kept there."""
        path = Path(path)
        stored: dict[str, Any] = {}
        if path.exists():
            stored = _read_tables(path)
        stored[f"{self.device}|batch={self.batch_size}"] = self.to_dict()
        atomic_write(path, json.dumps(stored, indent=1, sort_keys=True))

    @classmethod
    def load(cls, path: str | os.PathLike, net: nn.Module, device: str | None = None, batch_size: int = 1) -> LatencyTable:
        """The table stored at `path` for `device` (default: the net's device here) and batch size."""
        device = device if device is not None else device_key(net.device)
        stored = _read_tables(Path(path))
        key = f"{device}|batch={batch_size}"
        if key not in stored:
            raise KeyError(f"{path} holds no latency table for {key!r}; it has: {', '.join(sorted(stored)) or 'none'}")
        data = stored[key]
        family = getattr(net, "family", None)
        if data.get("family") != family or (data.get("family_args") or {}) != json.loads(json.dumps(getattr(net, "family_args", {}) or {})):
            raise ValueError(f"{path} holds a table for family {data.get('family')!r} {data.get('family_args')}, not this net ({family!r})")
        return cls(net, data["entries"], data["overhead_ms"], device, data["batch_size"], data.get("scale", 1.0))


def _read_tables(path: Path) -> dict[str, Any]:
    """The tables stored in the JSON file at `path`; `CorruptFile` naming it when it is damaged."""
    try:
        stored = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptFile(f"{path} is damaged (not a latency table file: {err}); remove it to measure the tables again") from None
    if not isinstance(stored, dict):
        raise CorruptFile(f"{path} is not a latency table file (it holds no tables); remove it to measure the tables again")
    return stored


def _fit_line(sums: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """(scale, overhead) of ``measured ~= scale * sums + overhead`` by least squares; a constant
    overhead alone (scale 1) when the points cannot pin a positive slope."""
    if len(sums) == 0:
        return 1.0, 0.0
    if len(sums) >= 3 and np.ptp(sums) > 0:
        scale, overhead = np.polyfit(sums, measured, 1)
        if scale > 0:
            return float(scale), float(overhead)
    return 1.0, float(np.median(measured - sums))


def _measure_many(net: nn.Module, configs: Sequence[Mapping[str, Any]], batch_size: int, warmup: int, repeats: int, rounds: int) -> list[float]:
    """Measured milliseconds of each config's extracted subnet, in interleaved rounds."""
    runners = [_runner(net, c, batch_size, None, None) for c in configs]
    if not runners:
        return []
    return _rounds([r for r, _ in runners], runners[0][1], warmup, repeats, rounds)


def _trace_ops(net: nn.Module, config: Mapping[str, Any], batch_size: int, known: Mapping[str, float]) -> list[_Op]:
    """The leaf ops `config`'s subnet runs, in order, with dense copies of unknown variants."""
    body = getattr(net, "body", net)
    leaves: dict[int, str] = {}
    skip: set[int] = set()

    def walk(module: nn.Module, name: str) -> None:
        if id(module) in skip:
            return
        if isinstance(module, ElasticModule) and module.leaf:
            leaves[id(module)] = name
            skip.update(id(m) for m in module.modules())
            return
        children = list(module.named_children())
        if not children:
            leaves[id(module)] = name
            return
        for child_name, child in children:
            walk(child, f"{name}.{child_name}" if name else child_name)

    walk(body, "")
    ops: list[_Op] = []

    def hook(module, args, output):
        name = leaves.get(id(module))
        if name is None:
            return
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        shapes = [tuple(t.shape) for t in tensors]
        if isinstance(module, ElasticModule):
            attrs = module._cost(args, output)[2]
        else:
            attrs = {"op": type(module).__name__}
        key = f"{name}|{json.dumps(shapes)}|{json.dumps(attrs, sort_keys=True, default=str)}"
        dense = None
        if key not in known:
            dense = module.to_dense(args, lambda m: m) if isinstance(module, ElasticModule) else copy.deepcopy(module)
        ops.append(_Op(key, dense, [(tuple(t.shape), t.dtype) for t in tensors]))

    handles = [m.register_forward_hook(hook) for m in body.modules() if id(m) in leaves]
    modes = [(m, m.training) for m in net.modules()]
    try:
        net.eval()
        with torch.no_grad(), net.activate(config):
            net(net.example_input(batch_size))
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    return ops


__all__ = ["LatencyTable", "device_key", "measure_latency"]
