"""Per-layer allocation: evopress and dp against brute force on synthetic objectives (the methods' own claims)."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nas.searchers
from nas.evaluation import Evaluation
from nas.pareto import InvalidConstraint
from nas.searchers import DPSearcher, EvoPressSearcher
from nas.space import Choice, SearchSpace

LAYERS, LEVELS, BUDGET = 8, (1, 2, 3, 4, 5), 24
SPACE = SearchSpace([Choice(f"l{i}", LEVELS) for i in range(LAYERS)])
_rng = np.random.default_rng(1)
SENSITIVITY = _rng.uniform(0.5, 2.0, LAYERS)
RATE = _rng.uniform(0.3, 1.2, LAYERS)
WEIGHTS = _rng.integers(1, 4, LAYERS)  # per-layer cost of one level step, for the unequal-cost case
PAIR = 0.08
GRID = np.array(list(itertools.product(LEVELS, repeat=LAYERS)))  # all 390,625 configs


def levels(config) -> np.ndarray:
    return np.array([config[f"l{i}"] for i in range(LAYERS)])


def separable(v: np.ndarray) -> np.ndarray:
    """A sum of per-layer terms, each increasing and concave in the layer's level."""
    return -(SENSITIVITY * np.exp(-RATE * v)).sum(axis=-1)


def pairwise(v: np.ndarray) -> np.ndarray:
    """`separable` minus a penalty for compressing neighbouring layers together (not additive)."""
    squeeze = 5 - v
    return separable(v) - PAIR * (squeeze[..., :-1] * squeeze[..., 1:]).sum(axis=-1)


def params(config) -> dict[str, float]:
    return {"params": float(levels(config).sum())}


def weighted(config) -> dict[str, float]:
    return {"params": float((WEIGHTS * levels(config)).sum())}


def brute_force(objective, budget=BUDGET, costs=None):
    cost = GRID.sum(axis=1) if costs is None else GRID @ costs
    values = objective(GRID)
    feasible = np.flatnonzero(cost <= budget)
    best = feasible[np.argmax(values[feasible])]
    return dict(zip(SPACE.names(), GRID[best].tolist())), float(values[best])


def drive(searcher, objective, rounds: int, n: int) -> list[Evaluation]:
    """The real ask/tell protocol against a plain function of the config."""
    for _ in range(rounds):
        configs = searcher.ask(n)
        if not configs:
            break
        searcher.tell([Evaluation(c, {"accuracy": float(objective(levels(c)))}) for c in configs])
    return searcher.evaluations


def best_within(evaluations, cost=params, budget=BUDGET) -> Evaluation:
    return max((e for e in evaluations if cost(e.config)["params"] <= budget), key=lambda e: e.metrics["accuracy"])


def noisy_screen(objective):
    """Scores at a fidelity: the objective plus a fixed per-config error that shrinks as fidelity grows."""
    def screen(configs, fidelity):
        out = []
        for c in configs:
            noise = (zlib.crc32(repr(sorted(c.items())).encode()) % 1000 / 1000 - 0.5) * 0.05 * (1 - fidelity)
            out.append(Evaluation(c, {"accuracy": float(objective(levels(c))) + noise}))
        calls.append((fidelity, len(configs)))
        return out

    calls: list[tuple[float, int]] = []
    screen.calls = calls
    return screen


# -- the separable case: both find the optimum ---------------------------------------------
def test_dp_finds_the_brute_force_optimum_of_a_separable_objective():
    optimum, value = brute_force(separable)
    searcher = DPSearcher(SPACE, ["accuracy:max"], cost=params, constraints=[f"params<={BUDGET}"], seed=0)
    drive(searcher, separable, rounds=2, n=len(searcher.tables))
    best = best_within(searcher.evaluations)
    assert best.config == optimum and best.metrics["accuracy"] == pytest.approx(value)
    assert len(searcher.tables) == 1 + LAYERS * (len(LEVELS) - 1)
    first = searcher.additivity[0]  # additive objective: the tables predict it exactly
    assert first["predicted"] == pytest.approx(first["measured"], abs=1e-12)


