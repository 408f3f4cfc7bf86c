"""Tangle runs are first-class runs: the store keeps each architecture's latest evaluation,
a spec with ``searcher = "tangle"`` runs, resumes, reports and exports through `nas`."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

import search_spaces
from nas.cli import main
from nas.evaluate import evaluate
from nas.evaluation import Evaluation
from nas.export import export
from nas.runs import RunSpec, dumps_toml, load_run, load_spec, run_spec
from nas.store import EvaluationStore
from nas.tangle import search_tangle

ROOT = Path(__file__).resolve().parents[1]


# -- the store: the latest evaluation of each config ------------------------------------------
def test_store_update_rewrites_evaluations_in_place_and_refuses_unknown_keys(tmp_path):
    path = tmp_path / "evaluations.sqlite"
    with EvaluationStore(path) as store:
        store.append([Evaluation({"w": 1}, {"a": 1.0})], ["k1"])
        store.append([Evaluation({"w": 2}, {"a": 2.0})], ["k2"])
        store.update([Evaluation({"w": 1}, {"a": 5.0}, seconds=0.5)], ["k1"], {"refreshed": 2})
        with pytest.raises(KeyError, match="'k9'"):
            store.update([Evaluation({"w": 1}, {"a": 7.0}), Evaluation({"w": 9}, {"a": 9.0})], ["k1", "k9"])
    with EvaluationStore(path, create=False) as store:
        evaluations, ends = store.load_batches()
        assert [(e.config, e.metrics["a"]) for e in evaluations] == [({"w": 1}, 5.0), ({"w": 2}, 2.0)]  # k1 in its place
        assert evaluations[0].seconds == 0.5 and ends == [1, 2] and store.meta("refreshed") == 2


# -- search_tangle with a run directory: the store is the result ---------------------------------
def _mlp():
    torch.manual_seed(0)
    return search_spaces.get("mlp", depths=(1, 2, 3), widths=(8, 16, 32), ranks=(2, 4, 8))


SEARCH = dict(epochs=4, arch_lr=0.1, cost_weight=0.3, seed=2, progress=False)  # records 3 architectures, one twice


class _Stop(Exception):
    pass


def _stop_after(epoch: int):
    def callback(entry):
        if entry["epoch"] == epoch:
            raise _Stop  # killed after the epoch's record and checkpoint, before the search ends

    return callback


def _stored(run) -> list[tuple]:
    with EvaluationStore(run / "evaluations.sqlite", create=False) as store:
        return [(e.config, e.metrics, e.status) for e in store.load()]


def test_stored_evaluations_are_the_result_and_an_interrupted_search_resumes_to_it(tmp_path):
    whole = search_tangle(_mlp(), run=tmp_path / "whole", **SEARCH)
    assert len(whole.history) == 4 and len(whole.evaluations) == 3
    assert _stored(tmp_path / "whole") == [(e.config, e.metrics, e.status) for e in whole.evaluations]
    with pytest.raises(_Stop):
        search_tangle(_mlp(), run=tmp_path / "split", callback=_stop_after(2), **SEARCH)
    resumed = search_tangle(_mlp(), run=tmp_path / "split", resume=True, **SEARCH)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert _stored(tmp_path / "split") == _stored(tmp_path / "whole")
    assert [(e.config, e.metrics) for e in resumed.evaluations] == [(e.config, e.metrics) for e in whole.evaluations]
    assert resumed.hypervolume_history == whole.hypervolume_history and resumed.reference == whole.reference


# -- the spec: searcher = "tangle" -----------------------------------------------------------------
TANGLED = {
    "name": "tangled",
    "seed": 1,
    "space": {"family": "mlp", "args": {"depths": [1, 2, 3], "widths": [8, 16, 32], "ranks": [2, 4, 8]}},
    "search": {"searcher": "tangle", "budget": 12, "args": {"cost_weight": 0.3, "arch_lr": 0.1, "lr": 0.01}},
}  # records 3 architectures in 12 epochs (about a second)


def test_example_tangle_spec_loads_with_the_searchers_defaults_pinned_and_no_train_section():
    spec = load_spec(ROOT / "runs" / "tangle.toml")
    assert spec.name == "tangle" and spec.method.name == "tangle" and spec["space.family"] == "mlp" and spec["space.args"]["ranks"]
    assert spec["search.args"]["sampling"] == "dirichlet" and spec["search.args"]["grad_clip"] == 5.0  # defaults pinned
    assert "train" not in spec.to_dict()
    assert RunSpec.from_dict(tomllib.loads(spec.to_toml())).resolve() == spec


def test_switching_a_spec_to_tangle_drops_its_training_recipe_and_searcher_arguments():
    spec = load_spec(None, how="flag", searcher="tangle", budget="3")  # the demo, which sets [train] and population_size
    assert spec.method.name == "tangle" and spec["search.budget"] == 3 and "population_size" not in spec["search.args"]
    assert "train" not in spec.to_dict()
    assert spec.search_kwargs()["budget"] == 3


BAD = [
    # (change to TANGLED, or flags, message; {file} is the spec file)
    ({"args": {"sampling": "bogus"}}, [], "search.args.sampling in {file} must be one of ['dirichlet', 'gumbel', 'softmax'], got 'bogus'"),
    ({"args": {"cost_weight": -1}}, [], "search.args.cost_weight in {file} must be a number >= 0, got -1"),
    ({"args": {"second_order": "yes"}}, [], "search.args.second_order in {file} must be true or false, got 'yes'"),
    ({"args": {"temperature": [1.0, 0]}}, [], "search.args.temperature in {file} must be a number > 0 or a [start, end] pair of them, got [1.0, 0]"),
    ({"args": {"lrr": 0.1}}, [], "unknown key 'lrr' in search.args in {file} for searcher 'tangle'; the keys are: cost_weight, budget_constraint"),
    ({"args": {"epochs": 5}}, [], "search.args.epochs in {file}: searcher 'tangle' runs search.budget epochs (--budget)"),
    ({"args": {"budget_constraint": "accuracy>=0.5"}}, [], "search.args.budget_constraint in {file}: The 'budget_constraint' parameter must bound one of"),
    ({"args": {"budget_constraint": "params<=1"}}, [], "search.args.budget_constraint in {file}: no subnet meets"),
    ({"objectives": ["accuracy:max"]}, [], "search.args.cost_weight in {file} = 0.3 needs a cost objective (params, macs or latency_ms)"),
    ({"train": {"epochs": 3}}, [], "train.epochs in {file} does not apply to searcher 'tangle': it trains the supernet itself"),
    ({}, ["--epochs", "3"], "--epochs does not apply to searcher 'tangle'"),
    ({}, ["--backend", "ray"], "--backend must be 'local' for searcher 'tangle' (it trains the supernet in this process), got 'ray'"),
    ({}, ["train"], "searcher 'tangle' trains the supernet during its search: run `nas search`, not `nas train`"),
]


def _bad_spec(change: dict) -> dict:
    spec = json.loads(json.dumps(TANGLED))
    for key, value in change.items():
        if key == "train":
            spec["train"] = value
        elif key == "args":
            spec["search"]["args"].update(value)
        else:
            spec["search"][key] = value
    return spec


@pytest.mark.parametrize(("change", "flags", "message"), BAD, ids=[m.split(" ")[0] + f"-{i}" for i, (_, _, m) in enumerate(BAD)])
def test_bad_tangle_spec_exits_2_with_one_line_and_creates_nothing(change, flags, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    file = tmp_path / "bad.toml"
    file.write_text(dumps_toml(_bad_spec(change)))
    command = ["train"] if flags == ["train"] else ["search", *flags]
    assert main([*command, "--spec", str(file), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nas: error: ") and "Traceback" not in err
    assert message.format(file=file) in err
    assert not (tmp_path / "runs").exists()


# -- a tangle run through the `nas` command: search, report, export, resume ----------------------------
@pytest.fixture(scope="module")
def tangled(tmp_path_factory):
    """A finished tangle run made by `nas search`, and its spec file."""
    root = tmp_path_factory.mktemp("tangle")
    (root / "tangled.toml").write_text(dumps_toml(TANGLED))
    run = root / "whole"
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["search", "--spec", str(root / "tangled.toml"), "--run", str(run), "--quiet", "--no-report"]) == 0
    return root, run, out.getvalue()


def test_tangle_run_holds_a_spec_and_loads_with_its_tangle_trained_supernet(tangled):
    _, run, out = tangled
    assert "run 'tangled': 3 evaluations (0 failed)" in out and f"next: nas export {run}" in out
    assert {p.name for p in run.iterdir()} >= {"spec.toml", "supernet.pt", "evaluations.sqlite", "front.json"}
    loaded = load_run(run)
    state = torch.load(run / "supernet.pt", weights_only=True)
    assert state["epoch"] == 12 and [h["epoch"] for h in loaded.history] == list(range(1, 13))
    for name, value in loaded.net.state_dict().items():
        assert torch.equal(value, state["model"][name]), name
    keys = [loaded.space.key(e.config) for e in loaded.evaluations]
    assert len(keys) == len(set(keys)) == 3 and loaded.evaluations[-1].config == loaded.history[-1]["config"]
    assert [n for n, _ in loaded.hypervolume_history] == [1, 2, 3]
    again = evaluate(loaded.net, [e.config for e in loaded.evaluations], loaded.data(), metrics=("accuracy", "loss", "params", "macs"))
    assert [e.metrics for e in again] == [e.metrics for e in loaded.evaluations]  # each evaluation is the final weights'


def test_report_and_export_of_a_tangle_run(tangled, capsys):
    _, run, _ = tangled
    assert main(["report", str(run)]) == 0
    assert "within the tangle search (bi-level), 12 epochs" in (run / "report" / "summary.md").read_text()
    assert main(["export", str(run), "--pick", "best:accuracy", "--format", "pt,onnx"]) == 0
    out = capsys.readouterr().out
    assert "check: validation accuracy" in out and "ONNX (onnxruntime)" in out
    loaded = load_run(run)
    for i, ev in enumerate(loaded.evaluations):  # every recorded architecture, not only the last epoch's
        done = export(loaded, ev, run / "export" / f"e{i}", formats="pt")
        assert done.checks["accuracy"]["exported"] == done.checks["accuracy"]["stored"] == ev.metrics["accuracy"]


def test_running_a_finished_tangle_run_again_changes_nothing(tangled):
    root, run, _ = tangled
    before = {name: (run / name).read_bytes() for name in ("evaluations.sqlite", "supernet.pt", "spec.toml")}
    again = run_spec(run, run=run, progress=False)
    assert len(again.evaluations) == 3
    assert {name: (run / name).read_bytes() for name in before} == before


def _nas(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "nas.cli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(path: Path) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT key, config, metrics, status FROM evaluations ORDER BY id").fetchall()
    finally:
        db.close()


@pytest.mark.slow
def test_kill9_during_a_tangle_search_then_nas_search_run_resumes_to_the_uninterrupted_result(tangled, capsys):
    root, whole, _ = tangled
    run = root / "killed"
    proc = _nas(["search", "--spec", str(root / "tangled.toml"), "--run", str(run), "--quiet", "--no-report"], root)
    deadline = time.monotonic() + 120
    while not (run / "supernet.pt").exists():  # written after the first epoch
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    epoch = int(torch.load(run / "supernet.pt", weights_only=True)["epoch"])
    assert 1 <= epoch < 12
    assert main(["export", str(run)]) == 2  # unfinished: its weights are not final yet
    assert f"has run {epoch} of 12 epochs; run `nas search --run {run}` to finish it" in capsys.readouterr().err
    assert main(["search", "--run", str(run), "--quiet", "--no-report"]) == 0  # the run directory alone resumes it
    assert _rows(run / "evaluations.sqlite") == _rows(whole / "evaluations.sqlite")
    assert main(["search", "--run", str(run), "--budget", "14", "--quiet", "--no-report"]) == 0  # a higher budget: more epochs
    assert [h["epoch"] for h in load_run(run).history] == list(range(1, 15))
