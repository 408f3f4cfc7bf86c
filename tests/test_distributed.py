"""Distributed supernet training: the Replica step equals one process, Ray Train on a real loopback
cluster (2 workers, a killed worker, resume, the search that follows), and the one-line errors."""

import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import nas
from nas.cli import main
from nas.data import digits
from nas.runs import load_run, run_spec
from nas.training import STRATEGIES, DistributedError, Sandwich, load_checkpoint, train_supernet
from nas.training._distributed import replica_step, val_slice
from nas.training._plan import plan_supernet
from search_spaces.mlp import MLP

RECIPE = {"epochs": 3, "lr": 0.01, "batch_size": 64, "seed": 0, "strategy": "sandwich"}


def _net() -> MLP:
    torch.manual_seed(0)
    return MLP(depths=(1, 2), widths=(16, 32), ranks=(4, 8))


# -- the Replica step, without Ray: two gloo processes ---------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _replica(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from nas.training import fit

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        net = _net()
        plan = plan_supernet(net, digits("flat"), "sandwich", None, epochs=2, lr=0.01, batch_size=64, distill=None, optimizer="adamw",
                             weight_decay=None, schedule="cosine", grad_clip=1.0, seed=0, precision="fp32")
        step = replica_step(net, plan, rank, world)
        history = fit(step, plan.data, plan.recipe, identity=plan.identity, progress=False)
        if rank == 0:
            opt = step.optimizers["weights"]
            torch.save({"model": net.state_dict(), "history": history, "fused": opt.defaults["fused"]}, out)
    finally:
        dist.destroy_process_group()


def test_two_replicas_train_the_weights_one_process_trains():
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"nas-replica-{os.getpid()}.pt"
    mp.spawn(_replica, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    saved = torch.load(out, weights_only=True)
    out.unlink()
    reduced, history = saved["model"], saved["history"]
    assert saved["fused"] is True  # the workers step torch's fused AdamW; one process its per-parameter loop
    net = _net()
    train_supernet(net, digits("flat"), epochs=2, lr=0.01, batch_size=64, strategy="sandwich", grad_clip=1.0, seed=0, progress=False)
    worst = max(float((a - reduced[k]).abs().max()) for k, a in net.state_dict().items())
    assert worst < 1e-4  # the same gradients, up to float rounding of the sums
    # the validation each worker ran on its half of the set, merged: the whole set's figures for the weights reached
    net.load_state_dict(reduced)
    largest, smallest = nas.evaluate(net, [net.largest(), net.smallest()], digits("flat"), metrics=("accuracy", "loss"))
    last = history[-1]
    assert last["largest_accuracy"] == largest.metrics["accuracy"] and last["smallest_accuracy"] == smallest.metrics["accuracy"]
    assert last["largest_loss"] == pytest.approx(largest.metrics["loss"], rel=1e-5)
    assert last["smallest_loss"] == pytest.approx(smallest.metrics["loss"], rel=1e-5)
    assert last["elapsed_seconds"] >= history[0]["elapsed_seconds"] > 0


def _plan(net, optimizer="adamw"):
    return plan_supernet(net, digits("flat"), "sandwich", None, epochs=2, lr=0.01, batch_size=64, distill=None, optimizer=optimizer,
                         weight_decay=None, schedule="cosine", grad_clip=None, seed=0, precision="fp32")


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
def test_a_replicas_fused_optimizer_checkpoints_as_one_process_does_and_fuses_again_on_load(optimizer):
    from nas.training._plan import supernet_step

    net = _net()
    replica = replica_step(net, _plan(net, optimizer), 0, 2).optimizers["weights"]
    alone = supernet_step(net, _plan(net, optimizer)).optimizers["weights"]
    kernel = "fused" if optimizer != "sgd" else "foreach"  # SGD's fused kernel wants every momentum buffer made
    assert replica.defaults[kernel] is True and not alone.defaults.get(kernel)
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    replica.step()
    saved = replica.state_dict()
    # the checkpoint's param groups are one process's: a resume in one process keeps its per-parameter loop
    assert saved["param_groups"] == alone.state_dict()["param_groups"]
    assert replica.param_groups[0][kernel] is True  # the live optimizer is untouched
    alone.load_state_dict(saved)
    assert not alone.param_groups[0][kernel]
    # and a checkpoint (one process's or a replica's) loaded into a replica fuses again
    again = replica_step(net, _plan(net, optimizer), 1, 2).optimizers["weights"]
    again.load_state_dict(alone.state_dict())
    assert again.param_groups[0][kernel] is True
    assert all(torch.equal(a, b) for key in saved["state"] for a, b in
               zip(saved["state"][key].values(), again.state_dict()["state"][key].values()))


def test_the_validation_set_is_sliced_in_order_and_whole():
    data = digits("flat")
    slices = [val_slice(data, rank, 3) for rank in range(3)]
    assert sum(n for _, n, _ in slices) == len(data.val) and {total for _, _, total in slices} == {len(data.val)}
    joined = torch.cat([shard.val.tensors[0] for shard, _, _ in slices])
    assert torch.equal(joined, data.val.tensors[0])
    assert all(shard.train is data.train for shard, _, _ in slices)
    tiny = nas.data.Data(data.train, torch.utils.data.TensorDataset(*(t[:2] for t in data.val.tensors)))
    assert val_slice(tiny, 0, 3) is None  # fewer samples than workers: worker 0 validates the whole set


# -- errors before any work ------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    ({"workers": 0}, "'workers' parameter of train_supernet must be an int >= 1"),
    ({"workers": 2.5}, "'workers' parameter"),
    ({"use_gpu": "yes"}, "'use_gpu' parameter"),
    ({"ray_address": "127.0.0.1:1"}, "no Ray cluster answers there"),
    ({"ray_address": "nowhere"}, "must be 'auto' or 'host:port'"),
    ({"max_failures": -1}, "'max_failures' parameter"),
])
def test_bad_distributed_arguments_are_one_line_before_ray_starts(kwargs, match, tmp_path):
    with pytest.raises(DistributedError, match=match) as info:
        train_supernet(_net(), epochs=1, backend="ray", run=tmp_path / "r", progress=False, **kwargs)
    assert "\n" not in str(info.value) and not (tmp_path / "r" / "supernet.pt").exists()
    # Ray is not even imported (importing it here would fix its settings for later tests' clusters)
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_ray_only_arguments_are_refused_for_local_training():
    with pytest.raises(ValueError, match="'workers' parameter of train_supernet applies only to backend='ray'"):
        train_supernet(_net(), epochs=1, workers=2, progress=False)
    with pytest.raises(ValueError, match="'callback' parameter of train_supernet applies only to backend='local'"):
        train_supernet(_net(), epochs=1, backend="ray", callback=print, progress=False)


