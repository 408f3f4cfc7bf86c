"""Methods: `nas.search` and a spec reach every method the same way, and nothing outside a method names it."""

from __future__ import annotations

import inspect

import pytest

import nas
import nas.methods
from nas.runs import load_spec, run_spec

TANGLED = {
    "name": "tangled",
    "seed": 1,
    "space": {"family": "mlp", "args": {"depths": [1, 2], "widths": [8, 16], "ranks": [2, 4]}},
    "evaluate": {"batch_size": 32, "calibration_batches": 2},
    "search": {"searcher": "tangle", "budget": 3, "args": {"cost_weight": 0.3, "arch_lr": 0.1, "lr": 0.01}},
}


def test_nas_search_is_a_function_with_keyword_only_options():
    params = inspect.signature(nas.search).parameters
    assert list(params)[:2] == ["net", "data"]
    assert {"objectives", "searcher", "budget", "backend", "run", "seed", "backend_kwargs"} <= set(params)
    assert all(p.kind is p.KEYWORD_ONLY for name, p in params.items() if name not in ("net", "data"))


def test_each_searcher_name_chooses_one_method():
    assert nas.methods.names() == ["blackbox", "tangle"]
    assert {nas.methods.for_searcher(s).name for s in nas.searchers.names()} == {"blackbox"}
    tangle = nas.methods.for_searcher("tangle")
    assert tangle.name == "tangle" and not tangle.trains and nas.methods.for_searcher("evolution").trains
    assert set(tangle.fields()) >= {"cost_weight", "sampling", "arch_lr"}
    assert nas.methods.searcher_names() == sorted([*nas.searchers.names(), "tangle"])


def test_a_spec_and_nas_search_give_the_same_tangle_result(tmp_path):
    spec = load_spec(TANGLED)
    by_spec = run_spec(spec, run=tmp_path / "spec", progress=False)
    net = spec.build_net()
    by_call = nas.search(
        net, spec.data(net), objectives=["accuracy:max", "params:min"], searcher="tangle", budget=3, seed=1,
        searcher_kwargs=dict(spec["search.args"]), progress=False, run=tmp_path / "call",
        backend_kwargs={"batch_size": 32, "calibration_batches": 2, "latency_batch_size": 1},
    )
    assert [(e.config, e.metrics) for e in by_call.evaluations] == [(e.config, e.metrics) for e in by_spec.evaluations]
    assert by_call.reference == by_spec.reference and by_call.hypervolume_history == by_spec.hypervolume_history


def test_nas_search_passes_the_evaluation_settings_to_tangle_and_refuses_what_it_cannot_use():
    net = load_spec(TANGLED).build_net()
    with pytest.raises(ValueError, match="'batch_size' parameter of evaluate"):  # reaches nas.evaluate, not dropped
        nas.search(net, searcher="tangle", budget=1, progress=False, backend_kwargs={"batch_size": 0})
    with pytest.raises(ValueError, match="'batch_size' parameter does not apply to searcher 'tangle'"):
        nas.search(net, searcher="tangle", budget=1, progress=False, batch_size=4)
    with pytest.raises(ValueError, match="'reference' parameter does not apply"):
        nas.search(net, searcher="tangle", budget=1, progress=False, reference={"accuracy": 0.0, "params": 1e9})
    with pytest.raises(ValueError, match="use backend='local'"):
        nas.search(net, searcher="tangle", budget=1, progress=False, backend="ray")
