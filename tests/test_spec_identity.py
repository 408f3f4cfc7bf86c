"""A run keeps its own copy of its spec (identity.json): an edited, emptied or truncated spec.toml is refused, never adopted."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas.cli import main
from nas.runs import IDENTITY, SpecChanged, dumps_toml, load_run, run_spec

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny",
    "space": {"family": "mlp", "args": {"depths": [1], "widths": [16, 32], "ranks": [4, 8]}},
    "train": {"epochs": 1},
    "search": {"searcher": "random", "budget": 2},
}


def _files(run: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    run = tmp_path_factory.mktemp("identity") / "run"
    run_spec(TINY, run=run, progress=False)
    return run


@pytest.fixture
def run(made, tmp_path):
    copy = tmp_path / "run"
    copy.mkdir()
    for p in made.iterdir():
        if p.is_file():
            (copy / p.name).write_bytes(p.read_bytes())
    return copy


def test_the_run_keeps_a_copy_of_its_spec_and_identity_keys(run):
    stored = json.loads((run / IDENTITY).read_text())
    assert stored["spec"] == (run / "spec.toml").read_text()
    assert stored["identity"]["train.epochs"] == 1 and "search.budget" not in stored["identity"]


EDITS = {
    "edited": lambda text: text.replace("epochs = 1\n", "epochs = 40\n"),
    "truncated": lambda text: text[: len(text) // 2],
    "emptied": lambda text: "",
    "not UTF-8": lambda text: "\udcff",
}


@pytest.mark.parametrize("how", list(EDITS))
def test_a_changed_spec_is_refused_in_one_line_and_nothing_is_written(run, how, capsys):
    spec = run / "spec.toml"
    text = EDITS[how](spec.read_text())
    spec.write_bytes(text.encode("utf-8", "surrogateescape"))
    before = _files(run)
    for argv in (["search", "--run", str(run), "--quiet"], ["train", "--run", str(run), "--quiet"], ["report", str(run)], ["export", str(run)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(spec) in err and IDENTITY in err, err
        if how == "edited":
            assert "train.epochs = 40" in err, err
        elif how == "truncated":  # what is left may still parse as TOML: then it names a key that changed
            assert "damaged" in err or "was changed after the run was made" in err, err
        else:
            assert "damaged" in err, err
    with pytest.raises(SpecChanged):
        load_run(run)
    with pytest.raises(SpecChanged):
        run_spec(run, progress=False)
    assert _files(run) == before


def test_the_command_line_process_exits_2_with_one_line(run):
    spec = run / "spec.toml"
    spec.write_text(spec.read_text().replace("epochs = 1\n", "epochs = 40\n"))
    before = _files(run)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "search", "--run", str(run), "--quiet"], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "train.epochs = 40, the run was made with 1" in proc.stderr
    assert _files(run) == before


def test_a_deleted_spec_is_put_back_from_the_runs_copy(run):
    text = (run / "spec.toml").read_text()
    (run / "spec.toml").unlink()
    assert load_run(run).spec["train.epochs"] == 1  # read-only: nothing written
    assert not (run / "spec.toml").exists()
    assert main(["search", "--run", str(run), "--quiet", "--no-report"]) == 0
    assert (run / "spec.toml").read_text() == text


def test_budget_and_backend_may_still_be_edited(run):
    spec = run / "spec.toml"
    spec.write_text(spec.read_text().replace("budget = 2\n", "budget = 3\n"))
    assert len(run_spec(run, progress=False).evaluations) == 3
    assert json.loads((run / IDENTITY).read_text())["spec"] == spec.read_text()


def test_a_bad_spec_over_an_existing_run_never_overwrites_its_spec(run, tmp_path, capsys):
    before = _files(run)
    bad = tmp_path / "bad.toml"
    for text in (dumps_toml({**TINY, "train": {"epochs": 5}}), dumps_toml({**TINY, "search": {"budgt": 2}}), "[search\n"):
        bad.write_text(text)
        assert main(["search", "--spec", str(bad), "--run", str(run), "--quiet"]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    assert _files(run) == before


def test_a_run_made_before_the_copy_gets_one_when_next_written(run):
    (run / IDENTITY).unlink()
    (run / "spec.toml").write_text((run / "spec.toml").read_text().replace("budget = 2\n", "budget = 3\n"))
    run_spec(run, progress=False)
    assert json.loads((run / IDENTITY).read_text())["identity"]["train.epochs"] == 1


def test_a_damaged_copy_is_named(run, capsys):
    (run / IDENTITY).write_text("{not json")
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "identity.json is damaged" in err
