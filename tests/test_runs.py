"""Run directories: one spec schema, resume, kill -9 safety, and repeatability from spec.toml."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import torch

from nas import search
from nas.backends import Backend
from nas.evaluation import Evaluation
from nas.runs import DEMO, FIELDS, RunError, RunSpec, SpecError, dumps_toml, flags, load_run, load_spec, run_spec
from nas.space import Choice, SearchSpace
from nas.store import EvaluationStore

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny",
    "space": {"family": "mlp", "args": {"depths": [1, 2], "widths": [16, 32], "ranks": [4, 8]}},
    "train": {"epochs": 1, "lr": 0.01},
    "search": {"searcher": "evolution", "budget": 12, "args": {"population_size": 8}},
}


def files_digest(path: Path) -> dict[str, str]:
    """Every file under `path` with the hash of its bytes."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


# -- one schema --------------------------------------------------------------------------
def test_spec_round_trips_through_its_toml():
    spec = load_spec(None)
    again = RunSpec.from_dict(tomllib.loads(spec.to_toml()))
    assert again == spec
    assert again.resolve() == spec


def test_toml_writer_handles_nested_tables_quoted_keys_and_floats():
    data = {"a": 1, "b": [0.5, 1.0, 1e-5], "t": {"x.y": "q\"uote", "deep": {"z": [[1, 2], [3]]}}, "flag": True}
    assert tomllib.loads(dumps_toml(data)) == data


def test_demo_spec_file_is_the_builtin_demo():
    assert load_spec(ROOT / "runs" / "demo.toml") == load_spec(None)
    assert DEMO["name"] == "demo"


@pytest.mark.parametrize("name", ["demo", "mlp", "cnn", "transformer", "cell", "ray", "tangle", "mnist1d"])
def test_every_example_spec_validates_and_names_its_run(name):
    spec = load_spec(ROOT / "runs" / f"{name}.toml")
    assert spec.name == name


def test_flags_keywords_and_spec_file_are_one_schema(tmp_path):
    from_flags = load_spec(None, how="flag", budget="7", searcher="random", objectives="accuracy:max,macs:min", epochs="2")
    from_keywords = load_spec(None, budget=7, searcher="random", objectives=["accuracy:max", "macs:min"], epochs=2)
    file = tmp_path / "demo.toml"
    data = json.loads(json.dumps(DEMO))
    data["search"].update(budget=7, searcher="random", objectives=["accuracy:max", "macs:min"])
    data["search"].pop("args")  # population_size belongs to evolution
    data["train"]["epochs"] = 2
    file.write_text(dumps_toml(data))
    from_file = load_spec(file)
    assert from_flags == from_keywords
    assert from_file.to_dict()["search"] == from_flags.to_dict()["search"]
    assert from_file["train.epochs"] == from_flags["train.epochs"] == 2
    assert set(flags()) == {"seed", "space", "epochs", "searcher", "objectives", "constraints", "budget", "backend", "ray_address", "model",
                             "device", "precision", "train_backend", "workers"}
    assert all(f.key.count(".") <= 1 for f in FIELDS)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"search": {"budgt": 4}}, "unknown spec key 'search.budgt'; the keys of [search] are: searcher, objectives, constraints, budget"),
        ({"serch": {}}, "unknown spec key 'serch'; the top-level keys are: name, seed"),
        ({"search": {"budget": 0}}, "search.budget must be an int >= 1, got 0"),
        ({"search": {"budget": "ten"}}, "search.budget must be an int >= 1, got 'ten'"),
        ({"search": "evolution"}, "spec key 'search' must be a table"),
        ({"space": {"family": "resnet"}}, "space.family must be one of ['cell', 'cnn', 'cnn1d', 'mlp', 'transformer'], got 'resnet'"),
        ({"space": {"args": {"widthz": [8]}}}, "space.args does not suit family 'mlp'"),
        ({"search": {"searcher": "annealing"}}, "search.searcher must be one of"),
        ({"search": {"objectives": ["acc:max"]}}, "search.objectives names unknown metric 'acc'"),
        ({"search": {"args": {"pop": 3}}}, "search.args for searcher 'evolution'"),
        ({"train": {"strategy": "greedy"}}, "train.strategy must be one of"),
        ({"train": {"lr": -1}}, "train.lr must be a number > 0"),
        ({"data": {"args": {"sead": 1}}}, "unknown key 'sead' in data.args for digits; the keys are: seed, val_fraction, test_fraction"),
        ({"backend": {"name": "slurm"}}, "backend.name must be one of"),
        ({"backend": {"address": "auto"}}, "backend.address applies only to the ray backend"),
    ],
)
def test_bad_spec_gives_one_error_naming_the_key_and_what_is_allowed(spec, message):
    with pytest.raises(SpecError) as err:
        load_spec(_merged(spec))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def _merged(spec):
    out = json.loads(json.dumps(DEMO))
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key].update(value)
        else:
            out[key] = value
    return out


