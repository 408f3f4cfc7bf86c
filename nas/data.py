"""Training and validation data: built-in digits splits, and users' datasets or loaders.

`digits(kind)` gives seeded train/val/test splits of scikit-learn's bundled digits data,
shaped for a family (``net.data_kind``): ``"flat"`` (64 features), ``"image"`` (1x8x8) or
``"tokens"`` (8 row-tokens of 8 features). Nothing is downloaded. `resolve(net, data)`
turns whatever a user passes (None, a `Data` split, a ``(train, val)`` pair of datasets or
`DataLoader`\\ s) into a `Data`, which serves batches to training and evaluation and caches
the tensors it stacks, so evaluating many configs stacks the validation set once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

KINDS = ("flat", "image", "tokens")
Batch = tuple[torch.Tensor, torch.Tensor]


class Data:
    """Train/val(/test) datasets or loaders, serving batches on a device.

    Example:
        >>> data = digits("flat", seed=0)
        >>> len(data.train), len(data.val), len(data.test)
        (1077, 360, 360)
        >>> data.classification
        True

    Args:
        train: the training `Dataset` (yielding ``(input, target)``) or `DataLoader`.
        val: the validation `Dataset` or `DataLoader` (what `nas.evaluate` scores).
        test: an optional held-out test `Dataset` or `DataLoader` (never used by nas itself).

    A `DataLoader` is iterated as given (its own batch size and order); a `Dataset` is
    batched by nas, shuffled by a generator seeded per epoch, so training is reproducible.
    """

    def __init__(self, train: Dataset | DataLoader, val: Dataset | DataLoader, test: Dataset | DataLoader | None = None):
        for name, value in (("train", train), ("val", val), ("test", test)):
            if value is None and name == "test":
                continue
            if not isinstance(value, (Dataset, DataLoader)):
                raise TypeError(
                    f"The '{name}' data must be a torch.utils.data Dataset or DataLoader, got {type(value).__name__}."
                )
        self.train, self.val, self.test = train, val, test
        self._cache: dict[tuple, Any] = {}

    def __repr__(self) -> str:
        sizes = ", ".join(f"{n}={_size(getattr(self, n))}" for n in ("train", "val", "test") if getattr(self, n) is not None)
        return f"Data({sizes})"

    # -- facts ---------------------------------------------------------------------------
    @property
    def classification(self) -> bool:
        """Whether targets are class indices (integer dtype): accuracy applies, loss defaults to cross-entropy."""
        key = ("classification",)
        if key not in self._cache:
            _, y = _first(self.val)
            self._cache[key] = not (torch.is_floating_point(y) or torch.is_complex(y))
        return self._cache[key]

    # -- batches -------------------------------------------------------------------------
    def train_batches(self, batch_size: int, seed: int, device: torch.device | str) -> Iterator[Batch]:
        """One epoch of shuffled training batches on `device`, in an order fixed by `seed`.

        Only full batches are served (the remainder differs from epoch to epoch), unless
        the dataset is smaller than one batch.
        """
        device = torch.device(device)
        if isinstance(self.train, DataLoader):
            for x, y in self.train:
                yield x.to(device), y.to(device)
            return
        generator = torch.Generator().manual_seed(int(seed))
        tensors = self._tensors(self.train, device)
        if tensors is not None:
            x, y = tensors
            order = torch.randperm(len(x), generator=generator).to(device)
            stop = len(x) - len(x) % batch_size if len(x) >= batch_size else len(x)
            for start in range(0, stop, batch_size):
                idx = order[start : start + batch_size]
                yield x[idx], y[idx]
            return
        drop_last = len(self.train) >= batch_size  # type: ignore[arg-type]
        loader = DataLoader(self.train, batch_size=batch_size, shuffle=True, generator=generator, drop_last=drop_last)
        for x, y in loader:
            yield x.to(device), y.to(device)

    def val_batches(self, batch_size: int, device: torch.device | str, split: str = "val") -> list[Batch]:
        """The whole validation (or ``split``) set as batches on `device`, stacked once and cached."""
        device = torch.device(device)
        source = getattr(self, split)
        if source is None:
            raise ValueError(f"this Data has no {split!r} split")
        key = ("eval", split, str(device), batch_size)
        if key not in self._cache:
            if isinstance(source, DataLoader):
                batches = [(x.to(device), y.to(device)) for x, y in source]
            else:
                tensors = self._tensors(source, device)
                if tensors is None:
                    tensors = _stack(source, device)
                x, y = tensors
                batches = [(x[s : s + batch_size], y[s : s + batch_size]) for s in range(0, len(x), batch_size)]
            self._cache[key] = batches
        return self._cache[key]

    def calibration_inputs(self, batches: int, batch_size: int, seed: int, device: torch.device | str) -> list[torch.Tensor]:
        """`batches` training input batches drawn by `seed` (for BatchNorm recalibration), cached."""
        device = torch.device(device)
        key = ("calibration", batches, batch_size, seed, str(device))
        if key not in self._cache:
            out = []
            for x, _ in self.train_batches(batch_size, seed, device):
                if len(out) == batches:
                    break
                out.append(x)
            self._cache[key] = out
        return self._cache[key]

    def _tensors(self, dataset: Dataset, device: torch.device) -> Batch | None:
        """A two-tensor `TensorDataset`'s tensors on `device` (cached), else None."""
        if not (isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2):
            return None
        key = ("tensors", id(dataset), str(device))
        if key not in self._cache:
            self._cache[key] = tuple(t.to(device) for t in dataset.tensors)
        return self._cache[key]


