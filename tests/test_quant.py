"""Bit-width as a dimension: fake quantisation, model-size cost, extraction that carries the quantisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nas.data import digits
from nas.elastic import ElasticQuant, fake_quantize, with_bits
from nas.evaluate import evaluate, score
from nas.evaluation import Evaluation
from nas.searchers import EvoPressSearcher
from nas.sensitivity import sensitivity
from nas.space import Choice
from nas.supernet import Supernet


def quant_mlp(seed: int = 0) -> Supernet:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
    return Supernet(with_bits(model, bits=(4, 8, 16)), input_shape=(64,))


@pytest.mark.parametrize("bits", [2, 4, 8, 16])
def test_fake_quantize_puts_each_row_on_a_symmetric_grid_of_that_many_bits(bits):
    w = torch.randn(6, 50)
    q = fake_quantize(w, bits)
    levels = 2 ** (bits - 1) - 1
    scale = w.abs().amax(dim=1, keepdim=True) / levels
    codes = q / scale
    assert torch.allclose(codes, codes.round(), atol=1e-3) and codes.abs().max() <= levels + 1e-3
    assert (q.abs().amax(dim=1) - w.abs().amax(dim=1)).abs().max() < 1e-6  # the extreme value is kept


def test_quantisation_error_falls_with_bits_and_32_bits_is_the_identity():
    w = torch.randn(16, 16)
    errors = [float((fake_quantize(w, b) - w).norm()) for b in (2, 4, 8, 16)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-3
    assert fake_quantize(w, 32) is w


def test_supernet_cost_reports_model_bits_and_bitops_of_the_chosen_bit_widths():
    net = quant_mlp()
    assert net.space.names() == ["0.bits", "2.bits", "4.bits"]
    config = {"0.bits": 4, "2.bits": 8, "4.bits": 16}
    cost = net.cost(config)
    weights = [64 * 32, 32 * 32, 32 * 10]
    biases = [32, 32, 10]
    assert cost["params"] == sum(weights) + sum(biases)
    assert cost["model_bits"] == 4 * weights[0] + 8 * weights[1] + 16 * weights[2] + 32 * sum(biases)
    assert cost["bitops"] == 4 * weights[0] + 8 * weights[1] + 16 * weights[2]
    assert net.cost(net.smallest())["model_bits"] < cost["model_bits"] < net.cost(net.largest())["model_bits"]


def test_the_extracted_model_carries_the_quantisation_so_its_accuracy_equals_the_evaluated_one():
    net = quant_mlp()
    data = digits("flat", seed=0)
    config = {"0.bits": 4, "2.bits": 4, "4.bits": 8}
    dense = net.extract(config).eval()
    assert not any(isinstance(m, ElasticQuant) for m in dense.modules())
    assert [m.weight_bits for m in dense.modules() if isinstance(m, nn.Linear)] == [4, 4, 8]
    first = next(m for m in dense.modules() if isinstance(m, nn.Linear))
    assert max(len(torch.unique(row)) for row in first.weight) <= 2**4 - 1
    x = torch.randn(7, 64)
    with net.activate(config), torch.no_grad():
        assert torch.allclose(net.eval()(x), dense(x), atol=1e-6)
    evaluated = evaluate(net, [config], data, metrics=("accuracy",))[0].metrics["accuracy"]
    extracted = score(dense, data.val_batches(256, "cpu"), nn.CrossEntropyLoss(), True)["accuracy"]
    assert extracted == evaluated


def test_gradients_pass_through_the_quantiser_so_supernets_train_through_it():
    layer = ElasticQuant(nn.Linear(8, 4), Choice("bits", [4, 8]))
    layer(torch.randn(3, 8)).sum().backward()
    assert layer.layer.weight.grad is not None and layer.layer.weight.grad.abs().sum() > 0


def test_bad_layers_or_bit_widths_are_one_clear_line():
    with pytest.raises(TypeError, match="quantises nn.Linear or nn.Conv2d layers, got ReLU"):
        ElasticQuant(nn.ReLU(), Choice("bits", [4, 8]))
    with pytest.raises(ValueError, match="'bits' parameter of ElasticQuant must be a Choice of ints in 2..32"):
        ElasticQuant(nn.Linear(2, 2), Choice("bits", [1, 8]))


def test_conv_layers_quantise_too():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    net = Supernet(with_bits(model, bits=(4, 8)), input_shape=(1, 8, 8))
    config = {"0.bits": 4, "3.bits": 8}
    x = torch.randn(2, 1, 8, 8)
    with net.activate(config), torch.no_grad():
        assert torch.allclose(net.eval()(x), net.extract(config).eval()(x), atol=1e-6)
    assert net.cost(config)["model_bits"] == 4 * 36 + 8 * 1440 + 32 * (4 + 10)


def test_bit_widths_are_levels_for_evopress_and_sensitivity():
    net = quant_mlp()
    data = digits("flat", seed=0)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for epoch in range(10):  # trained (through the quantiser): positive curvature near the minimum
        for x, y in data.train_batches(64, epoch, "cpu"):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()
    priors = sensitivity(net, data, probes=4, batches=1)
    assert sorted(priors.errors) == net.space.names()
    assert all(row[0] > row[-1] for row in priors.errors.values())  # 4 bits lose more than 16 (HAWQ-V2's Omega)
    budget = 0.5 * net.cost(net.largest())["model_bits"]
    searcher = EvoPressSearcher(net.space, ["accuracy:max"], cost=net.cost, constraints=[f"model_bits<={budget:g}"],
                                tolerance=0.3, seed=0)
    for _ in range(3):
        configs = searcher.ask(2)
        searcher.tell(evaluate(net, configs, data, metrics=("accuracy",)))
    assert searcher.evaluations and all(net.cost(e.config)["model_bits"] <= budget for e in searcher.evaluations)
    assert isinstance(searcher.evaluations[0], Evaluation)