def test_bad_flag_text_names_the_flag():
    with pytest.raises(SpecError, match=r"--budget must be an int >= 1, got 'many'"):
        load_spec(None, how="flag", budget="many")
    with pytest.raises(SpecError, match=r"the 'seed' argument must be an int >= 0, got -1"):
        load_spec(None, seed=-1)


def test_malformed_toml_is_a_spec_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[search\nbudget = 3\n")
    with pytest.raises(SpecError, match="is not valid TOML"):
        load_spec(bad)


# -- the store and the loop ----------------------------------------------------------------
def test_store_keeps_whole_batches_and_each_config_once_with_its_latest_evaluation(tmp_path):
    path = tmp_path / "evaluations.sqlite"
    store = EvaluationStore(path)
    store.append([Evaluation({"w": 1}, {"a": 1.0}), Evaluation({"w": 2}, {"a": 2.0})], ["k1", "k2"], {"reference": {"a": 0.0}})
    store.append([Evaluation({"w": 2}, {"a": 9.0}), Evaluation({"w": 3}, {"a": 3.0})], ["k2", "k3"])
    store.close()
    again = EvaluationStore(path, create=False)
    evaluations, ends = again.load_batches()
    assert [e.metrics["a"] for e in evaluations] == [1.0, 9.0, 3.0]  # k2 re-evaluated: its latest evaluation, moved to the end
    assert again.keys() == ["k1", "k2", "k3"]
    assert ends == [1, 3] and again.meta("reference") == {"a": 0.0}
    with pytest.raises(FileNotFoundError):
        EvaluationStore(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()


class _Net:
    """A cheap stand-in for a supernet: a space and analytic costs."""

    def __init__(self):
        dims = [Choice("depth", [1, 2, 3]), Choice("op", ["conv", "sep", "mb"])]
        for i in range(3):
            when = ("depth", [d for d in (1, 2, 3) if d > i])
            dims += [Choice(f"b{i}.width", [16, 32, 64, 128], when=when), Choice(f"b{i}.kernel", [3, 5, 7], when=when)]
        self.space = SearchSpace(dims)

    def cost(self, config):
        params = 1000.0 + sum(config[f"b{i}.width"] ** 2 * config[f"b{i}.kernel"] for i in range(config["depth"]))
        return {"params": params, "macs": 3 * params}

    def largest(self):
        return self.space.largest()


class _Instant(Backend):
    """Synthetic metrics computed from the config."""

    def __init__(self, net):
        self.net = net

    def evaluate(self, configs):
        out = []
        for c in configs:
            cap = sum((c[f"b{i}.width"] / 16) ** 0.5 * (1 + 0.2 * (c[f"b{i}.kernel"] == 5)) for i in range(c["depth"]))
            acc = 0.5 + 0.4 * (1 - 2.718 ** (-cap / 4)) + {"conv": 0, "sep": -0.01, "mb": 0.02}[c["op"]]
            out.append(Evaluation(c, {"accuracy": acc, **self.net.cost(c)}))
        return out


SEARCHERS = {
    "random": {},
    "evolution": {"population_size": 16},
    "guided": {"predictor": "ridge", "n_init": 16},
    "optuna": {"sampler": "tpe"},
}


@pytest.mark.parametrize(
    "name",
    [
        "random",
        "evolution",
        "guided",
        "optuna",
    ],
)
def test_resumed_search_proposes_what_the_uninterrupted_one_did(tmp_path, name):
    net = _Net()
    kwargs = dict(searcher=name, backend=_Instant(net), seed=3, progress=False, searcher_kwargs=SEARCHERS[name])
    whole = search(net, budget=64, run=tmp_path / "whole", **kwargs)
    search(net, budget=24, run=tmp_path / "split", **kwargs)
    resumed = search(net, budget=64, run=tmp_path / "split", **kwargs)
    keys = [net.space.key(e.config) for e in whole.evaluations]
    assert [net.space.key(e.config) for e in resumed.evaluations] == keys
    assert resumed.hypervolume_history == whole.hypervolume_history
    assert resumed.reference == whole.reference
    with EvaluationStore(tmp_path / "split" / "evaluations.sqlite", create=False) as store:
        assert store.keys() == keys


def test_resumed_optuna_nsga2_search_proposes_what_the_uninterrupted_one_did(tmp_path):
    net = _Net()
    kwargs = dict(searcher="optuna", backend=_Instant(net), seed=5, progress=False,
                  searcher_kwargs={"sampler": "nsga2", "sampler_kwargs": {"population_size": 12}})
    whole = search(net, budget=72, run=tmp_path / "whole", **kwargs)
    search(net, budget=40, run=tmp_path / "split", **kwargs)  # stops inside NSGA-II's second generation
    resumed = search(net, budget=72, run=tmp_path / "split", **kwargs)
    assert [net.space.key(e.config) for e in resumed.evaluations] == [net.space.key(e.config) for e in whole.evaluations]


def test_optuna_search_resumed_with_another_seed_continues_without_repeats(tmp_path):
    net = _Net()
    kwargs = dict(searcher="optuna", backend=_Instant(net), progress=False, searcher_kwargs=SEARCHERS["optuna"])
    first = search(net, budget=24, run=tmp_path, seed=1, **kwargs)
    resumed = search(net, budget=48, run=tmp_path, seed=2, **kwargs)  # its replay diverges at once
    keys = [net.space.key(e.config) for e in resumed.evaluations]
    assert len(keys) == len(set(keys)) == 48
    assert keys[:24] == [net.space.key(e.config) for e in first.evaluations]


def test_search_refuses_a_run_searched_for_other_objectives(tmp_path):
    net = _Net()
    search(net, objectives=["accuracy:max", "params:min"], searcher="random", budget=8, backend=_Instant(net), run=tmp_path, progress=False)
    before = files_digest(tmp_path)
    with pytest.raises(ValueError, match="searched with objectives"):
        search(net, objectives=["accuracy:max", "macs:min"], searcher="random", budget=16, backend=_Instant(net), run=tmp_path, progress=False)
    assert files_digest(tmp_path) == before


# -- run directories ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "tiny"
    return run_spec(TINY, run=path, progress=False)


def test_run_directory_holds_spec_checkpoint_evaluations_and_front(tiny_run):
    path = tiny_run.run
    assert {p.name for p in path.iterdir()} >= {"spec.toml", "supernet.pt", "evaluations.sqlite", "front.json"}
    stored = load_spec(path / "spec.toml")
    assert stored == tiny_run.spec
    assert stored["space.args"]["dropout"] == 0.0  # family defaults are pinned in the stored spec
    front = json.loads((path / "front.json").read_text())
    assert [e["config"] for e in front["front"]] == [e.config for e in tiny_run.front]


def test_load_run_gives_the_result_and_the_trained_net(tiny_run):
    run = load_run(tiny_run.run)
    assert [e.config for e in run.evaluations] == [e.config for e in tiny_run.evaluations]
    assert run.front == tiny_run.front and run.reference == tiny_run.reference
    assert run.hypervolume_history == tiny_run.hypervolume_history
    for name, value in run.net.state_dict().items():
        assert torch.equal(value, tiny_run.net.state_dict()[name]), name
    assert run.pick("knee") == tiny_run.pick("knee")
    with pytest.raises(RunError, match="no run at"):
        load_run(tiny_run.run.parent / "missing")


def test_running_the_same_spec_again_evaluates_nothing_new(tiny_run):
    before = files_digest(tiny_run.run)
    again = run_spec(TINY, run=tiny_run.run, progress=False)
    assert [e.config for e in again.evaluations] == [e.config for e in tiny_run.evaluations]
    assert [e.metrics for e in again.evaluations] == [e.metrics for e in tiny_run.evaluations]
    after = files_digest(tiny_run.run)
    assert after["evaluations.sqlite"] == before["evaluations.sqlite"] and after["supernet.pt"] == before["supernet.pt"]


def test_a_run_directory_of_another_run_is_refused_untouched(tiny_run):
    before = files_digest(tiny_run.run)
    with pytest.raises(RunError, match=r"holds a run with seed = 0, not 1"):
        run_spec(TINY, run=tiny_run.run, seed=1, progress=False)
    with pytest.raises(RunError, match=r"holds a run with train.epochs = 1, not 2"):
        run_spec(TINY, run=tiny_run.run, epochs=2, progress=False)
    assert files_digest(tiny_run.run) == before


def test_raising_the_budget_extends_a_finished_run(tmp_path):
    first = run_spec(TINY, run=tmp_path / "r", progress=False, budget=8)
    more = run_spec(TINY, run=tmp_path / "r", progress=False, budget=16)
    assert len(more.evaluations) == 16
    assert [e.config for e in more.evaluations[:8]] == [e.config for e in first.evaluations]
    assert load_spec(tmp_path / "r")["search.budget"] == 16


# -- kill -9 and resume, through the command line ---------------------------------------
KILL_SPEC = {
    "name": "killed",
    "seed": 1,
    "space": {"family": "mlp", "args": {"widths": [16, 32, 64], "ranks": [4, 8, 16]}},
    "train": {"epochs": 3, "lr": 0.01, "batch_size": 128},
    "search": {"searcher": "evolution", "budget": 96, "batch_size": 8, "args": {"population_size": 16}},
}


def _nas(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "nas.cli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(args: list[str], cwd: Path) -> None:
    proc = _nas(args, cwd)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "the run never reached the point to kill it at"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def _rows(path: Path) -> list[tuple]:
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT key, config, metrics, status FROM evaluations ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # created, schema not yet committed
        return []
    finally:
        db.close()


def _epoch(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["epoch"])
    except (FileNotFoundError, RuntimeError, EOFError):
        return 0


@pytest.fixture(scope="module")
def kill_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    spec = root / "killed.toml"
    spec.write_text(dumps_toml(KILL_SPEC))
    _finish(["search", "--spec", str(spec), "--run", str(root / "whole"), "--quiet", "--no-report"], root)
    return root, spec


def _same_as_uninterrupted(root: Path, run: Path) -> None:
    whole = _rows(root / "whole" / "evaluations.sqlite")
    rows = _rows(run / "evaluations.sqlite")
    keys = [r[0] for r in rows]
    assert len(keys) == len(set(keys)) == KILL_SPEC["search"]["budget"]
    assert rows == whole  # same configs, same order, same metrics
    front, expected = (json.loads((path / "front.json").read_text()) for path in (run, root / "whole"))
    for entry in front["front"] + expected["front"]:
        entry.pop("seconds")  # wall time, the one field that may differ
    assert front == expected


@pytest.mark.slow
def test_kill9_during_training_then_resume_gives_the_uninterrupted_front(kill_setup):
    root, spec = kill_setup
    run = root / "during-training"
    args = ["search", "--spec", str(spec), "--run", str(run), "--quiet", "--no-report"]
    proc = _nas(args, root)
    _kill_when(proc, lambda: (run / "supernet.pt").exists())
    assert 1 <= _epoch(run / "supernet.pt") < KILL_SPEC["train"]["epochs"]
    assert not _rows(run / "evaluations.sqlite")
    _finish(args, root)
    _same_as_uninterrupted(root, run)


@pytest.mark.slow
def test_kill9_during_search_then_resume_loses_only_the_batch_in_flight(kill_setup):
    root, spec = kill_setup
    run = root / "during-search"
    args = ["search", "--spec", str(spec), "--run", str(run), "--quiet", "--no-report"]
    proc = _nas(args, root)
    _kill_when(proc, lambda: len(_rows(run / "evaluations.sqlite")) >= 24)
    kept = _rows(run / "evaluations.sqlite")
    assert 24 <= len(kept) < KILL_SPEC["search"]["budget"] and len(kept) % 8 == 0  # whole batches only
    assert kept == _rows(root / "whole" / "evaluations.sqlite")[: len(kept)]
    _finish(["search", "--run", str(run), "--quiet", "--no-report"], root)  # the run directory alone resumes it
    _same_as_uninterrupted(root, run)


@pytest.mark.parametrize("module", ["nas.runs", "nas.runs._spec", "nas.runs._run", "nas._toml", "nas.store", "nas.export", "nas.report"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