_TRAIN_SETTINGS = ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "RAY_TRAIN_METRICS_ENABLED")


def test_ray_train_settings_turn_a_private_rays_watchers_off_for_the_call_and_yield_to_the_users(monkeypatch):
    from nas.training._distributed import _train_settings

    for key in _TRAIN_SETTINGS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RAY_TRAIN_METRICS_ENABLED", "1")  # the user's own
    with _train_settings(private=True):
        assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.2"
        assert os.environ["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"
        assert os.environ["RAY_TRAIN_METRICS_ENABLED"] == "1"
    assert [k for k in _TRAIN_SETTINGS if k in os.environ] == ["RAY_TRAIN_METRICS_ENABLED"]  # restored
    with _train_settings(private=False):  # a cluster joined: its preemption watcher and metrics stay on
        assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.2" and "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER" not in os.environ
    assert "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S" not in os.environ


@pytest.mark.parametrize("argv, match", [
    (["--workers", "0"], "--workers must be an int >= 1, got 0"),
    (["--ray-address", "127.0.0.1:1"], "'--ray-address' parameter is '127.0.0.1:1', but no Ray cluster answers there"),
])
def test_cli_distributed_errors_are_one_line_exit_2(argv, match, tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "--backend", "ray", *argv, "--run", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and "\n" not in err
    assert not run.exists()


def test_a_finished_checkpoint_is_not_trained_again_and_the_search_reads_it(tmp_path):
    spec = {"space": {"args": {"depths": [1], "widths": [16], "ranks": [4]}}, "train": {"epochs": 2}}
    first = run_spec(spec, run=tmp_path / "r", train_only=True, progress=False)
    # the same run on Ray: finished, so nothing is redone and no Ray is started
    again = run_spec({**spec, "train": {"epochs": 2, "backend": "ray", "workers": 2}}, run=tmp_path / "r", budget=3, progress=False)
    assert again.history == first.history  # the same records, seconds and all: not retrained
    assert load_run(tmp_path / "r").spec["train.backend"] == "ray"
    largest = next(e for e in again.evaluations if e.config == again.net.largest())
    assert largest.metrics["accuracy"] == pytest.approx(first.history[-1]["largest_accuracy"])


# -- a real loopback Ray cluster -------------------------------------------------------------
@STRATEGIES.register("crash_once")
class CrashOnce(Sandwich):
    """Sandwich, but Ray worker 1 dies (os._exit) at its `at`-th step the first time round."""

    def __init__(self, marker: str = "", at: int = 20, n: int = 2):
        super().__init__(n=n)
        self.marker, self.at = marker, at
        self._steps = 0

    def step(self, net, x, y, rng, loss, distill):
        self._steps += 1
        if self.marker and self._steps == self.at and not os.path.exists(self.marker):
            import ray.train

            if ray.train.get_context().get_world_rank() == 1:
                Path(self.marker).write_text(str(os.getpid()))
                os._exit(1)  # a killed worker: no clean-up, no exception
        return super().step(net, x, y, rng, loss, distill)


def _scenario(tmp: str) -> None:
    """The loopback-cluster scenario, run in a subprocess of its own: Ray keeps one auth token per
    process, so a private Ray started in the test process would lock out later clusters (tests/test_ray.py)."""
    import ray
    import ray.cloudpickle

    from nas.training._distributed import join_ray

    tmp_path = Path(tmp)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers need CrashOnce
    os.environ.pop("RAY_worker_niceness", None)
    assert join_ray(None, 2, 1)  # the private loopback Ray train_supernet starts
    assert "RAY_worker_niceness" not in os.environ  # set for the raylet's start only
    try:
        _killed_worker_resume_and_search(ray, tmp_path)
        _priorities_after_training(ray)
    finally:
        ray.shutdown()


def _priorities_after_training(ray) -> None:
    """A private Ray's workers run at the driver's priority, its services (not the raylet, whose
    priority new workers inherit) at the lowest once a training has run on it."""
    from ray._private import worker

    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert ray.get(ray.remote(num_cpus=0)(lambda: os.getpriority(os.PRIO_PROCESS, 0)).remote()) == mine
    services = {kind: infos[0].process.pid for kind, infos in worker._global_node.all_processes.items() if infos}
    assert os.getpriority(os.PRIO_PROCESS, services.pop("raylet")) == mine
    assert services  # the GCS, the dashboard, the log monitor, ...
    for kind, pid in services.items():
        assert {os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir(f"/proc/{pid}/task")} == {19}, kind


@pytest.mark.slow
def test_two_ray_workers_survive_a_killed_worker_resume_and_match_one_process(tmp_path):
    import subprocess

    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent), str(here), os.environ.get("PYTHONPATH", "")])}
    code = f"import test_distributed; test_distributed._scenario({str(tmp_path)!r}); print('scenario ok')"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "scenario ok" in done.stdout, done.stderr[-4000:]


