"""Searchers: valid and never repeated proposals, resume, exhaustion, operators, and search quality."""

from __future__ import annotations

import doctest
import functools
import math
import zlib

import numpy as np
import pytest

import nas.searchers
from nas.evaluation import Evaluation
from nas.pareto import MissingMetric, hypervolume, non_dominated_sort
from nas.searchers import GuidedSearcher, OptunaSearcher, RandomSearcher, crossover, mutate
from nas.searchers._operators import best_spread, first_front
from nas.space import Choice, SearchSpace

OBJECTIVES = ["accuracy:max", "params:min"]
OPS = ("conv", "sep", "mbconv")


# -- a synthetic two-objective problem on a conditional space ---------------------------
def make_space() -> SearchSpace:
    """depth 1..3, per-block width and kernel active only up to the depth, and a global op: 5,652 configs."""
    dims = [Choice("depth", [1, 2, 3]), Choice("op", list(OPS))]
    for i in range(3):
        when = ("depth", [d for d in (1, 2, 3) if d > i])
        dims += [Choice(f"blocks.{i}.width", [16, 32, 64, 128], when=when), Choice(f"blocks.{i}.kernel", [3, 5, 7], when=when)]
    return SearchSpace(dims)


def params(config) -> dict[str, float]:
    """A params-like analytic cost."""
    total = 1000.0
    for i in range(config["depth"]):
        w, k = config[f"blocks.{i}.width"], config[f"blocks.{i}.kernel"]
        total += {"conv": w * w * k * k / 4, "sep": w * k * k + w * w, "mbconv": 3 * w * w + 6 * w * k * k}[config["op"]]
    return {"params": total}


def accuracy(config) -> float:
    """An accuracy-like score: saturating in capacity, kernel 5 best, op bonus, small fixed 'noise'."""
    capacity = 0.0
    for i in range(config["depth"]):
        w, k = config[f"blocks.{i}.width"], config[f"blocks.{i}.kernel"]
        capacity += math.sqrt(w / 16) * (1.0 + 0.25 * (k == 5) + 0.1 * (k == 7)) * (1 + 0.3 * i)
    bonus = {"conv": 0.0, "sep": -0.02, "mbconv": 0.03}[config["op"]]
    noise = (zlib.crc32(repr(sorted(config.items())).encode()) % 1000) / 1000 * 0.01
    return 0.4 + 0.5 * (1 - math.exp(-capacity / 4)) + bonus + noise


def evaluate(configs, with_params: bool = True) -> list[Evaluation]:
    return [Evaluation(c, {"accuracy": accuracy(c), **(params(c) if with_params else {})}) for c in configs]


SPACE = make_space()

# every searcher, kept cheap (the GP samplers of Optuna are slow, so not every test runs them)
SEARCHERS = {
    "random": ("random", {}),
    "evolution": ("evolution", {"population_size": 8}),
    "guided": ("guided", {"n_init": 8}),
    "guided-evolved": ("guided", {"n_init": 8, "enumerate_limit": 100, "generations": 5, "population_size": 30}),
    "optuna-tpe": ("optuna", {"sampler": "tpe"}),
    "optuna-nsga2": ("optuna", {"sampler": "nsga2", "sampler_kwargs": {"population_size": 8}}),
    "optuna-nsga3": ("optuna", {"sampler": "nsga3", "sampler_kwargs": {"population_size": 8}}),
    "optuna-qmc": ("optuna", {"sampler": "qmc"}),
    "optuna-random": ("optuna", {"sampler": "random"}),
}


def build(label: str, space: SearchSpace = SPACE, seed: int = 0, **extra):
    name, kwargs = SEARCHERS[label]
    return nas.searchers.get(name, space, OBJECTIVES, seed=seed, cost=params, **{**kwargs, **extra})


def drive(searcher, rounds: int, batch: int, seen: set[str] | None = None) -> list[Evaluation]:
    """ask/tell rounds; asserts every proposal is valid and new (nor told, nor pending, nor in `seen`)."""
    seen = set() if seen is None else seen
    space = searcher.space
    told = []
    for _ in range(rounds):
        configs = searcher.ask(batch)
        for config in configs:
            assert space.validate(config) == config
            key = space.key(config)
            assert key not in seen, f"{type(searcher).__name__} proposed {config} twice"
            seen.add(key)
        evaluations = evaluate(configs)
        searcher.tell(evaluations)
        told += evaluations
    return told


