"""Elastic 1-D layers and the `cnn1d` family: exact slices, exact costs, every down-sampling op."""

import doctest

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nas.elastic._conv1d
import search_spaces
import search_spaces.cnn1d
from nas import Supernet
from nas.data import resolve
from nas.elastic import DOWNSAMPLES, ElasticBatchNorm1d, ElasticConv1d, ElasticPool1d, Rule, stride_of
from nas.space import Choice


def test_docstring_examples_run():
    assert doctest.testmod(nas.elastic._conv1d).failed == 0
    assert doctest.testmod(search_spaces.cnn1d).failed == 0


def test_conv1d_kernel_is_the_centre_crop_and_channels_the_leading_slice():
    conv = ElasticConv1d(4, 8, 7, kernel=Choice("k", [3, 7]), out=Choice("c", [4, 8]), bias=True)
    net = Supernet(conv, (4, 20))
    x = torch.randn(2, 3, 20)  # 3 of 4 input channels: the leading ones
    with net.activate({"k": 3, "c": 4}):
        got = net(x)
    assert torch.allclose(got, F.conv1d(x, conv.weight[:4, :3, 2:5], conv.bias[:4], padding=1), atol=1e-6)


def test_conv1d_stride_rule_is_every_other_position_of_the_stride_one_output():
    down = Choice("down", list(DOWNSAMPLES))
    conv = ElasticConv1d(2, 4, 5, stride=Rule(down, stride_of))
    net = Supernet(conv, (2, 9))
    x = torch.randn(3, 2, 9)
    with torch.no_grad():
        with net.activate({"down": "none"}):
            full = net(x)
        with net.activate({"down": "stride"}):
            strided = net(x)
    assert strided.shape == (3, 4, 5) and torch.allclose(strided, full[:, :, ::2], atol=1e-6)


def test_depthwise_conv1d_follows_input_channels():
    conv = ElasticConv1d(6, 6, 3, depthwise=True)
    x = torch.randn(2, 4, 10)
    assert torch.allclose(conv(x), F.conv1d(x, conv.weight[:4], padding=1, groups=4), atol=1e-6)


def test_batchnorm1d_uses_leading_statistics():
    bn = ElasticBatchNorm1d(8).eval()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
        bn.weight.normal_()
    x = torch.randn(3, 5, 7)
    expected = F.batch_norm(x, bn.running_mean[:5], bn.running_var[:5], bn.weight[:5], bn.bias[:5], False, 0.1, bn.eps)
    assert torch.allclose(bn(x), expected, atol=1e-6)


@pytest.mark.parametrize(("op", "expected"), [("max", F.max_pool1d), ("avg", F.avg_pool1d), ("none", None), ("stride", None)])
def test_pool1d_runs_the_chosen_op_and_extracts_to_it(op, expected):
    pool = ElasticPool1d(Choice("down", list(DOWNSAMPLES)))
    net = Supernet(nn.Sequential(ElasticConv1d(1, 2, 3), pool), (1, 10))
    x = torch.randn(2, 1, 10)
    with torch.no_grad(), net.activate({"down": op}):
        got = net(x)
        conv_out = net.body[0](x)
    assert torch.allclose(got, expected(conv_out, 2, 2) if expected else conv_out, atol=1e-6)
    assert torch.allclose(net.extract({"down": op}, calibrate=False)(x), got, atol=1e-6)


def test_bad_1d_layer_arguments_are_rejected():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        ElasticConv1d(2, 2, 4)
    with pytest.raises(ValueError, match="needs odd sizes <= 5"):
        ElasticConv1d(2, 2, 5, kernel=Choice("k", [3, 7]))
    with pytest.raises(ValueError, match="stride must be an int >= 1 or a Rule"):
        ElasticConv1d(2, 2, 3, stride=0)
    with pytest.raises(ValueError, match="Choice over"):
        ElasticPool1d(Choice("down", ["max", "median"]))
    with pytest.raises(ValueError, match="'downsamples' parameter of CNN1D must be a non-empty subset"):
        search_spaces.get("cnn1d", downsamples=("max", "blur"))