def _killed_worker_resume_and_search(loopback_ray, tmp_path: Path) -> None:
    data = digits("flat")
    run = tmp_path / "run"
    marker = tmp_path / "killed"
    recipe = {**RECIPE, "strategy": CrashOnce(marker=str(marker), at=20)}  # 16 steps an epoch: in epoch 3
    # epoch 1 in this process, then stopped: a checkpoint to resume from
    local = train_supernet(_net(), data, run=run, progress=False, callback=lambda record: True, **recipe)
    assert [h["epoch"] for h in local] == [1]
    # epochs 2-3 on two Ray workers; worker 1 dies in epoch 3 and Ray Train restarts the group
    net = _net()
    history = train_supernet(net, data, run=run, resume=True, backend="ray", workers=2, max_failures=2, progress=False, **recipe)
    assert marker.exists()  # a worker was killed
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[0] == local[0]  # epoch 1 was not redone
    # the same recipe and seed in one process, uninterrupted
    alone = train_supernet(_net(), data, progress=False, **{**recipe, "strategy": CrashOnce(at=20)})
    for which in ("largest", "smallest"):
        assert abs(history[-1][f"{which}_accuracy"] - alone[-1][f"{which}_accuracy"]) <= 0.005
    # the search that follows reads the checkpoint
    fresh = _net()
    assert load_checkpoint(fresh, run)[-1] == history[-1]
    result = nas.search(fresh, data, budget=4, seed=0, progress=False)
    evaluations = {fresh.space.key(e.config): e for e in result.evaluations}
    assert all(e.ok for e in result.evaluations)
    largest = nas.evaluate(fresh, [fresh.largest()], data)[0]
    assert largest.metrics["accuracy"] == pytest.approx(history[-1]["largest_accuracy"])
    assert len(evaluations) == 4
    # a GPU asked of this cluster, which has none: one line, before any worker starts
    if not loopback_ray.cluster_resources().get("GPU"):
        with pytest.raises(DistributedError, match="the Ray cluster has no GPU"):
            train_supernet(_net(), data, backend="ray", workers=2, use_gpu=True, run=tmp_path / "gpu", progress=False, **RECIPE)
        assert not (tmp_path / "gpu" / "supernet.pt").exists()
