"""Tangle runs are first-class runs: the store keeps each architecture's latest evaluation,
a spec with ``searcher = "tangle"`` runs, resumes, reports and exports through `nas`."""

from __future__ import annotations

import pytest
import torch

import search_spaces
from nas.evaluation import Evaluation
from nas.store import EvaluationStore
from nas.tangle import search_tangle


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


# -- search_tangle with a run directory: the store is the result ---------------------------------
def _mlp():
    torch.manual_seed(0)
    return search_spaces.get("mlp", depths=(1, 2, 3), widths=(8, 16, 32), ranks=(2, 4, 8))


SEARCH = dict(epochs=4, arch_lr=0.1, cost_weight=0.3, seed=2, progress=False)  # records 3 architectures, one twice


class _Stop(Exception):
    pass


def _stop_after(epoch: int):
    def callback(entry):
        if entry["epoch"] == epoch:
            raise _Stop  # killed after the epoch's record and checkpoint, before the search ends

    return callback


def _stored(run) -> list[tuple]:
    with EvaluationStore(run / "evaluations.sqlite", create=False) as store:
        return [(e.config, e.metrics, e.status) for e in store.load()]


def test_stored_evaluations_are_the_result_and_an_interrupted_search_resumes_to_it(tmp_path):
    whole = search_tangle(_mlp(), run=tmp_path / "whole", **SEARCH)
    assert len(whole.history) == 4 and len(whole.evaluations) == 3
    assert _stored(tmp_path / "whole") == [(e.config, e.metrics, e.status) for e in whole.evaluations]
    with pytest.raises(_Stop):
        search_tangle(_mlp(), run=tmp_path / "split", callback=_stop_after(2), **SEARCH)
    resumed = search_tangle(_mlp(), run=tmp_path / "split", resume=True, **SEARCH)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert _stored(tmp_path / "split") == _stored(tmp_path / "whole")
    assert [(e.config, e.metrics) for e in resumed.evaluations] == [(e.config, e.metrics) for e in whole.evaluations]
    assert resumed.hypervolume_history == whole.hypervolume_history and resumed.reference == whole.reference
