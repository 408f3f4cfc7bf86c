"""nas.latency: measured latency, and the per-layer lookup table (build, predict, store, error)."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from nas.latency import LatencyTable, device_key, measure_latency
from search_spaces.mlp import MLP

FAST = dict(warmup=1, repeats=3)


def tiny_mlp():
    torch.manual_seed(0)
    return MLP(depths=(1, 2), widths=(8, 16), ranks=(2, 4))


def test_measure_latency_times_subnets_and_plain_modules():
    net = tiny_mlp()
    assert measure_latency(net, net.smallest(), **FAST) > 0
    assert measure_latency(net, batch_size=4, **FAST) > 0  # the largest subnet
    assert measure_latency(nn.Linear(8, 2), input_shape=(8,), **FAST) > 0
    with pytest.raises(ValueError, match="'input_shape'"):
        measure_latency(nn.Linear(8, 2), **FAST)
    with pytest.raises(ValueError, match="config"):
        measure_latency(nn.Linear(8, 2), {"depth": 1}, input_shape=(8,))


def test_table_times_each_layer_variant_once_and_predicts_their_sum():
    net = tiny_mlp()
    table = LatencyTable.build(net, samples=10, fit_configs=3, **FAST)
    assert table.entries and all(v > 0 for v in table.entries.values())
    # every key names a layer, its input shape and its active sizes
    assert any("lowrank_linear" in k or '"linear"' in k for k in table.entries)
    config = net.largest()
    keys = table._layer_keys(config)
    assert table.predict(config) == pytest.approx(table.scale * sum(table.entries[k] for k in keys) + table.overhead_ms)
    assert len(set(keys)) == len(keys)
    # a deeper config runs more layers
    shallow = dict(net.smallest())
    assert len(table._layer_keys(shallow)) < len(keys)


def test_table_times_unseen_variants_on_demand():
    net = tiny_mlp()
    table = LatencyTable.build(net, configs=[net.smallest()], fit_configs=1, **FAST)
    before = len(table.entries)
    assert table.predict(net.largest()) > 0
    assert len(table.entries) > before


def test_table_round_trips_through_json_keyed_by_device(tmp_path):
    net = tiny_mlp()
    configs = [net.sample(i) for i in range(5)]
    table = LatencyTable.build(net, configs, fit_configs=2, **FAST)
    path = tmp_path / "latency.json"
    table.save(path)
    stored = json.loads(path.read_text())
    assert list(stored) == [f"{device_key('cpu')}|batch=1"]
    assert "threads=" in device_key("cpu")
    loaded = LatencyTable.load(path, net)
    assert np.allclose(loaded.predict_many(configs), table.predict_many(configs))
    other = LatencyTable(net, {"x": 1.0}, 0.5, device="cuda:Imaginary GPU")
    other.save(path)
    assert len(json.loads(path.read_text())) == 2  # tables of other devices are kept
    with pytest.raises(KeyError, match="no latency table"):
        LatencyTable.load(path, net, batch_size=8)
    foreign = LatencyTable.load(path, net, device="cuda:Imaginary GPU")
    with pytest.raises(KeyError, match="rebuild the table here"):
        foreign.predict(net.largest())
    with pytest.raises(ValueError, match="family"):
        LatencyTable.load(path, MLP(depths=(1,), widths=(8,), ranks=(2,)))


def test_for_net_builds_once_and_reuses_a_stored_table(tmp_path):
    net = tiny_mlp()
    path = tmp_path / "t.json"
    table = LatencyTable.for_net(net, path, samples=5, fit_configs=2, **FAST)
    assert path.exists()
    assert LatencyTable.for_net(net, samples=5, fit_configs=2, **FAST) is table
    again = LatencyTable.for_net(net, path)
    assert again.entries == table.entries


def test_error_is_the_median_relative_error():
    net = tiny_mlp()
    table = LatencyTable.build(net, samples=10, fit_configs=4, **FAST)
    error = table.error([net.sample(i) for i in range(4)], repeats=3)
    assert math.isfinite(error) and error >= 0
