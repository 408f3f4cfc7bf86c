"""The run directory: atomic writes, one writer (a lock, with real processes), clear errors
for damaged or unwritable files, divergence, read-only opening, atomic re-export."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from nas.rundir import (
    CorruptFile,
    RunDir,
    RunDirError,
    RunLocked,
    atomic_dir,
    atomic_write,
)
from nas.store import EvaluationStore
from nas.training import Diverged, load_checkpoint, read_checkpoint, train_supernet
from search_spaces.mlp import MLP

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"depths": (1, 2), "widths": (16, 32), "ranks": (4, 8)}


def small_net(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(**SMALL)


def python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def hold_lock(run: Path) -> subprocess.Popen:
    """A second, real process that takes the run's lock and waits; returns once it holds it."""
    proc = python("""
        import sys, time
        from nas.rundir import RunDir
        with RunDir(sys.argv[1]).lock():
            print("held", flush=True)
            time.sleep(120)
    """, str(run))
    assert proc.stdout.readline().strip() == "held", proc.stderr.read()
    return proc


# -- atomic writes -------------------------------------------------------------------------
def test_atomic_write_replaces_the_file_and_leaves_no_temporary_behind(tmp_path):
    path = tmp_path / "run" / "front.json"
    atomic_write(path, "old")
    with pytest.raises(ZeroDivisionError):
        atomic_write(path, lambda p: (p.write_text("half"), 1 / 0))  # a writer that dies halfway
    assert path.read_text() == "old" and [p.name for p in path.parent.iterdir()] == ["front.json"]
    atomic_write(path, b"new")
    assert path.read_text() == "new" and [p.name for p in path.parent.iterdir()] == ["front.json"]


def test_a_file_where_the_directory_should_be_is_named_with_the_fix(tmp_path):
    (tmp_path / "run").write_text("not a directory")
    with pytest.raises(RunDirError, match=r"run.*a file has that name; choose another path"):
        atomic_write(tmp_path / "run" / "front.json", "{}")