def test_dp_solves_the_knapsack_when_layers_cost_differently():
    budget = 40
    optimum, value = brute_force(separable, budget, WEIGHTS)
    searcher = DPSearcher(SPACE, ["accuracy:max"], cost=weighted, constraints=[f"params<={budget}"], seed=0)
    drive(searcher, separable, rounds=2, n=len(searcher.tables))
    solution = searcher.evaluations[len(searcher.tables)]  # the first proposal after the tables
    assert solution.config == optimum and solution.metrics["accuracy"] == pytest.approx(value)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evopress_finds_the_brute_force_optimum_of_a_separable_objective(seed):
    optimum, value = brute_force(separable)
    searcher = EvoPressSearcher(SPACE, ["accuracy:max"], cost=params, constraints=[f"params<={BUDGET}"], tolerance=0.0, seed=seed)
    drive(searcher, separable, rounds=100, n=4)
    assert searcher.parent == optimum and searcher.parent_value == pytest.approx(value)


# -- interactions: the additive solution falls short, evopress does not --------------------
def test_on_pairwise_interactions_the_additive_solution_is_suboptimal_and_evopress_matches_brute_force():
    optimum, value = brute_force(pairwise)
    dp = DPSearcher(SPACE, ["accuracy:max"], cost=params, constraints=[f"params<={BUDGET}"], seed=0)
    drive(dp, pairwise, rounds=2, n=len(dp.tables))
    additive = dp.evaluations[len(dp.tables)]
    assert additive.metrics["accuracy"] < value - 0.1
    assert dp.additivity[0]["measured"] < dp.additivity[0]["predicted"] - 0.1  # and it says so

    screen = noisy_screen(pairwise)
    evo = EvoPressSearcher(SPACE, ["accuracy:max"], cost=params, constraints=[f"params<={BUDGET}"], tolerance=0.0,
                           screen=screen, offspring=16, seed=0)
    drive(evo, pairwise, rounds=100, n=2)
    assert evo.parent == optimum and evo.parent_value == pytest.approx(value)
    # multi-step selection: fidelities grow, candidates shrink, and screening costs far less than evaluating them all
    per_generation = screen.calls[:2]
    assert [f for f, _ in per_generation] == [0.1, 0.3] and per_generation[0][1] > per_generation[1][1] > 2
    screened_configs = sum(k for _, k in screen.calls)
    assert evo.screened < 0.25 * screened_configs


# -- the budget is kept by every mutation ---------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), budget=st.integers(12, 36))
def test_every_level_switch_keeps_the_budget_exactly_when_steps_cost_the_same(seed, budget):
    searcher = EvoPressSearcher(SPACE, ["accuracy:max"], cost=params, constraints=[f"params<={budget}"], tolerance=0.0, seed=seed)
    parent = searcher.start()
    assert parent is not None and params(parent)["params"] == budget
    for _ in range(10):
        child = searcher.level_switch(parent)
        assert child is not None and child != parent
        assert params(child)["params"] == budget
        parent = child


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), budget=st.integers(20, 70), tolerance=st.sampled_from([0.05, 0.1, 0.2]))
def test_every_level_switch_keeps_the_budget_within_the_tolerance_when_steps_differ(seed, budget, tolerance):
    searcher = EvoPressSearcher(SPACE, ["accuracy:max"], cost=weighted, constraints=[f"params<={budget}"],
                                tolerance=tolerance, seed=seed)
    parent = searcher.start()
    assert parent is not None
    for _ in range(10):
        child = searcher.level_switch(parent)
        if child is None:
            break
        assert (1 - tolerance) * budget - 1e-9 <= weighted(child)["params"] <= budget
        parent = child


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), budget=st.integers(12, 36))
def test_every_level_jump_keeps_the_budget_exactly_when_steps_cost_the_same(seed, budget):
    searcher = EvoPressSearcher(SPACE, ["accuracy:max"], cost=params, constraints=[f"params<={budget}"], tolerance=0.0,
                                jump=1.0, seed=seed)
    parent = searcher.start()
    assert parent is not None
    for _ in range(10):
        child = searcher.mutate(parent)  # jump=1: always a level jump
        assert child is not None and child != parent
        assert params(child)["params"] == budget
        parent = child


