"""The fused training paths of sliced layers give the plain sliced ops' gradients, bit for bit."""

import doctest

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nas.elastic._fused
from nas.elastic import ElasticConv2d, ElasticLinear, ElasticLowRankLinear, ElasticMultiheadAttention
from nas.elastic._base import crop
from nas.elastic._fused import cropped, gathered, sliced_linear, sliced_low_rank
from nas.space import Choice


def test_docstring_examples_run():
    assert doctest.testmod(nas.elastic._fused).failed == 0


def _plain_linear(x, W, b, o, i):
    return F.linear(x, crop(W, (o, i)), None if b is None else b[:o])


def _plain_low_rank(x, V, U, b, r, i, o):
    return F.linear(F.linear(x, crop(V, (r, i))), crop(U, (o, r)), None if b is None else b[:o])


def _plain_gathered(blocks, *tensors):
    return tuple(t.as_strided(sizes, strides, t.storage_offset() + offset).reshape(shape) for t, (sizes, strides, offset, shape) in zip(tensors, blocks))


def _leaves(*tensors):
    return [None if t is None else t.detach().clone().requires_grad_() for t in tensors]


def _weighted(out):
    return (out * torch.linspace(-1.0, 2.0, out.numel()).view(out.shape)).sum()


SUBNETS_LINEAR = [(16, 8), (5, 8), (16, 3), (1, 1), (4, 1), (1, 6), (9, 5)]  # (out, in) of a (16, 8) weight
SUBNETS_LOW_RANK = [(8, 12, 20), (3, 12, 20), (8, 5, 20), (8, 12, 7), (2, 4, 6), (1, 1, 1), (8, 1, 3)]  # (rank, in, out)


