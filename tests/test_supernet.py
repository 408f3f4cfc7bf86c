import networkx as nx
import numpy as np
import pytest
import torch
from torch import nn

import search_spaces
from nas import InvalidConfig, Supernet
from nas.elastic import ElasticLinear, ElasticModule
from nas.space import Choice

FAMILIES = ["mlp", "cnn", "cnn1d", "transformer", "cell"]


@pytest.fixture(scope="module", params=FAMILIES)
def net(request):
    torch.manual_seed(0)
    net = search_spaces.get(request.param)
    # Perturb BatchNorm statistics so that copying them is actually checked.
    with torch.no_grad():
        for name, buf in net.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    return net.eval()


def _configs(net, n=200):
    rng = np.random.default_rng(0)
    return [net.largest(), net.smallest()] + [net.sample(rng) for _ in range(n)]


def test_extract_equals_activate_for_every_family(net):
    x = torch.randn(4, *net.input_shape)
    for config in _configs(net):
        with torch.no_grad(), net.activate(config):
            expected = net(x)
        dense = net.extract(config, calibrate=False)
        with torch.no_grad():
            got = dense(x)
        assert torch.allclose(got, expected, atol=1e-5, rtol=0), config
        assert sum(p.numel() for p in dense.parameters()) == net.cost(config)["params"], config
        assert not any(isinstance(m, ElasticModule) for m in dense.modules())


def test_different_configs_give_different_outputs(net):
    x = torch.randn(4, *net.input_shape)
    outputs = []
    for config in _configs(net, 10):
        with torch.no_grad(), net.activate(config):
            outputs.append(net(x))
    distinct = {tuple(o.flatten().round(decimals=4).tolist()) for o in outputs}
    assert len(distinct) >= len(outputs) - 1


def test_cost_grows_from_smallest_to_largest(net):
    small, large = net.cost(net.smallest()), net.cost(net.largest())
    assert 0 < small["params"] < large["params"] and 0 < small["macs"] < large["macs"]


def test_graph_is_a_typed_dag(net):
    for config in _configs(net, 5):
        graph = net.space.to_graph(config)
        assert nx.is_directed_acyclic_graph(graph) and graph.number_of_nodes() > 2
        assert all(isinstance(d.get("op"), str) for _, d in graph.nodes(data=True))


def test_activate_restores_previous_subnet_even_on_error(net):
    before = net.config
    config = net.smallest()
    with pytest.raises(RuntimeError):
        with net.activate(config):
            assert net.config == config
            raise RuntimeError("boom")
    assert net.config == before == net.largest()


def test_nested_activations_restore_each_previous_subnet_and_its_outputs(net):
    x = net.example_input(2)
    if net.input_dtype != torch.long:
        x = torch.randn_like(x)
    net.eval()
    small, other = net.smallest(), net.sample(np.random.default_rng(7))
    with torch.no_grad():
        with net.activate(small):
            want = net(x)
        with net.activate(small):
            entered = net.config
            with net.activate(other):
                assert net.config != entered or net.canonical(other) == entered
            assert net.config == entered
            got = net(x)
    assert net.config == net.largest()
    assert torch.equal(got, want)


def test_activate_rejects_bad_config_before_running(net):
    with pytest.raises(InvalidConfig, match="unknown dimension"):
        with net.activate({**net.largest(), "nope": 1}):
            pass


def test_switching_runs_each_subnet_as_activate_does_and_restores_once_even_on_error(net):
    x = net.example_input(2)
    if net.input_dtype != torch.long:
        x = torch.randn_like(x)
    net.eval()
    configs = _configs(net, 6)
    with torch.no_grad():
        want = []
        for config in configs:
            with net.activate(config):
                want.append((net.config, net(x)))
        with pytest.raises(RuntimeError, match="boom"):
            with net.switching() as switch:
                for config, (config_want, out_want) in zip(configs, want):
                    assert switch(config) == config_want == net.config
                    assert torch.equal(net(x), out_want)
                raise RuntimeError("boom")
    assert net.config == net.largest()


def test_switching_rejects_a_bad_config_before_running_it(net):
    with net.switching() as switch:
        switch(net.smallest())
        with pytest.raises(InvalidConfig, match="unknown dimension"):
            switch({**net.largest(), "nope": 1})
        assert net.config == net.canonical(net.smallest())
    assert net.config == net.largest()


def test_registry_lists_families_and_rejects_unknown_names():
    assert search_spaces.names() == sorted(FAMILIES)
    with pytest.raises(ValueError, match="unknown search space family .resnet.; known search space families: cell, cnn, cnn1d, mlp, transformer"):
        search_spaces.get("resnet")
    with pytest.raises(ValueError, match="bad arguments for family 'mlp'"):
        search_spaces.get("mlp", nope=1)


