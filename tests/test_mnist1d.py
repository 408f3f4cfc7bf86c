"""nas.data.mnist1d: generated MNIST-1D splits, cached on disk, shaped per family and checked against it."""

import json

import numpy as np
import pytest
import torch

import nas.data
from nas.data import mnist1d, resolve, signal_tokens
from nas.runs import DEMO, SpecError, load_spec
from search_spaces.mlp import MLP


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh disk cache and an empty in-process cache."""
    monkeypatch.setenv("NAS_CACHE", str(tmp_path))
    monkeypatch.setattr(nas.data, "_MNIST1D", {})
    return tmp_path


@pytest.mark.parametrize("kind, shape", [("flat", (40,)), ("signal", (1, 40)), ("tokens", (8, 5))])
def test_mnist1d_is_shaped_per_kind_with_val_carved_from_the_training_part(kind, shape):
    data = mnist1d(kind, samples=500)
    assert (len(data.train), len(data.val), len(data.test)) == (320, 80, 100)
    for part in (data.train, data.val, data.test):
        x, y = part.tensors
        assert x.shape[1:] == shape and x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(data.val.tensors[1].tolist()) == set(range(10))


def test_mnist1d_test_split_is_the_generators_test_part_and_disjoint_from_training():
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = 500
    made = make_dataset(args)
    data = mnist1d("flat", samples=500)
    assert np.allclose(data.test.tensors[0].numpy(), made["x_test"].astype(np.float32))
    train_rows = {tuple(r) for part in (data.train, data.val) for r in part.tensors[0].numpy().round(5)}
    assert len(train_rows) == 400
    assert not train_rows & {tuple(r) for r in data.test.tensors[0].numpy().round(5)}


def test_mnist1d_second_call_reads_the_disk_cache_and_a_corrupt_file_is_regenerated(cache):
    first = mnist1d("signal", samples=300, seed=3)
    files = list(cache.glob("mnist1d-*.npz"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))
    assert mnist1d("signal", samples=300, seed=3) is first  # in-process: the same object
    nas.data._MNIST1D.clear()
    again = mnist1d("signal", samples=300, seed=3)
    assert again is not first and torch.equal(again.train.tensors[0], first.train.tensors[0])
    files[0].write_bytes(b"not an npz")
    nas.data._MNIST1D.clear()
    assert torch.equal(mnist1d("signal", samples=300, seed=3).test.tensors[0], first.test.tensors[0])
    other = mnist1d("signal", samples=300, seed=4)
    assert len(list(cache.glob("mnist1d-*.npz"))) == 2
    assert not torch.equal(other.test.tensors[0], first.test.tensors[0])


def test_mnist1d_generator_arguments_reach_the_generator(cache):
    short = mnist1d("flat", samples=200, final_seq_length=24)
    assert short.train.tensors[0].shape[1:] == (24,)
    assert mnist1d("tokens", samples=200, final_seq_length=24).train.tensors[0].shape[1:] == signal_tokens(24) == (6, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "image"}, "'kind' parameter of mnist1d must be one of ['flat', 'signal', 'tokens'], got 'image'"),
        ({"samples": 5}, "'samples' parameter of mnist1d must be an int >= 20, got 5"),
        ({"val_fraction": 1.5}, "'val_fraction' parameter of mnist1d must lie in (0, 1), got 1.5"),
        ({"noise": 1}, "unknown generator argument 'noise'; the arguments are: samples, seed, val_fraction, corr_noise_scale"),
    ],
)
def test_mnist1d_bad_arguments_name_the_parameter_and_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError) as err:
        mnist1d(**kwargs)
    assert message in str(err.value)


def test_a_family_given_data_of_another_shape_fails_naming_both_shapes():
    data = mnist1d("flat", samples=500)
    with pytest.raises(ValueError, match=r"'mlp' supernet expects input samples of shape \[64\], but the data gives \[40\]"):
        resolve(MLP(depths=(1,), widths=(8,), ranks=(2,)), data)
    assert resolve(MLP(in_features=40, depths=(1,), widths=(8,), ranks=(2,)), data) is data


def test_a_spec_with_mnist1d_data_resolves_its_arguments_and_checks_shapes():
    spec = json.loads(json.dumps(DEMO))
    spec["data"] = {"source": "mnist1d", "args": {"samples": 500}}
    spec["space"]["args"] = {"in_features": 40}
    resolved = load_spec(spec)
    assert resolved["data.args"] == {"samples": 500, "seed": 42, "val_fraction": 0.2}
    assert len(resolved.data(resolved.build_net()).test) == 100
    spec["space"]["args"] = {}
    with pytest.raises(SpecError, match=r"expects input samples of shape \[64\], but the data gives \[40\]"):
        load_spec(spec)
    spec["data"]["args"] = {"sample": 500}
    with pytest.raises(SpecError, match="unknown generator argument 'sample'"):
        load_spec(spec)


def test_train_supernet_takes_the_familys_recipe_for_what_is_not_given_scaled_by_data_size():
    import doctest

    import nas.training._family
    from nas.training import family_recipe, train_supernet
    from search_spaces.cnn1d import CNN1D

    assert doctest.testmod(nas.training._family).failed == 0
    net = CNN1D(stages=((4,),), depths=(1,), kernels=(3,))
    small, large = mnist1d("signal", samples=500), mnist1d("signal", samples=5000)
    steps = CNN1D.recipe["steps"]
    assert family_recipe(net, small)["epochs"] == round(steps / (320 // 64))
    assert family_recipe(net, large)["epochs"] == round(steps / (3200 // 64))
    assert family_recipe(net, small, lr=0.5, epochs=2)["lr"] == 0.5
    history = train_supernet(net, small, epochs=1, progress=False)
    assert len(history) == 1
    net.recipe = {"steps": 5, "lr": 1e-3, "strategy": "uniform"}  # 5 steps of 64 on 320 samples: one epoch
    history = train_supernet(net, small, progress=False)
    assert len(history) == 1 and history[0]["lr"] == 0.0  # the cosine schedule ends at 0 after its one epoch
    net.recipe = {"step": 5}
    with pytest.raises(ValueError, match="unknown key 'step'; the keys are: strategy"):
        train_supernet(net, small, progress=False)