@contextlib.contextmanager
def read_only(path: Path):
    """`path` made read-only: by its permissions, or for root (whom they do not stop) by a read-only bind mount."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    if subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True, check=False).returncode:
        pytest.skip("root needs a read-only bind mount for this test (no mount rights here)")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_run_directory_gives_one_line_naming_the_path_and_the_fix(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with read_only(run):
        with pytest.raises(RunDirError) as caught:
            train_supernet(MLP(depths=(1,), widths=(16,), ranks=(4,)), epochs=1, run=run, progress=False)
        message = str(caught.value)
        assert "\n" not in message and str(run) in message and "read-only or not yours" in message, message
        assert list(run.iterdir()) == []


def test_a_full_disk_gives_one_line_naming_the_path_and_the_fix(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(mount)], capture_output=True, check=False).returncode:
        pytest.skip("needs a tiny tmpfs mount (root with mount rights)")
    try:
        atomic_write(mount / "front.json", "old")
        with pytest.raises(RunDirError, match=r"front.json: No space left on device; free some space") as caught:
            atomic_write(mount / "front.json", b"x" * 100_000)
        assert "\n" not in str(caught.value)
        assert (mount / "front.json").read_text() == "old" and [p.name for p in mount.iterdir()] == ["front.json"]
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_atomic_dir_keeps_the_old_directory_whole_when_the_new_one_fails(tmp_path):
    out = tmp_path / "export"
    atomic_dir(out, lambda d: [(d / "arch.json").write_text("old"), (d / "model.pt").write_text("old")])

    def broken(d: Path) -> None:
        (d / "model.pt").write_text("new")
        raise RuntimeError("killed halfway")

    with pytest.raises(RuntimeError):
        atomic_dir(out, broken)
    assert {p.name: p.read_text() for p in out.iterdir()} == {"arch.json": "old", "model.pt": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


# -- one writer per run --------------------------------------------------------------------
def test_a_second_process_on_the_same_run_gets_one_line_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    holder = hold_lock(run)
    try:
        with pytest.raises(RunLocked) as caught:
            RunDir(run).lock().acquire()
        message = str(caught.value)
        assert f"pid {holder.pid}" in message and str(run) in message and "\n" not in message
        assert caught.value.holder["pid"] == holder.pid
        with pytest.raises(RunLocked):  # training there is refused before anything is written
            train_supernet(small_net(), epochs=1, run=run, progress=False)
        assert not (run / "supernet.pt").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    run = tmp_path / "run"
    holder = hold_lock(run)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert json.loads((run / "lock").read_text())["pid"] == holder.pid  # kill -9: the file stays, with the dead pid
    lock = RunDir(run).lock()
    with lock:
        assert lock.took_over["pid"] == holder.pid and lock.holder()["pid"] == os.getpid()
        with RunDir(run).lock():  # re-entrant in the process that holds it
            pass
        assert lock.held()
    assert not (run / "lock").exists()


def test_two_processes_training_the_same_run_one_trains_the_other_exits_naming_it(tmp_path):
    run, go = tmp_path / "run", tmp_path / "go"
    code = """
        import os, sys, time
        from nas.rundir import RunLocked
        from nas.training import train_supernet
        from search_spaces.mlp import MLP

        def wait(record):  # after its first epoch, the first process waits until the test lets it go on
            while not os.path.exists(sys.argv[2]):
                time.sleep(0.05)

        try:
            train_supernet(MLP(depths=(1, 2), widths=(16, 32), ranks=(4, 8)), epochs=2, run=sys.argv[1], progress=False, callback=wait)
            print("trained")
        except RunLocked as err:
            print("locked:", err)
    """
    first = python(code, str(run), str(go))
    try:
        deadline = time.monotonic() + 120
        while not (run / "supernet.pt").exists():
            assert time.monotonic() < deadline and first.poll() is None, first.stderr.read()
            time.sleep(0.05)
        second = python(code, str(run), str(go))
        out2, err2 = second.communicate(timeout=120)
        go.write_text("")
        out1, err1 = first.communicate(timeout=120)
    finally:
        first.kill()
    assert out1.strip() == "trained", err1
    assert out2.startswith("locked:") and f"pid {first.pid}" in out2 and out2.count("\n") == 1, err2
    assert torch.load(run / "supernet.pt", weights_only=True)["epoch"] == 2


# -- divergence ----------------------------------------------------------------------------
def test_a_diverging_loss_stops_training_with_the_epoch_step_and_fix(tmp_path):
    with pytest.raises(Diverged, match=r"diverged at epoch 1, step \d+: .*lower the learning rate \(lr=1e\+06\)") as caught:
        train_supernet(small_net(), epochs=3, lr=1e6, run=tmp_path, progress=False)
    assert "nothing was saved" in str(caught.value)
    assert not (tmp_path / "supernet.pt").exists()


def test_divergence_keeps_the_last_finite_checkpoint(tmp_path):
    from nas.data import digits
    from nas.training._recipe import steps_per_epoch

    per_epoch = steps_per_epoch(digits("flat"), 64)

    def blow_up(opt, total):  # a normal first epoch, then lr 1e6
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 if step < per_epoch else 1e8)

    with pytest.raises(Diverged, match=r"diverged at epoch 2, .*supernet.pt keeps epoch 1, the last finite one"):
        train_supernet(small_net(), epochs=3, lr=1e-2, schedule=blow_up, run=tmp_path, progress=False)
    state = torch.load(tmp_path / "supernet.pt", weights_only=True)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert all(math.isfinite(h["loss"]) for h in state["history"])


def test_tangle_search_diverging_is_stopped_too(tmp_path):
    from nas.tangle import search_tangle

    net = small_net()
    with pytest.raises(Diverged, match="diverged at epoch 1"):
        search_tangle(net, epochs=2, lr=1e6, grad_clip=None, run=tmp_path, progress=False)
    assert not (tmp_path / "supernet.pt").exists()


# -- damaged files and read-only opening ---------------------------------------------------
def test_a_truncated_checkpoint_is_one_clear_error_naming_the_file(tmp_path):
    net = small_net()
    train_supernet(net, epochs=1, run=tmp_path, progress=False)
    path = tmp_path / "supernet.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    for attempt in (lambda: read_checkpoint(path), lambda: load_checkpoint(small_net(), tmp_path),
                    lambda: train_supernet(small_net(), epochs=2, run=tmp_path, resume=True, progress=False)):
        with pytest.raises(CorruptFile, match=rf"{path} is damaged .*; remove it to train again"):
            attempt()


def test_a_truncated_database_is_one_clear_error_naming_the_file(tmp_path):
    from nas.evaluation import Evaluation

    path = tmp_path / "evaluations.sqlite"
    with EvaluationStore(path) as store:
        store.append([Evaluation({"w": i}, {"a": float(i)}) for i in range(200)], [str(i) for i in range(200)])
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptFile, match=rf"{path} is damaged"):
        EvaluationStore(path, create=False).load()
    path.write_bytes(b"not a database at all" * 10)
    with pytest.raises(CorruptFile, match=rf"{path} is damaged"):
        EvaluationStore(path, create=False)


def test_reading_a_store_leaves_no_wal_or_shm_files(tmp_path):
    from nas.evaluation import Evaluation

    path = tmp_path / "evaluations.sqlite"
    with EvaluationStore(path) as store:
        store.append([Evaluation({"w": 1}, {"a": 1.0})], ["k"], {"reference": {"a": 0.0}})
    before = sorted(p.name for p in tmp_path.iterdir())
    with EvaluationStore(path, create=False) as store:
        assert [e.config for e in store.load()] == [{"w": 1}] and store.meta("reference") == {"a": 0.0}
        with pytest.raises(RunDirError, match="read-only"):
            store.append([Evaluation({"w": 2}, {"a": 2.0})], ["k2"])
    assert sorted(p.name for p in tmp_path.iterdir()) == before == ["evaluations.sqlite"]
    writer = EvaluationStore(path)  # while a writer has it open, a reader sees its committed rows
    writer.append([Evaluation({"w": 2}, {"a": 2.0})], ["k2"])
    with EvaluationStore(path, create=False) as store:
        assert len(store) == 2
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evaluations.sqlite"]
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.slow
def test_report_and_export_leave_no_database_side_files_and_re_export_is_swapped_whole(tmp_path):
    from nas.export import ExportInputError, export, load_model
    from nas.report import report
    from nas.runs import load_run, run_spec

    spec = {"name": "tiny", "space": {"args": {"depths": [1], "widths": [16, 32], "ranks": [4]}}, "train": {"epochs": 1}}
    run = run_spec(spec, run=tmp_path / "run", budget=4, progress=False).run
    def side():
        return sorted(p.name for p in run.iterdir() if p.name.endswith(("-wal", "-shm")))
    assert side() == []
    report(run)
    out = tmp_path / "model"
    first = export(run, "knee", out, formats="pt")
    assert side() == []
    second = export(load_run(run), "best:accuracy", out, formats=["pt", "torchscript"])
    assert sorted(p.name for p in out.iterdir()) == ["arch.json", "model.pt", "model.torchscript.pt"]
    assert json.loads((out / "arch.json").read_text())["config"] == second.config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "run"]  # no temporary directory left
    assert load_model(out)(torch.zeros(2, 64)).shape == (2, 10)
    assert first.path == second.path == out
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ExportInputError, match="not an export"):
        export(run, "knee", tmp_path / "mine", formats="pt")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_an_arch_json_asking_for_huge_sizes_is_refused_before_allocating(tmp_path):
    from nas.export import ExportInputError, export, load_model

    net = MLP(depths=(1,), widths=(16,), ranks=(4,))
    out = export(net, net.largest(), tmp_path / "m", formats="pt", check=False).path
    arch = json.loads((out / "arch.json").read_text())
    for args, config, what in (
        ({**arch["family_args"], "widths": [10**6]}, {**arch["config"]}, "does not belong to these weights"),
        ({**arch["family_args"], "widths": [10**9]}, {**arch["config"]}, "at most 10,000,000"),
    ):
        config = {k: (v if "width" not in k else args["widths"][0]) for k, v in config.items()}
        (out / "arch.json").write_text(json.dumps({**arch, "family_args": args, "config": config}))
        with pytest.raises(ExportInputError, match=what):
            load_model(out)


def test_atomic_dir_puts_back_a_directory_left_hidden_by_a_kill_mid_swap(tmp_path):
    out = tmp_path / "model"
    dead = python("import os; print(os.getpid())")
    pid = int(dead.communicate()[0])
    hidden = tmp_path / f".model.{pid}.old"  # what a process killed between the two renames leaves
    hidden.mkdir()
    (hidden / "arch.json").write_text("old")
    (tmp_path / f".model.{pid}.tmp").mkdir()

    def fill(d: Path) -> None:
        assert (out / "arch.json").read_text() == "old"  # the old export is back before the new one is written
        (d / "arch.json").write_text("new")

    atomic_dir(out, fill)
    assert (out / "arch.json").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["model"]
