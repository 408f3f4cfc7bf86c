"""nas.data: seeded digits splits shaped per family, and resolving what users pass."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from nas.data import Data, digits, resolve
from search_spaces.mlp import MLP


@pytest.mark.parametrize("kind, shape", [("flat", (64,)), ("image", (1, 8, 8)), ("tokens", (8, 8))])
def test_digits_is_shaped_per_kind_and_scaled_to_unit_range(kind, shape):
    data = digits(kind)
    x, y = data.train.tensors
    assert x.shape[1:] == shape
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert len(data.train) + len(data.val) + len(data.test) == 1797


def test_digits_splits_are_seeded_disjoint_and_stratified():
    a, b, c = digits("flat", seed=0), digits("flat", seed=0), digits("flat", seed=1)
    assert torch.equal(a.val.tensors[0], b.val.tensors[0])
    assert not torch.equal(a.val.tensors[0], c.val.tensors[0])
    rows = {tuple(r.tolist()) for part in (a.train, a.val, a.test) for r in part.tensors[0]}
    assert len(rows) >= 1790  # disjoint up to duplicate images in the data set itself
    for part in (a.train, a.val, a.test):
        assert set(part.tensors[1].tolist()) == set(range(10))


def test_digits_rejects_unknown_kind_naming_the_choices():
    with pytest.raises(ValueError, match="'kind'.*flat"):
        digits("audio")


def test_resolve_takes_none_pairs_splits_and_loaders():
    net = MLP(depths=(1,), widths=(8,), ranks=(2,))
    split = digits("flat")
    assert resolve(net, None) is split
    assert resolve(net, split) is split
    pair = resolve(net, (split.train, split.val))
    assert pair.train is split.train and pair.val is split.val
    loaders = resolve(net, (DataLoader(split.train, batch_size=32), DataLoader(split.val, batch_size=50)))
    batches = loaders.val_batches(256, "cpu")
    assert sum(len(x) for x, _ in batches) == len(split.val)
    with pytest.raises(TypeError, match="'data'"):
        resolve(net, 42)
    with pytest.raises(ValueError, match="pair"):
        resolve(net, (split.train,))


def test_resolve_without_family_default_asks_for_data():
    with pytest.raises(ValueError, match="no default data"):
        resolve(torch.nn.Linear(2, 2), None)


def test_validation_batches_are_stacked_once_per_device():
    split = digits("flat")
    data = Data(split.train, split.val)
    assert data.val_batches(128, "cpu") is data.val_batches(128, "cpu")
    assert sum(len(x) for x, _ in data.val_batches(128, "cpu")) == len(data.val)


def test_training_order_depends_only_on_the_seed():
    data = digits("flat")
    first = [y for _, y in data.train_batches(64, 3, "cpu")]
    again = [y for _, y in data.train_batches(64, 3, "cpu")]
    other = [y for _, y in data.train_batches(64, 4, "cpu")]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    assert all(len(y) == 64 for y in first)  # only full batches


def test_classification_is_read_from_target_dtype():
    x = torch.rand(10, 4)
    assert Data(TensorDataset(x, torch.zeros(10, dtype=torch.long)), TensorDataset(x, torch.zeros(10, dtype=torch.long))).classification
    assert not Data(TensorDataset(x, torch.zeros(10, 1)), TensorDataset(x, torch.zeros(10, 1))).classification
