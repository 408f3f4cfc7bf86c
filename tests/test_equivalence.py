"""Equivalent configs are one subnet: one key, one evaluation, one front entry."""

from __future__ import annotations

import numpy as np
import torch

import nas
from nas.elastic import ElasticLowRankLinear
from nas.registry import build_family
from nas.searchers import RandomSearcher
from nas.space import Choice, SearchSpace
from nas.supernet import Supernet


def test_demo_width_16_with_rank_16_and_rank_32_are_one_key():
    net = build_family("mlp")  # the demo space: runs/demo.toml uses the mlp family defaults
    a = {"depth": 1, "blocks.0.width": 16, "blocks.0.rank": 16}
    b = {"depth": 1, "blocks.0.width": 16, "blocks.0.rank": 32}
    assert net.space.key(a) == net.space.key(b)
    assert net.space.key(a) != net.space.key({**a, "blocks.0.rank": 8})
    assert net.cost(a) == net.cost(b)


def test_equivalent_configs_run_the_same_subnet():
    torch.manual_seed(0)
    net = build_family("mlp", depths=(2,), widths=(16, 32), ranks=(8, 16, 32)).eval()
    x = torch.randn(5, 64)
    a = {"depth": 2, "blocks.0.width": 16, "blocks.0.rank": 16, "blocks.1.width": 32, "blocks.1.rank": 16}
    b = {**a, "blocks.1.rank": 32}  # block 1's input is 16 wide: rank 16 is already full
    assert net.space.key(a) == net.space.key(b)
    with torch.no_grad():
        with net.activate(a):
            ya = net(x)
        with net.activate(b):
            yb = net(x)
    assert torch.equal(ya, yb)


def test_a_rank_shared_by_two_layers_is_replaced_only_when_both_are_full_rank():
    rank = Choice("rank", [2, 4, 8])
    body = torch.nn.Sequential(ElasticLowRankLinear(8, 4, rank=rank), ElasticLowRankLinear(4, 8, rank=rank, max_rank=8))
    net = Supernet(body, input_shape=(8,))
    assert net.canonical({"rank": 4}) == {"rank": 8}
    assert net.canonical({"rank": 2}) == {"rank": 2}
    wide = torch.nn.Sequential(ElasticLowRankLinear(8, 4, rank=rank), ElasticLowRankLinear(4, 16, rank=rank, max_rank=8))
    assert Supernet(wide, input_shape=(8,)).canonical({"rank": 4}) == {"rank": 8}  # 4 >= min(in 4, out 16)
    far = torch.nn.Sequential(ElasticLowRankLinear(8, 8, rank=rank), ElasticLowRankLinear(8, 8, rank=rank))
    assert Supernet(far, input_shape=(8,)).canonical({"rank": 4}) == {"rank": 4}


def test_a_plain_space_has_no_equivalences_beyond_inactive_dimensions():
    space = SearchSpace([Choice("depth", [1, 2]), Choice("w1", [8, 16], when=("depth", [2]))])
    assert space.key({"depth": 1, "w1": 8}) == space.key({"depth": 1})
    assert space.canonical({"depth": 2, "w1": 8}) == {"depth": 2, "w1": 8}


def test_a_random_search_never_asks_two_equivalent_configs():
    net = build_family("mlp", depths=(1, 2), widths=(16, 32), ranks=(8, 16, 32))
    distinct = {net.space.key(c) for c in net.space.enumerate()}
    assert len(distinct) < net.space.size()
    searcher = RandomSearcher(net.space, objectives=["params:min"], seed=0)
    asked = []
    while True:
        batch = searcher.ask(7)
        if not batch:
            break
        asked += batch
        searcher.tell([nas.Evaluation(config=c, metrics={"params": 1.0}) for c in batch])
    keys = [net.space.key(c) for c in asked]
    assert len(keys) == len(set(keys))
    assert set(keys) == distinct  # every subnet once, none twice
    assert all(net.space.canonical(c) == c for c in asked)


def test_a_search_front_holds_no_two_equivalent_configs():
    net = build_family("mlp", depths=(1,), widths=(16, 32), ranks=(8, 16, 32))
    result = nas.search(net, objectives=["params:min", "macs:min"], searcher="random", budget=20, seed=0, progress=False)
    keys = [net.space.key(e.config) for e in result.evaluations]
    assert len(keys) == len(set(keys)) == len({net.space.key(c) for c in net.space.enumerate()})
    front = [net.space.key(e.config) for e in result.front]
    assert len(front) == len(set(front))
    assert np.isfinite(result.hypervolume)


def test_mlp_canonical_gives_full_rank_exactly_where_the_rank_reaches_the_blocks_widths():
    # canonical memoises each block's answer; every config of the space, asked twice, must get the rule's answer
    net = build_family("mlp", in_features=10, depths=(1, 2, 3), widths=(4, 16), ranks=(4, 8, 16))
    for _ in range(2):
        for config in net.space.enumerate():
            expected, in_width = dict(config), 10
            for i in range(config["depth"]):
                width, rank = config[f"blocks.{i}.width"], config[f"blocks.{i}.rank"]
                if rank >= min(in_width, width):
                    expected[f"blocks.{i}.rank"] = 16
                in_width = width
            assert net.canonical(config) == expected
