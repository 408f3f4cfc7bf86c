"""nas.evaluate: accuracy with BatchNorm recalibrated per subnet, costs, failures recorded, no side effects."""

import math

import pytest
import torch
from torch import nn

import search_spaces
from nas.data import Data, digits
from nas.elastic import ElasticBatchNorm2d, ElasticConv2d, ElasticLinear
from nas.evaluate import evaluate, norm_layers, recalibrate, set_eval
from nas.layers import GlobalAvgPool
from nas.space import Choice
from nas.supernet import Supernet
from nas.training import train_supernet
from search_spaces.mlp import MLP


def tiny_cnn(seed=0):
    torch.manual_seed(seed)
    return search_spaces.get(
        "cnn", stem=8, stages=((8, 1, 1), (8, 1, 2)), depths=(1,), expands=(1, 2), kernels=(3,), width_mults=(0.5, 1.0), head=16
    )


def tiny_mlp(seed=0):
    torch.manual_seed(seed)
    return MLP(depths=(1, 2), widths=(8, 16), ranks=(2, 4))


@pytest.fixture(scope="module")
def trained_cnn():
    net = tiny_cnn()
    train_supernet(net, strategy="uniform", epochs=2, lr=1e-2, batch_size=64, progress=False)
    return net


@pytest.fixture(scope="module")
def trained_mlp():
    net = tiny_mlp()
    train_supernet(net, strategy="uniform", epochs=2, lr=1e-2, batch_size=64, progress=False)
    return net


def configs_of(net):
    return [net.largest(), net.smallest()] + [net.sample(i) for i in range(4)]


def test_bn_recalibration_changes_accuracy_only_for_bn_families(trained_cnn, trained_mlp):
    for net, has_bn in ((trained_cnn, True), (trained_mlp, False)):
        configs = configs_of(net)
        fresh = evaluate(net, configs, calibration_batches=4)
        stale = evaluate(net, configs, calibration_batches=0)
        changed = [a.metrics["loss"] != b.metrics["loss"] for a, b in zip(fresh, stale)]
        accuracy_changed = [a.metrics["accuracy"] != b.metrics["accuracy"] for a, b in zip(fresh, stale)]
        if has_bn:
            assert all(changed) and any(accuracy_changed)
        else:
            assert not any(changed) and not any(accuracy_changed)


def test_recalibration_gives_each_subnet_its_exact_statistics():
    torch.manual_seed(0)
    conv = ElasticConv2d(1, 4, 3, out=Choice("c", [2, 4]))
    norm = ElasticBatchNorm2d(4)
    net = Supernet(nn.Sequential(conv, norm, GlobalAvgPool(), ElasticLinear(4, 10)), (1, 8, 8))
    inputs = [torch.rand(16, 1, 8, 8) for _ in range(3)]
    with net.activate({"c": 2}):
        recalibrate(net, inputs, [norm])
        with torch.no_grad():
            feats = torch.cat([conv(x) for x in inputs])
    assert torch.allclose(norm.running_mean[:2], feats.mean((0, 2, 3)), atol=1e-6)  # equal batches: the exact mean
    batch_vars = torch.stack([f.var((0, 2, 3), unbiased=True) for f in feats.split(16)])
    assert torch.allclose(norm.running_var[:2], batch_vars.mean(0), atol=1e-6)
    assert torch.equal(norm.running_mean[2:], torch.zeros(2)) and not norm.training


def test_evaluation_has_no_side_effects_and_is_deterministic(trained_cnn):
    net = trained_cnn
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    configs = configs_of(net)
    first = evaluate(net, configs, seed=3)
    second = evaluate(net, configs, seed=3)
    assert [e.metrics for e in first] == [e.metrics for e in second]
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(m.training for m in net.modules())
    assert net.config == net.largest()


def test_costs_come_from_the_supernet(trained_mlp):
    net = trained_mlp
    configs = configs_of(net)
    for ev, config in zip(evaluate(net, configs, metrics=("params", "macs")), configs):
        assert ev.ok and ev.metrics == net.cost(config)


