"""Hard constraints in every searcher: configs that break a cost constraint are never asked."""

from __future__ import annotations

import numpy as np
import pytest

import nas.searchers
from nas.pareto import Constraint, InvalidConstraint
from nas.searchers import EvolutionSearcher, OptunaSearcher
from nas.searchers._base import constraint_violation, parse_constraints
from tests.test_searchers import OBJECTIVES, SEARCHERS, SPACE, build, evaluate, params

BOUND = 6000.0  # about a tenth of the space's configs have at most this many params


@pytest.mark.parametrize("label", list(SEARCHERS))
def test_no_searcher_asks_a_config_that_breaks_a_constraint(label):
    searcher = build(label, constraints=[f"params<={BOUND:g}"])
    asked = []
    for _ in range(5):
        configs = searcher.ask(8)
        asked += configs
        searcher.tell(evaluate(configs))
    assert len(asked) == 40
    assert max(params(c)["params"] for c in asked) <= BOUND


def test_constraints_do_not_change_an_unconstrained_search():
    a, b = build("evolution"), build("evolution", constraints=["params<=1e9"])
    for _ in range(3):
        ca, cb = a.ask(8), b.ask(8)
        assert ca == cb
        a.tell(evaluate(ca))
        b.tell(evaluate(cb))


def test_constraints_parse_from_text_lists_and_objects():
    assert [str(c) for c in parse_constraints("params<=50000, latency_ms<=2")] == ["params<=50000", "latency_ms<=2"]
    assert parse_constraints([Constraint.parse("macs<10")])[0].op == "<"
    assert parse_constraints(None) == []


def test_violation_is_relative_to_the_bound_and_positive_only_when_broken():
    assert constraint_violation(Constraint.parse("params<=100"), 150) == pytest.approx(0.5)
    assert constraint_violation(Constraint.parse("params<=100"), 50) == pytest.approx(-0.5)
    assert constraint_violation(Constraint.parse("params>=100"), 50) == pytest.approx(0.5)
    assert constraint_violation(Constraint.parse("params<100"), 100) > 0


@pytest.mark.parametrize("name", sorted(set(nas.searchers.names()) - {"evopress", "dp"}))
def test_an_unknown_metric_or_an_unsatisfiable_budget_is_one_clear_line_up_front(name):
    kwargs = {"population_size": 8} if name == "evolution" else {}
    with pytest.raises(InvalidConstraint, match=r"^The constraint 'flops<=3' is on metric 'flops', which is not known before evaluation; constrain one of the cost metrics \['params'\]\.$"):
        nas.searchers.get(name, SPACE, OBJECTIVES, cost=params, constraints=["flops<=3"], **kwargs)
    with pytest.raises(InvalidConstraint, match=r"^The constraint 'params<=100' cannot be met: params ranges from 1576 \(smallest subnet\) to 261352 \(largest subnet\)\.$"):
        nas.searchers.get(name, SPACE, OBJECTIVES, cost=params, constraints=["params<=100"], **kwargs)
    with pytest.raises(InvalidConstraint, match="needs a 'cost' function"):
        nas.searchers.get(name, SPACE, OBJECTIVES, constraints=["params<=5000"], **kwargs)
    with pytest.raises(InvalidConstraint, match="Cannot parse the constraint 'params=<5'"):
        nas.searchers.get(name, SPACE, OBJECTIVES, cost=params, constraints=["params=<5"], **kwargs)


def test_evolution_ranks_told_configs_that_break_the_budget_behind_every_feasible_one():
    """Deb's rule: a run resumed under a tighter budget keeps its feasible configs, then the least violating."""
    rng = np.random.default_rng(0)
    stored = evaluate([SPACE.sample(rng) for _ in range(40)])
    searcher = EvolutionSearcher(SPACE, OBJECTIVES, population_size=8, cost=params, constraints=["params<=20000"], seed=0)
    searcher.tell(stored)
    violation = np.array([searcher.violation(c) for c in searcher.population])
    feasible = sum(params(e.config)["params"] <= 20000 for e in stored[:40])
    kept = min(8, feasible)
    assert (violation[:kept] == 0).all() and (violation[kept:] > 0).all()
    assert list(violation[kept:]) == sorted(violation[kept:])
    broken = violation > 0
    if broken.any() and (~broken).any():
        assert searcher._rank[broken].min() > searcher._rank[~broken].max()
    for config in searcher.ask(8):
        assert params(config)["params"] <= 20000


def test_optuna_trials_carry_their_constraint_values():
    searcher = OptunaSearcher(SPACE, OBJECTIVES, sampler="nsga2", sampler_kwargs={"population_size": 8}, cost=params,
                              constraints=[f"params<={BOUND:g}"], seed=0)
    for _ in range(4):
        configs = searcher.ask(8)
        searcher.tell(evaluate(configs))
    trials = searcher.study.trials
    assert all(f"params<={BOUND:g}" in t.constraints for t in trials)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    told = {SPACE.key(e.config) for e in searcher.evaluations}
    for t in complete:
        feasible = t.constraints[f"params<={BOUND:g}"] <= 0
        assert feasible == (SPACE.key(SPACE.validate(t.params)) in told)


def test_optuna_adds_told_configs_it_did_not_ask_with_their_constraint_values():
    searcher = OptunaSearcher(SPACE, OBJECTIVES, sampler="tpe", cost=params, constraints=[f"params<={BOUND:g}"], seed=0)
    searcher.tell(evaluate([SPACE.largest()]))
    assert searcher.study.trials[0].constraints[f"params<={BOUND:g}"] > 0
