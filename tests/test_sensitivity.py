"""Sensitivity priors: Hutchinson traces, heavy-tail spectrum metrics, per-level error proxies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nas
from nas.data import digits
from nas.searchers import EvoPressSearcher
from nas.sensitivity import (
    alpha_farms,
    alpha_hill,
    hutchinson_trace,
    sensitivity,
    spectrum_metrics,
)


def test_hutchinson_trace_is_within_5_percent_of_the_exact_trace_of_a_quadratic_after_500_probes():
    rng = np.random.default_rng(0)
    n = 50
    noise = rng.normal(size=(n, n)) * 0.3
    A = torch.tensor(np.diag(rng.uniform(0.5, 3.0, n)) + (noise + noise.T) / 2, dtype=torch.float64)
    x = torch.randn(n, dtype=torch.float64, requires_grad=True)
    estimate = hutchinson_trace(lambda: 0.5 * x @ A @ x, [x], probes=500, seed=1)[0]
    exact = float(torch.trace(A))
    assert abs(estimate - exact) <= 0.05 * abs(exact)
    few = [abs(hutchinson_trace(lambda: 0.5 * x @ A @ x, [x], probes=2, seed=s)[0] - exact) for s in range(20)]
    assert max(few) > abs(estimate - exact)  # the estimate does improve with probes


def test_hutchinson_gives_each_tensor_its_own_block_trace():
    a = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    def loss():
        return (a**2).sum() * 1.5 + (b**2).sum() * 0.5 + 0.25 * a[0] * b[0, 0]
    ta, tb = hutchinson_trace(loss, [a, b], probes=2000, seed=0)
    assert ta == pytest.approx(9.0, rel=0.01) and tb == pytest.approx(4.0, rel=0.01)


def test_hill_estimator_recovers_a_power_law_tail():
    rng = np.random.default_rng(0)
    for tail in (2.0, 3.0, 4.0):
        assert alpha_hill(rng.pareto(tail - 1, 200_000) + 1) == pytest.approx(tail, rel=0.05)


def test_farms_corrects_alpha_for_the_aspect_ratio_of_a_layer():
    rng = np.random.default_rng(0)
    shapes = [(64, 64), (64, 256), (64, 1024), (512, 64)]
    plain = [spectrum_metrics(rng.normal(size=s))["alpha"] for s in shapes]
    farms = [alpha_farms(rng.normal(size=s)) for s in shapes]
    assert max(plain) / min(plain) > 2.0  # noise looks heavier-tailed or lighter just by its shape
    assert max(farms) / min(farms) < 1.1


def test_a_structured_low_rank_layer_has_a_heavier_tail_than_noise():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(128, 128))
    structured = noise + (rng.normal(size=(128, 4)) * [40, 20, 10, 5]) @ rng.normal(size=(4, 128))
    assert spectrum_metrics(structured)["alpha"] < spectrum_metrics(noise)["alpha"]
    assert spectrum_metrics(structured)["stable_rank"] < spectrum_metrics(noise)["stable_rank"]


@pytest.fixture(scope="module")
def mlp_priors():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 10))
    data = digits("flat", seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(15):  # a trained model: near a minimum its Hessian traces are positive
        for x, y in data.train_batches(64, epoch, "cpu"):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    net = nas.from_model(model, torch.zeros(1, 64), widths=None, depth=False, ranks=[2, 4, 8, 16, 24])
    return net, data, sensitivity(net, data, probes=16, batches=2, seed=0)


def test_sensitivity_measures_every_level_layer_and_its_error_falls_with_rank(mlp_priors):
    net, _, priors = mlp_priors
    assert sorted(priors.layers) == sorted(net.space.names())
    for name, row in priors.errors.items():
        metrics = priors.layers[name]
        assert {"alpha", "alpha_farms", "stable_rank", "hessian_trace", "curvature"} <= set(metrics)
        assert metrics["hessian_trace"] > 0
        assert row[-1] == pytest.approx(0.0, abs=1e-12)
        assert (np.diff(row) < 0).all()  # SVD-initialised: each dropped rank adds error


def test_priors_serve_predictor_features_and_evopress_initial_allocations(mlp_priors):
    net, _, priors = mlp_priors
    configs = [net.space.sample(i) for i in range(5)] + [net.largest()]
    features = priors.features(configs, net.space)
    assert features.shape == (6, 3) and (features[-1] == 0).all()
    budget = 0.5 * net.cost(net.largest())["params"]
    cost = net.cost
    initial = priors.initial(net.space, cost, f"params<={budget:g}", k=3)
    assert 1 <= len(initial) <= 3 and all(cost(c)["params"] <= budget for c in initial)
    predicted = priors.predict(initial, net.space)
    assert list(predicted) == sorted(predicted)
    searcher = EvoPressSearcher(net.space, ["accuracy:max", "params:min"], cost=cost, constraints=[f"params<={budget:g}"],
                                tolerance=0.3, initial=initial, seed=0)
    first = searcher.ask(2)
    assert first[0] == initial[0]