def test_failed_configs_are_recorded_and_the_rest_continue():
    class Trap(nn.Module):
        """NaN at width 4, an exception at width 6, identity otherwise."""

        def forward(self, x):
            if x.shape[-1] == 4:
                return x * float("nan")
            if x.shape[-1] == 6:
                raise RuntimeError("width 6 is cursed")
            return x

    torch.manual_seed(0)
    net = Supernet(nn.Sequential(ElasticLinear(64, 8, out=Choice("width", [4, 6, 8])), Trap(), ElasticLinear(8, 10)), (64,))
    configs = [{"width": 8}, {"width": 4}, {"width": 6}, {"width": 5}, {"width": 8}]
    results = evaluate(net, configs, digits("flat"))
    assert [e.status for e in results] == ["ok", "failed", "failed", "failed", "ok"]
    assert "not finite" in results[1].error
    assert "width 6 is cursed" in results[2].error and results[2].error.startswith("RuntimeError")
    assert "InvalidConfig" in results[3].error and results[3].config == {"width": 5}
    assert results[0].metrics == results[4].metrics and not results[1].ok
    assert all(e.seconds >= 0 for e in results)


def test_latency_can_be_measured_or_predicted(trained_mlp):
    net = trained_mlp
    measured, predicted = (evaluate(net, [net.smallest()], metrics=(), latency=kind)[0] for kind in ("measured", "table"))
    assert measured.ok and predicted.ok
    assert measured.metrics["latency_ms"] > 0 and predicted.metrics["latency_ms"] > 0


def test_evaluating_many_configs_reuses_the_stacked_validation_set(trained_mlp, monkeypatch):
    net = trained_mlp
    data = Data(digits("flat").train, digits("flat").val)
    calls = []
    original = Data.val_batches

    def counting(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Data, "val_batches", counting)
    evaluate(net, [net.sample(i) for i in range(20)], data)
    assert len(calls) == 1


def test_test_split_and_custom_loss(trained_mlp):
    net = trained_mlp
    (val,) = evaluate(net, [net.largest()])
    (test,) = evaluate(net, [net.largest()], split="test")
    assert val.metrics["accuracy"] != test.metrics["accuracy"] or val.metrics["loss"] != test.metrics["loss"]
    (nll,) = evaluate(net, [net.largest()], loss=lambda out, y: nn.functional.cross_entropy(out, y) * 2)
    assert math.isclose(nll.metrics["loss"], 2 * val.metrics["loss"], rel_tol=1e-5)


def test_bad_arguments_are_named():
    net = tiny_mlp()
    with pytest.raises(ValueError, match="'metrics'.*'f1'"):
        evaluate(net, [net.largest()], metrics=("f1",))
    with pytest.raises(TypeError, match="list of configs"):
        evaluate(net, net.largest())
    with pytest.raises(ValueError, match="'latency'"):
        evaluate(net, [net.largest()], latency="guess")


class _KeepsDropoutOn(nn.Module):
    """A module whose own `train` keeps its dropout training (as some user models do)."""

    def __init__(self):
        super().__init__()
        self.drop, self.linear = nn.Dropout(0.5), nn.Linear(4, 4)

    def train(self, mode=True):
        super().train(mode)
        self.drop.train(True)
        return self


class _Statistics(nn.Module):
    """Running statistics as plain tensor attributes, not buffers."""

    def __init__(self):
        super().__init__()
        self.running_mean, self.running_var, self.momentum = torch.zeros(4), torch.ones(4), 0.1


def test_set_eval_sets_what_net_eval_sets_and_norm_layers_finds_statistics_anywhere():
    for make in (lambda: nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Dropout(), nn.BatchNorm1d(4))),
                 lambda: nn.Sequential(nn.Linear(4, 4), _KeepsDropoutOn())):
        a, b = make(), make()
        a.eval()
        set_eval(b, list(b.modules()))
        assert [m.training for m in a.modules()] == [m.training for m in b.modules()]
    assert not all(not m.training for m in a.modules())  # the override kept its dropout on
    net = nn.Sequential(nn.BatchNorm2d(3), _Statistics(), nn.Linear(2, 2))
    assert [type(m) for m in norm_layers(net)] == [nn.BatchNorm2d, _Statistics]
