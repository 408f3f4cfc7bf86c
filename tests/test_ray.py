"""The ray backend on a real two-node Ray cluster on 127.0.0.1: a search submitted as a Ray
job, a worker killed mid-search, a config that kills every worker it runs on, a trial that
raises once and workers that can never start, equality with the local backend; and a
private local Ray started on demand. The slow tests share one cluster (about two minutes).

The cluster runs in Ray's single-machine mode (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``): on
Linux ``--node-ip-address=127.0.0.1`` alone is rewritten to the machine's address and Ray
listens on every interface; in single-machine mode every Ray process binds 127.0.0.1 only.
The second node is the genuine ``ray start --address=127.0.0.1:PORT --node-ip-address=127.0.0.1``
with only its "no second node in single-machine mode" guard lifted. The cluster has its own
temp dir, ports and auth token, so it never meets another Ray on the machine, and teardown
ends exactly its processes (by pid: the two blocking ``ray start`` processes, which stop
their children, then anything left that names its temp dir) instead of a machine-wide
``ray stop``, which would also stop other people's clusters.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _ports import free_ports

import search_spaces
from nas import search
from nas.backends import Backend, get
from search_spaces.mlp import MLP

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))

# `ray start` for a second node on this machine: the real CLI, with only the guard against
# a second node in single-machine mode lifted (Ray reads both from one constant).
_WORKER_NODE = textwrap.dedent(
    """
    import sys, types
    import ray._private.ray_constants as constants
    import ray.scripts.scripts as scripts
    scripts.ray_constants = types.SimpleNamespace(**{**vars(constants), "ENABLE_RAY_CLUSTER": True})
    sys.argv = ["ray", *sys.argv[1:]]
    sys.exit(scripts.main())
    """
)


def test_importing_nas_and_listing_backends_does_not_import_ray():
    code = "import nas, nas.backends, sys; names = nas.backends.names(); print('ray' in names, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.split() == ["True", "False"], out.stderr


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"workers": 0}, "workers"), ({"max_retries": -1}, "max_retries"), ({"gpus_per_worker": -1}, "gpus_per_worker"),
     ({"cpus_per_worker": "2"}, "cpus_per_worker"), ({"address": 6379}, "address")],
)
def test_bad_parameters_are_named_before_ray_starts(kwargs, name):
    with pytest.raises(ValueError, match=f"'{name}' parameter of RayBackend"):
        get("ray", _mlp(), **kwargs)


class LoopbackCluster:
    """A Ray head plus one worker node, one CPU each, on 127.0.0.1 only."""

    def __init__(self):
        self.temp = tempfile.mkdtemp(prefix="nasray-", dir="/tmp")  # short: Ray's socket paths are length-limited
        port, self.dashboard_port, client, *node_ports = free_ports(15)
        self.address = f"127.0.0.1:{port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        self.env = {
            **os.environ,
            "PATH": path,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # single-machine mode: bind and advertise 127.0.0.1 only
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),  # this cluster's own token
            "RAY_AIR_NEW_OUTPUT": "0",
        }
        self.env.pop("RAY_ADDRESS", None)
        self.processes: list[subprocess.Popen] = []

        def node_ports_args(ports):
            names = ("node-manager", "object-manager", "dashboard-agent-listen", "dashboard-agent-grpc",
                     "runtime-env-agent", "metrics-export")
            return [f"--{name}-port={p}" for name, p in zip(names, ports)]

        head = [RAY, "start", "--head", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
                f"--port={port}", f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={client}",
                "--num-cpus=1", "--num-gpus=0", f"--temp-dir={self.temp}", "--disable-usage-stats", "--block",
                *node_ports_args(node_ports[:6])]
        worker = [sys.executable, "-c", _WORKER_NODE, "start", f"--address={self.address}",
                  "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0", "--block",
                  *node_ports_args(node_ports[6:12])]
        try:
            self._start(head, "head")
            self._start(worker, "worker")
            self._wait_for_nodes(2)
        except BaseException:
            self.stop()
            raise

    def _start(self, command: list[str], name: str) -> None:
        log = open(Path(self.temp) / f"{name}.log", "w")
        process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.temp)
        self.processes.append(process)
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in (Path(self.temp) / f"{name}.log").read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray {name} node did not start:\n{(Path(self.temp) / f'{name}.log').read_text()[-3000:]}")
            time.sleep(0.25)

    def _wait_for_nodes(self, count: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = subprocess.run([RAY, "status", f"--address={self.address}"], env=self.env, capture_output=True, text=True, timeout=60)
            if out.stdout.count(" node_") >= count:
                return
            time.sleep(1)
        raise RuntimeError(f"the cluster did not reach {count} nodes:\n{out.stdout}\n{out.stderr}")

    def stop(self) -> None:
        """End this cluster's processes only: the blocking `ray start`s, then leftovers by pid."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for pid in self._leftover_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _leftover_pids(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if self.temp in cmdline or self.address in cmdline:
                pids.append(int(entry.name))
        return pids