def capped(config) -> dict[str, float]:
    """Levels 4 and 5 cost the same (as a low-rank layer at half rank costs as much as the dense one)."""
    return {"params": float(np.minimum(levels(config), 4).sum())}


def test_level_steps_pass_over_a_level_that_costs_as_much_as_a_larger_one():
    searcher = EvoPressSearcher(SPACE, ["accuracy:max"], cost=capped, constraints=["params<=24"], tolerance=0.0, seed=0)
    assert all([SPACE[n].values[j] for j in searcher.useful[n]] == [1, 2, 3, 5] for n in SPACE.names())
    parent = {f"l{i}": v for i, v in enumerate([5, 5, 5, 3, 2, 1, 2, 1])}  # 24
    assert searcher._step(parent, "l0", -1)["l0"] == 3 and searcher._step(parent, "l3", 1)["l3"] == 5
    for _ in range(30):
        child = searcher.level_switch(parent)
        assert child is not None and capped(child)["params"] == 24 and 4 not in levels(child)
        parent = child
    plain = EvoPressSearcher(SPACE, ["accuracy:max"], cost=params, constraints=["params<=24"], seed=0)
    assert all(plain.useful[n] == [0, 1, 2, 3, 4] for n in SPACE.names())  # costs that grow: every level is one


def test_every_evopress_proposal_spends_the_budget():
    searcher = EvoPressSearcher(SPACE, ["accuracy:max"], cost=weighted, constraints=["params<=40"], tolerance=0.1, seed=3)
    evaluations = drive(searcher, pairwise, rounds=20, n=4)
    spent = [weighted(e.config)["params"] for e in evaluations]
    assert len(spent) == 80 and min(spent) >= 36 and max(spent) <= 40


def test_evopress_starts_from_the_initial_configs_and_resumes_exactly():
    uniform = {f"l{i}": 3 for i in range(LAYERS)}
    kwargs = {"cost": params, "constraints": [f"params<={BUDGET}"], "tolerance": 0.0, "initial": [uniform], "seed": 5}
    a = EvoPressSearcher(SPACE, ["accuracy:max"], **kwargs)
    drive(a, pairwise, rounds=6, n=3)
    assert a.evaluations[0].config == uniform
    b = EvoPressSearcher(SPACE, ["accuracy:max"], **kwargs)
    b.resume(a.evaluations, list(range(3, len(a.evaluations) + 1, 3)))
    assert a.ask(3) == b.ask(3)


# -- seeds: evopress never ends worse than them ------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_evopress_seeded_with_a_solution_never_ends_worse_than_the_seed_on_its_selection_data(seed):
    dp = DPSearcher(SPACE, ["accuracy:max"], cost=params, constraints=[f"params<={BUDGET}"], seed=0)
    drive(dp, pairwise, rounds=2, n=len(dp.tables))
    solution = dp.evaluations[len(dp.tables)]
    uniform = {f"l{i}": 3 for i in range(LAYERS)}
    evo = EvoPressSearcher(SPACE, ["accuracy:max"], cost=params, constraints=[f"params<={BUDGET}"], tolerance=0.0,
                           screen=noisy_screen(pairwise), offspring=8, initial=[uniform, solution.config], seed=seed)
    drive(evo, pairwise, rounds=8, n=1)
    assert [e.config for e in evo.evaluations[:2]] == [uniform, solution.config]  # every seed, one per ask
    assert evo.parent_value >= solution.metrics["accuracy"]
    assert best_within(evo.evaluations).metrics["accuracy"] >= solution.metrics["accuracy"]


