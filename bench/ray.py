"""The ray backend against the local backend, measured in the same run.

Prints one table:

* overhead per evaluated subnet: the same 1,000 `mlp` configs in batches of 8 (what the
  search loop asks for), `ray` with one worker (one CPU) against `local` (one torch
  thread). The ray time runs from building the backend (Tune run, trial start, supernet
  into the object store) to the last result, on a Ray that is already running, as on a
  cluster; starting the local Ray itself is printed on its own row. Target <= 20 ms.
* the same overhead once the trials run (every batch after the first), for reference.
* speed-up of 2 workers over 1 on `cnn` (compute-heavy), 32 configs per `evaluate` call
  and evaluation batch size 512; best of two timings each. Target >= 1.6x.
* for reference, the same configs on 1 and 2 plain processes (no Ray): the speed-up this
  machine allows at the moment, as other work on it takes its share of the two cores.
* the largest difference between `ray` and `local` metrics over the 1,000 configs.
  Target <= 1e-6.
* Ray's workers run at the local baseline's priority here (``RAY_worker_niceness=0``;
  Ray's default of 15 hands them only leftover CPU on a shared machine).
* with CUDA: `cnn` configs on one GPU worker against `local` on the GPU, and the device the
  worker chose; otherwise "no GPU".

``python bench/ray.py`` (``--quick`` for a smoke run of a few configs, whose timings are not
checked; ``--check`` exits 1 when a target is missed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

# This file is named like the package it measures: drop its folder from the path so that
# `import ray` finds Ray, and put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import search_spaces  # noqa: E402
from nas.backends import get  # noqa: E402


def _configs(net, n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [net.sample(rng) for _ in range(n)]


def _batches(configs: list[dict], size: int) -> list[list[dict]]:
    return [configs[i : i + size] for i in range(0, len(configs), size)]


def _run(backend, batches) -> tuple[list, list[float]]:
    """All results and the seconds each batch took."""
    results, seconds = [], []
    for batch in batches:
        start = time.perf_counter()
        results += backend.evaluate(batch)
        seconds.append(time.perf_counter() - start)
    return results, seconds


def _max_difference(a, b) -> float:
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if x.status != y.status or x.config != y.config or x.metrics.keys() != y.metrics.keys():
            return float("inf")
        for k in x.metrics:
            worst = max(worst, abs(x.metrics[k] - y.metrics[k]))
    return worst


def _wait_for_workers(backend, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(backend.status()["workers"]) < count and time.monotonic() < deadline:
        time.sleep(0.1)


_POOL_NET = None


def _pool_start() -> None:
    global _POOL_NET
    torch.set_num_threads(1)
    _POOL_NET = search_spaces.get("cnn")


def _pool_evaluate(configs: list[dict]) -> int:
    return len(get("local", _POOL_NET, batch_size=512).evaluate(configs))


def _plain_processes(configs: list[dict], processes: int) -> float:
    """Best of two timings of `configs` spread one by one over plain worker processes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context, initializer=_pool_start) as pool:
        list(pool.map(_pool_evaluate, [configs[:1]] * processes))  # started and warm
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            list(pool.map(_pool_evaluate, [[c] for c in configs]))
            best = min(best, time.perf_counter() - start)
    return best


