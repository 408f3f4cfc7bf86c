"""`Supernet.sliced_gradients`: training steps whose slice gradients go straight into the weights'
gradients give autograd's gradients and weights, bit for bit, in every family and pattern."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _batches import random_batch
from torch import nn

import nas
import search_spaces
from nas.elastic import ElasticLinear, ElasticLoRALinear, SlicedLinear
from nas.space import Choice
from nas.supernet import Supernet
from nas.training import WeightMixture, get_strategy, kl_divergence


class _ResNetish(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 5, 1, 2, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.conv = nn.Conv2d(8, 8, 3, 1, 1)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        return self.head(F.relu(self.conv(self.stem(x)) + self.stem(x)).mean((2, 3)))


def _net(name):
    torch.manual_seed(0)
    if name == "resnet":
        return nas.from_model(_ResNetish(), torch.zeros(2, 3, 8, 8))
    return search_spaces.get(name)


def _train(net, sliced, steps=3, mixture=0):
    if mixture:
        WeightMixture.attach(net, mixture)
    strategy = get_strategy("sandwich", n=2)
    x, y = random_batch(net, 16, 1)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    grads = []
    net.train()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        if sliced:
            with net.sliced_gradients():
                strategy.step(net, x, y, rng, F.cross_entropy, kl_divergence)
        else:
            strategy.step(net, x, y, rng, F.cross_entropy, kl_divergence)
        grads.append({n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None})
        opt.step()
    return net.state_dict(), grads


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.filterwarnings("ignore:using the built-in")
@pytest.mark.parametrize("name", [*search_spaces.names(), "resnet"])
def test_sandwich_steps_give_autograds_gradients_and_weights_bit_for_bit(name):
    (state, grads), (ref_state, ref_grads) = _train(_net(name), True), _train(_net(name), False)
    for step, ref in zip(grads, ref_grads):
        _assert_identical(step, ref)
    _assert_identical(state, ref_state)


def test_a_weight_mixture_trains_each_copy_as_autograd_does():
    (state, grads), (ref_state, ref_grads) = _train(_net("mlp"), True, mixture=2), _train(_net("mlp"), False, mixture=2)
    for step, ref in zip(grads, ref_grads):
        _assert_identical(step, ref)
    _assert_identical(state, ref_state)


def _two_widths():
    torch.manual_seed(0)
    body = nn.Sequential(ElasticLinear(6, 12, out=Choice("width", [4, 8, 12])), nn.ReLU(), ElasticLinear(12, 3))
    return Supernet(body, input_shape=(6,))


def test_one_backward_over_several_subnets_losses_gets_every_slice_gradient():
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    results = []
    for sliced in (True, False):
        net = _two_widths()
        with net.sliced_gradients() if sliced else torch.enable_grad():
            losses = []
            for width in (4, 12, 8):
                with net.activate({"width": width}):
                    losses.append(net(x).square().mean())
            sum(losses).backward()
        results.append({n: p.grad.clone() for n, p in net.named_parameters()})
    for name in results[0]:
        torch.testing.assert_close(results[0][name], results[1][name], rtol=1e-6, atol=1e-7)


def test_gradients_accumulate_over_blocks_when_nothing_zeroes_them():
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    results = []
    for sliced in (True, False):
        net = _two_widths()
        for width in (8, 4):
            with net.sliced_gradients() if sliced else torch.enable_grad(), net.activate({"width": width}):
                net(x).sum().backward()
        results.append({n: p.grad.clone() for n, p in net.named_parameters()})
    _assert_identical(*results)


def test_frozen_weights_get_no_gradient_and_copied_slices_get_autograds():
    torch.manual_seed(0)
    lora = ElasticLoRALinear.from_linear(nn.Linear(6, 8), [0, 2, 4])
    qkv = SlicedLinear(nn.Linear(8, 6), out=Choice("w", [1, 3]), segments=2)  # a gathered copy per width
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    results = []
    for sliced in (True, False):
        net = Supernet(nn.Sequential(lora, qkv), input_shape=(6,))
        for p in net.parameters():
            p.grad = None
        with net.sliced_gradients() if sliced else torch.enable_grad(), net.activate({"lora_rank": 2, "w": 1}):
            net(x).sum().backward()
        results.append({n: (None if p.grad is None else p.grad.clone()) for n, p in net.named_parameters()})
    assert results[0]["body.0.weight"] is None and results[0]["body.0.bias"] is None
    for name, ref in results[1].items():
        assert (results[0][name] is None) == (ref is None), name
        if ref is not None:
            assert torch.equal(results[0][name], ref), name


def test_weights_moved_or_cast_between_steps_get_the_gradients():
    net = _two_widths()
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    with net.sliced_gradients(), net.activate({"width": 4}):
        net(x).sum().backward()
    net.double()
    net.zero_grad(set_to_none=True)
    with net.sliced_gradients(), net.activate({"width": 4}):
        net(x.double()).sum().backward()
    weight = net.body[0].weight
    assert weight.grad is not None and weight.grad.dtype == torch.float64
    assert weight.grad[4:].abs().sum() == 0 and weight.grad[:4].abs().sum() > 0


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph")
def test_a_backward_that_builds_a_graph_is_refused_not_half_counted():
    net = _two_widths()
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match="create_graph=True ran inside Supernet.sliced_gradients"):
        with net.sliced_gradients(), net.activate({"width": 4}):
            net(x).square().sum().backward(create_graph=True)
    for p in net.parameters():  # outside the block: autograd's own way again
        p.grad = None
    with net.activate({"width": 4}):
        net(x).square().sum().backward(create_graph=True)
    assert net.body[0].weight.grad[:4].abs().sum() > 0


def test_copies_and_pickles_of_a_trained_supernet_carry_no_training_caches():
    import copy
    import pickle

    net = _net("mlp")
    _train(net, True, steps=1)
    assert any(m._grad_buffers for m in net._elastic)
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert all(not m._leaf_views and not m._grad_buffers and not m._views for m in clone._elastic)
        _, grads = _train(clone, True, steps=1)
        assert grads[0]
