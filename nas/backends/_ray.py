"""The ray backend: evaluations run as Ray Tune trials on a local Ray or on a Ray cluster.

How it works, and why:

* A Tune trial costs 1.5-2 s to start and a search asks for small batches (8 configs is
  typical), so one Tune run per batch would cost seconds per batch. Instead one Tune run
  lives as long as the backend, with one trial per worker (a GPU each when the cluster has
  GPUs, else ``cpus_per_worker`` CPUs, via `tune.with_resources`). Each trial is a loop:
  take a shard of configs from a small coordinator actor, score it with `nas.evaluate`,
  hand the results back with the next request. `evaluate` puts a batch on the coordinator
  as shards and waits for it: a few actor messages per batch (milliseconds), not a trial
  start. Shards hold about 50 ms of work, judged from the last batch's evaluation times
  (four shards per worker before that; at most 64 configs), so cheap configs share a
  round trip and costly ones spread evenly over the workers.
* The supernet, the data and the evaluate arguments go into the object store once
  (`tune.with_parameters` does the `ray.put`); a trial loads them once when it starts and
  moves the supernet to CUDA when Ray gave it a GPU (so the device is chosen per worker).
* Failures use Tune's handling: a trial whose worker process dies, or whose function
  raises, is restarted by Tune (``FailureConfig(max_failures=-1)``), and a Tune callback
  tells the coordinator, which puts the trial's unfinished shard back at the front of the
  queue. Blame is exact: a lost shard of several configs is split into single configs at
  no cost to them; a config that was alone in its shard is charged one attempt, and after
  ``max_retries`` retries it is stored as ``failed`` with the error. So Tune may restart
  trials without a limit of its own, yet every restart is paid for by a shard or a config
  and the total is bounded; only workers that fail while holding no work (they cannot
  start at all) are counted apart, and after ``(max_retries + 1) * workers`` such
  failures in a row `evaluate` raises instead of waiting for ever. Each config has one
  result slot per batch and the first result wins, so nothing is lost or duplicated.
* Without an address a private local Ray is started on demand (``ray.init(address="local")``:
  never a cluster that happens to run on the machine), loopback only (Ray's single-machine
  mode, see `_single_machine_mode`), with no dashboard and no usage statistics, and `close`
  shuts it down. With ``"auto"`` or ``"host:port"``, or when ``RAY_ADDRESS`` is set (as
  inside ``ray job submit``), it joins that cluster and `close` only disconnects.
* Ray is imported only when a backend is built: ``import nas`` never imports or starts Ray.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import math
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from nas.backends._base import Backend, register
from nas.data import Data, resolve
from nas.evaluate import evaluate
from nas.evaluation import Evaluation
from nas.latency import LatencyTable
from nas.space import Config

_MAX_SHARD = 64  # configs per shard at most: bounds the work a dying worker loses
_SHARDS_PER_WORKER = 4  # shards per worker and batch before evaluation times are known
_SHARD_SECONDS = 0.05  # work per shard once they are known (a shard costs a few ms of messages)


@register("ray")
class RayBackend(Backend):
    """Evaluates configs as Ray Tune trials, one long-lived trial per worker, on a local Ray or a cluster.

    Example:
        >>> from search_spaces.mlp import MLP
        >>> net = MLP(depths=(1,), widths=(16,), ranks=(4,))
        >>> with RayBackend(net, workers=1) as backend:  # doctest: +SKIP
        ...     [e.status for e in backend.evaluate([net.largest()])]
        ['ok']

    Args:
        net: the supernet.
        data: as `nas.data.resolve` takes it (None: the family's digits split).
        address: None (join ``RAY_ADDRESS`` when set, else start a private local Ray on
            127.0.0.1), ``"auto"`` (the running cluster on this machine) or ``"host:port"``.
        workers: trials evaluating at once (default: one per GPU when the cluster has GPUs,
            else one per ``cpus_per_worker`` CPUs).
        gpus_per_worker: GPUs per trial (default: 1 when the cluster has GPUs, else 0;
            fractions share a GPU).
        cpus_per_worker: CPUs per trial; also its number of torch threads.
        max_retries: retries of a config whose worker process died while scoring it;
            after that it is stored as ``failed`` with the error.
        **evaluate_kwargs: passed to `nas.evaluate` (metrics, latency, batch_size, seed,
            device to force one device on every worker, ...).
    """

    name = "ray"

    def __init__(
        self,
        net: Any,
        data: Any = None,
        *,
        address: str | None = None,
        workers: int | None = None,
        gpus_per_worker: float | None = None,
        cpus_per_worker: float = 1,
        max_retries: int = 3,
        **evaluate_kwargs: Any,
    ):
        _check_number("workers", workers, low=1, integer=True, optional=True)
        _check_number("gpus_per_worker", gpus_per_worker, low=0, optional=True)
        _check_number("cpus_per_worker", cpus_per_worker, low=0)
        _check_number("max_retries", max_retries, low=0, integer=True)
        if address is not None and not isinstance(address, str):
            raise ValueError(f"The 'address' parameter of RayBackend must be None, 'auto' or 'host:port', got {address!r}.")
        if cpus_per_worker == 0 and not gpus_per_worker:
            raise ValueError("The 'cpus_per_worker' parameter of RayBackend must be > 0 unless each worker has a GPU.")

        import ray
        from ray import tune

        self.net = net
        self.data = resolve(net, data)
        self.kwargs = dict(evaluate_kwargs)
        self.max_retries = max_retries
        self.latency_table = None
        if self.kwargs.get("latency") == "table":
            self.latency_table = LatencyTable.for_net(net, batch_size=self.kwargs.get("latency_batch_size", 1))
            self.kwargs["latency"] = self.latency_table

        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy engine honours verbose=0 (prints nothing)
        self._closed = False
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            _init_ray(ray, address, workers, cpus_per_worker, gpus_per_worker)
        try:
            resources = ray.cluster_resources()
            cluster_gpus = float(resources.get("GPU", 0))
            if gpus_per_worker is None:
                gpus_per_worker = 1 if cluster_gpus >= 1 else 0
            if gpus_per_worker > cluster_gpus:
                raise ValueError(
                    f"The 'gpus_per_worker' parameter of RayBackend asks for {gpus_per_worker} GPUs per worker, "
                    f"but the Ray cluster has {cluster_gpus:g}."
                )
            if workers is None:
                per = [float(resources.get("CPU", 0)) / cpus_per_worker if cpus_per_worker else math.inf]
                if gpus_per_worker:
                    per.append(cluster_gpus / gpus_per_worker)
                workers = max(1, int(min(per)))
            self.workers = workers
            self.gpus_per_worker = gpus_per_worker
            self.cpus_per_worker = cpus_per_worker

            here = ray.get_runtime_context().get_node_id()
            pin = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(node_id=here, soft=False)
            barren_limit = (max_retries + 1) * workers
            self._coordinator = (
                ray.remote(num_cpus=0, max_restarts=0)(_Coordinator)
                .options(scheduling_strategy=pin)
                .remote(max_retries, barren_limit)
            )
            home = net.device if hasattr(net, "device") else None
            shipped = net if home is None or home.type == "cpu" else copy.deepcopy(net).cpu()
            fresh = Data(self.data.train, self.data.val, self.data.test)  # without cached tensors
            payload = {"net": shipped, "data": fresh, "kwargs": self.kwargs, "coordinator": self._coordinator, "threads": cpus_per_worker}
            trainable = tune.with_resources(
                tune.with_parameters(_trial, payload=payload),
                {"cpu": cpus_per_worker, "gpu": gpus_per_worker},
            )
            self._storage = tempfile.mkdtemp(prefix="nas-tune-")
            self._stopper = _stopper_class()()
            self._tuner = tune.Tuner(
                trainable,
                param_space={"worker": tune.grid_search(list(range(workers)))},
                tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=workers, reuse_actors=False),
                run_config=tune.RunConfig(
                    name=f"nas-{uuid.uuid4().hex[:8]}",
                    storage_path=self._storage,
                    failure_config=tune.FailureConfig(max_failures=-1),  # restarts are bounded per config
                    stop=self._stopper,
                    callbacks=[_failure_callback_class()(self._coordinator)],
                    verbose=0,
                ),
            )
            self._tune_error: BaseException | None = None
            self._thread = threading.Thread(target=self._run_tune, name="nas-ray-tune", daemon=True)
            self._thread.start()
            self._batches = 0
            self._seconds_per_config: float | None = None
        except BaseException:
            self._shutdown()
            raise

    # -- Backend ---------------------------------------------------------------------------
    @property
    def parallelism(self) -> int:
        return self.workers

    def evaluate(self, configs: Sequence[Config]) -> list[Evaluation]:
        import ray

        if self._closed:
            raise RuntimeError("this RayBackend is closed")
        configs = [dict(c) if isinstance(c, dict) else c for c in configs]
        if not configs:
            return []
        self._batches += 1
        ref = self._coordinator.submit.remote(self._batches, configs, self._shard_size(len(configs)))
        while not ray.wait([ref], timeout=1.0)[0]:
            if not self._thread.is_alive():
                raise RuntimeError(f"the Ray Tune run evaluating configs ended unexpectedly: {self._tune_error!r}")
        outcome, value = ray.get(ref)
        if outcome != "ok":
            raise RuntimeError(value)
        seconds = sorted(e.seconds for e in value if e.ok)
        if seconds:
            self._seconds_per_config = seconds[len(seconds) // 2]
        return value

    def _shard_size(self, n: int) -> int:
        """Configs per shard: about `_SHARD_SECONDS` of work, yet every worker gets a share.

        Before the first results: `_SHARDS_PER_WORKER` shards per worker. Cheap configs go
        in bigger shards (a shard costs an actor round trip), costly ones in shards of one
        (so that workers finish together).
        """
        fair = math.ceil(n / self.workers)
        if self._seconds_per_config is None:
            size = math.ceil(n / (_SHARDS_PER_WORKER * self.workers))
        else:
            size = min(fair, math.ceil(_SHARD_SECONDS / max(self._seconds_per_config, 1e-6)))
        return max(1, min(_MAX_SHARD, size))

    def close(self) -> None:
        if self._closed:
            return
        self._shutdown()

    # -- monitoring ------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The workers (trial, node, pid, device, busy, evaluated) and counts: evaluated, trial
        failures (Tune restarts), configs retried, configs failed after their retries."""
        import ray

        if self._closed:
            raise RuntimeError("this RayBackend is closed")
        return ray.get(self._coordinator.status.remote())

    # -- internals -------------------------------------------------------------------------
    def _run_tune(self) -> None:
        import logging

        # Trials stopped by `close` before their first report are expected; don't warn.
        logging.getLogger("ray.tune.analysis.experiment_analysis").addFilter(_no_missing_metrics_warning)
        try:
            self._tuner.fit()
        except BaseException as err:  # reported by evaluate
            self._tune_error = err

    def _shutdown(self) -> None:
        import ray

        self._closed = True
        coordinator = getattr(self, "_coordinator", None)
        if coordinator is not None:
            try:
                ray.get(coordinator.stop.remote(), timeout=10)
            except Exception:
                pass
        if getattr(self, "_stopper", None) is not None:
            self._stopper.stopped = True
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join(timeout=60)
        if coordinator is not None:
            try:
                ray.kill(coordinator)
            except Exception:
                pass
        if getattr(self, "_owns_ray", False) and ray.is_initialized():
            ray.shutdown()
        if getattr(self, "_storage", None):
            shutil.rmtree(self._storage, ignore_errors=True)


def _init_ray(ray: Any, address: str | None, workers: int | None, cpus: float, gpus: float | None, *,
              log_to_driver: bool = True) -> None:
    """Join the cluster at `address` (or ``RAY_ADDRESS``), else start a private local Ray on loopback."""
    import logging

    if address is None and not os.environ.get("RAY_ADDRESS"):
        _single_machine_mode()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(
            address="local",  # never an existing cluster found on this machine
            num_cpus=None if workers is None else max(1, math.ceil(workers * cpus)),
            num_gpus=None if workers is None or gpus is None else math.ceil(workers * gpus),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level=logging.WARNING,
            log_to_driver=log_to_driver,
        )
        return
    if _is_loopback(_raw_address(address)):
        _single_machine_mode()  # a loopback cluster is reachable only as 127.0.0.1
    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=log_to_driver)


