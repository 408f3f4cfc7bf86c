"""nas.from_model on models written as users write them: spaces, extraction, cost, importance, export, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import nas
from examples.user_models import MLP, MobileNetV2, ResNet18
from nas.elastic import ElasticModule

IMAGE = (2, 3, 32, 32)


def _perturb_batchnorm(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    return model.eval()


def _macs(model: nn.Module, x: torch.Tensor) -> int:
    """Per-sample multiply-accumulates of the conv and linear layers, counted here independently of nas."""
    total = []

    def hook(module, args, out):
        per = module.in_channels // module.groups * math.prod(module.kernel_size) if isinstance(module, (nn.Conv1d, nn.Conv2d)) else module.in_features
        total.append(out[0].numel() * per)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x[:1])
    for h in handles:
        h.remove()
    return sum(total)


CASES = {
    "resnet18": (lambda: ResNet18(), lambda: torch.randn(*IMAGE), 40_960_000, 16),
    "mobilenet_v2": (lambda: MobileNetV2(), lambda: torch.randn(*IMAGE), None, 30),
    "mlp": (lambda: MLP(), lambda: torch.randn(4, 64), 16, 2),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    make_model, make_input, _, _ = CASES[request.param]
    torch.manual_seed(0)
    model = _perturb_batchnorm(make_model())
    x = make_input()
    net = nas.from_model(model, x).eval()
    return request.param, model, x, net


def test_space_size_and_dimensions(case):
    name, _, _, net = case
    _, _, size, dims = CASES[name]
    print(f"\n{name}: {net.space.size():.3g} subnets, {len(net.space.names())} dimensions: {net.space.names()}")
    assert len(net.space.names()) == dims
    if size is not None:
        assert net.space.size() == size
    assert net.space.size() > 1


def test_full_model_outputs_are_unchanged_by_conversion_and_importance_order(case):
    _, model, x, net = case
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=0, atol=1e-5)


def test_extract_equals_activate_and_cost_equals_the_extracted_model(case):
    _name, model, x, net = case
    rng = np.random.default_rng(0)
    configs = [net.largest(), net.smallest()] + [net.sample(rng) for _ in range(48)]
    for config in configs:
        with torch.no_grad(), net.activate(config):
            expected = net(x)
        dense = net.extract(config, calibrate=False).eval()
        assert type(dense) is type(model)
        assert not any(isinstance(m, ElasticModule) for m in dense.modules())
        with torch.no_grad():
            torch.testing.assert_close(dense(x), expected, rtol=0, atol=1e-5)
        cost = net.cost(config)
        assert cost["params"] == sum(p.numel() for p in dense.parameters()), config
        assert cost["macs"] == _macs(dense, x), config


def test_smallest_subnet_holds_at_most_a_quarter_of_the_parameters(case):
    _, _, _, net = case
    assert net.cost(net.smallest())["params"] <= 0.25 * net.cost(net.largest())["params"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_extracted_model_runs_in_onnxruntime_like_pytorch(case, tmp_path):
    import onnxruntime as ort

    _, _, x, net = case
    for i, config in enumerate([net.smallest(), net.sample(1)]):
        dense = net.extract(config, calibrate=False).eval()
        path = tmp_path / f"{i}.onnx"
        torch.onnx.export(dense, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"],
                          dynamic_axes={"input": {0: "batch"}})
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(got, dense(x).numpy(), rtol=0, atol=1e-4)


def test_describe_says_what_is_tied_elastic_and_fixed():
    net = nas.from_model(ResNet18(), torch.randn(*IMAGE))
    text = net.describe()
    assert "layer1.0.conv2: output channels tied to layer1.1.conv2 by add" in text
    assert "fc: output features fixed at 10: the model's output" in text
    assert "layer2: depth elastic [0, 1] (layer2.depth)" in text
    assert net.space["layer2.0.conv2.width"].values == (8, 16, 24, 32)


def test_importance_order_puts_the_largest_filters_first():
    torch.manual_seed(0)
    model = MLP().eval()
    net = nas.from_model(model, torch.randn(4, 64), depth=False)
    norms = net.body.fc1.weight.detach().norm(dim=1)
    assert torch.all(norms[:-1] >= norms[1:] - 1e-6)
    kept = nas.from_model(model, torch.randn(4, 64), importance=False)
    assert torch.equal(kept.body.fc1.weight, model.fc1.weight)


def test_activation_importance_with_data_keeps_the_outputs():
    torch.manual_seed(0)
    model = MLP().eval()
    data = nas.data.digits("flat")
    net = nas.from_model(model, torch.randn(4, 64), data=data).eval()
    x = data.val.tensors[0][:16]
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=0, atol=1e-5)
    assert not torch.equal(net.body.fc1.weight, nas.from_model(model, x).body.fc1.weight)


def test_kernels_centre_crop_with_same_padding():
    torch.manual_seed(0)
    model = _perturb_batchnorm(ResNet18())
    x = torch.randn(*IMAGE)
    net = nas.from_model(model, x, kernels=(3, 5), widths=None, depth=False).eval()
    assert net.space.names() == ["conv1.kernel"] and net.space["conv1.kernel"].values == (3, 5, 7)
    for k in (3, 5):
        with torch.no_grad(), net.activate({"conv1.kernel": k}):
            expected = net(x)
        dense = net.extract({"conv1.kernel": k}, calibrate=False).eval()
        assert dense.conv1.kernel_size == (k, k) and dense.conv1.padding == ((k - 1) // 2,) * 2
        torch.testing.assert_close(dense(x), expected, rtol=0, atol=1e-5)


class _UserMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(16, 32), nn.Linear(32, 24), nn.Linear(24, 3)

    def forward(self, x):
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def test_ranks_only_reproduce_the_original_at_full_rank():
    model = _UserMLP()
    net = nas.from_model(model, torch.zeros(1, 16), widths=None, ranks=[0.25, 0.5])
    assert net.space.names() == ["fc1.rank", "fc2.rank", "head.rank"]
    assert net.space["fc1.rank"].values == (4, 8, 16)
    x = torch.randn(5, 16)
    with torch.no_grad():
        assert torch.allclose(net(x), model(x), atol=1e-5)


def test_lower_ranks_with_widths_give_fewer_params_and_extract_exactly():
    model = _UserMLP()
    net = nas.from_model(model, torch.zeros(1, 16), ranks=[2, 4], targets=["fc1", "fc2"], importance=False)
    assert sorted(net.space.names()) == ["fc1.rank", "fc1.width", "fc2.rank", "fc2.width"]
    full, low = net.largest(), net.smallest()
    assert net.cost(low)["params"] < net.cost(full)["params"]
    layer = net.body.fc2
    u, s, vh = torch.linalg.svd(model.fc2.weight.detach().double())
    assert torch.allclose((layer.U[:, :2] @ layer.V[:2]).double(), (u[:, :2] * s[:2]) @ vh[:2], atol=1e-5)
    x = torch.randn(3, 16)
    for config in (low, net.sample(0), net.sample(1)):
        dense = net.extract(config)
        with torch.no_grad(), net.activate(config):
            assert torch.allclose(dense(x), net(x), atol=1e-5)
        assert sum(p.numel() for p in dense.parameters()) == net.cost(config)["params"]


def test_lora_ranks_with_widths_change_the_parameter_count():
    model = _UserMLP()
    net = nas.from_model(model, torch.zeros(1, 16), ranks=[0, 4], kind="lora", targets=lambda name, layer: name != "head")
    assert sorted(net.space.names()) == ["fc1.lora_rank", "fc1.width", "fc2.lora_rank", "fc2.width"]
    x = torch.randn(2, 16)
    with torch.no_grad():
        assert torch.allclose(net(x), model(x), atol=1e-6)  # B starts at zero
    assert net.cost(net.smallest())["params"] < net.cost(net.largest())["params"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ranks": []}, "non-empty list"),
        ({"ranks": [1.5]}, r"fractions must lie in \(0, 1\]"),
        ({"targets": ["fc9"]}, "not Conv1d/Conv2d/Linear layers"),
        ({"kind": "prune"}, "'kind' parameter"),
        ({"ranks": [0.5], "kind": "lora"}, "must be ints >= 0"),
        ({"widths": [0.0, 1.0]}, "'widths' parameter"),
        ({"kernels": [2]}, "'kernels' parameter"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nas.from_model(_UserMLP(), torch.zeros(1, 16), **kwargs)


def test_example_input_that_does_not_fit_names_both_shapes():
    with pytest.raises(ValueError, match=r"shape \(2, 1, 32, 32\) does not fit the model's first layer: conv1 \(Conv2d\) expects input of shape \(batch, 3, \.\.\., \.\.\.\)"):
        nas.from_model(ResNet18(), torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"fc1 \(Linear\) expects input of shape \(\.\.\., 16\), got \(1, 8\)"):
        nas.from_model(_UserMLP(), torch.zeros(1, 8))


def test_a_model_with_nothing_convertible_is_refused():
    with pytest.raises(ValueError, match=r"found nothing to make elastic in Sequential.*convertible layers found: none"):
        nas.from_model(nn.Sequential(nn.ReLU(), nn.Tanh()), torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"found nothing to make elastic.*head: output features fixed at 3: the model's output"):
        nas.from_model(_OneLinear(), torch.zeros(1, 4))


class _OneLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(x)


class _DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.conv(x) if x.sum() > 0 else x  # Python control flow on a tensor: fx cannot trace it


class _WithUntraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.odd, self.head = nn.Conv2d(3, 8, 3, padding=1), _DataDependent(), nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x):
        return self.head(self.odd(self.stem(x)).mean((2, 3)))


def test_a_layer_fx_cannot_trace_is_kept_whole_and_named():
    torch.manual_seed(0)
    model = _WithUntraceable().eval()
    x = torch.randn(2, 3, 8, 8)
    net = nas.from_model(model, x)
    text = net.describe()
    assert "odd (_DataDependent): kept whole and fixed: torch.fx cannot trace it" in text
    assert "stem: output channels fixed at 8: read by odd, which torch.fx cannot trace it" in text
    assert "odd.conv: left as it is: inside odd" in text
    assert net.space.names() == ["head.0.width"]
    model.head = nn.Linear(8, 2)  # nothing left to convert: the message names the untraceable layer
    with pytest.raises(ValueError, match=r"found nothing to make elastic.*odd \(_DataDependent\): kept whole and fixed: torch.fx cannot trace it"):
        nas.from_model(model, x)
    with pytest.raises(ValueError, match=r"torch.fx cannot trace _DataDependent.forward"):
        nas.from_model(_DataDependent(), torch.randn(1, 8, 4, 4))


@pytest.mark.slow
def test_a_converted_model_trains_and_searches_from_python():
    torch.manual_seed(0)
    data = nas.data.digits("image")
    net = nas.from_model(ResNet18(in_channels=1, width=8), torch.zeros(2, 1, 8, 8))
    nas.train_supernet(net, data, epochs=1, lr=1e-2, batch_size=128, progress=False)
    result = nas.search(net, data, objectives=["accuracy:max", "params:min"], searcher="random", budget=4, progress=False)
    best = result.pick("best:accuracy")
    model = net.extract(best.config, data).eval()
    assert isinstance(model, ResNet18)
    from nas.evaluate import default_loss, score

    scores = score(model, data.val_batches(256, "cpu"), default_loss(data, None), True)
    assert scores["accuracy"] == best.metrics["accuracy"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_export_and_load_model_rebuild_the_users_class_without_running_torchscript(tmp_path):
    from torch.utils.data import TensorDataset

    from nas.data import Data
    from nas.export import ExportInputError

    torch.manual_seed(0)
    images = torch.randn(96, 3, 32, 32)
    labels = torch.randint(0, 10, (96,))
    data = Data(TensorDataset(images[:64], labels[:64]), TensorDataset(images[64:], labels[64:]))
    net = nas.from_model(ResNet18(), images[:2])
    config = net.sample(5)
    done = nas.export(net, config, tmp_path / "m", formats="pt,torchscript,onnx", data=data)
    assert done.checks["onnx_max_abs_diff"] <= 1e-4 and done.checks["load_model_max_abs_diff"] == 0.0
    with pytest.raises(ExportInputError, match=r"custom model.*pass net=nas.from_model\(YourModel\(\), example_input\).*torchscript=True"):
        nas.load_model(done.path)
    fresh = nas.from_model(ResNet18(), images[:2])  # a new instance: only its shapes matter
    model = nas.load_model(done.path, net=fresh)
    assert type(model) is ResNet18
    expected = net.extract(config, data).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(images[:4]), expected(images[:4]), rtol=0, atol=0)
        scripted = nas.load_model(done.path, torchscript=True)
        torch.testing.assert_close(scripted(images[:4]), expected(images[:4]), rtol=0, atol=1e-5)


def test_cached_weight_copies_follow_in_place_updates():
    torch.manual_seed(0)
    net = nas.from_model(MobileNetV2(), torch.randn(*IMAGE)).eval()
    x = torch.randn(*IMAGE)
    config = net.smallest()
    with torch.no_grad(), net.activate(config):
        net(x)  # fills the cache with sliced (contiguous) weight copies
        for p in net.parameters():
            p.mul_(0.5)
        got = net(x)
    torch.testing.assert_close(got, net.extract(config, calibrate=False).eval()(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("make", [ResNet18, MobileNetV2])
def test_channel_groups_match_torch_prunings_dependency_graph(make):
    tp = pytest.importorskip("torch_pruning")
    from nas.from_model._groups import analyse
    from nas.from_model._trace import trace

    model, x = make().eval(), torch.randn(*IMAGE)
    names = {m: n for n, m in model.named_modules()}
    theirs = set()
    for group in tp.DependencyGraph().build_dependency(model, example_inputs=x).get_all_groups(root_module_types=[nn.Conv2d, nn.Linear]):
        producers = frozenset(
            names[dep.target.module] for dep, _ in group
            if dep.handler.__name__ == "prune_out_channels" and isinstance(dep.target.module, (nn.Conv2d, nn.Linear))
            and getattr(dep.target.module, "groups", 1) == 1
        )
        if producers:
            theirs.add(producers)
    ours = {frozenset(g.producers) for g in analyse(*trace(model, x)).groups}
    assert ours == theirs