# -- protocol ------------------------------------------------------------------------------
def test_registry_lists_searchers_and_rejects_unknown_names_and_arguments():
    assert nas.searchers.names() == ["dp", "evolution", "evopress", "guided", "optuna", "random"]
    with pytest.raises(ValueError, match="known searchers: dp, evolution, evopress, guided, optuna, random"):
        nas.searchers.get("annealing", SPACE, OBJECTIVES)
    with pytest.raises(TypeError, match="no parameter 'populaton_size'.*population_size"):
        nas.searchers.get("evolution", SPACE, OBJECTIVES, populaton_size=10)
    with pytest.raises(ValueError, match="'population_size'"):
        nas.searchers.get("evolution", SPACE, OBJECTIVES, population_size=1)
    with pytest.raises(ValueError, match="'sampler'.*'tpe'"):
        nas.searchers.get("optuna", SPACE, OBJECTIVES, sampler="bayes")
    with pytest.raises(TypeError, match="TPESampler has no parameter 'popsize'"):
        nas.searchers.get("optuna", SPACE, OBJECTIVES, sampler_kwargs={"popsize": 3})
    with pytest.raises(ValueError, match="'predictor'"):
        nas.searchers.get("guided", SPACE, OBJECTIVES, predictor=3)
    with pytest.raises(ValueError, match="unknown predictor 'oracle'"):
        nas.searchers.get("guided", SPACE, OBJECTIVES, predictor="oracle")
    searcher = nas.searchers.get("random", SPACE, "accuracy, params")
    assert [str(o) for o in searcher.objectives] == OBJECTIVES
    with pytest.raises(ValueError, match="'n'"):
        searcher.ask(-1)
    assert searcher.ask(0) == []
    with pytest.raises(TypeError, match="Evaluation"):
        searcher.tell([{"depth": 1}])


@pytest.mark.parametrize("label", list(SEARCHERS))
def test_every_searcher_proposes_only_valid_configs_never_seen_or_pending(label):
    searcher = build(label)
    seen: set[str] = set()
    # two asks before a tell: the second must avoid the pending configs of the first
    first, second = searcher.ask(6), searcher.ask(6)
    for config in first + second:
        key = SPACE.key(SPACE.validate(config))
        assert key not in seen
        seen.add(key)
    searcher.tell(evaluate(first + second))
    drive(searcher, rounds=6, batch=8, seen=seen)
    assert len(searcher.evaluations) == len(seen) == 60


@pytest.mark.parametrize("label", list(SEARCHERS))
def test_a_new_searcher_told_the_stored_evaluations_continues_without_duplicates(label):
    stored = drive(build(label), rounds=3, batch=8)
    resumed = build(label)
    resumed.tell(stored)
    seen = {SPACE.key(ev.config) for ev in stored}
    drive(resumed, rounds=3, batch=8, seen=seen)
    assert len(seen) == 48


@pytest.mark.parametrize("label", ["random", "evolution", "guided", "guided-evolved"])
def test_resume_continues_exactly_as_the_uninterrupted_run(label):
    whole = build(label, seed=3)
    drive(whole, rounds=4, batch=8)
    first = build(label, seed=3)
    stored = drive(first, rounds=2, batch=8)
    resumed = build(label, seed=3)
    resumed.tell(stored)
    drive(resumed, rounds=2, batch=8)
    assert [ev.config for ev in resumed.evaluations] == [ev.config for ev in whole.evaluations]


def test_optuna_study_is_rebuilt_from_stored_evaluations_with_failures_as_fail_trials():
    import optuna

    stored = evaluate([SPACE.sample(i) for i in range(5)])
    stored.append(Evaluation({"depth": 1, "op": "sep", "blocks.0.width": 16, "blocks.0.kernel": 3}, status="failed", error="OOM"))
    searcher = OptunaSearcher(SPACE, OBJECTIVES, seed=0)
    searcher.tell(stored)
    trials = searcher.study.trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 5 + [optuna.trial.TrialState.FAIL]
    assert trials[0].values == [stored[0].metrics["accuracy"], stored[0].metrics["params"]]
    assert trials[0].params == stored[0].config
    assert searcher.study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    configs = searcher.ask(4)
    assert not {SPACE.key(c) for c in configs} & {SPACE.key(ev.config) for ev in stored}
    searcher.tell(evaluate(configs))
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in searcher.study.trials) >= 9


