"""The fault-injection sweep (bench/faults.py): every bad input ends in one clear line, exit 2, no traceback, no file changed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _faults():
    spec = importlib.util.spec_from_file_location("nas_bench_faults", ROOT / "bench" / "faults.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_every_bad_input_ends_in_one_clear_line_and_changes_nothing(tmp_path):
    faults = _faults()
    outcomes = faults.sweep(tmp_path, fork=True, jobs=2, verbose=0)
    print(faults.summary(outcomes))
    assert len(outcomes) == len(faults.cases()) >= 40
    bad = [(o.case, o.rc, o.lines, o.changed, o.stderr[-500:]) for o in outcomes if not o.clear]
    assert not bad, bad
    assert sum(o.traceback for o in outcomes) == 0


def test_the_sweep_counts_a_traceback_as_one(tmp_path):
    faults = _faults()
    outcome = faults.Outcome("x", 1, "Traceback (most recent call last):\n  ...\nValueError: no\n", True, 3, [], 0.0)
    assert not outcome.clear
    assert faults.summary([outcome]) == "1 cases: 0 clear line, 1 traceback"
