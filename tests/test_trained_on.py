"""A supernet remembers the data it was trained on; evaluation, search and export on other data warn once."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from torch.utils.data import TensorDataset

import nas
from nas.data import Data, DataMismatch, digits, fingerprint
from nas.runs import dumps_toml, load_run, run_spec
from search_spaces.mlp import MLP

ROOT = Path(__file__).resolve().parents[1]
SOURCE = '''
import os
import nas

def data():
    """digits, split by the seed the environment names: the same shapes, other rows."""
    return nas.data.digits("flat", seed=int(os.environ.get("DATA_SEED", "0")))
'''


def _mismatches(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, DataMismatch)]


def _trained() -> MLP:
    net = MLP(depths=(1,), widths=(16,), ranks=(4,))
    nas.train_supernet(net, digits("flat"), epochs=1, progress=False)
    return net


def test_the_fingerprint_names_sizes_shapes_and_content():
    a, b = fingerprint(digits("flat")), fingerprint(digits("flat", seed=1))
    assert a["train"] == b["train"] and a["val"] == b["val"]  # same sizes and shapes...
    assert a["digest"] != b["digest"]  # ...other rows
    x, y = digits("flat").val.tensors
    assert fingerprint(Data(digits("flat").train, TensorDataset(x.clone(), y.clone())))["digest"] == a["digest"]
    assert fingerprint(Data(digits("flat").train, TensorDataset(x[:-1], y[:-1])))["val"]["size"] == 359


def test_evaluating_a_trained_supernet_on_other_data_warns_once_naming_both():
    net = _trained()
    assert net.trained_on == fingerprint(digits("flat"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nas.evaluate(net, [net.largest()], digits("flat"))
    assert _mismatches(caught) == []
    other = digits("flat", seed=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nas.evaluate(net, [net.largest()], other)
        nas.evaluate(net, [net.smallest()], other)
        nas.search(net, other, searcher="random", budget=2, progress=False)
    found = _mismatches(caught)
    assert len(found) == 1, found
    assert fingerprint(other)["digest"] in found[0] and net.trained_on["digest"] in found[0]


def test_an_untrained_supernet_warns_about_nothing():
    net = MLP(depths=(1,), widths=(16,), ranks=(4,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nas.evaluate(net, [net.largest()], digits("flat", seed=1))
    assert _mismatches(caught) == []


@pytest.fixture
def run_on_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "seeded_digits.py").write_text(SOURCE)
    monkeypatch.delenv("DATA_SEED", raising=False)
    spec = {"name": "fp", "data": {"source": "seeded_digits:data"}, "space": {"args": {"depths": [1], "widths": [16], "ranks": [4]}},
            "train": {"epochs": 1}, "search": {"searcher": "random", "budget": 2}}
    (tmp_path / "fp.toml").write_text(dumps_toml(spec))
    run = run_spec(tmp_path / "fp.toml", run=tmp_path / "run", progress=False)
    return run


def test_the_run_keeps_the_fingerprint_and_export_on_other_data_warns(run_on_source, tmp_path):
    loaded = load_run(run_on_source.run, trust=True)
    assert loaded.net.trained_on == fingerprint(digits("flat"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nas.export(loaded, "knee", tmp_path / "same", formats="pt")
    assert _mismatches(caught) == []
    with pytest.warns(DataMismatch, match=fingerprint(digits("flat", seed=1))["digest"]):
        nas.export(loaded, "knee", tmp_path / "other", formats="pt", data=digits("flat", seed=1), check=False)


def test_the_command_line_prints_one_warning_line_for_other_data(run_on_source, tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "DATA_SEED": "1"}
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "export", "run", "--format", "pt", "--trust", "--out", "other"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    lines = [line for line in proc.stderr.splitlines() if "not the data the supernet was trained on" in line]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("nas: warning: ") and fingerprint(digits("flat", seed=1))["digest"] in lines[0]
    assert fingerprint(digits("flat"))["digest"] in lines[0]
    assert "Traceback" not in proc.stderr
