"""Hard constraints through `nas.search`, specs and the command line: never evaluated when broken, kept by the front and the picks."""

from __future__ import annotations

import json
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO

import pytest
import torch

import nas
import search_spaces
from nas.cli import main
from nas.evaluation import Evaluation
from nas.metrics import METRICS, of
from nas.pareto import Constraint, Infeasible, InvalidConstraint
from nas.result import SearchResult, hypervolume_history
from nas.runs import SpecError, dumps_toml, load_run, run_spec
from nas.searchers import get as get_searcher
from nas.store import FILENAME as STORE
from nas.store import EvaluationStore
from nas.tangle import with_constraints

BOUND = 1800  # of 650..2250 params: most but not all of the 36 configs


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return search_spaces.get("mlp", depths=(2,), widths=(16, 32, 48), ranks=(4, 8))


def stored(run) -> list[Evaluation]:
    with EvaluationStore(run / STORE, create=False) as store:
        return store.load_batches()[0]


# -- nas.search -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["random", "evolution", "optuna", "guided", "evopress"])
def test_search_with_constraints_never_evaluates_a_config_that_breaks_them(net, tmp_path, name):
    kwargs = {"tolerance": 0.5} if name == "evopress" else None
    result = nas.search(net, searcher=name, budget=12, seed=1, run=tmp_path, progress=False,
                        constraints=[f"params<={BOUND}"], searcher_kwargs=kwargs)
    evaluations = stored(tmp_path)
    assert evaluations and len(evaluations) == len(result.evaluations)
    assert max(e.metrics["params"] for e in evaluations) <= BOUND
    assert [str(c) for c in result.constraints] == [f"params<={BOUND}"]


def test_the_front_hypervolume_and_picks_hold_only_feasible_evaluations(net, tmp_path):
    # dp measures its per-layer tables on configs that may break the budget: they are stored, never on the front
    result = nas.search(net, searcher="dp", budget=24, run=tmp_path, progress=False, constraints=f"params<={BOUND}")
    broken = [e for e in result.evaluations if e.metrics["params"] > BOUND]
    assert broken, "the dp tables should hold a config over the budget"
    assert result.front and all(e.metrics["params"] <= BOUND for e in result.front)
    assert result.pick().metrics["params"] <= BOUND
    assert result.pick("best:accuracy").metrics["params"] <= BOUND
    feasible = [e for e in result.evaluations if e.metrics["params"] <= BOUND]
    unconstrained = SearchResult(feasible, result.objectives, result.space, result.reference)
    assert result.hypervolume == pytest.approx(unconstrained.hypervolume)
    batches = [n for n, _ in result.hypervolume_history]
    assert result.hypervolume_history == hypervolume_history(result.evaluations, result.objectives, result.reference, batches,
                                                             result.constraints)
    written = json.loads((tmp_path / "front.json").read_text())
    assert written["constraints"] == [f"params<={BOUND}"]
    assert len(written["front"]) == len(result.front)
    assert f"constraints: params<={BOUND} ({len(feasible)} feasible)" in result.summary()


def test_a_result_with_nothing_feasible_says_so_in_one_line(net):
    evaluations = [Evaluation({"w": 1}, {"accuracy": 0.5, "params": 900.0})]
    result = SearchResult(evaluations, nas.pareto.parse_objectives(["accuracy:max", "params:min"]), net.space,
                          {"accuracy": 0.0, "params": 1000.0}, constraints=[Constraint.parse("params<=800")])
    assert result.front == [] and result.hypervolume == 0.0
    line = "No feasible evaluation: none of the 1 ok evaluations meets the constraints ['params<=800']."
    with pytest.raises(Infeasible, match=r"^No feasible evaluation"):
        result.pick()
    assert line in result.summary().splitlines()