@pytest.mark.parametrize("label", list(SEARCHERS))
def test_a_tiny_space_is_used_up_without_looping_forever(label):
    tiny = SearchSpace([Choice("depth", [1, 2]), Choice("op", list(OPS)),
                        Choice("blocks.0.width", [16], when=("depth", [1, 2])),
                        Choice("blocks.0.kernel", [3], when=("depth", [1, 2])),
                        Choice("blocks.1.width", [16, 32], when=("depth", [2])),
                        Choice("blocks.1.kernel", [3], when=("depth", [2]))])
    assert tiny.size() == 9
    searcher = build(label, space=tiny, n_init=2) if label.startswith("guided") else build(label, space=tiny)
    first = searcher.ask(4)
    searcher.tell(evaluate(first))
    pending = searcher.ask(4)
    rest = searcher.ask(4)  # only one is left besides the pending ones
    assert len(rest) == 1 and searcher.ask(3) == []
    searcher.tell(evaluate(pending + rest))
    assert searcher.ask(5) == [] and searcher.remaining() == 0
    assert {tiny.key(c) for c in first + pending + rest} == {tiny.key(c) for c in tiny.enumerate()}


@pytest.mark.parametrize("label", ["random", "evolution", "guided", "optuna-tpe", "optuna-nsga2"])
def test_same_seed_gives_the_same_proposals(label):
    runs = [drive(build(label, seed=7), rounds=3, batch=8) for _ in range(2)]
    assert [ev.config for ev in runs[0]] == [ev.config for ev in runs[1]]
    other = drive(build(label, seed=8), rounds=1, batch=8)
    assert [ev.config for ev in other] != [ev.config for ev in runs[0][:8]]


@pytest.mark.parametrize("label", ["random", "evolution", "guided", "optuna-tpe"])
def test_failed_evaluations_are_not_proposed_again_and_do_not_stop_the_search(label):
    searcher = build(label)
    seen: set[str] = set()
    for _ in range(5):
        configs = searcher.ask(8)
        keys = {SPACE.key(c) for c in configs}
        assert not keys & seen
        seen |= keys
        evaluations = evaluate(configs)
        for ev in evaluations[::3]:
            ev.status, ev.error, ev.metrics = "failed", "diverged", {}
        searcher.tell(evaluations)
    assert len(seen) == 40


def test_missing_objectives_come_from_cost_and_are_never_predicted():
    searcher = GuidedSearcher(SPACE, OBJECTIVES, n_init=8, cost=params, seed=0)
    for _ in range(3):
        searcher.tell(evaluate(searcher.ask(8), with_params=False))
    assert set(searcher.models_) == {"accuracy"}
    configs = [SPACE.sample(i) for i in range(5)]
    assert np.allclose(searcher.score(configs)[:, 1], [params(c)["params"] for c in configs])
    without_cost = RandomSearcher(SPACE, OBJECTIVES)
    with pytest.raises(MissingMetric, match="'params'"):
        without_cost.objective_values(evaluate(configs, with_params=False))


# -- operators ---------------------------------------------------------------------------
def test_mutation_and_crossover_keep_conditions_and_take_parent_values():
    rng = np.random.default_rng(0)
    for i in range(300):
        a, b = SPACE.sample(rng), SPACE.sample(rng)
        child = crossover(SPACE, a, b, rng)
        assert SPACE.validate(child) == child
        for name, value in child.items():
            if name in a and name in b:
                assert value in (a[name], b[name])
            elif name in a or name in b:
                assert value == a.get(name, b.get(name))
        mutant = mutate(SPACE, a, rng, rate=[None, 0.3, 1.0][i % 3])
        assert SPACE.validate(mutant) == mutant
        assert mutant != a
    # a depth mutation drops the inactive blocks and fills the newly active ones
    deep = {"depth": 3, "op": "sep", **{f"blocks.{i}.{d}": v for i in range(3) for d, v in (("width", 32), ("kernel", 5))}}
    shallow = [mutate(SPACE, deep, np.random.default_rng(s), rate=1.0) for s in range(50)]
    assert all(SPACE.contains(c) for c in shallow)
    assert any(c["depth"] < 3 and "blocks.2.width" not in c for c in shallow)
    grown = [crossover(SPACE, {"depth": 1, "op": "conv", "blocks.0.width": 16, "blocks.0.kernel": 3}, deep, np.random.default_rng(s)) for s in range(50)]
    assert any(c["depth"] == 3 and c["blocks.2.width"] == 32 for c in grown)


def test_first_front_and_best_spread_agree_with_the_non_dominated_sort():
    rng = np.random.default_rng(0)
    for _ in range(200):
        values = rng.integers(0, 6, size=(int(rng.integers(1, 80)), int(rng.integers(2, 4)))).astype(float)
        expected = sorted(non_dominated_sort(values)[0].tolist())
        assert sorted(first_front(values).tolist()) == expected
        assert sorted(first_front(values, chunk=7).tolist()) == expected
        k = int(rng.integers(1, len(values) + 1))
        chosen = best_spread(values, k)
        assert len(chosen) == len(set(chosen.tolist())) == k
        # whole better fronts come before any member of a worse one
        rank = np.empty(len(values), dtype=int)
        for r, front in enumerate(non_dominated_sort(values)):
            rank[front] = r
        assert rank[chosen].max() <= np.sort(rank)[k - 1]


