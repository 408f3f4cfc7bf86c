"""Strategy `mixture` (Balanced Mixture of SuperNets): K weight copies, one per config by a balanced learned router."""

import pytest
import torch

from nas.evaluate import evaluate
from nas.export import export, load_model
from nas.training import Mixture, WeightMixture, get_strategy, load_checkpoint, train_supernet
from search_spaces.mlp import MLP


def _trained(k=3, epochs=2, **kwargs):
    torch.manual_seed(0)
    net = MLP()
    train_supernet(net, strategy=Mixture(k=k, route_steps=15), epochs=epochs, lr=1e-2, progress=False, **kwargs)
    return net


@pytest.fixture(scope="module")
def trained():
    return _trained()


def _configs(net, n, start=10_000):
    return [net.sample(start + s) for s in range(n)]


def test_mixture_routes_uniformly_sampled_configs_evenly_over_its_copies(trained):
    shares = trained.mixture.shares(_configs(trained, 1000))
    assert len(shares) == 3
    assert all(abs(s - 1 / 3) <= 0.06 for s in shares), shares
    assert int(trained.mixture.steps) == 16  # the router learnt for route_steps steps; the next one fixed the routes


def test_mixture_copies_differ_after_training_and_each_config_runs_its_own_copy(trained):
    mixture = trained.mixture
    copies = [torch.cat([p.detach().flatten() for p in c]) for c in mixture.copies]
    assert not torch.equal(copies[0], copies[1]) and not torch.equal(copies[1], copies[2])
    config = next(c for c in _configs(trained, 50) if mixture.route(trained.space.canonical(c)) == 1)
    x = torch.randn(8, 64)
    trained.eval()
    with trained.activate(config):
        assert mixture.current == 1
        routed = trained(x)
    with mixture.forced(0), trained.activate(config):
        other = trained(x)
    assert not torch.allclose(routed, other)


def test_mixture_switching_copies_under_no_grad_never_reuses_the_other_copys_cached_views(trained):
    config = trained.smallest()
    x = torch.randn(8, 64)
    trained.eval()
    outputs = []
    for copy in (0, 1, 0):
        with torch.no_grad(), trained.mixture.forced(copy), trained.activate(config):
            cached = trained(x)  # under no_grad the layers cache their weight views
        with trained.mixture.forced(copy), trained.activate(config):
            fresh = trained(x).detach()  # autograd on: views made anew
        assert torch.equal(cached, fresh)
        outputs.append(cached)
    assert not torch.allclose(outputs[0], outputs[1])


def test_mixture_extract_scores_what_evaluation_stored(trained):
    from nas.data import digits
    from nas.evaluate import score

    data = digits("flat")
    configs = [trained.largest(), trained.smallest(), *_configs(trained, 4)]
    evaluations = evaluate(trained, configs, data, metrics=("accuracy",))
    routes = {trained.mixture.route(trained.space.canonical(c)) for c in configs}
    assert len(routes) > 1
    for config, ev in zip(configs, evaluations):
        dense = trained.extract(config, data).eval()
        scores = score(dense, data.val_batches(256, torch.device("cpu")), torch.nn.functional.cross_entropy, True)
        assert scores["accuracy"] == pytest.approx(ev.metrics["accuracy"], abs=1e-9)


