"""nas.from_model on tiny random-initialised Hugging Face models: BERT, GPT-2, LLaMA (nothing downloaded)."""

from __future__ import annotations

import warnings

import _hf_models as hf
import numpy as np
import pytest
import torch
from torch import nn

import nas
from nas.elastic import ElasticModule

pytest.importorskip("transformers")

CASES = {"bert": hf.bert, "gpt2": hf.gpt2, "llama": hf.llama}
DIMS = {"bert": ["depth", "heads", "ffn"], "gpt2": ["depth", "heads", "ffn"], "llama": ["depth", "kv_heads", "ffn"]}


def _macs(model: nn.Module, x: torch.Tensor) -> int:
    """Per-sample MACs of the linear layers (nn.Linear and GPT-2's Conv1D), counted here independently of nas."""
    total = []

    def hook(module, args, out):
        width = module.in_features if isinstance(module, nn.Linear) else module.nx
        total.append(out[0].numel() * width)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"]
    with torch.no_grad():
        model(x[:1])
    for h in handles:
        h.remove()
    return sum(total)


class Logits(nn.Module):
    """What an application wraps around a Hugging Face model to export its logits."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids).logits


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    torch.manual_seed(0)
    model = CASES[request.param]().eval()
    x = hf.tokens()
    net = nas.from_model(model, x).eval()
    return request.param, model, x, net


def test_space_size_and_dimensions(case):
    name, _, _, net = case
    print(f"\n{name}: {net.space.size()} subnets, dimensions {[(d, list(net.space[d].values)) for d in net.space.names()]}")
    assert net.space.names() == DIMS[name] and net.space.size() == 64
    assert net.input_dtype == torch.long and net.example_input(3).dtype == torch.long


def test_full_model_logits_are_unchanged_by_the_importance_order(case):
    _, model, x, net = case
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x).logits, rtol=0, atol=1e-5)


def test_extract_is_the_same_class_with_a_smaller_config_and_equals_activate(case):
    name, model, x, net = case
    rng = np.random.default_rng(0)
    for config in [net.largest(), net.smallest()] + [net.sample(rng) for _ in range(48)]:
        with torch.no_grad(), net.activate(config):
            expected = net(x)
        dense = net.extract(config).eval()
        assert type(dense) is type(model) and not any(isinstance(m, ElasticModule) for m in dense.modules())
        assert dense.config.num_hidden_layers == config["depth"] == len(dense.base_model.get_submodule(
            {"bert": "encoder.layer", "gpt2": "h", "llama": "layers"}[name]))
        with torch.no_grad():
            torch.testing.assert_close(dense(x).logits, expected, rtol=0, atol=1e-5)
        cost = net.cost(config)
        assert cost["params"] == sum(p.numel() for p in dense.parameters()), config
        assert cost["macs"] == _macs(dense, x), config


def test_smallest_subnet_holds_at_most_a_quarter_of_the_parameters(case):
    _, _, _, net = case
    assert net.cost(net.smallest())["params"] <= 0.25 * net.cost(net.largest())["params"]


def test_a_subnet_saves_and_loads_with_save_pretrained(case, tmp_path):
    name, model, x, net = case
    config = net.smallest()
    if name != "llama":  # their configs cannot state fewer heads of the same size (see describe())
        config["heads"] = net.space["heads"].values[-1]
    dense = net.extract(config).eval()
    dense.save_pretrained(tmp_path)
    again = type(model).from_pretrained(tmp_path).eval()
    assert again.config.num_hidden_layers == 1
    with torch.no_grad():
        torch.testing.assert_close(again(x).logits, dense(x).logits, rtol=0, atol=1e-6)


@pytest.mark.filterwarnings("ignore")
def test_onnx_keeps_integer_inputs_and_equals_pytorch(case, tmp_path):
    import onnxruntime as ort

    name, _, x, net = case
    dense = net.extract(net.sample(3)).eval()
    if name == "llama":
        dense.config._attn_implementation = "eager"  # the exporter has no grouped-query sdpa
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Logits(dense).eval(), (x,), str(path), dynamo=False, opset_version=17, input_names=["input_ids"],
                          dynamic_axes={"input_ids": {0: "batch"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(int64)"
    for batch in (x, hf.tokens(5, 8, 1)):
        got = session.run(None, {"input_ids": batch.numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(got, dense(batch).logits.numpy(), rtol=0, atol=1e-4)


@pytest.mark.filterwarnings("ignore")
def test_torchscript_traces_the_extracted_model_with_token_inputs(case):
    _, _, x, net = case
    dense = net.extract(net.sample(4)).eval()
    traced = torch.jit.trace(Logits(dense).eval(), (x,), strict=False)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), dense(x).logits, rtol=0, atol=1e-5)


def test_lora_ranks_of_the_projections_with_elastic_heads_and_ffn():
    torch.manual_seed(0)
    model, x = hf.llama().eval(), hf.tokens()
    net = nas.from_model(model, x, ranks=[0, 2], kind="lora", targets=lambda name, _: name.endswith(("q_proj", "v_proj")))
    lora = [d for d in net.space.names() if d.endswith("lora_rank")]
    assert len(lora) == 8 and net.space["model.layers.0.self_attn.q_proj.lora_rank"].values == (0, 2)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x).logits, rtol=0, atol=1e-5)  # adapters start at zero
    costs = {net.cost(net.sample(i))["params"] for i in range(10)}
    assert len(costs) > 1  # not a flat row of identical subnets
    rng = np.random.default_rng(1)
    for config in [net.sample(rng) for _ in range(10)]:
        with torch.no_grad(), net.activate(config):
            expected = net(x)
        torch.testing.assert_close(net.extract(config)(x).logits, expected, rtol=0, atol=1e-5)


def test_low_rank_projections_extract_exactly():
    torch.manual_seed(0)
    model, x = hf.bert().eval(), hf.tokens()
    net = nas.from_model(model, x, ranks=[4], targets=["bert.encoder.layer.0.intermediate.dense"])
    assert net.space["bert.encoder.layer.0.intermediate.dense.rank"].values == (4, 32)
    for config in (net.smallest(), net.sample(2)):
        with torch.no_grad(), net.activate(config):
            expected = net(x)
        dense = net.extract(config)
        torch.testing.assert_close(dense(x).logits, expected, rtol=0, atol=1e-5)
        assert net.cost(config)["params"] == sum(p.numel() for p in dense.parameters())


def test_float_inputs_to_a_token_model_are_refused():
    with pytest.raises(ValueError, match=r"embeddings.word_embeddings \(Embedding\) takes integer token ids, got torch.float32"):
        nas.from_model(hf.bert(), torch.zeros(2, 8))


@pytest.mark.slow
def test_a_converted_transformer_trains_and_searches_from_python():
    from torch.utils.data import TensorDataset

    torch.manual_seed(0)
    tokens = hf.tokens(96, 8, 2)
    labels = tokens[:, 0] % 3  # learnable: the class is read from the first token
    data = (TensorDataset(tokens[:64], labels[:64]), TensorDataset(tokens[64:], labels[64:]))
    net = nas.from_model(hf.bert(), tokens[:2])
    nas.train_supernet(net, data, epochs=1, lr=1e-3, batch_size=32, progress=False)
    result = nas.search(net, data, objectives=["accuracy:max", "params:min"], searcher="random", budget=4, progress=False)
    assert len(result.front) >= 1 and all(e.ok for e in result.evaluations)
