"""`nas train --backend ray` as a user runs it, on real loopback Ray clusters: a driver killed by
SIGKILL and run again resumes (nothing finished is redone, the weights are those of an
uninterrupted run), and `ray job submit -- nas train` and `--ray-address auto` train on a
cluster that is already running.

Every Ray process here is started by this module, under a temporary directory of its own
(``RAY_TMPDIR``: Ray's sessions, logs and the ``auto`` address file live there), so other
clusters on the machine are neither found nor touched; at the end the processes whose
environment names that directory (the clusters this module started) are ended, and no other.
"""

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from _ports import free_ports

from nas.runs import run_spec
from nas.training import read_checkpoint

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
EPOCHS = 8
SPEC = f"""\
name = "dist"
seed = 0
[space]
family = "mlp"
[space.args]
depths = [1, 2]
widths = [16, 32]
ranks = [4, 8]
[data]
source = "digits"
[train]
epochs = {EPOCHS}
lr = 0.01
batch_size = 64
"""


def _ray_tmp() -> str:
    return tempfile.mkdtemp(prefix="nasray", dir="/tmp")  # short: Ray's unix sockets live under it


_TOKENS: dict[str, str] = {}


def _env(tmp: str) -> dict[str, str]:
    """The environment of every process of the cluster under `tmp`: its temp dir, its own auth token, loopback only."""
    env = {**os.environ, "RAY_TMPDIR": tmp, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": _TOKENS.setdefault(tmp, secrets.token_hex(32)),
           "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    return env


def _ours(tmp: str) -> list[int]:
    """The live processes started with ``RAY_TMPDIR=tmp``: the Ray clusters of this test and their workers."""
    mark = f"RAY_TMPDIR={tmp}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if mark in f.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:  # gone, or not ours to read
                pass
    return found


def _end(tmp: str, *, wait: float = 30) -> None:
    """SIGKILL every process of this test's clusters and wait until none is left."""
    deadline = time.monotonic() + wait
    while (pids := _ours(tmp)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    assert not _ours(tmp), f"processes of the test's Ray cluster survive SIGKILL: {_ours(tmp)}"


def _gone(tmp: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while _ours(tmp):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _nas_train(spec: Path, run: Path, *extra: str) -> list[str]:
    return [str(BIN / "nas"), "train", "--spec", str(spec), "--run", str(run), "--backend", "ray", "--workers", "2", *extra]


def _weights_gap(run: Path, reference: dict[str, torch.Tensor]) -> float:
    trained = read_checkpoint(run / "supernet.pt")["model"]
    return max(float((trained[k] - v).abs().max()) for k, v in reference.items())


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "spec.toml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def uninterrupted(spec, tmp_path_factory) -> dict[str, torch.Tensor]:
    """The weights of the same spec trained in this process, without a break."""
    run = run_spec(spec, run=tmp_path_factory.mktemp("local") / "run", train_only=True, progress=False)
    assert run.history[-1]["epoch"] == EPOCHS
    return read_checkpoint(run.run / "supernet.pt")["model"]


# -- a killed driver -------------------------------------------------------------------------
def test_a_driver_killed_mid_training_resumes_from_its_checkpoint_when_run_again(spec, uninterrupted, tmp_path):
    tmp = _ray_tmp()
    run = tmp_path / "run"
    command = _nas_train(spec, run, "--quiet")
    try:
        driver = subprocess.Popen(command, env=_env(tmp), start_new_session=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 300
        while not (run / "supernet.pt").exists():  # the first epoch's checkpoint
            assert driver.poll() is None, f"the driver ended before its first checkpoint: {driver.stdout.read()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
        driver.send_signal(signal.SIGKILL)  # the driver alone: its private Ray is left to fend for itself
        driver.wait()
        driver.stdout.close()
        # Ray's raylet, GCS and workers share the driver's fate; its two agents (dashboard and
        # runtime-env) notice the raylet die, then wait out a 60 s timeout publishing that to the
        # dead GCS before they exit: end what is left of the dead driver's cluster, and only that
        _end(tmp)
        killed = read_checkpoint(run / "supernet.pt")  # nothing writes it any more
        assert 1 <= killed["epoch"] < EPOCHS  # killed mid-training

        again = subprocess.run(command, env=_env(tmp), capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"supernet trained for {EPOCHS} epochs" in again.stdout
        final = read_checkpoint(run / "supernet.pt")
        done = killed["epoch"]
        assert final["epoch"] == EPOCHS and [h["epoch"] for h in final["history"]] == list(range(1, EPOCHS + 1))
        assert final["history"][:done] == killed["history"]  # the finished epochs, seconds and all: not redone
        assert final["step"] == killed["step"] * EPOCHS // done  # optimizer steps: every epoch once
        # the weights of an uninterrupted run (two workers' reduced gradients: float rounding apart)
        assert _weights_gap(run, uninterrupted) < 1e-4
        # the finished driver shut its private Ray down: nothing of it is left
        assert _gone(tmp, within=30), f"Ray processes left after the driver finished: {_ours(tmp)}"
    finally:
        _end(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


# -- a running cluster: ray job submit, --ray-address auto ----------------------------------
@pytest.fixture(scope="module")
def cluster():
    """A loopback Ray cluster with a dashboard (for jobs), started for this module: (RAY_TMPDIR, dashboard URL)."""
    tmp = _ray_tmp()
    port, dashboard, client, *node = free_ports(9)
    names = ("node-manager", "object-manager", "dashboard-agent-listen", "dashboard-agent-grpc", "runtime-env-agent", "metrics-export")
    command = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
               "--num-cpus=2", "--num-gpus=0", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
               f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}", "--disable-usage-stats",
               *(f"--{name}-port={p}" for name, p in zip(names, node))]
    log_path = Path(tmp) / "head.log"
    log = open(log_path, "w")
    head = subprocess.Popen(command, env=_env(tmp), start_new_session=True, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log_path.read_text():
            assert head.poll() is None, f"ray start ended: {log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the Ray head did not start within 120 s: {log_path.read_text()[-3000:]}"
            time.sleep(0.25)
        yield tmp, f"http://127.0.0.1:{dashboard}"
    finally:
        head.terminate()  # `ray start --block` stops what it started ...
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        _end(tmp)  # ... and what is left of the cluster is killed
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _sessions(tmp: str) -> list[str]:
    return sorted(p.name for p in (Path(tmp) / "ray").glob("session_2*"))


def test_ray_job_submit_trains_on_the_running_cluster_with_progress_lines(cluster, spec, uninterrupted, tmp_path):
    tmp, url = cluster
    run = tmp_path / "run"
    sessions = _sessions(tmp)
    job = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", url, "--", *map(str, _nas_train(spec, run))],
                         env=_env(tmp), capture_output=True, text=True, timeout=600)
    out = job.stdout + job.stderr
    assert job.returncode == 0 and "succeeded" in out, out[-3000:]
    assert f"supernet trained for {EPOCHS} epochs" in out
    assert "train mlp" in out and f"{EPOCHS}/{EPOCHS}" in out  # the driver's progress bar, fed by the workers
    assert read_checkpoint(run / "supernet.pt")["epoch"] == EPOCHS
    assert _weights_gap(run, uninterrupted) < 1e-4
    assert _sessions(tmp) == sessions  # trained on the cluster: no private Ray was started


def test_ray_address_auto_joins_the_cluster_started_on_this_machine(cluster, spec, uninterrupted, tmp_path):
    tmp, _ = cluster
    run = tmp_path / "run"
    sessions = _sessions(tmp)
    done = subprocess.run(_nas_train(spec, run, "--ray-address", "auto", "--quiet"), env=_env(tmp), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_checkpoint(run / "supernet.pt")["epoch"] == EPOCHS
    assert _weights_gap(run, uninterrupted) < 1e-4
    assert _sessions(tmp) == sessions
    controllers = list((Path(tmp) / "ray" / "session_latest" / "logs" / "train").glob("ray-train-app-controller-*.log"))
    assert len(controllers) >= 1  # Ray Train ran in the cluster's session
