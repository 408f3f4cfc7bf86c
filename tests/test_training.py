"""nas.training: strategies, distillation, checkpoints and resume, determinism, regression."""

import logging
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from nas.data import digits
from nas.evaluate import evaluate
from nas.training import (
    STRATEGIES,
    AlphaDivergence,
    OrderedDropout,
    Sandwich,
    Strategy,
    backward,
    get_strategy,
    kl_divergence,
    load_checkpoint,
    train_standalone,
    train_supernet,
)
from search_spaces.mlp import MLP

SMALL = dict(depths=(1, 2), widths=(8, 16), ranks=(2, 4, 8))
FAST = dict(epochs=2, batch_size=128, progress=False)


def small_net(seed=0):
    torch.manual_seed(seed)
    return MLP(**SMALL)


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def without_time(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_resume_continues_bit_for_bit(tmp_path):
    whole = small_net()
    expected = train_supernet(whole, run=tmp_path / "whole", **FAST)
    cut = small_net()
    first = train_supernet(cut, run=tmp_path / "cut", callback=lambda record: record["epoch"] == 1, **FAST)
    assert len(first) == 1
    resumed = small_net(seed=7)  # a fresh process would rebuild the net with other weights
    history = train_supernet(resumed, run=tmp_path / "cut", resume=True, **FAST)
    assert same_weights(whole, resumed)
    assert without_time(history) == without_time(expected)


def test_resume_of_a_finished_run_trains_nothing(tmp_path):
    net = small_net()
    history = train_supernet(net, run=tmp_path, **FAST)
    again = small_net(seed=3)
    assert without_time(train_supernet(again, run=tmp_path, resume=True, **FAST)) == without_time(history)
    assert same_weights(net, again)


def test_resume_rejects_a_changed_recipe(tmp_path):
    train_supernet(small_net(), run=tmp_path, callback=lambda r: True, **FAST)
    with pytest.raises(ValueError, match="recipe differs.*lr"):
        train_supernet(small_net(), run=tmp_path, resume=True, lr=0.5, **FAST)


def test_checkpoint_holds_weights_and_history(tmp_path):
    net = small_net()
    history = train_supernet(net, run=tmp_path, **FAST)
    loaded = small_net(seed=5)
    assert load_checkpoint(loaded, tmp_path) == history
    assert same_weights(net, loaded)


def test_same_seed_gives_identical_weights_and_another_seed_does_not():
    a, b, c = small_net(), small_net(), small_net()
    train_supernet(a, seed=1, **FAST)
    train_supernet(b, seed=1, **FAST)
    train_supernet(c, seed=2, **FAST)
    assert same_weights(a, b)
    assert not same_weights(a, c)


@pytest.mark.parametrize("strategy", ["sandwich", "uniform", "ordered_dropout"])
def test_every_strategy_trains_the_supernet(strategy):
    net = small_net()
    before = evaluate(net, [net.largest()], metrics=("loss",))[0].metrics["loss"]
    history = train_supernet(net, strategy=strategy, epochs=3, lr=1e-2, batch_size=64, progress=False)
    assert history[-1]["largest_loss"] < before
    assert all(math.isfinite(r["loss"]) for r in history)


@pytest.mark.parametrize("distill", ["kl", "alpha", False, None, kl_divergence])
def test_distillation_variants_run(distill):
    history = train_supernet(small_net(), distill=distill, **FAST)
    assert all(math.isfinite(r["loss"]) and 0 <= r["smallest_accuracy"] <= 1 for r in history)


def test_distillation_is_refused_by_strategies_without_a_teacher():
    with pytest.raises(ValueError, match="'uniform' strategy does not use in-place distillation"):
        train_supernet(small_net(), strategy="uniform", distill="kl", **FAST)
    with pytest.raises(ValueError, match="'distill'"):
        train_supernet(small_net(), distill="js", **FAST)


def test_sandwich_students_learn_from_the_largest_when_distilling():
    net = small_net()
    x, y = digits("flat").train.tensors
    x, y = x[:32], y[:32]
    seen = []

    def spy(student, teacher):
        seen.append(teacher)
        return kl_divergence(student, teacher)

    Sandwich(n=1).step(net, x, y, np.random.default_rng(0), nn.CrossEntropyLoss(), spy)
    with torch.no_grad():
        expected = net(x)  # outside activate: the largest subnet
    assert len(seen) == 2 and all(torch.allclose(t, expected) for t in seen)
    assert not seen[0].requires_grad


def test_ordered_dropout_trains_leading_components_only():
    net = small_net()
    x, y = digits("flat").train.tensors
    strategy = OrderedDropout()
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(8):
        net.zero_grad(set_to_none=False)
        strategy.step(net, x[:64], y[:64], rng, nn.CrossEntropyLoss(), None)
        for name, layer in net.named_modules():
            if name not in strategy.last_cutoffs or layer.U.grad is None:
                continue
            r = strategy.last_cutoffs[name]
            assert 2 <= r <= layer.max_rank
            assert torch.count_nonzero(layer.U.grad[:, r:]) == 0
            assert torch.count_nonzero(layer.V.grad[r:]) == 0
            if layer.V.grad.abs().sum() > 0:  # the layer ran
                assert torch.count_nonzero(layer.V.grad[:r]) > 0
                checked += 1
            assert layer.cutoff is None  # the hook is cleared after the step
    assert checked >= 8


def test_ordered_dropout_samples_cutoffs_between_choices():
    net = small_net()
    x, y = digits("flat").train.tensors
    strategy, rng = OrderedDropout(), np.random.default_rng(1)
    seen = set()
    for _ in range(30):
        strategy.step(net, x[:16], y[:16], rng, nn.CrossEntropyLoss(), None)
        seen.update(strategy.last_cutoffs.values())
        net.zero_grad()
    assert seen == set(range(2, 9))  # every cut-off from the smallest rank choice to max_rank


def test_mse_regression_reports_the_loss_instead_of_accuracy():
    split = digits("flat")
    def regression(part):
        x, y = part.tensors
        return TensorDataset(x, y.float().unsqueeze(1) / 9.0)
    data = (regression(split.train), regression(split.val))
    torch.manual_seed(0)
    net = MLP(num_classes=1, **SMALL)
    history = train_supernet(net, data, loss=nn.MSELoss(), epochs=3, lr=1e-2, batch_size=64, progress=False)
    assert "largest_accuracy" not in history[-1] and history[-1]["largest_loss"] < history[0]["largest_loss"]
    (ev,) = evaluate(net, [net.largest()], data)
    assert set(ev.metrics) == {"loss", "mae", "r2", "params", "macs"}
    with pytest.raises(ValueError, match="regression"):
        train_supernet(net, data, distill="kl", **FAST)
    result = train_standalone(net, net.smallest(), data, epochs=2)
    assert result.accuracy is None and math.isfinite(result.loss)


def test_train_standalone_from_scratch_or_from_supernet_weights():
    net = small_net()
    train_supernet(net, epochs=3, lr=1e-2, batch_size=64, progress=False)
    config = net.smallest()
    x = digits("flat").val.tensors[0]
    inherited = net.extract(config).eval()
    tuned = train_standalone(net, config, init="supernet", epochs=0)
    scratch = train_standalone(net, config, init="scratch", epochs=0)
    with torch.no_grad():
        assert torch.allclose(tuned.model(x), inherited(x), atol=1e-6)
        assert not torch.allclose(scratch.model(x), inherited(x), atol=1e-3)
    trained = train_standalone(net, net.largest(), epochs=3, lr=1e-2)
    assert 0.3 < trained.accuracy <= 1 and len(trained.history) == 3
    again = train_standalone(net, net.largest(), epochs=3, lr=1e-2)
    assert again.accuracy == trained.accuracy
    with pytest.raises(ValueError, match="'init'"):
        train_standalone(net, config, init="random")


def test_alpha_divergence_is_zero_on_the_teacher_and_finite_on_extreme_logits():
    loss = AlphaDivergence()
    logits = torch.randn(4, 10)
    assert float(loss(logits, logits)) == pytest.approx(0.0, abs=1e-6)
    student = (torch.randn(4, 10) * 200).requires_grad_()
    value = loss(student, torch.randn(4, 10) * 200)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(student.grad).all()


def test_strategies_register_by_name_and_bad_arguments_are_named():
    assert {"sandwich", "uniform", "ordered_dropout"} <= set(STRATEGIES)
    assert isinstance(get_strategy("sandwich", n=3), Sandwich) and get_strategy("sandwich", n=3).n == 3
    with pytest.raises(ValueError, match="'strategy'"):
        get_strategy("random_walk")
    with pytest.raises(ValueError, match="'n'"):
        Sandwich(n=-1)
    with pytest.raises(ValueError, match="'epochs'"):
        train_supernet(small_net(), epochs=-1, progress=False)
    with pytest.raises(ValueError, match="'optimizer'"):
        train_supernet(small_net(), optimizer="lion", **FAST)


def test_a_custom_strategy_is_one_registered_subclass():
    @STRATEGIES.register("test_largest_only")
    class LargestOnly(Strategy):
        def step(self, net, x, y, rng, loss, distill):
            with net.activate(net.largest()):
                value = loss(net(x), y)
            value.backward()
            return value.item()

    assert LargestOnly.name == "test_largest_only" and "test_largest_only" in STRATEGIES
    net = small_net()
    smallest_before = evaluate(net, [net.smallest()], metrics=("loss",))[0].metrics["loss"]
    history = train_supernet(net, strategy="test_largest_only", **FAST)
    assert history[-1]["largest_loss"] < smallest_before
    assert history[-1]["smallest_loss"] > history[-1]["largest_loss"]  # only the largest subnet was trained


def test_progress_bar_is_shown_only_when_asked(capsys):
    train_supernet(small_net(), epochs=1, batch_size=256, progress=True)
    shown = capsys.readouterr().err
    train_supernet(small_net(), epochs=1, batch_size=256, progress=False)
    assert "largest" in shown and capsys.readouterr().err == ""


def test_backward_gives_loss_backwards_gradients_and_its_errors():
    torch.manual_seed(0)
    layer = nn.Linear(6, 3)
    x = torch.randn(5, 6)
    grads = []
    for run in (lambda loss: loss.backward(), backward):
        layer.zero_grad(set_to_none=True)
        run(nn.functional.cross_entropy(layer(x), torch.tensor([0, 1, 2, 0, 1])))
        run((layer(x) ** 2).mean())  # accumulates, as a second subnet's pass does
        grads.append([p.grad.clone() for p in layer.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))
    engine_log = logging.getLogger("torch.autograd.graph")
    level = engine_log.level
    engine_log.setLevel(logging.DEBUG)  # the engine's logging hooks wanted: backward goes through torch's own call
    try:
        layer.zero_grad(set_to_none=True)
        backward(nn.functional.cross_entropy(layer(x), torch.tensor([0, 1, 2, 0, 1])))
        backward((layer(x) ** 2).mean())
    finally:
        engine_log.setLevel(level)
    assert all(torch.equal(a, p.grad) for a, p in zip(grads[0], layer.parameters()))
    for bad in (layer(x), torch.ones(()), torch.ones((), dtype=torch.float64).requires_grad_().int()):  # not a scalar; no graph
        errors = []
        for run in (lambda loss: loss.backward(), backward):
            with pytest.raises(RuntimeError) as info:
                run(bad)
            errors.append(str(info.value))
        assert errors[0] == errors[1]