# -- search quality ------------------------------------------------------------------------
@functools.cache
def _reference_and_best() -> tuple[dict[str, float], float]:
    """The nadir of the whole space as reference point, and the whole space's hypervolume."""
    everything = evaluate(list(SPACE.enumerate()))
    reference = {
        "accuracy": min(e.metrics["accuracy"] for e in everything),
        "params": max(e.metrics["params"] for e in everything),
    }
    return reference, hypervolume(everything, reference, OBJECTIVES)


def _relative_hypervolume(label: str, budget: int, batch: int, seed: int, **extra) -> float:
    """Hypervolume reached with `budget` evaluations, as a fraction of the best possible."""
    reference, best = _reference_and_best()
    evaluations = drive(build(label, seed=seed, **extra), rounds=budget // batch, batch=batch)
    return hypervolume(evaluations, reference, OBJECTIVES) / best


def test_guided_and_evolution_reach_a_larger_hypervolume_than_random():
    seeds = range(3)
    random_60 = np.mean([_relative_hypervolume("random", 60, 10, s) for s in seeds])
    guided_60 = np.mean([_relative_hypervolume("guided", 60, 10, s, n_init=10) for s in seeds])
    assert guided_60 > random_60 + 0.02
    random_150 = np.mean([_relative_hypervolume("random", 150, 10, s) for s in seeds])
    evolution_150 = np.mean([_relative_hypervolume("evolution", 150, 10, s, population_size=10) for s in seeds])
    assert evolution_150 > random_150 + 0.005


# -- docs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("module", ["_base", "_random", "_evolution", "_optuna", "_guided", "_operators", "__init__"])
def test_docstring_examples_run(module):
    import importlib

    name = "nas.searchers" if module == "__init__" else f"nas.searchers.{module}"
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_optuna_gp_sampler_and_sampler_instances_work_on_the_conditional_space():
    import optuna

    gp = OptunaSearcher(SPACE, OBJECTIVES, sampler="gp", sampler_kwargs={"n_startup_trials": 2}, seed=0)
    drive(gp, rounds=2, batch=2)  # Optuna's GP is slow on many categorical dimensions: two GP asks
    own = OptunaSearcher(SPACE, OBJECTIVES, sampler=optuna.samplers.TPESampler(seed=1, n_startup_trials=4))
    drive(own, rounds=3, batch=4)
    with pytest.raises(ValueError, match="'sampler_kwargs'"):
        OptunaSearcher(SPACE, OBJECTIVES, sampler=optuna.samplers.RandomSampler(), sampler_kwargs={"seed": 1})


def test_guided_takes_a_predictor_by_name_auto_or_instance():
    import predictors

    for predictor, kwargs in [
        ("forest", {"n_estimators": 20}),
        ("auto", {"candidates": ["ridge", "forest"], "folds": 3}),
        (predictors.RidgePredictor(SPACE), None),
    ]:
        searcher = GuidedSearcher(SPACE, OBJECTIVES, predictor=predictor, predictor_kwargs=kwargs, n_init=6, cost=params, seed=0)
        drive(searcher, rounds=3, batch=6)
        assert set(searcher.models_) == {"accuracy"}


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_optuna_sampler_stuck_on_seen_configs_falls_back_to_unseen_neighbours():
    import optuna

    stuck = {"depth": 2, "op": "sep", "blocks.0.width": 32, "blocks.0.kernel": 5, "blocks.1.width": 64, "blocks.1.kernel": 3}
    sampler = optuna.samplers.PartialFixedSampler(stuck, optuna.samplers.RandomSampler(seed=0))
    searcher = OptunaSearcher(SPACE, OBJECTIVES, sampler=sampler, seed=0)
    told = drive(searcher, rounds=4, batch=5)
    assert told[0].config == stuck
    # every evaluation is a COMPLETE trial whose params are exactly its config
    complete = {SPACE.key(t.params): t.values for t in searcher.study.trials if t.state.name == "COMPLETE"}
    for ev in told:
        assert complete[SPACE.key(ev.config)] == [ev.metrics["accuracy"], ev.metrics["params"]]
    # proposals after the first are neighbours of the stuck config, not random draws
    assert sum(ev.config["depth"] == 2 for ev in told) >= 10