def test_a_seed_that_spends_less_than_the_band_is_evaluated_and_kept_when_it_is_best():
    seed = {f"l{i}": 2 for i in range(LAYERS)}  # 16 of a budget of 24: below the band evopress's children keep to
    def peaked(v):
        return -np.abs(v - 2).sum(axis=-1)  # best where every layer sits at level 2: spending more hurts

    evo = EvoPressSearcher(SPACE, ["accuracy:max"], cost=params, constraints=[f"params<={BUDGET}"], tolerance=0.0,
                           initial=[seed], seed=0)
    evaluations = drive(evo, peaked, rounds=10, n=2)
    assert evaluations[0].config == seed and evo.parent == seed
    assert all(params(e.config)["params"] == BUDGET for e in evaluations[1:])  # the children spend the budget exactly


def test_evopress_counts_screening_in_full_evaluations_and_bounds_each_ask():
    screen = noisy_screen(pairwise)
    evo = EvoPressSearcher(SPACE, ["accuracy:max"], cost=params, constraints=[f"params<={BUDGET}"], tolerance=0.0,
                           screen=screen, offspring=16, fidelities=(0.1, 0.3), seed=0)
    limit = 30.0
    while evo.spent + evo.ask_cost(1) <= limit:
        bound, before = evo.ask_cost(1), evo.spent
        configs = evo.ask(1)
        evo.tell([Evaluation(c, {"accuracy": float(pairwise(levels(c)))}) for c in configs])
        assert evo.spent - before <= bound + 1e-12
    assert evo.spent <= limit and evo.spent == pytest.approx(len(evo.evaluations) + sum(f * k for f, k in screen.calls))
    assert evo.ask_cost(1) == pytest.approx(1 + 16 * 0.1 + 4 * 0.3)  # 16 children, 4 survive the first step, 1 the second


# -- restarts: a seed no child improves does not hold the rest of the evaluations -------------
TOP = {f"l{i}": 3 for i in range(LAYERS)}  # 24: the best config of `cliff`, a point no child improves
SECOND = {f"l{i}": v for i, v in enumerate([5, 1, 5, 1, 5, 1, 5, 1])}  # 24


def cliff(v: np.ndarray) -> np.ndarray:
    """Best at `TOP` (0), then `separable` pulled below it: every child of `TOP` is worse."""
    return np.where((v == 3).all(axis=-1), 0.0, separable(v) - 10)


def restarting(seed: int, patience: int = 3, **kwargs) -> EvoPressSearcher:
    return EvoPressSearcher(SPACE, ["accuracy:max"], cost=params, constraints=[f"params<={BUDGET}"], tolerance=0.0,
                            initial=[SECOND, TOP], patience=patience, seed=seed, **kwargs)


def test_after_patience_children_without_improvement_the_search_restarts_from_the_next_best_seed():
    evo = restarting(0, patience=3)
    drive(evo, cliff, rounds=2, n=1)  # the two seeds
    assert evo.parent == TOP and evo.restarts == []
    drive(evo, cliff, rounds=3, n=1)  # three children of TOP, none better
    assert evo.restarts == [5] and evo.parent == SECOND
    drive(evo, cliff, rounds=40, n=1)
    assert evo.best == TOP and evo.best_value == 0.0  # the answer is the best told config, over every chain
    assert best_within(evo.evaluations).config == TOP
    plain = EvoPressSearcher(SPACE, ["accuracy:max"], cost=params, constraints=[f"params<={BUDGET}"], tolerance=0.0,
                             initial=[SECOND, TOP], seed=0)
    drive(plain, cliff, rounds=45, n=1)
    assert plain.restarts == [] and plain.parent == TOP  # without patience: EvoPress's single chain


