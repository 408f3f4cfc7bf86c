"""`train_distributed`: data-parallel supernet training on a Ray cluster through Ray Train.

How it works, and why:

* Ray Train's `TorchTrainer` starts `workers` processes (a GPU each, or `cpus_per_worker`
  CPUs) and sets up their torch.distributed process group (gloo on CPU, NCCL on GPU). Each
  runs the one training loop, `nas.training.fit`, with a `Replica` step: the `Supervised`
  step of `train_supernet` with two changes. It trains on its shard of every batch (the
  batch order comes from the shared seed, so all workers cut the same global batch; worker
  ``r`` of ``N`` takes rows ``[r*n/N, (r+1)*n/N)``), and after the strategy's forward and
  backward passes it all-reduces the gradients, once per step, before clipping and the
  optimizer step.
* Every worker samples the same subnets each step: the strategy's generator is seeded by
  the recipe's seed on every worker, and all of them consume it alike. So the workers hold
  the same weights throughout, as in DistributedDataParallel.
* Why not the `DistributedDataParallel` wrapper: a sandwich step runs several subnets, each
  with its own backward pass. DDP would all-reduce during each of them (``no_sync`` aside),
  and with dynamic subnets it must be told to search for unused parameters on every pass.
  One manual all-reduce of one flat buffer after the step costs one collective per step;
  each gradient is weighted by its shard's share of the batch, so the reduced gradient is
  exactly the single-process gradient of the whole batch (up to float rounding) for
  nets without BatchNorm (BatchNorm batch statistics are per worker, as in DDP without
  SyncBatchNorm). A per-parameter flag in the same buffer keeps a parameter no subnet used
  this step gradient-free (None), as in one process, so AdamW leaves it alone.
* The optimizer step is the one cost of a step that every worker pays in full whatever its
  share of the batch, so the workers build the recipe's optimizer with torch's fused kernel
  (``fused=True``; SGD the ``foreach`` one): one call a step instead of a Python loop over
  the tensors, the same update up to float rounding (the transformer bench's 49 tensors:
  about 1 ms of CPU a step instead of 4). One process keeps the per-parameter loop (its
  results are pinned bit for bit). The checkpoint does not record the kernel: the
  optimizer's state dict shows one process's flags, and a worker loading one fuses again.
* Checkpoints: worker 0 writes ``supernet.pt`` (the format of `fit`) into the run
  directory after every epoch, and reports that epoch to Ray Train as a checkpoint
  (``ray.train.report``): a marker naming the epoch and the file, not a copy of it (Ray
  would copy the whole state, 16 MB for the bench's mlp, into its storage every epoch,
  while every worker reads the run directory anyway); the other workers only read it. The driver holds the run
  directory's lock for the whole run, so the workers write without it. A worker that dies
  makes Ray Train restart the worker group (``FailureConfig(max_failures)``); seeing a
  reported checkpoint, the new workers resume from the run directory's last epoch. A
  killed driver takes its private Ray with it; the same call again resumes from the
  checkpoint, and a finished checkpoint is loaded without starting Ray at all. The run
  directory must be on a file system every worker sees (always so on one machine; on a
  cluster, a shared mount).
* Validation (largest and smallest subnet, after each epoch) is sharded as the batches are:
  each worker scores its slice of the validation set (BatchNorm recalibrated on the same
  training batches everywhere), and one all-reduce of the per-slice sums (weighted by the
  slice's size) gives every worker the whole set's accuracy (exactly: the counts are summed)
  and loss (up to float rounding). A validation set that is a `DataLoader`, or smaller than
  the workers, is scored whole on worker 0 alone.
* Progress: with ``progress=True`` the driver shows `fit`'s bar (epochs, loss, validation
  accuracies, time), fed by worker 0, which puts each epoch's record on a Ray queue. Ray
  Train's controller takes a report once per health-check interval and a worker's next
  report waits for it, so the driver sets that interval to 0.2 s (2 s by default would
  throttle short epochs). Reports are per epoch, never per step.
* Priorities on a private Ray (one this process started): Ray starts its workers 15 nice
  levels below its services (the raylet, the GCS, the dashboard, the log monitor, the agents)
  and the driver, so on a machine with as many cores as workers every wake-up of one of them
  preempted a train worker, and the other workers waited for it at the next all-reduce (Ray's
  processes take about 10-15% of a core during the epochs). So a private Ray's workers start
  at this process's priority (``RAY_worker_niceness=0``, unless the user set it), and while
  training a thread of the driver moves Ray's services but the raylet (whose priority the
  workers it starts inherit) and Ray Train's helpers (the controller, its placement-group
  cleaner, synchronization, autoscaling and dataset actors, found by process title) to nice
  19, every thread, for the rest of that Ray's life: they run when a worker leaves a core
  idle. A cluster joined by address is left as it is.
* The cluster: without an address, a private Ray on 127.0.0.1 started for the call and
  shut down after (as the ray search backend starts one); with ``"auto"`` or
  ``"host:port"`` (or ``RAY_ADDRESS``, as inside ``ray job submit``) the running cluster.
  Bad input is refused in one line before any training starts: ``workers`` below 1 or more
  than the cluster can hold, GPUs asked of a cluster with none, an address nothing answers at.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.data import Data
from nas.devices import check_precision, resolve_device, to_device
from nas.errors import NASError
from nas.rundir import RunDir
from nas.training._fit import _check_resumable, fit, read_checkpoint
from nas.training._plan import Plan, supernet_step
from nas.training._recipe import Recipe
from nas.training._supervised import Supervised

_MARKER = "nas-epoch.json"  # what worker 0 reports to Ray Train as each epoch's checkpoint


class DistributedError(NASError, ValueError):
    """Distributed training asked of what cannot run it: bad workers, GPUs the cluster lacks, an unreachable address."""

    __module__ = "nas.training"


class Replica(Supervised):
    """The `Supervised` step of one of `world` data-parallel workers: its shard of each batch,
    one all-reduce of the gradients (weighted by shard size) per step.

    Args:
        *args: as `Supervised` takes them.
        rank: this worker's index.
        world: the number of workers.
        validates: whether this worker validates after each epoch (worker 0).
        val_slice: ``(n, total)`` when every worker validates its slice of ``n`` of the
            validation set's ``total`` samples, and the slices' records are merged by an
            all-reduce (`validates` must be True on every worker).

    An epoch's record adds ``cpu_seconds``: the CPU time this worker's process spent on the
    epoch's steps (validation apart). Unlike wall-clock it hardly depends on the load of the
    machine, so it tells what the workers cost even where they share cores with others. And
    ``elapsed_seconds``: the wall-clock since this worker began its first epoch (of this
    start: a restarted worker counts afresh), the checkpoints and reports between epochs
    included, so the last record's is the wall-clock of the epochs without the start-up. And
    ``wait_seconds``: the wall-clock of the epoch's all-reduces of the gradients, almost all of
    it waiting for the slowest worker (on an idle machine well under a millisecond a step).
    """

    # torch's fused optimizer kernel: one call a step, where the per-parameter loop single-process
    # training keeps (pinned bit for bit) costs every worker alike, however many share the batch
    fused_optimizer = True

    def __init__(self, model: nn.Module, forward_backward: Any, recipe: Recipe, data: Data, validate: Any, rng: Any, *,
                 rank: int, world: int, validates: bool, val_slice: tuple[int, int] | None = None):
        super().__init__(model, forward_backward, recipe, data, validate, rng)
        _checkpoint_as_unfused(self.optimizers["weights"])
        self.rank, self.world, self.validates, self.val_slice = rank, world, validates, val_slice
        self.share = 1.0
        self._cpu = 0.0
        self._wait = 0.0
        self._began: float | None = None

    def begin_epoch(self, epoch: int) -> None:
        super().begin_epoch(epoch)
        if self._began is None:
            self._began = time.perf_counter()
        self._cpu = time.process_time()
        self._wait = 0.0

    def batches(self, data: Data, batch_size: int, seed: int, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in data.train_batches(batch_size, seed, "cpu"):
            n = len(x)
            lo, hi = self.rank * n // self.world, (self.rank + 1) * n // self.world
            self.share = (hi - lo) / n
            yield to_device((x[lo:hi], y[lo:hi]), device)  # type: ignore[misc]

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> float:
        import torch.distributed as dist

        opt = self.optimizers["weights"]
        opt.zero_grad(set_to_none=True)
        value = self.forward_backward(x, y) if len(x) else 0.0
        params = self.params
        device = params[0].device
        used = [p.grad is not None for p in params]
        # one flat buffer: the gradients (zeros for unused parameters) and the loss, weighted
        # by this shard's share of the batch in one multiply, then a used flag per parameter
        flat = torch.cat([*(p.grad.reshape(-1).float() if p.grad is not None else torch.zeros(p.numel(), device=device) for p in params),
                          torch.tensor([value, *map(float, used)], dtype=torch.float32, device=device)])
        flat[: -len(params)].mul_(self.share)
        began = time.perf_counter()
        dist.all_reduce(flat)  # the one collective of the step
        self._wait += time.perf_counter() - began
        offset = 0
        for p, reduced in zip(params, flat[-len(params):].tolist()):
            n = p.numel()
            if reduced > 0:  # a view of the reduced buffer (DDP's gradient_as_bucket_view); zero_grad drops it
                grad = flat[offset:offset + n].view_as(p)
                p.grad = grad if grad.dtype == p.dtype else grad.to(p.dtype)
            else:
                p.grad = None
            offset += n
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, self.grad_clip)
        opt.step()
        return float(flat[-1 - len(params)])

    def end_epoch(self, epoch: int, loss: float) -> dict[str, Any]:
        cpu = time.process_time() - self._cpu
        record = super().end_epoch(epoch, loss) if self.validates else {"loss": loss, "lr": self.optimizers["weights"].param_groups[0]["lr"]}
        if self.val_slice is not None:
            record = self._merge_slices(record)
        return {**record, "cpu_seconds": cpu, "wait_seconds": self._wait, "elapsed_seconds": time.perf_counter() - (self._began or time.perf_counter())}


    def _merge_slices(self, record: dict[str, Any]) -> dict[str, Any]:
        """The whole validation set's record from every worker's slice: one all-reduce of
        the sums (accuracy as a count, loss times the slice's size) and of present flags."""
        import torch.distributed as dist

        n, total = self.val_slice  # type: ignore[misc]
        keys = [f"{which}_{metric}" for which in ("largest", "smallest") for metric in ("accuracy", "loss")]
        values = [float(record[k]) * n if k in record else 0.0 for k in keys]
        present = [float(k in record) for k in keys]
        merged = torch.tensor(values + present, dtype=torch.float64)
        dist.all_reduce(merged)
        out = {k: v for k, v in record.items() if k not in keys}
        for i, key in enumerate(keys):
            if merged[len(keys) + i] == self.world:  # a metric every slice has (a failed subnet's accuracy is absent)
                value = float(merged[i])
                out[key] = round(value) / total if key.endswith("_accuracy") else value / total
        return out


def _checkpoint_as_unfused(opt: torch.optim.Optimizer) -> None:
    """Keep `opt`'s kernel choice (``fused`` / ``foreach``) out of its checkpoints: its state
    dict shows the defaults, as single-process training's optimizer saves them (so a resume
    in one process runs one process's kernel), and loading one brings the choice back."""
    flags = {k: opt.defaults[k] for k in ("fused", "foreach") if opt.defaults.get(k)}
    if not flags:
        return

    def saved(_opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        for group in state["param_groups"]:
            group.update(dict.fromkeys(flags))

    def loading(_opt: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
        return {**state, "param_groups": [{**group, **flags} for group in state["param_groups"]]}

    opt.register_state_dict_post_hook(saved)
    opt.register_load_state_dict_pre_hook(loading)


def val_slice(data: Data, rank: int, world: int) -> tuple[Data, int, int] | None:
    """`data` with worker `rank`'s slice of the validation set (of `world` equal ones, in
    order), the slice's size and the set's; None where it is not sliced (a `DataLoader`, or
    fewer samples than workers)."""
    from torch.utils.data import DataLoader, Subset, TensorDataset

    val = data.val
    if isinstance(val, DataLoader) or len(val) < world:  # type: ignore[arg-type]
        return None
    total = len(val)  # type: ignore[arg-type]
    lo, hi = rank * total // world, (rank + 1) * total // world
    part = TensorDataset(*(t[lo:hi] for t in val.tensors)) if isinstance(val, TensorDataset) else Subset(val, range(lo, hi))
    return Data(data.train, part, data.test), hi - lo, total


def train_distributed(
    net: nn.Module,
    plan: Plan,
    *,
    run: str | os.PathLike | None = None,
    resume: bool = False,
    workers: int | None = None,
    use_gpu: bool | None = None,
    device: str | torch.device | None = None,
    address: str | None = None,
    cpus_per_worker: float = 1,
    max_failures: int = 3,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train `net` in place by `plan` on `workers` Ray Train workers; returns the per-epoch history.

    `nas.train_supernet` with ``backend="ray"`` calls it (see its arguments, and this
    module's notes on how it works). The run directory (`run`, else a temporary one) gets
    ``supernet.pt`` after every epoch; a finished checkpoint there (with ``resume=True``)
    is loaded without starting Ray.

    Example:
        >>> from search_spaces.mlp import MLP
        >>> import nas
        >>> nas.train_supernet(MLP(), backend="ray", workers=0)
        Traceback (most recent call last):
        ...
        nas.training.DistributedError: The 'workers' parameter of train_supernet must be an int >= 1 or None, got 0.
    """
    _check(workers, use_gpu, address, cpus_per_worker, max_failures)
    if address is not None:
        check_address(address)  # before Ray is imported: a bad address touches nothing of Ray
    if use_gpu is None and device is not None:
        wanted = str(device)
        if wanted not in ("auto",) and not wanted.startswith(("cpu", "cuda")):
            resolve_device(wanted)  # the one-line error for an unknown name
        use_gpu = None if wanted == "auto" else wanted.startswith("cuda")
    if plan.precision != "fp32" and use_gpu is False:
        check_precision(plan.precision, "cpu")
    owned = run is None
    rundir = RunDir(run if run is not None else tempfile.mkdtemp(prefix="nas-train-"))
    try:
        with rundir.lock():  # held by this driver for the whole run: the workers write through it
            start = 0  # the epoch training goes on from
            if resume and rundir.checkpoint.is_file():  # checked here, before any worker starts
                state = read_checkpoint(rundir.checkpoint)
                _check_resumable(state, {**plan.identity, **plan.recipe.record()}, rundir.checkpoint)
                if int(state["epoch"]) >= plan.recipe.epochs:  # finished: nothing to redo, no Ray to start
                    net.load_state_dict(state["model"])
                    return list(state["history"])
                start = int(state["epoch"])
            state = _fit_on_ray(net, plan, rundir, resume, workers, use_gpu, address, cpus_per_worker, max_failures,
                                progress and f"train {getattr(net, 'family', 'supernet')}", start)
        net.load_state_dict(state["model"])
        return list(state["history"])
    finally:
        if owned:
            shutil.rmtree(rundir.path, ignore_errors=True)


def _check(workers, use_gpu, address, cpus_per_worker, max_failures) -> None:
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise DistributedError(f"The 'workers' parameter of train_supernet must be an int >= 1 or None, got {workers!r}.")
    if use_gpu is not None and not isinstance(use_gpu, bool):
        raise DistributedError(f"The 'use_gpu' parameter of train_supernet must be True, False or None, got {use_gpu!r}.")
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise DistributedError(f"The 'ray_address' parameter of train_supernet must be None, 'auto' or 'host:port', got {address!r}.")
    if isinstance(cpus_per_worker, bool) or not isinstance(cpus_per_worker, (int, float)) or cpus_per_worker <= 0:
        raise DistributedError(f"The 'cpus_per_worker' parameter of train_supernet must be a number > 0, got {cpus_per_worker!r}.")
    if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 0:
        raise DistributedError(f"The 'max_failures' parameter of train_supernet must be an int >= 0, got {max_failures!r}.")


def check_address(address: str, *, parameter: str = "ray_address") -> None:
    """Refuse, in one line, a Ray address where nothing listens: ``host:port``, or the cluster
    ``auto`` finds (``RAY_ADDRESS``, else the one last started on this machine)."""
    target = address
    if address == "auto":
        from nas.backends import raw_address

        target = raw_address("auto")
        if not target:
            raise DistributedError(f"The '{parameter}' parameter is 'auto', but no running Ray cluster is known on this machine; "
                                   "start one (`ray start --head`) or leave the address unset for a private local Ray.")
    target = target.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise DistributedError(f"The '{parameter}' parameter must be 'auto' or 'host:port', got {address!r}.")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError as err:
        where = f" (found {target})" if address == "auto" else ""
        raise DistributedError(
            f"The '{parameter}' parameter is {address!r}{where}, but no Ray cluster answers there ({err.strerror or err}); "
            "start one (`ray start --head`) or leave the address unset for a private local Ray."
        ) from None


def join_ray(address: str | None, workers: int | None, cpus: float, use_gpu: bool | None = None) -> bool:
    """Join the cluster (or start a private loopback one); whether this call owns (and will shut down) it.

    A private Ray's workers run at this process's priority: Ray starts its workers 15 nice
    levels below its own services (``RAY_worker_niceness``, unless the user set it), which
    would let every timer of the raylet, the GCS, the dashboard and the driver preempt a
    train worker (see `_background_priority` for the other half)."""
    import ray

    from nas.backends import init_ray

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    if ray.is_initialized():
        return False
    private = address is None and not os.environ.get("RAY_ADDRESS")
    added = private and "RAY_worker_niceness" not in os.environ
    if added:  # read by the raylet as it starts, which the workers inherit it from
        os.environ["RAY_worker_niceness"] = "0"
    try:
        init_ray(ray, address, workers, cpus, None, log_to_driver=False)
    except ConnectionError as err:
        raise DistributedError(
            f"The 'ray_address' parameter is {address!r}, but no Ray cluster answers there ({' '.join(str(err).split())[:160]}); "
            "start one (`ray start --head`) or leave the address unset for a private local Ray."
        ) from None
    finally:
        if added:
            os.environ.pop("RAY_worker_niceness", None)
    return True


def _fit_on_ray(net, plan, rundir, resume, workers, use_gpu, address, cpus, max_failures, progress, start) -> dict[str, Any]:
    import ray

    owns = join_ray(address, workers, cpus, use_gpu)
    storage = tempfile.mkdtemp(prefix="nas-train-ray-")
    try:
        resources = ray.cluster_resources()
        gpus, cluster_cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
        if use_gpu and gpus < 1:
            raise DistributedError("The 'use_gpu' parameter (device 'cuda') asks for a GPU per worker, but the Ray cluster has no GPU; "
                                   "use device 'cpu' or 'auto', or a cluster with GPUs.")
        if use_gpu is None:
            use_gpu = gpus >= 1
        if workers is None:
            workers = max(1, int(gpus) if use_gpu else int(cluster_cpus // cpus))
        if use_gpu and workers > gpus:
            raise DistributedError(f"The 'workers' parameter asks for {workers} workers with a GPU each, but the Ray cluster has {gpus:g} GPUs.")
        if workers * cpus > cluster_cpus and not use_gpu:
            raise DistributedError(f"The 'workers' parameter asks for {workers} workers of {cpus:g} CPUs each, "
                                   f"but the Ray cluster has {cluster_cpus:g} CPUs.")
        if plan.precision != "fp32" and not use_gpu:
            check_precision(plan.precision, "cpu")
        private = _started_here()
        with _train_settings(private=private), _background_priority(private):
            return _trainer_fit(net, plan, rundir, resume, workers, bool(use_gpu), cpus, max_failures, storage, progress, start)
    finally:
        if owns and ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)


def _started_here() -> bool:
    """Whether the Ray this process is connected to is one it started (a private local Ray, as
    `nas.backends.init_ray` starts without an address), not a cluster it joined."""
    from ray._private import worker

    return bool(getattr(getattr(worker, "_global_node", None), "head", False))


@contextlib.contextmanager
def _train_settings(*, private: bool) -> Iterator[None]:
    """Ray Train's settings for one call (environment variables, which the driver passes on
    to the controller and the workers), each unless the user set it, restored after.

    Ray Train's controller takes a worker's report every health-check interval (2 s by
    default) and a worker's next report waits for it: epochs shorter than that would wait,
    so it is 0.2 s. On a private Ray started by this process (no dashboard to show metrics,
    no node to be preempted) the preemption watcher (an actor that polls) and the metrics callbacks are
    off, so that on a machine with as many cores as workers their CPU does not go to Ray.
    """
    values = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2"}
    if private:
        values.update(RAY_TRAIN_ENABLE_PREEMPTION_WATCHER="0", RAY_TRAIN_METRICS_ENABLED="0")
    added = [k for k in values if k not in os.environ]
    os.environ.update({k: values[k] for k in added})
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


# the processes of a Ray this process started that only serve the training: Ray's services (all
# that `Node.all_processes` holds but the raylet, which starts the workers and whose priority
# they would inherit) and, among the raylet's children, the agents and Ray Train's helper actors
# (by the process title Ray gives them); never the train workers, idle workers or anything unknown
_BACKGROUND_TITLES = ("ray::DashboardAgent", "ray::RuntimeEnvAgent", "ray::TrainController", "ray::PlacementGroupCleaner",
                      "ray::SynchronizationActor", "ray::_AutoscalingCoordinatorActor", "ray::DatasetManager")
_LOWEST = 19  # the nice value they get


@contextlib.contextmanager
def _background_priority(private: bool) -> Iterator[None]:
    """While training on a Ray this process started (on Linux), Ray's own processes run at the
    lowest priority (nice 19, every thread), so that their timers and polls take a core only
    when a train worker leaves it idle instead of stalling one (and, at the next all-reduce,
    all of them). A thread of the driver lowers each such process as it appears."""
    import threading

    if not private or not os.path.isdir("/proc/self/task") or not hasattr(os, "setpriority"):
        yield
        return
    from ray._private import worker

    node = worker._global_node
    done = threading.Event()
    lowered: set[int] = set()

    def follow() -> None:
        wait = 0.25
        while not done.wait(wait):
            try:
                _lower(node, lowered)
            except Exception:  # the node is going away: nothing more to lower
                return
            wait = min(2 * wait, 8.0)  # the helpers appear in the first seconds; later, only a restart adds any

    thread = threading.Thread(target=follow, name="nas-ray-priority", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)


def _lower(node: Any, lowered: set[int]) -> None:
    """Set every thread of the private Ray's background processes (see `_BACKGROUND_TITLES`) not
    yet in `lowered` to nice `_LOWEST`; adds them to `lowered`."""
    services = {kind: [info.process.pid for info in infos] for kind, infos in node.all_processes.items()}
    raylets = set(services.pop("raylet", []))
    pids = {pid for infos in services.values() for pid in infos}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            if ppid not in raylets:
                continue
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                title = f.read().split(b"\0", 1)[0].decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if title.startswith(_BACKGROUND_TITLES):
            pids.add(int(entry.name))
    for pid in pids:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            if tid in lowered:
                continue
            try:
                os.setpriority(os.PRIO_PROCESS, tid, max(_LOWEST, os.getpriority(os.PRIO_PROCESS, tid)))
                lowered.add(tid)
            except OSError:  # the thread ended
                pass


def _trainer_fit(net, plan, rundir, resume, workers, use_gpu, cpus, max_failures, storage, progress, start) -> dict[str, Any]:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    home = next(net.parameters()).device
    shipped = net if home.type == "cpu" else _cpu_copy(net)
    fresh = Data(plan.data.train, plan.data.val, plan.data.test)  # without cached tensors
    bar = _Progress(progress, plan.recipe.epochs, start) if progress else None
    payload = {"net": shipped, "plan": plan._replace(data=fresh), "run": str(rundir.path.resolve()), "resume": resume,
               "threads": max(1, int(cpus)), "feed": bar.feed if bar is not None else None}
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"payload": payload},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=None if use_gpu else {"CPU": cpus}),
        run_config=RunConfig(
            name=f"nas-train-{uuid.uuid4().hex[:8]}",
            storage_path=storage,
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
        ),
    )
    try:
        trainer.fit()
    except Exception as err:
        raise RuntimeError(f"distributed training failed ({workers} workers, after up to {max_failures} restarts): "
                           f"{' '.join(str(err).split())[:600]}") from err
    finally:
        if bar is not None:
            bar.close()
    return read_checkpoint(rundir.checkpoint)


class _Progress:
    """The driver's progress bar (as `fit` shows it in one process: epochs, loss, largest and
    smallest validation accuracy, time), fed by worker 0's epoch records through a Ray queue."""

    def __init__(self, desc: str, epochs: int, start: int):
        import threading

        from ray.util.queue import Queue
        from tqdm.auto import tqdm

        self.feed = Queue(actor_options={"num_cpus": 0})
        self.bar = tqdm(total=epochs, initial=start, desc=desc, leave=False, mininterval=0)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._follow, name="nas-train-progress", daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        from ray.util.queue import Empty

        while not self.done.is_set():
            try:
                self._show(self.feed.get(timeout=0.5))
            except Empty:
                continue
            except Exception:  # the queue's actor is gone (Ray shut down): nothing more to show
                return

    def _show(self, record: dict[str, Any]) -> None:
        self.bar.n = int(record["epoch"])  # an epoch redone after a restart shows again, not twice
        self.bar.set_postfix(Supervised.postfix(record), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)
        try:
            for record in self.feed.get_nowait_batch(self.feed.qsize()):
                self._show(record)
        except Exception:  # nothing left (Empty), or the queue's actor is gone
            pass
        self.bar.close()
        try:
            self.feed.shutdown()
        except Exception:
            pass


def _cpu_copy(net: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(net).cpu()


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: `fit` with a `Replica` step; worker 0 writes and reports each epoch's checkpoint."""
    import ray.train
    import ray.train.torch

    payload = config["payload"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(payload["threads"])
    device = ray.train.torch.get_device()
    net, plan = payload["net"], payload["plan"]
    net.to(device)  # once
    restarted = ray.train.get_checkpoint() is not None  # a restart after a worker died: resume what was reported
    step = replica_step(net, plan, rank, world)
    rundir = RunDir(payload["run"])

    def report(record: dict[str, Any]) -> None:
        metrics = {k: v for k, v in record.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if rank == 0 and payload["feed"] is not None:
            payload["feed"].put_nowait(metrics)  # the driver's progress bar
        if rank == 0:  # the checkpoint is the run directory's; Ray Train gets a marker of it (a few bytes to persist, not the supernet)
            with tempfile.TemporaryDirectory(prefix="nas-ckpt-") as tmp:
                (Path(tmp) / _MARKER).write_text(json.dumps({"epoch": int(record["epoch"]), "checkpoint": str(rundir.checkpoint)}))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics)

    fit(step, plan.data, plan.recipe, identity=plan.identity, run=rundir, resume=payload["resume"] or restarted,
        progress=False, callback=report, lock=False, save=rank == 0, desc="train")


def replica_step(net: nn.Module, plan: Plan, rank: int, world: int) -> Replica:
    """Worker `rank`'s `Replica` step of `plan`: validating its slice of the validation set
    where the set is sliced (`val_slice`), else validating on worker 0 alone."""
    from nas.data import fingerprint

    sliced = val_slice(plan.data, rank, world) if world > 1 else None
    if sliced is None:
        return supernet_step(net, plan, Replica, rank=rank, world=world, validates=rank == 0)  # type: ignore[return-value]
    shard, n, total = sliced
    step = supernet_step(net, plan._replace(data=shard), Replica, rank=rank, world=world, validates=True, val_slice=(n, total))
    net.trained_on = fingerprint(plan.data)  # type: ignore[assignment]  # the whole data's, as one process records it
    return step  # type: ignore[return-value]


__all__ = ["DistributedError", "Replica", "check_address", "train_distributed"]