def _raw_address(address: str | None) -> str:
    """The address Ray will connect to, before it rewrites loopback hosts."""
    if address not in (None, "auto"):
        return address
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    if address == "auto":
        try:  # the cluster last started on this machine
            from ray._private.services import find_bootstrap_address

            return find_bootstrap_address(None) or ""
        except Exception:
            return ""
    return ""


def _is_loopback(address: str) -> bool:
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


def _single_machine_mode() -> None:
    """Ray's single-machine mode: its processes bind to and advertise 127.0.0.1 only.

    Ray turns it on by default only on macOS and Windows; on Linux it rewrites
    ``127.0.0.1`` to the machine's address and listens on every interface. The switch is
    an environment variable (inherited by the Ray processes started from here) that Ray
    reads into a constant when it is imported, so the constant is set as well.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0":
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False


def _check_number(name: str, value: Any, *, low: float, integer: bool = False, optional: bool = False) -> None:
    if value is None and optional:
        return
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value < low:
        what = "an int" if integer else "a number"
        allowed = f"{what} >= {low}" + (" or None" if optional else "")
        raise ValueError(f"The '{name}' parameter of RayBackend must be {allowed}, got {value!r}.")


# -- the trial ------------------------------------------------------------------------------
def _trial(config: dict[str, Any], payload: dict[str, Any]) -> None:
    """One Tune trial: take shards from the coordinator and score them until told to stop."""
    import ray
    import torch
    from ray import tune

    coordinator = payload["coordinator"]
    net, data, kwargs = payload["net"], payload["data"], payload["kwargs"]
    torch.set_num_threads(max(1, int(payload["threads"])))
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    if device != "cpu":
        net.to(device)
    context = ray.get_runtime_context()
    trial = tune.get_context().get_trial_id()
    token = uuid.uuid4().hex  # this incarnation of the trial
    info = {"worker": config.get("worker"), "node": context.get_node_id(), "pid": os.getpid(), "device": device}
    done = None
    count = 0
    while True:
        shard = ray.get(coordinator.take.remote(trial, token, done, info))
        if shard is None:
            break
        shard_id, configs = shard
        done = (shard_id, evaluate(net, configs, data, **kwargs))
        count += len(configs)
    tune.report({"evaluated": count})


# -- the coordinator (a Ray async actor) ------------------------------------------------------
class _Shard:
    __slots__ = ("batch", "items", "attempts")

    def __init__(self, batch: int, items: list[tuple[int, Config]], attempts: int = 0):
        self.batch, self.items, self.attempts = batch, items, attempts  # items: (index in batch, config)


class _Batch:
    __slots__ = ("results", "missing", "done")

    def __init__(self, size: int):
        self.results: list[Evaluation | None] = [None] * size
        self.missing = size
        self.done = asyncio.Event()


class _Coordinator:
    """The work queue between `RayBackend.evaluate` and the trials; one result slot per config."""

    def __init__(self, max_retries: int, barren_limit: int):
        self.max_retries = max_retries
        self.barren_limit = barren_limit
        self.queue: collections.deque[int] = collections.deque()
        self.shards: dict[int, _Shard] = {}
        self.leases: dict[str, tuple[str, int]] = {}  # trial -> (incarnation token, shard id)
        self.batches: dict[int, _Batch] = {}
        self.workers: dict[str, dict[str, Any]] = {}
        self.evaluated_by: collections.Counter[str] = collections.Counter()
        self.work = asyncio.Event()
        self.next_shard = 0
        self.stopped = False
        self.broken: str | None = None
        self.barren = 0  # trial failures in a row without work in hand and without progress
        self.counts = {"evaluated": 0, "trial_failures": 0, "retried": 0, "failed_after_retries": 0}

    # driver side
    async def submit(self, batch: int, configs: list[Config], size: int) -> tuple[str, Any]:
        if self.broken or self.stopped:
            return "error", self.broken or "the backend is closed"
        record = self.batches[batch] = _Batch(len(configs))
        items = list(enumerate(configs))
        for start in range(0, len(items), size):
            self._push(_Shard(batch, items[start : start + size]))
        await record.done.wait()
        del self.batches[batch]
        if record.missing:
            return "error", self.broken or "the backend was closed during evaluation"
        return "ok", record.results

    async def status(self) -> dict[str, Any]:
        workers = [
            {"trial": t, **info, "busy": t in self.leases, "evaluated": self.evaluated_by.get(t, 0)}
            for t, info in sorted(self.workers.items())
        ]
        return {"workers": workers, "queued_shards": len(self.queue), **self.counts}

    async def stop(self) -> None:
        self.stopped = True
        self.work.set()
        for record in self.batches.values():
            record.done.set()

    # trial side
    async def take(self, trial: str, token: str, done: tuple[int, list[Evaluation]] | None, info: dict[str, Any]):
        self.workers[trial] = info
        lease = self.leases.get(trial)
        if lease is not None and lease[0] != token:  # an earlier incarnation died holding work
            del self.leases[trial]
            self._lost(lease[1], "the worker process died (its trial was restarted)")
        if done is not None:
            shard_id, evaluations = done
            if self.leases.get(trial, (None, None))[1] == shard_id:
                del self.leases[trial]
            self._finish(shard_id, evaluations)
            self.evaluated_by[trial] += len(evaluations)
        while True:
            while not self.queue and not self.stopped:
                self.work.clear()
                await self.work.wait()
            if self.stopped:
                return None
            shard_id = self.queue.popleft()
            shard = self.shards[shard_id]
            open_items = [(i, c) for i, c in shard.items if self._open(shard.batch, i)]
            if not open_items:  # all scored meanwhile (a presumed-dead worker finished them)
                del self.shards[shard_id]
                continue
            shard.items = open_items
            self.leases[trial] = (token, shard_id)
            return shard_id, [c for _, c in open_items]

    async def trial_failed(self, trial: str, error: str) -> None:
        """Called by the Tune callback when a trial's worker died or its function raised."""
        self.counts["trial_failures"] += 1
        lease = self.leases.pop(trial, None)
        if lease is not None:
            self._lost(lease[1], error)
            return
        self.barren += 1
        if self.barren > self.barren_limit and self.batches:
            self.broken = (
                f"Ray Tune trials failed {self.barren} times in a row before evaluating anything "
                f"(can the workers load the supernet?); last error: {error}"
            )
            for record in self.batches.values():
                record.done.set()

    # internals
    def _push(self, shard: _Shard, front: bool = False) -> None:
        shard_id = self.next_shard
        self.next_shard += 1
        self.shards[shard_id] = shard
        (self.queue.appendleft if front else self.queue.append)(shard_id)
        self.work.set()

    def _open(self, batch: int, index: int) -> bool:
        record = self.batches.get(batch)
        return record is not None and record.results[index] is None

    def _record(self, batch: int, index: int, evaluation: Evaluation) -> None:
        record = self.batches.get(batch)
        if record is None or record.results[index] is not None:
            return  # first result wins: a config is stored once
        record.results[index] = evaluation
        record.missing -= 1
        if not record.missing:
            record.done.set()

    def _finish(self, shard_id: int, evaluations: list[Evaluation]) -> None:
        shard = self.shards.pop(shard_id, None)
        if shard is None:
            return
        for (index, _), evaluation in zip(shard.items, evaluations):
            self._record(shard.batch, index, evaluation)
        self.counts["evaluated"] += len(evaluations)
        self.barren = 0

    def _lost(self, shard_id: int, error: str) -> None:
        """Requeue the open configs of a shard whose worker died: split it, or charge its one config."""
        shard = self.shards.pop(shard_id, None)
        if shard is None:
            return
        items = [(i, c) for i, c in shard.items if self._open(shard.batch, i)]
        if len(items) > 1:
            for item in reversed(items):  # one config per shard from now on, so blame is exact
                self._push(_Shard(shard.batch, [item], shard.attempts), front=True)
            return
        for index, config in items:
            attempts = shard.attempts + 1
            if attempts > self.max_retries:
                self.counts["failed_after_retries"] += 1
                times = "once" if attempts == 1 else f"{attempts} times"
                message = f"WorkerDied: the worker evaluating this config died {times}; last error: {error}"
                self._record(shard.batch, index, Evaluation(dict(config), {}, "failed", message, 0.0))
            else:
                self.counts["retried"] += 1
                self._push(_Shard(shard.batch, [(index, config)], attempts), front=True)