@pytest.fixture(autouse=True)
def _one_thread():
    # Local baselines use one torch thread like each Ray worker (one CPU each); on a busy
    # two-core machine two torch threads can be ten times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cluster():
    saved = dict(os.environ)
    cluster = LoopbackCluster()
    try:
        # This process joins the cluster as a driver: same token, same single-machine mode.
        for key in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_USAGE_STATS_ENABLED", "RAY_AIR_NEW_OUTPUT"):
            os.environ[key] = cluster.env[key]
        os.environ.pop("RAY_ADDRESS", None)
        yield cluster
    finally:
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        finally:
            cluster.stop()
            shutil.rmtree(cluster.temp, ignore_errors=True)
            os.environ.clear()
            os.environ.update(saved)


def _mlp():
    return search_spaces.get("mlp", depths=(1, 2), widths=(16, 32), ranks=(4, 8))


def _stored(run: Path) -> list[tuple[str, dict, str, str | None]]:
    with sqlite3.connect(run / "evaluations.sqlite") as db:
        rows = db.execute("SELECT key, metrics, status, error FROM evaluations ORDER BY id").fetchall()
    return [(k, json.loads(m), s, e) for k, m, s, e in rows]


def _assert_same(a, b, tol: float = 1e-6) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.config == y.config
        assert x.status == y.status, (x, y)
        assert x.error == y.error
        assert x.metrics.keys() == y.metrics.keys()
        for k in x.metrics:
            assert abs(x.metrics[k] - y.metrics[k]) <= tol, (k, x.metrics[k], y.metrics[k])


_JOB = textwrap.dedent(
    """
    import json, sys, time
    import search_spaces
    from nas.backends import get
    from nas import search

    net = search_spaces.get("mlp", depths=(1, 2), widths=(16, 32), ranks=(4, 8))
    backend = get("ray", net, address="auto")
    deadline = time.monotonic() + 120
    while len(backend.status()["workers"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)  # both trials running before the search starts, so both nodes get work
    result = search(net, searcher="random", budget=16, backend=backend, run=sys.argv[1], progress=False)
    print("STATUS " + json.dumps(backend.status()))
    backend.close()
    print(result.summary())
    """
)


@pytest.mark.slow
def test_search_submitted_as_ray_job_uses_both_nodes_and_writes_its_run(cluster, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(_JOB)
    run = tmp_path / "run"
    out = subprocess.run(
        [RAY, "job", "submit", f"--address={cluster.dashboard}", "--working-dir", str(ROOT), "--",
         "python", str(script), str(run)],
        env=cluster.env, capture_output=True, text=True, timeout=240, cwd=ROOT,
    )
    assert out.returncode == 0 and "succeeded" in out.stdout, out.stdout[-4000:] + out.stderr[-4000:]
    status = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("STATUS "))[7:])
    assert len(status["workers"]) == 2
    assert len({w["node"] for w in status["workers"]}) == 2  # one trial per node
    assert all(w["evaluated"] > 0 for w in status["workers"])
    assert status["evaluated"] == 16 and status["trial_failures"] == 0

    rows = _stored(run)
    assert len(rows) == 16 and len({k for k, *_ in rows}) == 16
    assert all(s == "ok" for _, _, s, _ in rows)
    assert json.loads((run / "front.json").read_text())["front"]