def _start_ray():
    """A private local Ray on 127.0.0.1 (as the backend starts one), shared by every backend here."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ray runs its workers at niceness 15, so on a machine shared with other work they get
    # what is left over; the local baseline runs at 0. Same priority for both here.
    os.environ.setdefault("RAY_worker_niceness", "0")
    import logging

    import ray

    start = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level=logging.WARNING)
    return ray, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", type=int, default=1000, help="mlp configs for the overhead (default 1000)")
    parser.add_argument("--cnn-configs", type=int, default=32, help="cnn configs per evaluate call for the speed-up")
    parser.add_argument("--quick", action="store_true", help="smoke run: few configs, timings not checked")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.configs, args.cnn_configs = 48, 8
    torch.set_num_threads(1)  # local uses one thread, like each one-CPU Ray worker
    torch.manual_seed(0)

    rows: list[tuple[str, str, str, str, str, bool | None]] = []
    load = os.getloadavg()[0]
    ray, ray_start = _start_ray()
    try:
        # -- overhead per subnet, mlp, batches of 8 --------------------------------------
        mlp = search_spaces.get("mlp")
        configs = _configs(mlp, args.configs)
        batches = _batches(configs, 8)
        local = get("local", mlp)
        local_results, local_first = _run(local, batches)
        start = time.perf_counter()
        backend = get("ray", mlp, workers=1)
        ray_results, ray_batches = _run(backend, batches)
        ray_total = time.perf_counter() - start
        backend.close()
        _, local_again = _run(local, batches)  # twice, best of both: less noise from other processes
        local_batches = [min(a, b) for a, b in zip(local_first, local_again)]
        local_total = sum(local_batches)
        n = len(configs)
        overhead = (ray_total - local_total) / n * 1000
        steady = (sum(ray_batches[1:]) - sum(local_batches[1:])) / max(1, n - len(batches[0])) * 1000
        timed = not args.quick
        rows.append((f"overhead per subnet, {n} mlp configs, batches of 8", f"local {local_total:.2f} s",
                     f"ray {ray_total:.2f} s", f"{overhead:.2f} ms", "<= 20 ms", overhead <= 20 if timed else None))
        rows.append(("  of which once trials run (batches 2..)", f"local {sum(local_batches[1:]):.2f} s",
                     f"ray {sum(ray_batches[1:]):.2f} s", f"{steady:.2f} ms", "-", None))
        rows.append(("  backend start (Tune run + trial) + 1st batch", "-", f"{ray_batches[0]:.2f} s", "-", "-", None))
        rows.append(("  local Ray start (one-off, not counted)", "-", f"{ray_start:.2f} s", "-", "-", None))
        difference = _max_difference(ray_results, local_results)
        rows.append((f"max |ray - local| over {n} configs' metrics", "local", "ray", f"{difference:.1e}", "<= 1e-6", difference <= 1e-6))

        # -- speed-up of 2 workers over 1, cnn -------------------------------------------
        cnn = search_spaces.get("cnn")
        heavy = _configs(cnn, args.cnn_configs, seed=1)
        seconds = {}
        for workers in (1, 2):
            backend = get("ray", cnn, workers=workers, batch_size=512)
            try:
                backend.evaluate(heavy[:workers])  # trials started and warm
                _wait_for_workers(backend, workers)
                best = float("inf")
                for _ in range(2):
                    start = time.perf_counter()
                    backend.evaluate(heavy)
                    best = min(best, time.perf_counter() - start)
                seconds[workers] = best
            finally:
                backend.close()
        speedup = seconds[1] / seconds[2]
        rows.append((f"speed-up 2 workers / 1, {len(heavy)} cnn configs", f"1 worker {seconds[1]:.2f} s",
                     f"2 workers {seconds[2]:.2f} s", f"{speedup:.2f}x", ">= 1.6x", speedup >= 1.6 if timed else None))
        plain = {k: _plain_processes(heavy, k) for k in (1, 2)}
        rows.append(("  what this machine allows now: 2 plain processes / 1", f"1 process {plain[1]:.2f} s",
                     f"2 processes {plain[2]:.2f} s", f"{plain[1] / plain[2]:.2f}x", "-", None))

        # -- GPU ------------------------------------------------------------------------
        if torch.cuda.is_available() and ray.cluster_resources().get("GPU", 0) >= 1:
            gpu_configs = _configs(cnn, max(8, args.cnn_configs), seed=2)
            local_gpu = get("local", cnn, device="cuda", batch_size=512)
            local_gpu.evaluate(gpu_configs[:1])
            start = time.perf_counter()
            local_gpu_results = local_gpu.evaluate(gpu_configs)
            local_gpu_s = time.perf_counter() - start
            backend = get("ray", cnn, workers=1, gpus_per_worker=1, batch_size=512)
            try:
                backend.evaluate(gpu_configs[:1])
                start = time.perf_counter()
                gpu_results = backend.evaluate(gpu_configs)
                ray_gpu_s = time.perf_counter() - start
                device = backend.status()["workers"][0]["device"]
            finally:
                backend.close()
            per = (ray_gpu_s - local_gpu_s) / len(gpu_configs) * 1000
            rows.append((f"GPU: {len(gpu_configs)} cnn configs, 1 GPU worker", f"local cuda {local_gpu_s:.2f} s",
                         f"ray {ray_gpu_s:.2f} s", f"{per:.2f} ms/subnet", "<= 20 ms", per <= 20 if timed else None))
            rows.append(("GPU: device the worker chose", "-", device, "-", "cuda", device == "cuda"))
            gpu_difference = _max_difference(gpu_results, local_gpu_results)
            rows.append(("GPU: max |ray - local cuda|", "local cuda", "ray", f"{gpu_difference:.1e}", "<= 1e-6", gpu_difference <= 1e-6))
        else:
            rows.append(("GPU", "-", "no GPU", "-", "-", None))
    finally:
        ray.shutdown()

    headers = ("measured", "baseline", "ray", "value", "target", "ok")
    table = [headers] + [(m, b, r, v, t, "-" if ok is None else ("yes" if ok else "MISSED")) for m, b, r, v, t, ok in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    print(f"ray backend vs local ({'quick smoke run' if args.quick else 'full run'}; torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, load average {load:.1f} at the start, "
          f"{'CUDA' if torch.cuda.is_available() else 'no GPU'})")
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    missed = any(ok is False for *_, ok in rows)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