# -- Tune plumbing (classes built on first use, so that importing this module needs no Ray) ----
def _failure_callback_class():
    from ray import tune

    class _Failures(tune.Callback):
        """Tells the coordinator when a trial failed (Tune retries it; the coordinator requeues its work)."""

        def __init__(self, coordinator: Any):
            self.coordinator = coordinator

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.coordinator.trial_failed.remote(trial.trial_id, _error_text(trial))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.coordinator.trial_failed.remote(trial.trial_id, _error_text(trial))

    return _Failures


def _stopper_class():
    from ray import tune

    class _Stop(tune.Stopper):
        """Ends the Tune run when the backend closes (also trials waiting to be restarted)."""

        def __init__(self):
            self.stopped = False

        def __call__(self, trial_id: str, result: dict) -> bool:
            return False

        def stop_all(self) -> bool:
            return self.stopped

    return _Stop


def _no_missing_metrics_warning(record: Any) -> bool:
    return "Failed to fetch metrics" not in record.getMessage()


def _error_text(trial: Any) -> str:
    """The last failure Tune recorded for `trial`, shortened to its first and last lines."""
    try:
        with open(trial.error_file) as f:
            text = f.read().rsplit("Failure #", 1)[-1]
    except Exception:
        return "the trial failed (no error recorded)"
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # colour codes
    lines = [line.strip() for line in text.splitlines()[1:] if line.strip()]
    if not lines:
        return "the trial failed (no error recorded)"
    short = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return short[:500]


__all__ = ["RayBackend"]
