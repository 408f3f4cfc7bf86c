"""The `nas` command: help everywhere, the search output, and exit code 2 with one line for bad input."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas.cli import main
from nas.runs import dumps_toml

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny",
    "space": {"family": "mlp", "args": {"depths": [1, 2], "widths": [16, 32], "ranks": [4, 8]}},
    "train": {"epochs": 1, "lr": 0.01},
    "search": {"searcher": "random", "budget": 10},
}


def digest(path: Path) -> dict[str, tuple[str, int]]:
    """Every file under `path`: hash of its bytes and its modification time."""
    return {
        str(p.relative_to(path)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "tiny.toml").write_text(dumps_toml(TINY))
    return root


@pytest.fixture(scope="module")
def tiny_run(workdir):
    """A finished tiny run made by `nas search`, with its printed output."""
    run = workdir / "runs" / "tiny"
    from contextlib import redirect_stdout
    from io import StringIO

    out = StringIO()
    with redirect_stdout(out):
        code = main(["search", "--spec", str(workdir / "tiny.toml"), "--run", str(run), "--quiet"])
    assert code == 0
    return run, out.getvalue()


@pytest.mark.parametrize("command", [[], ["search"], ["train"], ["export"], ["report"], ["spaces"]])
def test_every_command_has_help(command, capsys):
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: nas")
    if command == ["search"]:
        for flag in ("--spec", "--run", "--space", "--searcher", "--budget", "--backend", "--ray-address", "--seed"):
            assert flag in out


def test_search_prints_the_front_the_picks_and_where_the_files_are(tiny_run):
    run, out = tiny_run
    assert "10 evaluations (0 failed)" in out
    assert "accuracy  params" in out  # the front table's header
    assert "pick knee:" in out
    for name in ("spec.toml", "supernet.pt", "evaluations.sqlite", "front.json", "report/front.png", "report/summary.md", "report/evaluations.csv"):
        assert f"{run}/{name}" in out
        assert (run / name).is_file()
    assert f"next: nas export {run}" in out


def test_spaces_lists_a_family_with_its_dimensions_and_size(capsys):
    assert main(["spaces", "mlp"]) == 0
    out = capsys.readouterr().out
    assert "mlp:" in out and "4,368 subnets" in out and "blocks.2.width: [16, 32, 64, 128]  (when depth in [3])" in out


def test_train_then_search_continue_one_run(workdir, capsys):
    run = workdir / "runs" / "trained"
    assert main(["train", "--spec", str(workdir / "tiny.toml"), "--run", str(run), "--quiet"]) == 0
    assert "supernet trained for 1 epoch:" in capsys.readouterr().out
    before = digest(run)["supernet.pt"]
    assert main(["search", "--run", str(run), "--budget", "4", "--quiet", "--no-report"]) == 0
    assert digest(run)["supernet.pt"] == before  # trained once, not again
    assert "4 evaluations" in capsys.readouterr().out


def test_export_writes_checked_models(tiny_run, capsys):
    run, _ = tiny_run
    assert main(["export", str(run), "--pick", "best:accuracy", "--format", "pt,onnx"]) == 0
    out = capsys.readouterr().out
    assert "check: validation accuracy" in out and "ONNX (onnxruntime)" in out
    arch = json.loads((run / "export" / "best-accuracy" / "arch.json").read_text())
    assert arch["family"] == "mlp" and arch["pick"] == "best:accuracy"


BAD = [
    # (argv, where the run must not change, message)
    (["search", "--spec", "{dir}/unknown_key.toml"], None, "unknown spec key 'search.budgt' in {dir}/unknown_key.toml; the keys of [search] are: searcher, objectives, constraints, budget"),
    (["search", "--spec", "{dir}/malformed.toml"], None, "is not valid TOML"),
    (["search", "--spec", "{dir}/wrong_type.toml"], None, "search.budget in {dir}/wrong_type.toml must be an int >= 1, got 'ten'"),
    (["search", "--spec", "{dir}/nope.toml"], None, "spec file {dir}/nope.toml does not exist"),
    (["search", "--space", "resnet"], None, "--space must be one of ['cell', 'cnn', 'cnn1d', 'mlp', 'transformer'], got 'resnet'"),
    (["search", "--searcher", "annealing"], None, "--searcher must be one of ['dp', 'evolution', 'evopress', 'guided', 'optuna', 'random', 'tangle'], got 'annealing'"),
    (["search", "--objectives", "acc:max,params:min"], None, "--objectives names unknown metric 'acc'; the metrics are: accuracy, loss, mae, r2, params, macs, model_bits, bitops, latency_ms"),
    (["search", "--objectives", "accuracy:up"], None, "--objectives: The 'direction' of objective 'accuracy' must be one of ['max', 'min'], got 'up'"),
    (["search", "--budget", "many"], None, "--budget must be an int >= 1, got 'many'"),
    (["search", "--budget", "0"], None, "--budget must be an int >= 1, got 0"),
    (["search", "--backend", "slurm"], None, "--backend must be one of"),
    (["search", "--ray-address", "auto"], None, "--ray-address applies only to the ray backend"),
    (["search", "--colour", "blue"], None, "unrecognized arguments: --colour blue"),
    (["search", "--run", "{run}", "--seed", "5"], "run", "holds a run with seed = 0, not 5; use another run directory (--run)"),
    (["search", "--run", "{run}", "--space", "cnn"], "run", "holds a run with space.family = 'mlp', not 'cnn'"),
    (["train", "--run", "{run}", "--epochs", "3"], "run", "holds a run with train.epochs = 1, not 3"),
    (["export", "{dir}/runs/missing"], None, "no run at {dir}/runs/missing: it has no spec.toml"),
    (["report", "{dir}/runs/missing"], None, "no run at {dir}/runs/missing: it has no spec.toml"),
    (["export", "{run}", "--config", '{{"depth": 9}}'], "run", "dimension 'depth' must be one of [1, 2], got 9"),
    (["export", "{run}", "--config", '{{"depth": 1, "blocks.0.width": 16}}'], "run", "missing dimension 'blocks.0.rank'"),
    (["export", "{run}", "--config", "depth=1"], "run", "--config is not valid JSON"),
    (["export", "{run}", "--pick", "best:nope"], "run", "nope"),
    (["export", "{run}", "--pick", "params<=1"], "run", "No ok evaluation (of 10) meets ['params<=1']"),
    (["export", "{run}", "--pick", "latency_ms<=2"], "run", "latency_ms"),
    (["export", "{run}", "--format", "gif"], "run", "--format: unknown export format 'gif'; the formats are: pt, torchscript, onnx"),
    (["report", "{run}", "--pick", "params<=1"], "run", "No ok evaluation (of 10) meets ['params<=1']"),
    (["spaces", "resnet"], None, "unknown family 'resnet'; the families are: cell, cnn, cnn1d, mlp, transformer"),
]


@pytest.fixture(scope="module")
def bad_specs(workdir):
    (workdir / "unknown_key.toml").write_text('[search]\nbudgt = 4\n')
    (workdir / "malformed.toml").write_text('[search\nbudget = 4\n')
    (workdir / "wrong_type.toml").write_text('[search]\nbudget = "ten"\n')
    return workdir


@pytest.mark.parametrize(("argv", "untouched", "message"), BAD, ids=[" ".join(a).replace("{dir}/", "").replace("{run}", "RUN") for a, _, _ in BAD])
def test_bad_input_exits_2_with_one_line_and_touches_nothing(argv, untouched, message, bad_specs, tiny_run, capsys, monkeypatch):
    run, _ = tiny_run
    monkeypatch.chdir(bad_specs)  # the demo's runs/demo would go here: it must not appear
    fill = {"dir": str(bad_specs), "run": str(run)}
    before = digest(run)
    code = main([a.format(**fill) for a in argv])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("nas: error: ")
    assert message.format(**fill) in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert digest(run) == before
    assert not (bad_specs / "runs" / "demo").exists()


def test_the_installed_command_exits_2_without_a_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "search", "--budget", "0"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "nas: error: --budget must be an int >= 1, got 0\n"
    assert not (tmp_path / "runs").exists()