def test_once_every_seed_has_had_a_chain_a_restart_goes_back_to_the_best_told_config():
    evo = restarting(1, patience=2)
    drive(evo, cliff, rounds=2 + 2, n=1)  # seeds, then TOP's chain stalls: SECOND's chain
    assert evo.parent == SECOND or evo.parent_value > cliff(levels(SECOND))
    while len(evo.restarts) < 2:
        drive(evo, cliff, rounds=1, n=1)
    at = evo.restarts[1]
    assert evo.parent == evo.best == TOP and len(evo.evaluations) == at


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), patience=st.integers(1, 6))
def test_with_restarts_every_proposal_keeps_the_budget_and_the_best_is_never_worse_than_a_seed(seed, patience):
    evo = restarting(seed, patience=patience, screen=noisy_screen(cliff), offspring=8)
    drive(evo, cliff, rounds=30, n=1)
    assert all(params(e.config)["params"] == BUDGET for e in evo.evaluations)
    assert evo.best == TOP and evo.restarts  # TOP's chain cannot improve: it restarted


@pytest.mark.parametrize("seed", [0, 7])
def test_restarts_are_deterministic_per_seed_and_resume_exactly(seed):
    a, b = restarting(seed), restarting(seed)
    drive(a, cliff, rounds=20, n=2)
    drive(b, cliff, rounds=20, n=2)
    assert [e.config for e in a.evaluations] == [e.config for e in b.evaluations] and a.restarts == b.restarts
    c = restarting(seed)
    c.resume(a.evaluations, list(range(2, len(a.evaluations) + 1, 2)))
    assert (c.parent, c.restarts) == (a.parent, a.restarts) and a.ask(2) == c.ask(2)
    other = restarting(seed + 1)
    drive(other, cliff, rounds=20, n=2)
    assert [e.config for e in other.evaluations] != [e.config for e in a.evaluations]


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["evopress", "dp"])
def test_allocation_searchers_need_a_budget_and_a_fitness(name):
    with pytest.raises(InvalidConstraint, match="needs a budget"):
        nas.searchers.get(name, SPACE, ["accuracy:max"], cost=params, constraints=["params>=10"])
    with pytest.raises(ValueError, match="needs an objective that 'cost' does not give"):
        nas.searchers.get(name, SPACE, ["params:min"], cost=params, constraints=["params<=20"])
    with pytest.raises(InvalidConstraint, match="cannot be met: params ranges from 8"):
        nas.searchers.get(name, SPACE, ["accuracy:max"], cost=params, constraints=["params<=5"])


@pytest.mark.parametrize("jump", [-0.1, 1.5, True, "0.5"])
def test_evopress_says_when_jump_is_not_a_probability(jump):
    with pytest.raises(ValueError, match=r"The 'jump' parameter must be a probability in \[0, 1\], got"):
        EvoPressSearcher(SPACE, ["accuracy:max"], cost=params, constraints=[f"params<={BUDGET}"], jump=jump, seed=0)


def test_evopress_says_when_a_seed_breaks_the_constraints():
    with pytest.raises(ValueError, match=r"The 'initial' parameter has a config that breaks the constraints \['params<=24'\]"):
        EvoPressSearcher(SPACE, ["accuracy:max"], cost=params, constraints=[f"params<={BUDGET}"],
                         initial=[{f"l{i}": 5 for i in range(LAYERS)}], seed=0)


def test_evopress_says_when_no_config_fits_the_budget_band():
    searcher = EvoPressSearcher(SPACE, ["accuracy:max"], cost=weighted, constraints=["params<=40.5"], tolerance=0.0, seed=0)
    with pytest.raises(ValueError, match="found no config inside the budget"):
        searcher.ask(1)


@pytest.mark.parametrize("patience", [0, -1, 1.5, True, "3"])
def test_evopress_says_when_patience_is_not_a_positive_int(patience):
    with pytest.raises(ValueError, match=r"The 'patience' parameter must be None or an int >= 1, got"):
        EvoPressSearcher(SPACE, ["accuracy:max"], cost=params, constraints=[f"params<={BUDGET}"], patience=patience, seed=0)
