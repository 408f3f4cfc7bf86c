import pytest

import search_spaces
from nas import search
from nas.backends import Backend
from nas.evaluation import Evaluation


@pytest.fixture(scope="module")
def net():
    return search_spaces.get("mlp", depths=(1, 2), widths=(16, 32, 64), ranks=(4, 8, 16))


class Synthetic(Backend):
    """Instant metrics computed from the config; fails on one chosen config."""

    def __init__(self, net, fail_width=None):
        self.net, self.fail_width, self.seen = net, fail_width, []

    def evaluate(self, configs):
        out = []
        for c in configs:
            self.seen.append(self.net.space.key(c))
            if self.fail_width is not None and c.get("blocks.1.width") == self.fail_width:
                out.append(Evaluation(c, {}, "failed", "RuntimeError: boom"))
                continue
            cost = self.net.cost(c)
            acc = 1 - 1 / (cost["params"] ** 0.5)
            out.append(Evaluation(c, {"accuracy": acc, **cost}))
        return out


@pytest.mark.parametrize("searcher", ["random", "evolution", "optuna", "guided"])
def test_search_spends_the_budget_without_repeats(net, searcher):
    backend = Synthetic(net)
    result = search(net, searcher=searcher, budget=30, backend=backend, progress=False, seed=1)
    assert len(result.evaluations) == 30 == len(set(backend.seen))
    assert all(net.space.contains(e.config) for e in result.evaluations)
    assert result.front and result.hypervolume > 0
    history = [hv for _, hv in result.hypervolume_history]
    assert history == sorted(history)


def test_search_stops_when_the_space_is_used_up(net):
    result = search(net, searcher="random", budget=500, backend=Synthetic(net), progress=False)
    assert len(result.evaluations) == net.space.size()


def test_failed_evaluations_are_kept_and_the_search_goes_on(net):
    result = search(net, searcher="random", budget=net.space.size(), backend=Synthetic(net, fail_width=32), progress=False)
    failed = [e for e in result.evaluations if e.status == "failed"]
    assert failed and all("boom" in e.error for e in failed)
    assert all(e.ok for e in result.front)


def test_run_directory_resumes_without_reevaluating(net, tmp_path):
    first = Synthetic(net)
    search(net, searcher="evolution", budget=12, backend=first, run=tmp_path, progress=False)
    second = Synthetic(net)
    result = search(net, searcher="evolution", budget=20, backend=second, run=tmp_path, progress=False)
    assert len(result.evaluations) == 20 and len(second.seen) == 8
    assert not set(first.seen) & set(second.seen)
    assert (tmp_path / "front.json").exists()


def test_real_evaluation_end_to_end(net):
    result = search(net, searcher="random", budget=6, progress=False)
    assert {"accuracy", "loss", "params", "macs"} <= set(result.evaluations[0].metrics)
    assert "accuracy" in result.table() and result.pick("knee") in result.front


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(objectives=["accuracy:max", "flops:min"]), "unknown objective metric 'flops'"),
        (dict(objectives=["accuracy:up"]), "direction"),
        (dict(budget=0), "'budget' parameter"),
        (dict(searcher="annealing"), "annealing"),
        (dict(backend="spark"), "unknown backend 'spark'"),
    ],
)
def test_bad_arguments_raise_clear_errors(net, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        search(net, progress=False, **kwargs)


def test_tangle_searcher_records_one_architecture_per_epoch(net):
    result = search(net, searcher="tangle", budget=2, progress=False)
    assert len(result.history) == 2 and all(net.space.contains(e.config) for e in result.evaluations)  # a repeat replaces its evaluation
    with pytest.raises(ValueError, match="use backend='local'"):
        search(net, searcher="tangle", budget=1, backend="ray", progress=False)