def _size(source: Dataset | DataLoader) -> str:
    try:
        return str(len(source.dataset if isinstance(source, DataLoader) else source))  # type: ignore[arg-type]
    except TypeError:
        return "?"


def _first(source: Dataset | DataLoader) -> Batch:
    if isinstance(source, DataLoader):
        return next(iter(source))
    x, y = source[0]
    return torch.as_tensor(x), torch.as_tensor(y)


def _stack(dataset: Dataset, device: torch.device) -> Batch:
    xs, ys = [], []
    for x, y in DataLoader(dataset, batch_size=512):
        xs.append(x)
        ys.append(y)
    return torch.cat(xs).to(device), torch.cat(ys).to(device)


@functools.lru_cache(maxsize=16)
def digits(kind: str = "flat", seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2) -> Data:
    """Stratified, seeded train/val/test splits of scikit-learn's digits, pixels scaled to [0, 1].

    Example:
        >>> digits("image").train[0][0].shape
        torch.Size([1, 8, 8])

    Args:
        kind: ``"flat"`` (64 features), ``"image"`` (1x8x8) or ``"tokens"`` (8 tokens of 8).
        seed: the split's random seed.
        val_fraction: share of the samples in the validation split.
        test_fraction: share of the samples in the test split.

    Equal arguments return the same (cached) `Data` object; treat its tensors as read-only.
    """
    if kind not in KINDS:
        raise ValueError(f"The 'kind' parameter of digits must be one of {list(KINDS)}, got {kind!r}.")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < value < 1:
            raise ValueError(f"The '{name}' parameter of digits must lie in (0, 1), got {value!r}.")
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction}.")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    idx = np.arange(len(x))
    rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=y)
    train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction), random_state=seed, stratify=y[rest])
    shape = {"flat": (64,), "image": (1, 8, 8), "tokens": (8, 8)}[kind]

    def part(index: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.from_numpy(x[index]).reshape(len(index), *shape), torch.from_numpy(y[index]))

    return Data(part(train), part(val), part(test))


def resolve(net: Any, data: Any = None) -> Data:
    """What training and evaluation use, from what a user passed.

    Args:
        net: the supernet (its ``data_kind`` picks the digits split when `data` is None).
        data: None (the family's digits split), a `Data`, an object with ``train`` and
            ``val`` attributes, or a ``(train, val)`` pair of datasets or loaders.
    """
    if data is None:
        kind = getattr(net, "data_kind", None)
        if kind is None:
            raise ValueError(
                f"{type(net).__name__} has no default data (no 'data_kind' attribute); "
                "pass data=(train_dataset, val_dataset) or a nas.data.Data."
            )
        return digits(kind)
    if isinstance(data, Data):
        return data
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(f"data as a sequence must be a (train, val) pair, got {len(data)} items.")
        return Data(data[0], data[1])
    if hasattr(data, "train") and hasattr(data, "val"):
        return Data(data.train, data.val, getattr(data, "test", None))
    raise TypeError(
        "The 'data' parameter must be None, a nas.data.Data, or a (train, val) pair of "
        f"torch.utils.data datasets or loaders; got {type(data).__name__}."
    )


__all__ = ["Data", "KINDS", "digits", "resolve"]