class KillOnce(Backend):
    """Passes batches to a RayBackend, and SIGKILLs a busy Ray worker during the second one."""

    def __init__(self, inner):
        self.inner, self.calls, self.killed = inner, 0, []

    @property
    def parallelism(self) -> int:
        return self.inner.parallelism

    def evaluate(self, configs):
        self.calls += 1
        if self.calls == 2:
            threading.Thread(target=self._kill_a_busy_worker, daemon=True).start()
        return self.inner.evaluate(configs)

    def _kill_a_busy_worker(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            busy = [w for w in self.inner.status()["workers"] if w["busy"]]
            if busy:
                os.kill(busy[0]["pid"], signal.SIGKILL)
                self.killed.append(busy[0]["pid"])
                return
            time.sleep(0.01)


@pytest.mark.slow
def test_killed_worker_costs_a_retry_and_every_config_is_stored_once(cluster, tmp_path):
    net = search_spaces.get("cnn", stages=((8, 1, 1), (16, 1, 2)), expands=(2, 4), kernels=(3, 5), head=16)
    inner = get("ray", net, address=cluster.address, workers=2, max_retries=2)
    backend = KillOnce(inner)
    try:
        result = search(net, searcher="random", budget=24, backend=backend, run=tmp_path / "run", batch_size=8, progress=False)
        deadline = time.monotonic() + 30
        while inner.status()["trial_failures"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)  # Tune reports a death it noticed after the last batch a moment later
        status = inner.status()
    finally:
        inner.close()
    assert backend.killed, "no busy worker was found to kill"
    assert status["trial_failures"] >= 1
    rows = _stored(tmp_path / "run")
    assert len(rows) == 24 and len({k for k, *_ in rows}) == 24  # nothing lost, nothing duplicated
    assert all(s == "ok" for _, _, s, _ in rows)
    local = get("local", net).evaluate([e.config for e in result.evaluations])
    _assert_same(result.evaluations, local)


def _send_this_module_by_value() -> None:
    """Classes defined here reach Ray workers pickled by value (workers can't import this file)."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Bomb(MLP):
    """An MLP whose one chosen subnet kills the process running it."""

    bad: dict = {}

    def forward(self, x):
        if self.config == self.bad:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x)


class RaisesOnLoad(MLP):
    """An MLP whose loading raises in a Ray worker: once (the process that creates `marker`), or always."""

    marker: str | None = None

    def __setstate__(self, state):
        super().__setstate__(state)
        if self.marker is None:
            raise RuntimeError("cannot load this supernet here")
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return
        raise RuntimeError("failed once while loading the supernet")


@pytest.mark.slow
def test_config_that_kills_every_worker_is_stored_failed_after_its_retries(cluster):
    _send_this_module_by_value()
    net = Bomb(depths=(1, 2), widths=(16, 32), ranks=(4, 8))
    rng = np.random.default_rng(0)
    configs = list({net.space.key(c): c for c in (net.sample(rng) for _ in range(6))}.values())
    bad = configs[2]
    net.bad = dict(net.space.validate(bad))
    backend = get("ray", net, address=cluster.address, workers=2, max_retries=1)
    try:
        results = backend.evaluate(configs)
        status = backend.status()
    finally:
        backend.close()
    assert results[2].status == "failed"
    assert "WorkerDied" in results[2].error and "died 2 times" in results[2].error, results[2].error
    assert status["failed_after_retries"] == 1 and status["retried"] >= 1 and status["trial_failures"] >= 2
    good = results[:2] + results[3:]
    assert all(r.status == "ok" for r in good)
    plain = search_spaces.get("mlp", depths=(1, 2), widths=(16, 32), ranks=(4, 8))
    plain.load_state_dict(net.state_dict())
    _assert_same(good, get("local", plain).evaluate(configs[:2] + configs[3:]))


@pytest.mark.slow
def test_trial_that_raises_is_retried_by_tune_and_loses_nothing(cluster, tmp_path):
    _send_this_module_by_value()
    net = RaisesOnLoad(depths=(1, 2), widths=(16, 32), ranks=(4, 8))
    net.marker = str(tmp_path / "raised")
    configs = [net.sample(np.random.default_rng(i)) for i in range(8)]
    backend = get("ray", net, address=cluster.address, workers=1)
    try:
        results = backend.evaluate(configs)
        status = backend.status()
    finally:
        backend.close()
    assert Path(net.marker).exists() and status["trial_failures"] == 1
    _assert_same(results, get("local", net).evaluate(configs))


@pytest.mark.slow
def test_workers_that_can_never_start_make_evaluate_raise(cluster):
    _send_this_module_by_value()
    net = RaisesOnLoad(depths=(1, 2), widths=(16, 32), ranks=(4, 8))
    backend = get("ray", net, address=cluster.address, workers=1, max_retries=0)
    try:
        with pytest.raises(RuntimeError, match="before evaluating anything.*cannot load this supernet"):
            backend.evaluate([net.largest()])
    finally:
        backend.close()


@pytest.mark.slow
def test_ray_results_equal_local_results(cluster):
    net = _mlp()
    rng = np.random.default_rng(0)
    configs = [net.sample(rng) for _ in range(40)] + [{"depth": 7}]  # the last one is invalid
    backend = get("ray", net, address=cluster.address, workers=2, seed=3, calibration_batches=2)
    try:
        remote = backend.evaluate(configs)
        again = backend.evaluate(configs[:5])  # a second batch reuses the same trials
        status = backend.status()
    finally:
        backend.close()
    local = get("local", net, seed=3, calibration_batches=2).evaluate(configs)
    _assert_same(remote, local)
    _assert_same(again, local[:5])
    assert remote[-1].status == "failed" and "depth" in remote[-1].error
    assert status["evaluated"] == 46 and status["trial_failures"] == 0


@pytest.mark.slow
def test_without_address_a_private_local_ray_starts_and_stops():
    import ray

    assert not ray.is_initialized()
    net = _mlp()
    configs = [net.sample(np.random.default_rng(i)) for i in range(4)]
    with get("ray", net, workers=1) as backend:
        assert backend.parallelism == 1
        results = backend.evaluate(configs)
        assert ray.util.get_node_ip_address() == "127.0.0.1"
    assert not ray.is_initialized()
    _assert_same(results, get("local", net).evaluate(configs))