def test_cnn1d_cost_matches_hand_count():
    net = search_spaces.get("cnn1d", stem=4, stem_kernel=3, stages=((4, 8),), depths=(1,), kernels=(3, 5), num_classes=3)
    config = {"stages.0.down": "stride", "stages.0.depth": 1, "stages.0.blocks.0.kernel": 5, "stages.0.channels": 8}
    # stem 1->4 k3 on 40; bn; conv 4->8 k5 stride 2 (length 20); bn; conv 8->8 k5; bn; linear 8->3
    params = 4 * 3 + 8 + 8 * 4 * 5 + 16 + 8 * 8 * 5 + 16 + 8 * 3 + 3
    macs = 4 * 40 * 3 + 4 * 40 + 8 * 20 * 20 + 8 * 20 + 8 * 20 * 40 + 8 * 20 + 8 * 3
    assert net.cost(config) == {"params": params, "macs": macs}
    pooled = dict(config, **{"stages.0.down": "max"})
    assert net.cost(pooled) == {"params": params, "macs": macs}  # pooling then a stride-1 conv on 20: same sizes


def test_every_down_sampling_op_gives_its_own_subnet_and_extracts_exactly():
    torch.manual_seed(0)
    net = search_spaces.get("cnn1d").eval()
    x = torch.randn(3, 1, 40)
    outputs = []
    for op in DOWNSAMPLES:
        config = dict(net.largest(), **{f"stages.{s}.down": op for s in range(3)})
        with torch.no_grad(), net.activate(config):
            outputs.append(net(x))
        with torch.no_grad():
            assert torch.allclose(net.extract(config, calibrate=False)(x), outputs[-1], atol=1e-5)
    assert len({tuple(o.flatten().round(decimals=4).tolist()) for o in outputs}) == len(DOWNSAMPLES)
    sizes = [net.cost(dict(net.largest(), **{"stages.0.down": op}))["macs"] for op in DOWNSAMPLES]
    assert sizes[0] == min(sizes) and sizes[-1] == max(sizes)


def test_cnn1d_default_data_is_mnist1d_signals_and_other_lengths_need_their_own_net():
    net = search_spaces.get("cnn1d")
    data = resolve(net, None)
    assert net.input_shape == (1, 40) and tuple(data.train[0][0].shape) == (1, 40)
    assert len(data.test) == 1000
    with pytest.raises(ValueError, match=r"expects input samples of shape \[1, 40\], but the data gives \[1, 64\]"):
        from nas.data import digits

        resolve(net, digits("signal"))
    short = search_spaces.get("cnn1d", length=64)
    assert resolve(short, digits("signal")).val is digits("signal").val


def test_mlp_and_transformer_take_mnist1d():
    from nas.data import mnist1d

    rng = np.random.default_rng(0)
    for family, kind, kwargs in (("mlp", "flat", {"in_features": 40}), ("transformer", "tokens", {"token_shape": (8, 5)})):
        net = search_spaces.get(family, **kwargs)
        data = resolve(net, mnist1d(kind))
        x = data.val.tensors[0][:4]
        config = net.sample(rng)
        with torch.no_grad(), net.activate(config):
            assert net(x).shape == (4, 10)


def test_searchable_stem_width_slices_the_stem_and_extracts_exactly():
    torch.manual_seed(0)
    net = search_spaces.get("cnn1d", stem=(4, 8), stem_kernel=3, stages=((4, 8),), depths=(1,), kernels=(3,)).eval()
    x = torch.randn(3, 1, 40)
    base = {"stages.0.down": "none", "stages.0.depth": 1, "stages.0.blocks.0.kernel": 3, "stages.0.channels": 8}
    costs = []
    for stem in (4, 8):
        config = dict(base, **{"stem.channels": stem})
        with torch.no_grad(), net.activate(config):
            got = net(x)
        with torch.no_grad():
            assert torch.allclose(net.extract(config, calibrate=False)(x), got, atol=1e-5)
        costs.append(net.cost(config)["params"])
    # the stem conv (k3, no bias) and its BN grow by 4 channels, the first block's first conv by 4 input channels (k3)
    assert costs[1] - costs[0] == 4 * 3 + 2 * 4 + 8 * 4 * 3


