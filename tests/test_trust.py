"""Opening a run never runs the code its spec names unless trusted; run names and directories are safe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas.cli import main
from nas.errors import ReportError
from nas.rundir import RunDir
from nas.runs import (
    RunError,
    SpecError,
    UntrustedSource,
    dumps_toml,
    load_run,
    load_spec,
    run_spec,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny",
    "space": {"family": "mlp", "args": {"depths": [1], "widths": [16], "ranks": [4]}},
    "train": {"epochs": 0},
    "search": {"searcher": "random", "budget": 2},
}
EVIL = '''
from pathlib import Path
import nas

def write(**kwargs):
    """The "malicious" source: it leaves a marker file, then returns real data."""
    Path("MARKER").write_text("ran")
    return nas.data.digits("flat")
'''
MODEL = '''
import torch
from torch import nn
import nas

def bare(hidden=32):
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

def model(hidden=32):
    return bare(hidden), torch.zeros(2, 64)

def data():
    return nas.data.digits("flat")
'''


@pytest.fixture
def crafted(tmp_path, monkeypatch):
    """A directory (the current one) holding `evil_marker.py` and a run whose spec.toml names it as data.source."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil_marker.py").write_text(EVIL)
    run = tmp_path / "run"
    run.mkdir()
    (run / "spec.toml").write_text(dumps_toml({**TINY, "data": {"source": "evil_marker:write"}}))
    monkeypatch.delitem(sys.modules, "evil_marker", raising=False)
    return run


def test_nas_report_of_a_crafted_spec_does_not_run_its_data_source(crafted):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NAS_TRUSTED_SOURCES", None)
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "report", "run"], cwd=crafted.parent, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "'evil_marker:write'" in proc.stderr and "--trust" in proc.stderr and "NAS_TRUSTED_SOURCES" in proc.stderr
    assert not (crafted.parent / "MARKER").exists()
    assert "evil_marker" not in sys.modules


@pytest.mark.parametrize("argv", [["export", "run"], ["search", "--run", "run", "--quiet"], ["train", "--run", "run", "--quiet"]])
def test_no_command_that_opens_a_run_runs_its_source_untrusted(crafted, argv, capsys):
    assert main(argv) == 2
    assert "NAS_TRUSTED_SOURCES" in capsys.readouterr().err
    assert not (crafted.parent / "MARKER").exists()
    with pytest.raises(UntrustedSource, match="evil_marker:write"):
        load_run(crafted)
    with pytest.raises(UntrustedSource, match="evil_marker:write"):
        run_spec(crafted, progress=False)
    assert not (crafted.parent / "MARKER").exists()
    assert "evil_marker" not in sys.modules


def test_trust_or_the_allow_list_lets_a_run_import_its_source(crafted, monkeypatch):
    monkeypatch.setenv("NAS_TRUSTED_SOURCES", "other, evil_marker")
    assert len(load_run(crafted).evaluations) == 0
    assert (crafted.parent / "MARKER").exists()
    (crafted.parent / "MARKER").unlink()
    monkeypatch.delenv("NAS_TRUSTED_SOURCES")
    load_run(crafted, trust=True)
    assert (crafted.parent / "MARKER").exists()


def test_a_spec_the_user_passes_is_trusted(crafted):
    load_spec(crafted / "spec.toml")  # the file itself, named by the user
    assert (crafted.parent / "MARKER").exists()


def test_a_new_spec_over_a_run_never_resolves_the_stored_specs_other_source(crafted):
    with pytest.raises(RunError, match="holds a run with"):
        run_spec(TINY, run=crafted, progress=False)
    assert not (crafted.parent / "MARKER").exists()


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_run_names_are_refused(name):
    with pytest.raises(SpecError, match=r"not '\.' or '\.\.'"):
        load_spec({**TINY, "name": name})


def test_a_spec_file_named_dotdot_toml_and_an_empty_run_are_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "..toml").write_text(dumps_toml({k: v for k, v in TINY.items() if k != "name"}))
    assert main(["search", "--spec", "..toml", "--quiet"]) == 2
    assert "name in ..toml must be a plain name" in capsys.readouterr().err
    (tmp_path / "tiny.toml").write_text(dumps_toml(TINY))
    assert main(["search", "--spec", "tiny.toml", "--run", "", "--quiet"]) == 2
    assert "the run directory (--run) is empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["..toml", "tiny.toml"]


def test_run_never_adopts_a_non_empty_directory_that_is_not_a_run(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("another tool's file")
    with pytest.raises(RunError, match="non-empty directory that holds no run"):
        run_spec(TINY, run=other, progress=False)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(run_spec(TINY, run=empty, progress=False).evaluations) == 1  # the space holds one subnet
    assert RunDir(empty).is_run()


def test_a_lock_file_counts_as_a_run_file(tmp_path):
    run = RunDir(tmp_path)
    assert not run.is_run()
    run.lock_file.write_text("{}")
    assert run.is_run()


def test_model_flag_names_a_model_in_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    (tmp_path / "my_mlp_model.py").write_text(MODEL)
    monkeypatch.delitem(sys.modules, "my_mlp_model", raising=False)
    spec = load_spec(None, model="my_mlp_model:model", epochs="1", how="flag")
    net = spec.build_net()
    assert spec["space.family"] == "custom" and net.family == "custom"
    assert net.space.names() == ["0.width"] and net.space["0.width"].values == (8, 16, 24, 32)
    assert tuple(spec.data(net).train[0][0].shape) == (64,)  # the digits split that fits the model


def test_space_source_errors_name_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_mlp_model2.py").write_text(MODEL)
    spec = {"space": {"source": "my_mlp_model2:model"}}
    with pytest.raises(SpecError, match="unknown key 'widthz' in space.convert"):
        load_spec({**spec, "space": {**spec["space"], "convert": {"widthz": [0.5]}}})
    with pytest.raises(SpecError, match="space.source = 'my_mlp_model2:model' with space.args"):
        load_spec({"space": {**spec["space"], "args": {"nope": 1}}})
    with pytest.raises(SpecError, match="not both"):
        load_spec({"space": {**spec["space"], "family": "mlp"}})
    with pytest.raises(SpecError, match="applies only with space.source"):
        load_spec({"space": {"family": "mlp", "convert": {"depth": False}}})
    with pytest.raises(SpecError, match="cannot import 'no_such_module_x:model'"):
        load_spec({"space": {"source": "no_such_module_x:model"}})
    assert load_spec({"space": {**spec["space"], "args": {"hidden": 16}, "convert": {"widths": [0.5, 1.0]}}}).build_net().space["0.width"].values == (8, 16)


def test_export_and_report_of_a_run_directory_take_trust_like_load_run(crafted):
    import nas

    with pytest.raises(UntrustedSource, match="evil_marker:write"):
        nas.export(str(crafted), "knee", formats="pt")
    with pytest.raises(UntrustedSource, match="evil_marker:write"):
        nas.report(str(crafted))
    assert not (crafted.parent / "MARKER").exists()
    with pytest.raises(ReportError, match="no successful evaluation"):  # trusted: opened, then nothing to report
        nas.report(str(crafted), trust=True)
    assert (crafted.parent / "MARKER").exists()
