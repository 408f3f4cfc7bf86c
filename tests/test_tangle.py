import doctest
import importlib

import numpy as np
import pytest
import torch

import search_spaces
from nas.evaluate import evaluate
from nas.latency import LatencyTable
from nas.tangle import (
    ArchParameters,
    Budget,
    Dirichlet,
    Gumbel,
    Softmax,
    Tangle,
    one_hot,
    search_tangle,
    tangle_mode,
)
from nas.training import load_checkpoint

# Small members of each family, so the whole file stays fast on a loaded CPU.
FAMILIES = {
    "mlp": dict(depths=(1, 2, 3), widths=(8, 16, 32), ranks=(2, 4, 8)),
    "cnn": dict(stem=8, stages=((8, 2, 1), (12, 2, 2)), expands=(2, 3), kernels=(3, 5), width_mults=(0.5, 1.0), head=16),
    "transformer": dict(depths=(1, 2), heads=(1, 2), head_dims=(4, 8), embed_dims=(8, 16), mlp_ratios=(1, 2), ranks=(4, 8)),
    "cell": dict(channels=4),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # one-sample probes and small batches run far faster on one thread of a busy machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _net(family: str):
    torch.manual_seed(0)
    net = search_spaces.get(family, **FAMILIES[family])
    with torch.no_grad():  # non-trivial BatchNorm statistics and biases, so masking is checked
        for name, buf in net.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    return net


def _configs(net, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [net.largest(), net.smallest()] + [net.sample(rng) for _ in range(n)]


@pytest.mark.parametrize("combine", ["superposition", "weighted_sum"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_mixed_forward_equals_the_activated_subnet_at_one_hot_weights(family, combine):
    net = _net(family)
    tangle = Tangle(net, combine)
    x = torch.randn(6, *net.input_shape)
    for training in (False, True):
        net.train(training)
        for config in _configs(net, 8):
            with torch.no_grad():
                with net.activate(config):
                    expected = net(x)
                with tangle.mode(one_hot(net.space, config)):
                    got = net(x)
            assert torch.allclose(got, expected, atol=1e-5, rtol=0), (training, config)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_gradients_reach_every_architecture_parameter(family):
    net = _net(family).train()
    arch = ArchParameters(net.space, init_std=1.0, generator=torch.Generator().manual_seed(0))
    x = torch.randn(6, *net.input_shape)
    with tangle_mode(net, arch.weights(Softmax())):
        loss = net(x).square().mean()
    loss.backward()
    for name, alpha in zip(arch.names, arch.alphas):
        assert alpha.grad is not None and bool(alpha.grad.abs().sum() > 0), name


@pytest.mark.parametrize("sampler", [Softmax(), Gumbel(temperature=0.5, hard=False), Gumbel(), Dirichlet()])
def test_every_sampler_gives_weights_on_the_simplex_with_gradients(sampler):
    net = _net("mlp")
    arch = ArchParameters(net.space, init_std=1.0, generator=torch.Generator().manual_seed(0))
    weights = arch.weights(sampler, training=True)
    for w in weights.values():
        assert torch.all(w >= 0) and abs(float(w.detach().sum()) - 1) < 1e-5
    with tangle_mode(net, weights):
        net(torch.randn(4, 64)).square().mean().backward()
    assert all(a.grad is not None and bool(torch.isfinite(a.grad).all()) for a in arch.alphas)
    reached = sum(float(a.grad.abs().sum()) > 0 for a in arch.alphas)
    # a hard (one-hot) draw leaves blocks deeper than the drawn depth without gradient
    assert reached == len(arch.alphas) if not getattr(sampler, "hard", False) else reached >= 1


@pytest.mark.parametrize("family", list(FAMILIES))
def test_expected_cost_equals_supernet_cost_at_one_hot_weights(family):
    net = _net(family)
    tangle = Tangle(net)
    for config in _configs(net, 25):
        expected = tangle.expected_cost(one_hot(net.space, config))
        cost = net.cost(config)
        assert round(float(expected["params"])) == cost["params"], config
        assert round(float(expected["macs"])) == cost["macs"], config


def test_expected_cost_is_differentiable_and_between_the_extremes():
    net = _net("transformer")
    arch = ArchParameters(net.space, init_std=1.0, generator=torch.Generator().manual_seed(1))
    expected = Tangle(net).expected_cost(arch.weights(Softmax()))
    expected["params"].backward()
    assert all(a.grad is not None and bool(a.grad.abs().sum() > 0) for a in arch.alphas)
    assert net.cost(net.smallest())["params"] < float(expected["params"].detach()) < net.cost(net.largest())["params"]


def test_expected_latency_equals_the_table_prediction_at_one_hot_weights():
    net = _net("mlp")
    table = LatencyTable.build(net, samples=6, fit_configs=3, warmup=1, repeats=2)
    tangle = Tangle(net, latency=table)
    for config in _configs(net, 6, seed=3):
        expected = float(tangle.expected_cost(one_hot(net.space, config))["latency_ms"])
        assert expected == pytest.approx(table.predict(config), rel=1e-6, abs=1e-9), config


def test_tangle_mode_restores_every_layer_also_on_error():
    net = _net("cnn").eval()
    x = torch.randn(2, *net.input_shape)
    with torch.no_grad():
        before = net(x)
    with pytest.raises(RuntimeError, match="boom"):
        with tangle_mode(net, one_hot(net.space, net.smallest())):
            raise RuntimeError("boom")
    assert not any("forward" in m.__dict__ for m in net.modules())
    with torch.no_grad():
        assert torch.equal(net(x), before)


def test_weights_missing_a_dimension_are_rejected():
    net = _net("mlp")
    weights = one_hot(net.space, net.largest())
    del weights["depth"]
    with pytest.raises(ValueError, match="depth"):
        with tangle_mode(net, weights):
            pass


def test_ordered_dropout_cutoff_truncates_the_superposed_ranks():
    net = _net("mlp").eval()
    config = net.largest()
    layer = net.body[1].blocks[0][0]
    x = torch.randn(4, 64)
    layer.cutoff = 3
    try:
        with torch.no_grad():
            with net.activate(config):
                expected = net(x)
            with tangle_mode(net, one_hot(net.space, config)):
                got = net(x)
    finally:
        layer.cutoff = None
    assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("family", ["mlp", "cnn", "transformer", "cell"])
def test_argmax_of_any_architecture_parameters_is_a_valid_config(family):
    net = _net(family)
    for seed in range(10):
        arch = ArchParameters(net.space, init_std=1.0, generator=torch.Generator().manual_seed(seed))
        config = arch.argmax()
        assert net.space.validate(config) == config
    arch.load_config(net.smallest())
    assert arch.argmax() == net.smallest()


def test_budget_decode_meets_the_budget_for_any_architecture_parameters():
    net = _net("mlp")
    tangle = Tangle(net)
    cost = lambda c: float(tangle.expected_cost(one_hot(net.space, c))["params"])  # noqa: E731
    limit = (cost(net.smallest()) + cost(net.largest())) / 3
    budget = Budget(f"params<={limit}", cost, net.space)
    for seed in range(20):
        arch = ArchParameters(net.space, init_std=2.0, generator=torch.Generator().manual_seed(seed))
        config = budget.decode(arch)
        assert net.cost(config)["params"] <= limit
        if net.cost(arch.argmax())["params"] <= limit:
            assert config == arch.argmax()
    with pytest.raises(ValueError, match="no subnet meets"):
        Budget("params<=1", cost, net.space)


def test_budget_mode_keeps_every_recorded_architecture_within_the_budget():
    net = _net("mlp")
    limit = 1500  # the largest subnet has ~3,400 parameters, the smallest ~300
    result = search_tangle(net, epochs=2, budget_constraint=f"params<={limit}", progress=False, seed=1)
    assert len(result.history) == 2
    assert all(e.ok and e.metrics["params"] <= limit for e in result.evaluations)
    assert all(h["arch_params"] <= limit for h in result.history)
    assert all(h["lambda"] >= 0 for h in result.history)


def test_cost_weight_pushes_the_search_to_cheaper_architectures():
    params = {}
    for weight in (0.0, 5.0):
        net = _net("mlp")
        result = search_tangle(net, epochs=3, cost_weight=weight, arch_lr=0.1, progress=False)
        with torch.no_grad():  # under the default (Dirichlet) sampler's mean weights
            params[weight] = float(Tangle(net).expected_cost(result.arch.weights(Dirichlet(), training=False))["params"])
    assert params[5.0] < 0.7 * params[0.0]


def test_search_records_an_evaluation_per_epoch_and_resumes_from_its_run(tmp_path):
    net = _net("mlp")
    run = tmp_path / "run"
    first = search_tangle(net, epochs=2, cost_weight=0.5, run=run, progress=False)
    assert len(first.history) == 2 and all(net.space.contains(e.config) for e in first.evaluations)
    assert first.evaluations[-1].config == first.history[-1]["config"]
    assert (run / "front.json").exists()
    again = _net("mlp")
    assert len(load_checkpoint(again, run)) == 2  # the checkpoint loads like a trained supernet's
    resumed = search_tangle(again, epochs=3, cost_weight=0.5, run=run, resume=True, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    with pytest.raises(ValueError, match="recipe"):
        search_tangle(_net("mlp"), epochs=3, cost_weight=0.9, run=run, resume=True, progress=False)
    fresh = tmp_path / "trained"  # a trained supernet's checkpoint is a warm start, never resumed from
    from nas.training import train_supernet

    warm = _net("mlp")
    train_supernet(warm, epochs=1, run=fresh, progress=False)
    result = search_tangle(warm, epochs=1, run=fresh, resume=True, progress=False)
    assert [h["epoch"] for h in result.history] == [1]


@pytest.mark.parametrize("options", [
    dict(second_order=True),
    dict(sampling="gumbel", temperature=(2.0, 0.5)),
    dict(sampling="softmax", combine="weighted_sum", warmup_epochs=1),
])
def test_search_variants_run_and_record_valid_architectures(options):
    torch.manual_seed(0)
    net = search_spaces.get("mlp", depths=(1, 2), widths=(8, 16), ranks=(2, 4))
    result = search_tangle(net, epochs=2, progress=False, **options)
    assert len(result.history) == 2 and 1 <= len(result.evaluations) <= 2
    assert all(e.ok and net.space.contains(e.config) for e in result.evaluations)
    assert all(np.isfinite(h["train_loss"]) for h in result.history)


def test_every_evaluation_is_what_evaluate_gives_with_the_final_weights():
    net = _net("mlp")
    result = search_tangle(net, epochs=4, arch_lr=0.1, cost_weight=0.3, progress=False, seed=2)  # records 3 architectures, one twice
    keys = [net.space.key(e.config) for e in result.evaluations]
    assert len(keys) == len(set(keys)) >= 2  # distinct architectures, each with its latest evaluation
    assert result.evaluations[-1].config == result.history[-1]["config"]
    again = evaluate(net, [e.config for e in result.evaluations], metrics=("accuracy", "loss", "params", "macs"))
    for stored, now in zip(result.evaluations, again):
        assert stored.metrics == pytest.approx(now.metrics)
    assert [n for n, _ in result.hypervolume_history] == list(range(1, len(keys) + 1))


def test_a_latency_objective_is_evaluated_without_being_the_searched_cost():
    net = search_spaces.get("mlp", depths=(1, 2), widths=(8, 16), ranks=(2, 4))
    result = search_tangle(net, objectives=["accuracy:max", "params:min", "latency_ms:min"], epochs=1, progress=False)
    assert result.evaluations[-1].metrics["latency_ms"] > 0


def test_bad_arguments_are_rejected_with_their_name():
    net = _net("mlp")
    with pytest.raises(ValueError, match="sampling"):
        search_tangle(net, epochs=1, sampling="bogus", progress=False)
    with pytest.raises(ValueError, match="combine"):
        search_tangle(net, epochs=1, combine="bogus", progress=False)
    with pytest.raises(ValueError, match="budget_constraint"):
        search_tangle(net, epochs=1, budget_constraint="accuracy>=0.5", progress=False)
    with pytest.raises(ValueError, match="cost_weight"):
        search_tangle(net, epochs=1, objectives=["accuracy:max"], cost_weight=1.0, progress=False)


@pytest.mark.parametrize("name", ["_arch", "_sampling", "_layout", "_cost", "_mode", "_budget", "_bilevel", "_search", "__init__"])
def test_docstring_examples_run(name):
    module = importlib.import_module("nas.tangle" if name == "__init__" else f"nas.tangle.{name}")
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0
