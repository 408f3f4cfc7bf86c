"""Reports: front, hypervolume and dimension pictures, the Markdown summary and the evaluations CSV."""

from __future__ import annotations

import csv
import re

import pytest

from nas.evaluation import Evaluation
from nas.pareto import Infeasible, parse_objectives
from nas.report import FILES, report
from nas.runs import Run, run_spec
from nas.space import Choice, SearchSpace

PNG = b"\x89PNG\r\n\x1a\n"
TINY = {
    "name": "tiny",
    "space": {"family": "mlp", "args": {"depths": [1, 2], "widths": [16, 32], "ranks": [4, 8]}},
    "train": {"epochs": 1, "lr": 0.01},
    "search": {"searcher": "random", "budget": 12},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_spec(TINY, run=tmp_path_factory.mktemp("report") / "tiny", progress=False)


def test_report_writes_pictures_summary_and_csv(run):
    files = report(run)
    assert list(files) == list(FILES)
    assert all(path.parent == run.run / "report" for path in files.values())
    for name in ("front.png", "hypervolume.png", "dimensions.png"):
        assert files[name].read_bytes()[:8] == PNG and files[name].stat().st_size > 5_000
    assert not list((run.run / "report").glob("*.tmp*"))


def test_csv_holds_every_evaluation_with_its_front_flag(run):
    rows = list(csv.DictReader(open(report(run)["evaluations.csv"])))
    assert len(rows) == len(run.evaluations)
    assert sum(int(r["on_front"]) for r in rows) == len(run.front)
    first = run.evaluations[0]
    assert float(rows[0]["accuracy"]) == first.metrics["accuracy"]
    assert rows[0]["depth"] == str(first.config["depth"])
    assert {"index", "status", "params", "blocks.1.width"} <= set(rows[0])


def test_summary_lists_the_picks_and_the_front(run):
    text = report(run, picks=["knee", "params<=100000"])["summary.md"].read_text()
    assert text.startswith("# Run `tiny`")
    assert "| `knee` |" in text and "| `params<=100000` |" in text
    assert len(re.findall(r"^\| \d+ \|", text, flags=re.M)) == len(run.front)
    assert "![front.png](front.png)" in text and f"nas export {run.run}" in text


def test_a_bad_pick_fails_before_anything_is_written(run, tmp_path):
    with pytest.raises(Infeasible):
        report(run, tmp_path / "out", picks=["params<=1"])
    assert not (tmp_path / "out").exists()


def test_report_of_a_run_directory_and_of_three_objectives(run, tmp_path):
    assert set(report(run.run, tmp_path / "again")) == set(FILES)
    space = SearchSpace([Choice("width", [8, 16, 32, 64]), Choice("op", ["a", "b", "c"])])
    evaluations = [
        Evaluation({"width": w, "op": op}, {"accuracy": 0.5 + w / 200 - 0.01 * i, "params": w * (i + 1), "macs": w * w / (i + 1)})
        for w in (8, 16, 32, 64)
        for i, op in enumerate("abc")
    ] + [Evaluation({"width": 8, "op": "a"}, {}, status="failed", error="boom")]
    synthetic = Run(
        evaluations=evaluations,
        objectives=parse_objectives(["accuracy:max", "params:min", "macs:min"]),
        space=space,
        reference={"accuracy": 0.0, "params": 300.0, "macs": 5000.0},
        hypervolume_history=[(6, 1.0), (13, 2.0)],
        run=tmp_path,
    )
    files = report(synthetic)
    assert files["front.png"].read_bytes()[:8] == PNG
    assert "failed" in files["evaluations.csv"].read_text()
    assert "# Run `" in files["summary.md"].read_text()