def test_mixture_resume_goes_on_bit_for_bit(tmp_path):
    def train(seed, **kwargs):
        torch.manual_seed(seed)  # a fresh process would rebuild the net with other weights
        net = MLP()
        history = train_supernet(net, strategy=Mixture(k=2, route_steps=30), epochs=3, lr=1e-2, progress=False, **kwargs)
        return net, [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    whole, expected = train(0, run=tmp_path / "whole")
    _, first = train(0, run=tmp_path / "cut", callback=lambda record: record["epoch"] == 1)  # cut while the router learns
    assert len(first) == 1
    resumed, history = train(7, run=tmp_path / "cut", resume=True)
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and any(k.startswith("mixture.copies.1.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert history == expected


def test_a_mixture_checkpoint_loads_into_a_plain_supernet_and_evaluates_the_same(tmp_path, trained):
    net = _trained(k=2, epochs=1, run=tmp_path / "run")
    fresh = MLP()
    load_checkpoint(fresh, tmp_path / "run")
    assert fresh.mixture.k == 2
    configs = [fresh.largest(), *_configs(fresh, 5)]
    assert [fresh.mixture.route(fresh.space.canonical(c)) for c in configs] == [net.mixture.route(net.space.canonical(c)) for c in configs]
    old, new = evaluate(net, configs, metrics=("accuracy", "loss")), evaluate(fresh, configs, metrics=("accuracy", "loss"))
    assert [e.metrics for e in old] == [e.metrics for e in new]


def test_a_mixture_subnet_exports_as_the_dense_model_of_its_copy(tmp_path, trained):
    config = next(c for c in _configs(trained, 50) if trained.mixture.route(trained.space.canonical(c)) == 2)
    done = export(trained, config, tmp_path / "m", formats="pt")
    x = torch.randn(4, 64)
    with torch.no_grad():
        assert torch.allclose(load_model(done.path).eval()(x), trained.extract(config, calibrate=False).eval()(x), atol=1e-6)


def test_mixture_of_one_copy_trains_exactly_as_its_rule_strategy():
    nets = []
    for strategy in (Mixture(k=1, n=2), get_strategy("sandwich", n=2)):
        torch.manual_seed(0)
        net = MLP()
        train_supernet(net, strategy=strategy, distill=False, epochs=1, lr=1e-2, progress=False)
        nets.append(net)
    body = [dict(n.body.named_parameters()) for n in nets]
    assert all(torch.equal(body[0][k], body[1][k]) for k in body[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "The 'k' parameter of Mixture must be an int >= 1, got 0."),
        ({"rule": "ladder"}, "The 'rule' parameter of Mixture must be 'sandwich' or 'uniform', got 'ladder'."),
        ({"balance_rate": -1}, "The 'balance_rate' parameter of Mixture must be a number >= 0, got -1."),
    ],
)
def test_mixture_rejects_bad_arguments_naming_them(kwargs, message):
    with pytest.raises(ValueError) as err:
        Mixture(**kwargs)
    assert str(err.value) == message


def test_a_supernet_holding_k_copies_refuses_a_mixture_of_another_k():
    net = MLP()
    WeightMixture.attach(net, 2)
    with pytest.raises(ValueError, match="already holds a weight mixture of k=2, but this Mixture has k=3"):
        Mixture(k=3).prepare(net)


def test_a_spec_run_with_strategy_mixture_loads_searches_and_exports_as_one_supernet(tmp_path):
    from nas.runs import load_run, run_spec

    spec = {
        "name": "mix",
        "space": {"family": "mlp"},
        "train": {"strategy": "mixture", "strategy_args": {"k": 2, "route_steps": 10}, "epochs": 1, "lr": 0.01},
        "search": {"searcher": "random", "budget": 8},
    }
    done = run_spec(spec, run=tmp_path / "mix", progress=False)
    run = load_run(tmp_path / "mix")
    assert run.net.mixture.k == 2 and run.spec["train.strategy_args"]["k"] == 2
    again = evaluate(run.net, [e.config for e in done.evaluations], metrics=tuple(done.evaluations[0].metrics))
    assert [e.metrics for e in again] == [e.metrics for e in done.evaluations]
    exported = export(run, "knee", tmp_path / "knee", formats="pt")  # checks the dense model against the supernet
    assert load_model(exported.path)(torch.zeros(2, 64)).shape == (2, 10)


def test_frozen_parameters_are_shared_by_the_copies_and_trainable_ones_are_not():
    net = MLP()
    frozen = next(net.body.parameters())
    frozen.requires_grad_(False)
    mixture = WeightMixture.attach(net, 3)
    assert mixture.copies[1][0] is frozen and mixture.copies[2][0] is frozen
    assert all(mixture.copies[1][i] is not mixture.copies[0][i] for i in range(1, len(mixture.copies[0])))