@pytest.mark.parametrize("rows", [(7,), (3, 5)], ids=["2d", "3d"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("input_grad", [True, False])
def test_sliced_linear_accumulates_the_plain_gradients_over_several_subnets(rows, bias, input_grad):
    gen = torch.Generator().manual_seed(0)
    W, b = torch.randn(16, 8, generator=gen), torch.randn(16, generator=gen) if bias else None
    xs = [torch.randn(*rows, i, generator=gen) for _, i in SUBNETS_LINEAR]
    results = []
    for fn in (_plain_linear, sliced_linear):
        Wp, bp = _leaves(W, b)
        x_grads = []
        for (o, i), x in zip(SUBNETS_LINEAR, xs):  # one step: every subnet's backward into the same .grad
            x = x.clone().requires_grad_(input_grad)
            _weighted(fn(x, Wp, bp, o, i)).backward()
            x_grads.append(x.grad)
        results.append([Wp.grad, None if bp is None else bp.grad, *x_grads])
    for plain, fused in zip(*results):
        assert (plain is None and fused is None) or torch.equal(plain, fused)


@pytest.mark.parametrize("rows", [(7,), (3, 5)], ids=["2d", "3d"])
@pytest.mark.parametrize("bias", [True, False])
def test_sliced_low_rank_accumulates_the_plain_gradients_over_several_subnets(rows, bias):
    gen = torch.Generator().manual_seed(1)
    V, U, b = torch.randn(8, 12, generator=gen), torch.randn(20, 8, generator=gen), torch.randn(20, generator=gen) if bias else None
    xs = [torch.randn(*rows, i, generator=gen) for _, i, _ in SUBNETS_LOW_RANK]
    results = []
    for fn in (_plain_low_rank, sliced_low_rank):
        Vp, Up, bp = _leaves(V, U, b)
        x_grads = []
        for (r, i, o), x in zip(SUBNETS_LOW_RANK, xs):
            x = x.clone().requires_grad_()
            _weighted(fn(x, Vp, Up, bp, r, i, o)).backward()
            x_grads.append(x.grad)
        results.append([Vp.grad, Up.grad, None if bp is None else bp.grad, *x_grads])
    for plain, fused in zip(*results):
        assert (plain is None and fused is None) or torch.equal(plain, fused)


def test_gathered_blocks_accumulate_the_plain_gradients():
    gen = torch.Generator().manual_seed(2)
    a, c = torch.randn(3, 4, 5, 6, generator=gen), torch.randn(6, 10, generator=gen)
    steps = [
        (((3, 2, 5, 4), a.stride(), 0, (30, 4)), ((6, 2, 5), (10, 5, 1), 0, (6, 10))),
        (((2, 4, 3, 6), a.stride(), 6 * 1, (24, 6)), ((4, 2, 2), (10, 5, 1), 11, (4, 2, 2))),
    ]
    results = []
    for fn in (_plain_gathered, gathered):
        ap, cp = _leaves(a, c)
        for blocks in steps:
            out = fn(blocks, ap, cp)
            (_weighted(out[0]) + _weighted(out[1]) * 3).backward()
        results.append((ap.grad, cp.grad))
    for plain, fused in zip(*results):
        assert torch.equal(plain, fused)


def test_cropped_conv_kernel_gets_the_plain_gradient():
    w = torch.randn(8, 4, 5, 5, generator=torch.Generator().manual_seed(3))
    results = []
    for fn in (lambda t, s, o: crop(t, s, o).contiguous(), cropped):
        wp = _leaves(w)[0]
        for sizes, starts in (((8, 4, 5, 5), (0, 0, 0, 0)), ((6, 3, 3, 3), (0, 0, 1, 1)), ((2, 4, 1, 1), (0, 0, 2, 2))):
            out = fn(wp, sizes, starts)
            assert out.is_contiguous()
            _weighted(F.conv2d(torch.ones(1, sizes[1], 6, 6), out)).backward()
        results.append(wp.grad)
    assert torch.equal(*results)


def test_an_existing_zero_gradient_is_added_into_like_autograd_does():
    W = torch.randn(16, 8)
    grads = []
    for fn in (_plain_linear, sliced_linear):
        Wp = _leaves(W)[0]
        Wp.grad = torch.zeros_like(Wp)  # zero_grad(set_to_none=False)
        held = Wp.grad
        _weighted(fn(torch.ones(2, 5), Wp, None, 9, 5)).backward()
        assert Wp.grad is held  # accumulated in place, as AccumulateGrad does
        grads.append(Wp.grad.clone())
    assert torch.equal(*grads)


def test_autograd_grad_returns_full_size_gradients_and_leaves_dot_grad_alone():
    V, U, b = _leaves(torch.randn(8, 12), torch.randn(20, 8), torch.randn(20))
    x = torch.randn(4, 10)
    want = torch.autograd.grad(_weighted(_plain_low_rank(x, V, U, b, 5, 10, 13)), (V, U, b))
    got = torch.autograd.grad(_weighted(sliced_low_rank(x, V, U, b, 5, 10, 13)), (V, U, b))
    assert all(torch.equal(w, g) for w, g in zip(want, got))
    assert V.grad is None and U.grad is None and b.grad is None


def test_backward_with_inputs_leaves_other_weights_alone():
    W, b = _leaves(torch.randn(16, 8), torch.randn(16))
    x = torch.randn(3, 6, requires_grad=True)
    _weighted(sliced_linear(x, W, b, 7, 6)).backward(inputs=[x])
    assert W.grad is None and b.grad is None
    plain_x = x.detach().clone().requires_grad_()
    _weighted(_plain_linear(plain_x, W, b, 7, 6)).backward(inputs=[plain_x])
    assert torch.equal(x.grad, plain_x.grad)


def test_second_derivatives_match_the_plain_ops():
    V, U, b = _leaves(torch.randn(8, 12), torch.randn(20, 8), torch.randn(20))
    x = torch.randn(4, 10)
    probe = [torch.randn_like(t) for t in (V, U, b)]

    def hvp(fn):
        grads = torch.autograd.grad(fn(x, V, U, b, 5, 10, 13).pow(2).sum(), (V, U, b), create_graph=True)
        return torch.autograd.grad(grads, (V, U, b), grad_outputs=probe)

    assert all(torch.allclose(w, g, rtol=1e-5, atol=1e-6) for w, g in zip(hvp(_plain_low_rank), hvp(sliced_low_rank)))


def _layer_grads(layer, configs, x_of, fused: bool, monkeypatch):
    if not fused:
        import nas.elastic._attention as attention
        import nas.elastic._conv as conv
        import nas.elastic._linear as linear

        monkeypatch.setattr(linear, "sliced_linear", _plain_linear)
        monkeypatch.setattr(linear, "sliced_low_rank", _plain_low_rank)
        monkeypatch.setattr(attention, "gathered", _plain_gathered)
        monkeypatch.setattr(conv, "cropped", lambda t, s, o: crop(t, s, o).contiguous())
    layer.zero_grad(set_to_none=True)
    for config in configs:  # a config switch between the subnets of one step
        layer._configure(config)
        x = x_of(config)
        _weighted(layer(x)).backward()
    monkeypatch.undo()
    return [p.grad.clone() for p in layer.parameters()]


@pytest.mark.parametrize("kind", ["linear", "low_rank", "attention", "conv"])
def test_elastic_layers_train_several_subnets_exactly_as_plain_slicing(kind, monkeypatch):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(4)
    rng = np.random.default_rng(0)
    if kind == "linear":
        layer = ElasticLinear(12, 16, out=Choice("w", [4, 8, 16]))
        configs = [{"w": int(w)} for w in rng.choice([4, 8, 16], 5)]
        inputs = {w: torch.randn(6, 7 + w // 4, generator=gen) for w in (4, 8, 16)}
        x_of = lambda c: inputs[c["w"]]  # noqa: E731
    elif kind == "low_rank":
        layer = ElasticLowRankLinear(12, 16, rank=Choice("r", [2, 4, 8]), out=Choice("w", [4, 16]))
        configs = [{"r": int(r), "w": int(w)} for r, w in zip(rng.choice([2, 4, 8], 5), rng.choice([4, 16], 5))]
        x = torch.randn(3, 5, 12, generator=gen)
        x_of = lambda c: x[..., : 6 + c["r"]]  # noqa: E731
    elif kind == "attention":
        layer = ElasticMultiheadAttention(16, 4, 8, heads=Choice("h", [1, 2, 4]), head_dim=Choice("d", [4, 8]))
        configs = [{"h": 2, "d": 4}, {"h": 4, "d": 8}, {"h": 1, "d": 8}, {"h": 2, "d": 4}]
        x = torch.randn(2, 5, 16, generator=gen)
        x_of = lambda c: x[..., : 8 + 4 * (c["h"] % 2)]  # noqa: E731
    else:
        layer = ElasticConv2d(4, 8, 5, kernel=Choice("k", [3, 5]), out=Choice("c", [4, 8]))
        configs = [{"k": 3, "c": 4}, {"k": 5, "c": 8}, {"k": 5, "c": 4}, {"k": 3, "c": 8}]
        x = torch.randn(2, 4, 6, 6, generator=gen)
        x_of = lambda c: x[:, : 2 + c["c"] // 4]  # noqa: E731
    plain = _layer_grads(layer, configs, x_of, False, monkeypatch)
    fused = _layer_grads(layer, configs, x_of, True, monkeypatch)
    assert all(torch.equal(p, f) for p, f in zip(plain, fused))