def test_bad_stem_is_rejected():
    with pytest.raises(ValueError, match="'stem' parameter of CNN1D must be a positive int or a non-empty sequence"):
        search_spaces.get("cnn1d", stem=())
    with pytest.raises(ValueError, match="'stem' parameter of CNN1D must be a positive int"):
        search_spaces.get("cnn1d", stem=(0, 4))
    for bad in ("16", 16.0, (4, 8.5), True):  # a string is not a sequence of widths (no silent ["1", "6"])
        with pytest.raises(ValueError, match="'stem' parameter of CNN1D must be a positive int"):
            search_spaces.get("cnn1d", stem=bad)


def test_widened_space_of_issue_16_reaches_570_parameters_and_keeps_the_default_largest():
    wide = search_spaces.get("cnn1d", stem=(4, 8, 16), stages=((2, 4, 8, 16), (4, 8, 16, 24, 32), (8, 16, 24, 32, 48)))
    default = search_spaces.get("cnn1d")
    # stem 3 widths x per stage (4 down-sampling ops x its widths x (4 + 4**2) depth-kernel choices)
    assert wide.space.size() == 3 * (4 * 4 * 20) * (4 * 5 * 20) ** 2 == 153_600_000
    assert default.space.size() == (4 * 2 * 20) * (4 * 3 * 20) ** 2 == 9_216_000
    assert wide.cost(wide.smallest())["params"] == 570 and default.cost(default.smallest())["params"] == 5_162
    assert wide.cost(wide.largest()) == default.cost(default.largest())


def test_kernels_and_downsamples_can_be_given_per_stage():
    torch.manual_seed(0)
    net = search_spaces.get("cnn1d", stem=4, stages=((4,), (4, 8)), depths=(1,), kernels=((5,), (3, 7)),
                            downsamples=(("max",), ("stride", "none"))).eval()
    assert net.family_args["kernels"] == [[5], [3, 7]] and net.family_args["downsamples"] == [["max"], ["stride", "none"]]
    assert {d.name: list(d.values) for d in net.space.dimensions if "kernel" in d.name or "down" in d.name} == {
        "stages.0.down": ["max"], "stages.0.blocks.0.kernel": [5], "stages.1.down": ["stride", "none"], "stages.1.blocks.0.kernel": [3, 7]}
    assert net.space.size() == 1 * 2 * 2 * 2  # stage 1: two ops, two widths, two kernels
    assert net.body[4].blocks[0][0].body[0].weight.shape[-1] == 5 and net.body[6].blocks[0][0].body[0].weight.shape[-1] == 7
    x = torch.randn(2, 1, 40)
    config = dict(net.largest(), **{"stages.1.blocks.0.kernel": 3, "stages.1.down": "stride"})
    with torch.no_grad(), net.activate(config):
        got = net(x)
    with torch.no_grad():
        assert torch.allclose(net.extract(config, calibrate=False)(x), got, atol=1e-5)
    flat = search_spaces.get("cnn1d", stem=4, stages=((4,), (4, 8)), depths=(1,), kernels=(3, 7), downsamples=("none", "max"))
    assert flat.family_args["kernels"] == [3, 7] and flat.family_args["downsamples"] == ["max", "none"]
    assert flat.space.size() == (2 * 2) * (2 * 2 * 2)


def test_bad_per_stage_kernels_or_downsamples_are_rejected():
    stages = ((4,), (8,))
    with pytest.raises(ValueError, match=r"'kernels' parameter of CNN1D must be one sequence for every stage or one per stage \(2 stages\)"):
        search_spaces.get("cnn1d", stages=stages, kernels=((3,), (5,), (7,)))
    with pytest.raises(ValueError, match="'kernels' parameter of CNN1D must be a non-empty sequence of odd positive ints"):
        search_spaces.get("cnn1d", stages=stages, kernels=((3,), ()))
    with pytest.raises(ValueError, match="'kernels' parameter of CNN1D must be a non-empty sequence of odd positive ints"):
        search_spaces.get("cnn1d", stages=stages, kernels=((3,), (4,)))
    with pytest.raises(ValueError, match="'downsamples' parameter of CNN1D must be a non-empty subset"):
        search_spaces.get("cnn1d", stages=stages, downsamples=(("max",), ("blur",)))
    with pytest.raises(ValueError, match="'downsamples' parameter of CNN1D must be a sequence"):
        search_spaces.get("cnn1d", stages=stages, downsamples="max")