def test_families_take_input_and_output_sizes():
    net = search_spaces.get("mlp", in_features=20, num_classes=3)
    assert net(torch.zeros(2, 20)).shape == (2, 3)
    net = search_spaces.get("cnn", in_channels=3, num_classes=4, image_size=16)
    assert net(torch.zeros(2, 3, 16, 16)).shape == (2, 4)
    net = search_spaces.get("transformer", tokens="patches", num_classes=5)
    assert net.input_shape == (1, 8, 8) and net(torch.zeros(2, 1, 8, 8)).shape == (2, 5)
    net = search_spaces.get("cell", num_classes=2, in_channels=3)
    assert net(torch.zeros(2, 3, 8, 8)).shape == (2, 2)


def test_mlp_macs_match_hand_count():
    net = search_spaces.get("mlp", depths=(1,), widths=(16, 32), ranks=(4, 32))
    # 64 -> 16 at rank 4 (factored: 4*(64+16)), then 16 -> 10.
    assert net.cost({"depth": 1, "blocks.0.width": 16, "blocks.0.rank": 4}) == {
        "params": 4 * 80 + 16 + 16 * 10 + 10,
        "macs": 4 * 80 + 160,
    }
    # rank 32 >= what factoring saves: exported dense, 64*32 weights.
    assert net.cost({"depth": 1, "blocks.0.width": 32, "blocks.0.rank": 32})["params"] == 64 * 32 + 32 + 32 * 10 + 10


def test_cell_space_is_nas_bench_201_sized_and_takes_a_topology():
    net = search_spaces.get("cell")
    assert net.space.size() == 15625
    chain = search_spaces.get("cell", topology=[(0, 1), (1, 2)], ops=["skip", "conv3x3"])
    assert chain.space.size() == 4
    graph = chain.space.to_graph({"edge.0-1": "skip", "edge.1-2": "conv3x3"})
    assert sorted(d["op"] for _, d in graph.nodes(data=True)) == ["conv3x3", "input", "output", "skip", "sum"]
    with pytest.raises(ValueError, match="acyclic"):
        search_spaces.get("cell", topology=[(0, 1), (1, 0)])
    with pytest.raises(ValueError, match="one input and one output"):
        search_spaces.get("cell", topology=[(0, 1), (0, 2)])
    with pytest.raises(ValueError, match="'ops' parameter"):
        search_spaces.get("cell", ops=["conv9x9"])


def test_space_is_derived_from_layers_and_shared_names_merge():
    width = Choice("width", [4, 8])
    body = nn.Sequential(ElasticLinear(4, 8, out=width), nn.ReLU(), ElasticLinear(8, 8, out=width))
    net = Supernet(body, (4,))
    assert net.space.names() == ["width"]
    with pytest.raises(ValueError, match="declared with different values"):
        Supernet(nn.Sequential(ElasticLinear(4, 8, out=width), ElasticLinear(8, 8, out=Choice("width", [2, 8]))), (4,))


def test_conditions_follow_depth():
    net = search_spaces.get("mlp", depths=(1, 2, 3))
    assert net.space["blocks.0.width"].when is None
    assert net.space["blocks.1.width"].when == ("depth", (2, 3))
    assert net.space["blocks.2.rank"].when == ("depth", (3,))


def _small_digits():
    from torch.utils.data import TensorDataset

    from nas.data import Data, digits

    full = digits("image")
    return Data(*(TensorDataset(*(t[:n] for t in part.tensors)) for part, n in ((full.train, 160), (full.val, 96))))


def test_extract_with_data_recalibrates_batchnorm_exactly_as_evaluation():
    from nas.evaluate import default_loss, evaluate, score

    torch.manual_seed(0)
    net = search_spaces.get("cnn", stages=((8, 1, 1),), kernels=(3,), expands=(2,), width_mults=(0.5, 1.0), head=16)
    data = _small_digits()
    config = net.smallest()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    stored = evaluate(net, [config], data, batch_size=64)[0]
    model = net.extract(config, data, batch_size=64).eval()
    scores = score(model, data.val_batches(64, "cpu"), default_loss(data, None), True)
    assert scores["accuracy"] == stored.metrics["accuracy"]
    assert scores["loss"] == pytest.approx(stored.metrics["loss"], rel=1e-5)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the supernet is untouched
    kept = net.extract(config, calibrate=False)
    bn = next(m for m in kept.modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.equal(bn.running_mean, net.state_dict()["body.1.running_mean"][: bn.num_features])


def test_extract_without_data_on_a_batchnorm_net_names_the_fix():
    net = search_spaces.get("cnn", stages=((8, 1, 1),), kernels=(3,), expands=(2,), width_mults=(1.0,), head=16)
    with pytest.raises(ValueError, match=r"has BatchNorm layers.*pass data=.*or calibrate=False"):
        net.extract(net.largest())
    mlp = search_spaces.get("mlp", depths=(1,), widths=(16,), ranks=(4,))
    assert isinstance(mlp.extract(mlp.largest()), nn.Module)  # no BatchNorm: no data needed
