"""The guided searcher's expected-hypervolume-improvement acquisition: exact gains, lazy greedy batches, anchors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from nas.pareto import hypervolume
from nas.searchers import GuidedSearcher
from nas.searchers._guided import _expected_improvement
from nas.searchers._operators import first_front
from tests.test_searchers import OBJECTIVES, SPACE, evaluate, params


def _front(rng, n=12):
    points = rng.uniform(0, 10, size=(n, 2))
    return points[first_front(points)]


def test_expected_improvement_without_uncertainty_is_the_hypervolume_a_candidate_adds():
    rng = np.random.default_rng(0)
    front, ref = _front(rng), (11.0, 12.0)
    candidates = rng.uniform(0, 11, size=(50, 2))
    gains = _expected_improvement(front, candidates[:, 0], candidates[:, 1], np.zeros(50), *ref)
    before = hypervolume(front, ref)
    exact = [hypervolume(np.vstack([front, row]), ref) - before for row in candidates]
    np.testing.assert_allclose(gains, exact, atol=1e-9)
    assert (gains > 0).any() and (gains == 0).any()  # both kinds of candidate are in the draw


def test_expected_improvement_is_the_mean_added_hypervolume_over_the_predictive_normal():
    rng = np.random.default_rng(1)
    front, ref = _front(rng), (11.0, 12.0)
    before = hypervolume(front, ref)

    def weighted(a, c, mean, std):  # the area added by a candidate at (c, a), times the density of a
        return (hypervolume(np.vstack([front, [c, a]]), ref) - before) * stats.norm.pdf(a, mean, std)

    for c, mean, std in [(2.0, 5.0, 1.5), (6.0, 3.0, 0.4), (9.5, 8.0, 2.0)]:
        expected, _ = integrate.quad(weighted, mean - 8 * std, mean + 8 * std, args=(c, mean, std), points=list(front[:, 1]), limit=200)
        gain = _expected_improvement(front, np.array([c]), np.array([mean]), np.array([std]), *ref)[0]
        assert gain == pytest.approx(expected, rel=1e-6, abs=1e-9)


def _told_searcher(**kwargs) -> GuidedSearcher:
    searcher = GuidedSearcher(SPACE, OBJECTIVES, n_init=16, cost=params, seed=3, **kwargs)
    searcher.tell(evaluate(searcher.ask(16)))
    searcher.tell(evaluate(searcher.ask(8)))
    return searcher


def test_a_batch_is_the_greedy_one_that_recomputes_every_gain_after_each_pick():
    searcher = _told_searcher(anchor_every=0)
    searcher._fit()
    pool, unseen = searcher._unseen()
    configs, keys = pool.take(unseen)
    picks = searcher._ehvi_batch(configs, keys, 8)

    model = searcher.models_["accuracy"]  # brute force: every gain after every pick
    c = np.array([params(x)["params"] for x in configs])
    mean, std = -model.predict(configs), model.predict_std(configs)
    known = np.asarray(searcher._ok_values)
    front = known[first_front(known)][:, ::-1]  # (params, -accuracy) rows
    ref_c, ref_a = max(known[:, 1].max(), c.max()), known[:, 0].max()
    expected, available = [], np.ones(len(configs), dtype=bool)
    for _ in range(8):
        gain = np.where(available, _expected_improvement(front, c, mean, std, ref_c, ref_a), -np.inf)
        pick = int(np.argmax(gain))
        expected.append(pick)
        available[pick] = False
        front = np.vstack([front, [c[pick], mean[pick]]])
        front = front[first_front(front)]
    assert picks == expected


def test_every_anchor_every_th_proposal_is_the_cheapest_config_not_yet_taken():
    searcher = GuidedSearcher(SPACE, OBJECTIVES, n_init=8, cost=params, seed=0, anchor_every=4)
    searcher.tell(evaluate(searcher.ask(8)))  # 8 proposals made: the batch's 1st and 5th are anchors
    for _ in range(3):
        unseen = [c for c in SPACE.enumerate() if not searcher.taken(SPACE.key(c))]
        batch = searcher.ask(8)
        for anchor in (0, 4):
            left = [c for c in unseen if c not in batch[:anchor]]
            assert params(batch[anchor])["params"] == min(params(c)["params"] for c in left)
        assert params(batch[1])["params"] > params(batch[0])["params"]  # the others are not the cheapest
        searcher.tell(evaluate(batch))


def test_acquisition_auto_is_ehvi_only_for_one_computed_and_one_predicted_objective():
    assert GuidedSearcher(SPACE, OBJECTIVES, cost=params)._acquisition() == "ehvi"
    assert GuidedSearcher(SPACE, OBJECTIVES, cost=params, acquisition="spread")._acquisition() == "spread"
    assert GuidedSearcher(SPACE, OBJECTIVES)._acquisition() == "spread"  # both predicted
    three = ["accuracy:max", "params:min", "latency_ms:min"]
    assert GuidedSearcher(SPACE, three, cost=params)._acquisition() == "spread"
    with pytest.raises(ValueError, match="'acquisition' parameter 'ehvi' needs two objectives"):
        GuidedSearcher(SPACE, OBJECTIVES, acquisition="ehvi")
    with pytest.raises(ValueError, match="'acquisition' parameter must be one of"):
        GuidedSearcher(SPACE, OBJECTIVES, cost=params, acquisition="ucb")
    with pytest.raises(ValueError, match="'anchor_every' parameter must be an int >= 0, got -1"):
        GuidedSearcher(SPACE, OBJECTIVES, cost=params, anchor_every=-1)


def test_ehvi_reaches_most_of_the_true_fronts_hypervolume_in_60_evaluations():
    everything = evaluate(list(SPACE.enumerate()))
    reference = {"accuracy": min(e.metrics["accuracy"] for e in everything), "params": max(e.metrics["params"] for e in everything)}
    best = hypervolume(everything, reference, OBJECTIVES)
    shares = []
    for seed in range(3):
        searcher = GuidedSearcher(SPACE, OBJECTIVES, n_init=10, cost=params, seed=seed)
        told: list = []
        while len(told) < 60:
            batch = evaluate(searcher.ask(8))
            searcher.tell(batch)
            told += batch
        shares.append(hypervolume(told, reference, OBJECTIVES) / best)
    assert np.median(shares) >= 0.98  # measured 0.988 (the spread acquisition: 0.992; random search: ~0.93)