@pytest.mark.parametrize("constraint, message", [
    ("flops<=3", r"^The 'constraints' parameter has 'flops<=3' on unknown metric 'flops'; constrain one of the cost metrics: params, macs, model_bits, bitops, latency_ms\.$"),
    ("accuracy>=0.9", r"on metric 'accuracy', which is not known before evaluation"),
    ("params<=100", r"^The constraint 'params<=100' cannot be met: params ranges from 650 \(smallest subnet\) to 2250 \(largest subnet\)\.$"),
    ("model_bits<=100", r"which this supernet does not have \(no layer has a bit-width\)"),
])
def test_bad_constraints_are_one_line_before_anything_is_written(net, tmp_path, constraint, message):
    run = tmp_path / "run"
    with pytest.raises(InvalidConstraint, match=message):
        nas.search(net, searcher="random", budget=4, run=run, progress=False, constraints=[constraint])
    assert not run.exists()


def test_resuming_with_other_constraints_is_refused_and_with_the_same_evaluates_nothing_again(net, tmp_path):
    first = nas.search(net, searcher="random", budget=6, run=tmp_path, progress=False, constraints=f"params<={BOUND}")
    with pytest.raises(InvalidConstraint, match=rf"^the run {tmp_path} was searched with constraints \['params<={BOUND}'\], not \['params<=1500'\]"):
        nas.search(net, searcher="random", budget=8, run=tmp_path, progress=False, constraints="params<=1500")
    with pytest.raises(InvalidConstraint, match=r"searched with constraints \['params<=1800'\], not \[\]"):
        nas.search(net, searcher="random", budget=8, run=tmp_path, progress=False)
    again = nas.search(net, searcher="random", budget=6, run=tmp_path, progress=False, constraints=f"params<={BOUND}")
    assert [e.config for e in again.evaluations] == [e.config for e in first.evaluations]


def test_a_searcher_built_with_other_constraints_is_refused(net):
    searcher = get_searcher("random", net.space, ["accuracy:max", "params:min"], cost=net.cost, constraints=["params<=1500"])
    with pytest.raises(InvalidConstraint, match=r"differs from the given searcher's constraints \['params<=1500'\]"):
        nas.search(net, searcher=searcher, budget=4, progress=False, constraints=f"params<={BOUND}")
    result = nas.search(net, searcher=searcher, budget=4, progress=False, constraints="params<=1500")
    assert max(e.metrics["params"] for e in result.evaluations) <= 1500


def test_a_latency_constraint_makes_latency_table_and_is_kept(net):
    # table latencies are timed per layer each time a table is built: a generous bound, the point is that it is known up front
    result = nas.search(net, searcher="random", budget=8, progress=False, constraints=["latency_ms<=1000"])
    assert len(result.evaluations) == 8
    assert all(0 < e.metrics["latency_ms"] <= 1000 for e in result.evaluations)
    with pytest.raises(InvalidConstraint, match="use latency='table'"):
        nas.search(net, searcher="random", budget=4, progress=False, constraints="latency_ms<=1", latency="measured")


def test_bit_metrics_are_analytic_costs_to_minimise():
    assert METRICS["model_bits"].direction == METRICS["bitops"].direction == "min"
    assert {"model_bits", "bitops"} <= set(of("analytic"))


# -- tangle -----------------------------------------------------------------------------------
def test_tangle_takes_one_upper_bound_as_its_budget_constraint_and_refuses_others(net):
    assert with_constraints({}, [Constraint.parse("params<=2000")]) == {"budget_constraint": "params<=2000"}
    assert with_constraints({"budget_constraint": "params<=2000"}, [Constraint.parse("params<=2000")])["budget_constraint"] == "params<=2000"
    with pytest.raises(InvalidConstraint, match="cannot be kept by searcher 'tangle': it takes one upper bound"):
        nas.search(net, searcher="tangle", budget=1, progress=False, constraints=["params<=2000", "macs<=2000"])
    with pytest.raises(InvalidConstraint, match="differs from searcher 'tangle''s budget_constraint"):
        nas.search(net, searcher="tangle", budget=1, progress=False, constraints=["params<=2000"],
                   searcher_kwargs={"budget_constraint": "params<=1000"})


