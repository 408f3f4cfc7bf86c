import doctest

import networkx as nx
import numpy as np
import pytest

import nas.space
from nas import Choice, InvalidConfig, SearchSpace


@pytest.fixture
def space():
    return SearchSpace(
        [
            Choice("depth", [1, 2, 3]),
            Choice("blocks.1.width", [8, 16], when=("depth", [2, 3])),
            Choice("blocks.2.width", [8, 16, 32], when=("depth", [3])),
            Choice("blocks.2.rank", [2, 4], when=("blocks.2.width", [16, 32])),
            Choice("op", ["zero", "conv"]),
            Choice("ratio", [0.5, 1.0]),
        ]
    )


def test_docstring_examples_run():
    assert doctest.testmod(nas.space).failed == 0


def test_size_counts_exactly_what_enumerate_yields(space):
    configs = list(space.enumerate())
    assert space.size() == len(configs)
    assert len({space.key(c) for c in configs}) == len(configs)
    assert all(space.contains(c) for c in configs)


def test_sample_is_valid_and_seeded(space):
    samples = [space.sample(np.random.default_rng(3)) for _ in range(2)]
    assert samples[0] == samples[1]
    rng = np.random.default_rng(0)
    for _ in range(200):
        assert space.validate(space.sample(rng))


def test_largest_and_smallest(space):
    assert space.largest() == {"depth": 3, "blocks.1.width": 16, "blocks.2.width": 32, "blocks.2.rank": 4, "op": "conv", "ratio": 1.0}
    assert space.smallest() == {"depth": 1, "op": "zero", "ratio": 0.5}


def test_numeric_values_sorted_strings_keep_order():
    assert Choice("w", [64, 16]).values == (16, 64)
    assert Choice("op", ["b", "a"]).values == ("b", "a")


@pytest.mark.parametrize(
    "config, message",
    [
        ({"depth": 1, "op": "zero", "ratio": 0.5, "nope": 1}, "unknown dimension 'nope'"),
        ({"depth": 4, "op": "zero", "ratio": 0.5}, "'depth' must be one of [1, 2, 3], got 4"),
        ({"depth": 1, "op": "zero"}, "missing dimension 'ratio'"),
        ({"depth": 1, "op": "zero", "ratio": 0.5, "blocks.1.width": 8}, "'blocks.1.width' is inactive"),
        ({"depth": "1", "op": "zero", "ratio": 0.5}, "takes int values"),
        ({"depth": True, "op": "zero", "ratio": 0.5}, "takes int values"),
        ({"depth": 1.0, "op": "zero", "ratio": 0.5}, "takes int values"),
        ({"depth": 1, "op": "pool", "ratio": 0.5}, "must be one of ['zero', 'conv']"),
        ([1, 2], "must be a dict"),
    ],
)
def test_bad_configs_raise_invalid_config_naming_the_problem(space, config, message):
    with pytest.raises(InvalidConfig) as err:
        space.validate(config)
    assert message in str(err.value)


def test_numpy_scalars_are_normalised(space):
    config = space.validate({"depth": np.int64(1), "op": "zero", "ratio": np.float64(0.5)})
    assert type(config["depth"]) is int and type(config["ratio"]) is float


def test_encode_is_fixed_length_and_marks_inactive(space):
    small, large = space.encode(space.smallest()), space.encode(space.largest())
    assert small.shape == large.shape == (len(space),)
    assert list(small) == [0, -1, -1, -1, 0, 0]
    assert list(large) == [2, 1, 2, 1, 1, 1]
    assert space.encode_many([space.smallest(), space.largest()]).shape == (2, 6)


def test_key_ignores_order_and_round_trips(space):
    config = space.largest()
    shuffled = dict(reversed(list(config.items())))
    assert space.key(config) == space.key(shuffled)
    assert space.from_key(space.key(config)) == config


def test_default_graph_is_a_dag(space):
    graph = space.to_graph(space.largest())
    assert isinstance(graph, nx.DiGraph) and nx.is_directed_acyclic_graph(graph)
    assert all("op" in data for _, data in graph.nodes(data=True))


def test_round_trip_through_plain_data(space):
    again = SearchSpace.from_dict(space.to_dict())
    assert again.to_dict() == space.to_dict() and again.size() == space.size()


def test_bad_space_definitions_are_rejected():
    with pytest.raises(ValueError, match="declared before"):
        SearchSpace([Choice("a", [1], when=("b", [1])), Choice("b", [1])])
    with pytest.raises(ValueError, match="declared twice"):
        SearchSpace([Choice("a", [1]), Choice("a", [1])])
    with pytest.raises(ValueError, match="all int, all float or all str"):
        Choice("a", [1, "x"])
    with pytest.raises(ValueError, match="repeated"):
        Choice("a", [1, 1])
