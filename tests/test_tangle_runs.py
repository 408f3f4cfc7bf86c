"""Tangle runs are first-class runs: the store keeps each architecture's latest evaluation,
a spec with ``searcher = "tangle"`` runs, resumes, reports and exports through `nas`."""

from __future__ import annotations

import pytest

from nas.evaluation import Evaluation
from nas.store import EvaluationStore


# -- the store: the latest evaluation of each config ------------------------------------------
def test_store_update_rewrites_evaluations_in_place_and_refuses_unknown_keys(tmp_path):
    path = tmp_path / "evaluations.sqlite"
    with EvaluationStore(path) as store:
        store.append([Evaluation({"w": 1}, {"a": 1.0})], ["k1"])
        store.append([Evaluation({"w": 2}, {"a": 2.0})], ["k2"])
        store.update([Evaluation({"w": 1}, {"a": 5.0}, seconds=0.5)], ["k1"], {"refreshed": 2})
        with pytest.raises(KeyError, match="'k9'"):
            store.update([Evaluation({"w": 1}, {"a": 7.0}), Evaluation({"w": 9}, {"a": 9.0})], ["k1", "k9"])
    with EvaluationStore(path, create=False) as store:
        evaluations, ends = store.load_batches()
        assert [(e.config, e.metrics["a"]) for e in evaluations] == [({"w": 1}, 5.0), ({"w": 2}, 2.0)]  # k1 in its place
        assert evaluations[0].seconds == 0.5 and ends == [1, 2] and store.meta("refreshed") == 2