# -- specs and the command line ----------------------------------------------------------------
TINY = {
    "name": "tiny",
    "space": {"family": "mlp", "args": {"depths": [1, 2], "widths": [16, 32], "ranks": [4, 8]}},
    "train": {"epochs": 1, "lr": 0.01},
    "search": {"searcher": "evolution", "budget": 10, "args": {"population_size": 8}, "constraints": ["params<=1000"]},
}


def test_a_spec_run_keeps_its_constraints_and_refuses_changing_them(tmp_path):
    run = run_spec(TINY, run=tmp_path, progress=False)
    assert max(e.metrics["params"] for e in stored(tmp_path)) <= 1000
    assert [str(c) for c in run.constraints] == ["params<=1000"]
    assert [str(c) for c in load_run(tmp_path).constraints] == ["params<=1000"]
    assert load_run(tmp_path).front == run.front
    with pytest.raises(nas.runs.RunError, match=r"search\.constraints"):
        run_spec(TINY, run=tmp_path, progress=False, constraints=["params<=900"])


def test_a_spec_gives_its_constraints_to_a_searcher_that_needs_a_budget(tmp_path):
    spec = {**TINY, "search": {"searcher": "evopress", "budget": 6, "constraints": ["params<=1000"], "args": {"tolerance": 0.5}}}
    run_spec(spec, run=tmp_path, progress=False)
    evaluations = stored(tmp_path)
    assert evaluations and max(e.metrics["params"] for e in evaluations) <= 1000


@pytest.mark.parametrize("bad, message", [
    (["flops<=3"], r"^search\.constraints: The 'constraints' parameter has 'flops<=3' on unknown metric 'flops'"),
    (["params<=3"], r"^search\.constraints: The constraint 'params<=3' cannot be met"),
    (["params=<3"], r"^search\.constraints: Cannot parse the constraint 'params=<3'"),
    ([3], r"^search\.constraints must be a list of strings, got \[3\]$"),
])
def test_bad_spec_constraints_name_the_key_before_anything_is_written(tmp_path, bad, message):
    spec = {**TINY, "search": {**TINY["search"], "constraints": bad}}
    with pytest.raises(SpecError, match=message):
        run_spec(spec, run=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def cli(argv):
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_the_command_line_adds_its_constraints_to_the_specs(tmp_path):
    (tmp_path / "tiny.toml").write_text(dumps_toml(TINY))
    run = tmp_path / "run"
    code, out, _ = cli(["search", "--spec", str(tmp_path / "tiny.toml"), "--run", str(run), "--quiet", "--no-report",
                        "--constraint", "macs<=1000", "--constraint", "params<=950,macs<=990"])
    assert code == 0
    assert "constraints: params<=1000, macs<=1000, params<=950, macs<=990" in out
    assert load_run(run).spec["search.constraints"] == ["params<=1000", "macs<=1000", "params<=950", "macs<=990"]
    assert all(e.metrics["params"] <= 950 and e.metrics["macs"] <= 990 for e in stored(run))


@pytest.mark.parametrize("value, message", [
    ("flops<=3", "nas: error: --constraint: The 'constraints' parameter has 'flops<=3' on unknown metric 'flops'"),
    ("params<=3", "nas: error: --constraint: The constraint 'params<=3' cannot be met: params ranges from"),
])
def test_a_bad_command_line_constraint_exits_2_with_one_line_and_writes_nothing(tmp_path, value, message):
    run = tmp_path / "run"
    code, _, err = cli(["search", "--run", str(run), "--quiet", "--epochs", "1", "--constraint", value])
    assert code == 2
    assert err.startswith(message) and len(err.strip().splitlines()) == 1
    assert not run.exists()
