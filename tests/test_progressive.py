"""`progressive`: progressive shrinking opens each dimension from the largest value down, and resumes exactly."""

import numpy as np
import pytest
import torch

from nas.training import Progressive, get_strategy, train_supernet
from search_spaces.mlp import MLP

SMALL = dict(depths=(1, 2), widths=(8, 16), ranks=(2, 4, 8))
FAST = dict(epochs=4, batch_size=128, progress=False)


def small_net(seed=0):
    torch.manual_seed(seed)
    return MLP(**SMALL)


def test_dimensions_open_from_one_value_to_all_between_warm_and_open():
    strategy = Progressive(warm=0.2, open=0.6)
    counts = [strategy.opened(t, 5) for t in np.linspace(0, 1, 41)]
    assert counts[0] == 1 and strategy.opened(0.19, 5) == 1
    assert strategy.opened(0.21, 5) == 2 and strategy.opened(0.6, 5) == 5 and counts[-1] == 5
    assert counts == sorted(counts)


def test_sampled_subnets_take_only_the_open_largest_values():
    net, strategy, rng = small_net(), Progressive(warm=0.0, open=1.0), np.random.default_rng(0)
    assert strategy.sample(net, 0.0, rng) == net.largest() == strategy.sample(net, 0.0)
    for t in (0.3, 0.6):
        for _ in range(50):
            config = strategy.sample(net, t, rng)
            for dim in net.space.dimensions:
                if dim.name in config:
                    assert dim.values.index(config[dim.name]) >= len(dim.values) - strategy.opened(t, len(dim.values))
    assert strategy.sample(net, 1.0) == net.smallest()


def test_warm_phase_trains_the_largest_subnet_only():
    net = small_net()
    train_supernet(net, strategy=Progressive(warm=1.0, open=1.0), **FAST)
    largest_only = small_net()

    class Largest(Progressive):
        def step(self, net, x, y, rng, loss, distill):
            with net.activate(net.largest()):
                value = loss(net(x), y)
            value.backward()
            return value.item()

    train_supernet(largest_only, strategy=Largest(), distill=False, **FAST)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), largest_only.state_dict().values()))


def test_resume_across_the_opening_continues_bit_for_bit(tmp_path):
    strategy = dict(strategy="progressive")
    whole = small_net()
    expected = train_supernet(whole, run=tmp_path / "whole", **strategy, **FAST)
    cut = small_net()
    train_supernet(cut, run=tmp_path / "cut", callback=lambda record: record["epoch"] == 2, **strategy, **FAST)
    resumed = small_net(seed=7)
    history = train_supernet(resumed, run=tmp_path / "cut", resume=True, **strategy, **FAST)
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
    assert [r["loss"] for r in history] == [r["loss"] for r in expected]


def test_bad_arguments_are_named():
    assert isinstance(get_strategy("progressive", n=1), Progressive)
    assert Progressive(n=1).params() == {"n": 1, "warm": 0.1, "open": 0.5, "smoothing": 0.0, "late": 1.0, "spread": False}
    with pytest.raises(ValueError, match="'n'"):
        Progressive(n=-1)
    with pytest.raises(ValueError, match="'warm' and 'open'"):
        Progressive(warm=0.8, open=0.5)


def test_label_smoothing_changes_only_the_largest_subnets_label_loss():
    net, strategy = small_net(), Progressive(warm=1.0, open=1.0, smoothing=0.1)
    x, y = torch.randn(8, 64), torch.arange(8) % 10
    value = strategy.step(net, x, y, np.random.default_rng(0), torch.nn.CrossEntropyLoss(), None)
    with torch.no_grad(), net.activate(net.largest()):
        out = net(x)
    assert value == pytest.approx(torch.nn.functional.cross_entropy(out, y, label_smoothing=0.1).item(), rel=1e-6)
    assert value != pytest.approx(torch.nn.functional.cross_entropy(out, y).item(), rel=1e-6)
    mse = strategy.step(net, x, torch.nn.functional.one_hot(y, 10).float(), np.random.default_rng(0), torch.nn.MSELoss(), None)
    assert mse == pytest.approx(torch.nn.functional.mse_loss(out, torch.nn.functional.one_hot(y, 10).float()).item(), rel=1e-6)
    with pytest.raises(ValueError, match="'smoothing'"):
        Progressive(smoothing=1.0)


def test_late_share_leaves_the_smallest_out_for_one_more_random_subnet():
    net, strategy, rng = small_net(), Progressive(n=2, warm=0.0, open=0.1, late=0.5), np.random.default_rng(0)
    strategy._t = 0.4
    assert [len(strategy.students(net, rng)), strategy.students(net, rng)[0]] == [3, net.smallest()]
    strategy._t = 0.6
    drawn = [strategy.students(net, rng) for _ in range(30)]
    assert all(len(d) == 3 for d in drawn) and sum(net.smallest() in d for d in drawn) < 20  # each step had it before
    assert len({net.space.key(c) for d in drawn for c in d}) > 5
    with pytest.raises(ValueError, match="'late'"):
        Progressive(late=1.5)


def test_spread_draws_cover_the_smallest_and_largest_more_often_than_uniform():
    net, rng = small_net(), np.random.default_rng(0)
    ends = {net.space.key(net.smallest()), net.space.key(net.largest())}
    counts = {}
    for spread in (False, True):
        strategy = Progressive(warm=0.0, open=0.0, spread=spread)
        counts[spread] = sum(net.space.key(strategy.sample(net, 1.0, rng)) in ends for _ in range(600))
    assert counts[True] > 2 * counts[False]
    with pytest.raises(ValueError, match="'spread'"):
        Progressive(spread=1)
