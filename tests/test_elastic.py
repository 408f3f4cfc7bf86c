import doctest

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nas.elastic._attention
import nas.elastic._base
import nas.elastic._containers
import nas.elastic._conv
import nas.elastic._embedding
import nas.elastic._linear
import nas.elastic._norm
from nas import Supernet
from nas.elastic import (
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticLinear,
    ElasticLoRALinear,
    ElasticLowRankLinear,
    ElasticMultiheadAttention,
    ElasticSequential,
    OpChoice,
)
from nas.layers import Attention, Zero
from nas.space import Choice


@pytest.mark.parametrize(
    "module",
    [nas.elastic._attention, nas.elastic._base, nas.elastic._containers, nas.elastic._conv,
     nas.elastic._embedding, nas.elastic._linear, nas.elastic._norm],
)
def test_docstring_examples_run(module):
    assert doctest.testmod(module).failed == 0


def _net(layer, shape):
    return Supernet(layer, shape)


def test_linear_width_is_the_leading_rows():
    layer = ElasticLinear(8, 16, out=Choice("w", [4, 16]))
    net = _net(layer, (8,))
    x = torch.randn(3, 6)  # input width 6 of 8: leading columns
    with net.activate({"w": 4}):
        got = net(x)
    assert torch.allclose(got, x @ layer.weight[:4, :6].T + layer.bias[:4])


def test_conv_kernel_is_the_centre_crop():
    conv = ElasticConv2d(2, 4, 5, kernel=Choice("k", [3, 5]))
    net = _net(conv, (2, 6, 6))
    x = torch.randn(1, 2, 6, 6)
    with net.activate({"k": 3}):
        got = net(x)
    assert torch.allclose(got, F.conv2d(x, conv.weight[:, :, 1:4, 1:4], padding=1), atol=1e-6)


def test_depthwise_conv_follows_input_channels():
    conv = ElasticConv2d(8, 8, 3, depthwise=True)
    x = torch.randn(1, 5, 4, 4)
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight[:5], padding=1, groups=5), atol=1e-6)


def test_batchnorm_uses_leading_statistics():
    bn = ElasticBatchNorm2d(8).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.arange(8.0))
    x = torch.zeros(1, 3, 2, 2)
    assert torch.allclose(bn(x)[0, :, 0, 0], -torch.arange(3.0) / (1 + 1e-5) ** 0.5)


def test_attention_heads_equal_dense_attention_on_the_slices():
    mha = ElasticMultiheadAttention(16, 4, 8, heads=Choice("h", [2, 4]), head_dim=Choice("d", [4, 8]))
    net = _net(mha, (5, 12))
    x = torch.randn(2, 5, 12)
    with net.activate({"h": 2, "d": 4}):
        got = net(x)
        dense = mha.to_dense((x,), None)
    assert isinstance(dense, Attention) and dense.heads == 2 and dense.head_dim == 4
    q_rows = torch.tensor([h * 8 + d for h in range(2) for d in range(4)])
    assert torch.equal(dense.qkv.weight[:8], mha.qkv_weight[q_rows, :12])
    assert torch.allclose(got, dense(x), atol=1e-6)


def test_lowrank_from_linear_is_the_truncated_svd():
    linear = nn.Linear(12, 10)
    layer = ElasticLowRankLinear.from_linear(linear, [2, 5, 10])
    u, s, vh = torch.linalg.svd(linear.weight.detach().double())
    for r in (2, 5, 10):
        best = (u[:, :r] * s[:r]) @ vh[:r]
        assert torch.allclose((layer.U[:, :r] @ layer.V[:r]).double(), best, atol=1e-5)


def test_ordered_dropout_cutoff_uses_leading_components_only():
    layer = ElasticLowRankLinear(6, 6, rank=Choice("r", [2, 6]))
    layer.cutoff = 3
    layer(torch.randn(4, 6)).sum().backward()
    assert layer.V.grad[3:].abs().sum() == 0 and layer.U.grad[:, 3:].abs().sum() == 0
    assert layer.V.grad[:3].abs().sum() > 0


def test_lora_rank_zero_is_the_frozen_base_and_merges_on_extract():
    base = nn.Linear(6, 4)
    layer = ElasticLoRALinear.from_linear(base, [0, 2, 4])
    with torch.no_grad():
        layer.lora_B.normal_()
    net = _net(layer, (6,))
    x = torch.randn(3, 6)
    with net.activate({"lora_rank": 0}):
        assert torch.allclose(net(x), base(x), atol=1e-6)
    assert not layer.weight.requires_grad and layer.lora_A.requires_grad
    with net.activate({"lora_rank": 2}):
        expected = net(x)
    dense = net.extract({"lora_rank": 2})
    assert isinstance(dense, nn.Linear) and torch.allclose(dense(x), expected, atol=1e-5)


def test_lowrank_extracts_factored_only_when_smaller():
    layer = ElasticLowRankLinear(32, 32, rank=Choice("r", [2, 32]))
    net = _net(layer, (32,))
    assert isinstance(net.extract({"r": 2}), nn.Sequential)
    assert isinstance(net.extract({"r": 32}), nn.Linear)


def test_depth_and_op_choice_condition_the_space():
    blocks = [
        nn.Sequential(ElasticLinear(4, 4, out=Choice(f"b{i}.w", [2, 4])), OpChoice({"zero": Zero(), "skip": nn.Identity()}, f"b{i}.op"))
        for i in range(3)
    ]
    net = _net(ElasticSequential(blocks, Choice("depth", [1, 3])), (4,))
    space = net.space
    assert space["b1.w"].when == ("depth", (3,)) and space["b0.w"].when is None
    assert space.size() == 4 + 4**3
    dense = net.extract({"depth": 1, "b0.w": 4, "b0.op": "skip"})
    x = torch.randn(2, 4)
    with net.activate({"depth": 1, "b0.w": 4, "b0.op": "skip"}):
        assert torch.allclose(dense(x), net(x))


def test_bad_layer_arguments_are_rejected():
    with pytest.raises(ValueError, match="must lie in 1..8"):
        ElasticLinear(4, 8, out=Choice("w", [4, 16]))
    with pytest.raises(ValueError, match="odd sizes"):
        ElasticConv2d(4, 4, 5, kernel=Choice("k", [2, 5]))
    with pytest.raises(ValueError, match="values must lie in 0..2"):
        ElasticSequential([nn.Identity(), nn.Identity()], Choice("d", [1, 3]))
