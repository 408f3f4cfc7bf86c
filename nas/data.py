"""Training and validation data: built-in digits and MNIST-1D splits, and users' datasets or loaders.

`digits(kind)` gives seeded train/val/test splits of scikit-learn's bundled digits data,
shaped for a family (``net.data_kind``): ``"flat"`` (64 features), ``"image"`` (1x8x8),
``"signal"`` (1x64) or ``"tokens"`` (8 row-tokens of 8 features). `mnist1d(kind)` generates
MNIST-1D (Greydanus 2020; length-40 signals, 10 classes) with the `mnist1d` package and
caches it on disk: ``"flat"`` (40), ``"signal"`` (1x40) or ``"tokens"`` (8 tokens of 5).
Nothing is downloaded. `resolve(net, data)` turns whatever a user passes (None, a `Data`
split, a ``(train, val)`` pair of datasets or `DataLoader`\\ s) into a `Data`, checks its
input shape against a family's, and serves batches to training and evaluation, caching the
tensors it stacks, so evaluating many configs stacks the validation set once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

KINDS = ("flat", "image", "signal", "tokens")
MNIST1D_KINDS = ("flat", "signal", "tokens")
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
        loader = DataLoader(self.train, batch_size=batch_size, shuffle=True, generator=generator, drop_last=drop_last,
                            pin_memory=device.type == "cuda")  # pinned: copies to the GPU overlap the step
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

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
        kind: ``"flat"`` (64 features), ``"image"`` (1x8x8), ``"signal"`` (1x64) or
            ``"tokens"`` (8 tokens of 8).
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
    shape = {"flat": (64,), "image": (1, 8, 8), "signal": (1, 64), "tokens": (8, 8)}[kind]

    def part(index: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.from_numpy(x[index]).reshape(len(index), *shape), torch.from_numpy(y[index]))

    return Data(part(train), part(val), part(test))


_MNIST1D: dict[tuple, Data] = {}
_MNIST1D_FIXED = ("num_samples", "seed", "url")


def mnist1d(
    kind: str = "signal",
    samples: int = 5000,
    seed: int = 42,
    val_fraction: float = 0.2,
    **generator_args: Any,
) -> Data:
    """MNIST-1D (Greydanus 2020) generated by the `mnist1d` package: train/val/test splits shaped for a family.

    Example:
        >>> data = mnist1d("signal", samples=500)
        >>> len(data.train), len(data.val), len(data.test), tuple(data.train[0][0].shape)
        (320, 80, 100, (1, 40))

    Args:
        kind: ``"flat"`` (40 features), ``"signal"`` (1 channel x 40) or ``"tokens"``
            (the signal cut into equal tokens: 8 tokens of 5 for length 40).
        samples: samples generated (the generator's ``num_samples``); its ``train_split``
            (0.8) of them form the training part, the rest the test split.
        seed: the generator's seed (also seeds the validation split).
        val_fraction: share of the training part held out as the validation split (stratified).
        **generator_args: any other argument of ``mnist1d.data.get_dataset_args()`` (e.g.
            ``train_split``, ``iid_noise_scale``, ``final_seq_length``).

    The test split is the generator's own test part: nothing in nas trains or searches on
    it. Generated data is cached on disk (``$NAS_CACHE``, else ``~/.cache/nas``), keyed by
    the generator's arguments, so a second call (in any process) is instant; equal
    arguments in one process return the same `Data` object (treat its tensors as read-only).
    """
    if kind not in MNIST1D_KINDS:
        raise ValueError(f"The 'kind' parameter of mnist1d must be one of {list(MNIST1D_KINDS)}, got {kind!r}.")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 20:
        raise ValueError(f"The 'samples' parameter of mnist1d must be an int >= 20, got {samples!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"The 'seed' parameter of mnist1d must be an int >= 0, got {seed!r}.")
    if not 0 < val_fraction < 1:
        raise ValueError(f"The 'val_fraction' parameter of mnist1d must lie in (0, 1), got {val_fraction!r}.")
    from mnist1d.data import get_dataset_args

    defaults = dict(vars(get_dataset_args()))
    allowed = sorted(k for k in defaults if k not in _MNIST1D_FIXED)
    for name in generator_args:
        if name not in allowed:
            raise ValueError(f"mnist1d got the unknown generator argument {name!r}; the arguments are: samples, seed, val_fraction, {', '.join(allowed)}.")
    args = {k: v for k, v in defaults.items() if k != "url"}
    args.update(generator_args, num_samples=int(samples), seed=int(seed))
    key = (kind, json.dumps(args, sort_keys=True), float(val_fraction))
    if key not in _MNIST1D:
        arrays = _mnist1d_arrays(args)
        _MNIST1D[key] = _mnist1d_splits(arrays, kind, int(seed), float(val_fraction))
    return _MNIST1D[key]


def cache_dir() -> Path:
    """Where nas caches generated data: ``$NAS_CACHE``, else ``~/.cache/nas``."""
    return Path(os.environ.get("NAS_CACHE") or Path.home() / ".cache" / "nas")


def _mnist1d_arrays(args: dict[str, Any]) -> dict[str, np.ndarray]:
    """The generator's arrays for `args`, from the disk cache or generated and cached (atomic write)."""
    import mnist1d as package

    text = json.dumps(args, sort_keys=True)
    digest = hashlib.sha256(f"{getattr(package, '__version__', '')}|{text}".encode()).hexdigest()[:20]
    path = cache_dir() / f"mnist1d-{digest}.npz"
    names = ("x", "y", "x_test", "y_test")
    if path.exists():
        try:
            with np.load(path) as stored:
                return {n: stored[n] for n in names}
        except (OSError, ValueError, KeyError):
            pass  # a corrupt or foreign file: generate again and replace it
    from mnist1d.data import get_dataset_args, make_dataset

    generator = get_dataset_args()
    for name, value in args.items():
        setattr(generator, name, value)
    made = make_dataset(generator)
    arrays = {"x": made["x"].astype(np.float32), "y": made["y"].astype(np.int64),
              "x_test": made["x_test"].astype(np.float32), "y_test": made["y_test"].astype(np.int64)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs the generation time next call
    return arrays


def signal_tokens(length: int) -> tuple[int, int]:
    """(tokens, features) a length-`length` signal is cut into: the largest token width ``<= sqrt(length)`` dividing it.

    Example:
        >>> signal_tokens(40)
        (8, 5)
    """
    width = max(d for d in range(1, int(length**0.5) + 1) if length % d == 0)
    return length // width, width


def _mnist1d_splits(arrays: dict[str, np.ndarray], kind: str, seed: int, val_fraction: float) -> Data:
    from sklearn.model_selection import train_test_split

    x, y = arrays["x"], arrays["y"]
    length = x.shape[1]
    shape = {"flat": (length,), "signal": (1, length), "tokens": signal_tokens(length)}[kind]
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    train, val = train_test_split(np.arange(len(x)), test_size=val_fraction, random_state=seed, stratify=stratify)

    def part(xs: np.ndarray, ys: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.from_numpy(np.ascontiguousarray(xs)).reshape(len(xs), *shape), torch.from_numpy(ys))

    return Data(part(x[train], y[train]), part(x[val], y[val]), part(arrays["x_test"], arrays["y_test"]))


def sample_shape(data: Data) -> tuple[int, ...]:
    """The shape of one input sample of `data`'s validation split (no batch dimension)."""
    key = ("sample_shape",)
    if key not in data._cache:
        x, _ = _first(data.val)
        data._cache[key] = tuple(int(s) for s in (x.shape[1:] if isinstance(data.val, DataLoader) else x.shape))
    return data._cache[key]


def check_shapes(net: Any, data: Data) -> None:
    """Reject data whose input shape is not what a built-in family was built for (naming both shapes).

    Only nets with a ``data_kind`` (the built-in families) are checked; other models take
    whatever their own layers accept.
    """
    expected = getattr(net, "input_shape", None)
    if getattr(net, "data_kind", None) is None or expected is None:
        return
    given = sample_shape(data)
    if tuple(expected) != given:
        family = getattr(net, "family", type(net).__name__)
        raise ValueError(
            f"the {family!r} supernet expects input samples of shape {list(expected)}, but the data gives {list(given)}; "
            f"build the family for this data (its input-size arguments) or pass data shaped {list(expected)} "
            f"(data kind {net.data_kind!r})."
        )


def _length(source: Dataset | DataLoader) -> int | None:
    try:
        return len(source.dataset if isinstance(source, DataLoader) else source)  # type: ignore[arg-type]
    except TypeError:
        return None


def _targets(source: Dataset | DataLoader) -> torch.Tensor:
    """All targets of a two-tensor `TensorDataset` (cheap), else those of its first sample or batch."""
    if isinstance(source, TensorDataset) and len(source.tensors) == 2:
        return source.tensors[1]
    _, y = _first(source)
    return y if isinstance(source, DataLoader) else y.unsqueeze(0)


def _output_shape(net: Any) -> tuple[int, ...] | None:
    """The largest subnet's per-sample output shape, or None when the net cannot say."""
    if not hasattr(net, "example_input"):
        return None
    mode = net.training
    try:
        with torch.no_grad():
            out = net.eval()(net.example_input(2))  # eval: no BatchNorm statistics change
    except Exception:  # a net that cannot run a zero input: its evaluations will say why
        return None
    finally:
        net.train(mode)
    return tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else None


def check_splits(data: Data) -> None:
    """Reject data whose train or val split is empty (naming the split)."""
    for name in ("train", "val"):
        if _length(getattr(data, name)) == 0:
            raise ValueError(f"the {name} split of the data is empty; pass at least one sample")


def check_data(net: Any, data: Data) -> None:
    """Reject data that cannot train `net`, in one line: empty splits, labels outside the
    output's classes, regression targets not shaped like the output.

    Example:
        >>> from search_spaces.mlp import MLP
        >>> from torch.utils.data import TensorDataset
        >>> bad = TensorDataset(torch.zeros(4, 64), torch.tensor([0, 1, 2, 12]))
        >>> check_data(MLP(depths=(1,), widths=(16,), ranks=(4,)), Data(bad, bad))
        Traceback (most recent call last):
        ...
        ValueError: the train split has label 12, outside the 10 classes the net outputs (labels 0..9); ...
    """
    check_splits(data)
    shape = _output_shape(net)
    if shape is None:
        return
    for name in ("train", "val"):
        y = _targets(getattr(data, name))
        if not (torch.is_floating_point(y) or torch.is_complex(y)):
            if len(shape) != 1 or y.dim() != 1 or not len(y):
                continue
            low, high, classes = int(y.min()), int(y.max()), shape[0]
            if low < 0 or high >= classes:
                label = low if low < 0 else high
                raise ValueError(
                    f"the {name} split has label {label}, outside the {classes} classes the net outputs "
                    f"(labels 0..{classes - 1}); build the family with num_classes={high + 1} or fix the labels"
                )
        elif tuple(y.shape[1:]) != shape:
            hint = "; reshape them, e.g. y.reshape(-1, 1)" if shape == (1,) and y.dim() == 1 else ""
            raise ValueError(
                f"the {name} split's regression targets have per-sample shape {list(y.shape[1:])} but the net "
                f"outputs {list(shape)}; targets must match the output's shape (never broadcast){hint}"
            )


def check_metrics(data: Data, metrics: Any) -> None:
    """Reject metrics (names or objectives) the data cannot give: accuracy needs class labels.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> d = TensorDataset(torch.zeros(4, 2), torch.zeros(4, 1))
        >>> check_metrics(Data(d, d), ["accuracy:max"])
        Traceback (most recent call last):
        ...
        ValueError: the objective 'accuracy' needs class labels (integer targets) but the data has float (regression) targets; use 'loss', 'mae' or 'r2'
    """
    names = [str(getattr(m, "name", m)).split(":")[0] for m in metrics]
    if data.classification:
        bad = next((n for n in names if n in ("mae", "r2")), None)
        if bad is not None:
            raise ValueError(f"the objective {bad!r} needs regression (float) targets but the data has class labels; use 'accuracy' or 'loss'")
    elif "accuracy" in names:
        raise ValueError(
            "the objective 'accuracy' needs class labels (integer targets) but the data has float (regression) "
            "targets; use 'loss', 'mae' or 'r2'"
        )


_SAMPLE_ROWS = 16  # rows of each split the fingerprint's digest reads


class DataMismatch(UserWarning):
    """Data other than the data a supernet was trained on (its shapes, sizes or content fingerprint differ)."""

    __module__ = "nas"


def fingerprint(data: Data) -> dict[str, Any]:
    """What `data` is, cheaply: each split's size, input and target shapes and dtypes, and a content digest.

    The digest (SHA-256, 16 hex digits) reads a fixed, evenly spaced sample of 16 rows
    of each split: validation inputs and targets, training targets (training inputs
    may be randomly augmented, so they are left out). A trained supernet keeps it
    (``net.trained_on``) and `resolve` warns when other data is given to it.

    Example:
        >>> fp = fingerprint(digits("flat"))
        >>> fp["train"], len(fp["digest"])
        ({'size': 1077, 'input': [64], 'target': [], 'dtype': 'int64'}, 16)
        >>> fingerprint(digits("flat", seed=1))["digest"] != fp["digest"]
        True
    """
    key = ("fingerprint",)
    if key not in data._cache:
        digest = hashlib.sha256()
        out: dict[str, Any] = {}
        for name in ("train", "val"):
            source = getattr(data, name)
            dataset = source.dataset if isinstance(source, DataLoader) else source
            size = _length(dataset)
            part: dict[str, Any] = {"size": size}
            try:
                x, y = _first(source)
                if isinstance(source, DataLoader):
                    x, y = x[0], y[0]
                part.update(input=list(x.shape), target=list(y.shape), dtype=str(y.dtype).removeprefix("torch."))
                digest.update(json.dumps([name, part], sort_keys=True).encode())
                for row in _sample_rows(dataset, size):
                    rx, ry = row
                    for t in ((rx, ry) if name == "val" else (ry,)):
                        digest.update(_bytes(torch.as_tensor(t)))
            except Exception:  # noqa: BLE001 (rows that are not tensors: the shapes and sizes still tell)
                digest.update(json.dumps([name, part], sort_keys=True, default=str).encode())
            out[name] = part
        out["digest"] = digest.hexdigest()[:16]
        data._cache[key] = out
    return data._cache[key]


def _sample_rows(dataset: Any, size: int | None) -> list[Any]:
    if not size or isinstance(dataset, torch.utils.data.IterableDataset):
        return []
    index = sorted({int(round(i)) for i in np.linspace(0, size - 1, min(size, _SAMPLE_ROWS))})
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        x, y = dataset.tensors
        return [(x[i], y[i]) for i in index]
    return [dataset[i] for i in index]


def _bytes(tensor: torch.Tensor) -> bytes:
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def describe(fp: dict[str, Any]) -> str:
    """A fingerprint in one short phrase: ``train 1077 x [64], val 360 x [64], digest 1a2b...``."""
    parts = [f"{n} {fp[n].get('size', '?')} x {fp[n].get('input', '?')}" for n in ("train", "val") if isinstance(fp.get(n), dict)]
    return ", ".join([*parts, f"digest {fp.get('digest')}"])


def check_trained_on(net: Any, data: Data, *, stacklevel: int = 3) -> None:
    """Warn (`DataMismatch`, once per net and data) when `data` is not the data `net` was trained on."""
    remembered = getattr(net, "trained_on", None)
    if not isinstance(remembered, dict):
        return
    key = ("trained_on", id(net), remembered.get("digest"))
    if key in data._cache:
        return
    data._cache[key] = True
    now = fingerprint(data)
    if now == remembered:
        return
    warnings.warn(
        f"this data ({describe(now)}) is not the data the supernet was trained on ({describe(remembered)}); "
        "its accuracy and the stored evaluations may not hold for it: pass the training data, or train on this data",
        DataMismatch,
        stacklevel=stacklevel,
    )


_ANNOUNCED: set[str] = set()  # built-in data sources whose fallback use was announced


def resolve(net: Any, data: Any = None, *, compare: bool = True) -> Data:
    """What training and evaluation use, from what a user passed.

    Args:
        net: the supernet (its ``data_kind`` picks the split when `data` is None: digits,
            or MNIST-1D for a family whose ``data_source`` is ``"mnist1d"``).
        data: None (the family's default split), a `Data`, an object with ``train`` and
            ``val`` attributes, or a ``(train, val)`` pair of datasets or loaders.
        compare: warn (`DataMismatch`) when `net` was trained (``net.trained_on``, kept in
            its checkpoint) on data with another `fingerprint`.

    Raises ValueError when a built-in family's input shape does not match the data's.
    """
    if data is None:
        kind = getattr(net, "data_kind", None)
        if kind is None:
            raise ValueError(
                f"{type(net).__name__} has no default data (no 'data_kind' attribute); "
                "pass data=(train_dataset, val_dataset) or a nas.data.Data."
            )
        builtin = getattr(net, "data_source", "digits")
        if builtin not in _ANNOUNCED:  # once per process
            _ANNOUNCED.add(builtin)
            warnings.warn(f"using the built-in {builtin} data (pass data= to use your own)", UserWarning, stacklevel=2)
        resolved = mnist1d(kind) if builtin == "mnist1d" else digits(kind)
    elif isinstance(data, Data):
        resolved = data
    elif isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(f"data as a sequence must be a (train, val) pair, got {len(data)} items.")
        resolved = Data(data[0], data[1])
    elif hasattr(data, "train") and hasattr(data, "val"):
        resolved = Data(data.train, data.val, getattr(data, "test", None))
    else:
        resolved = None
    if resolved is not None:
        key = ("checked", id(net))
        if key not in resolved._cache:
            check_splits(resolved)
            check_shapes(net, resolved)
            check_data(net, resolved)
            resolved._cache[key] = True
        if compare:
            check_trained_on(net, resolved)
        return resolved
    raise TypeError(
        "The 'data' parameter must be None, a nas.data.Data, or a (train, val) pair of "
        f"torch.utils.data datasets or loaders; got {type(data).__name__}."
    )


__all__ = ["KINDS", "MNIST1D_KINDS", "Data", "DataMismatch", "cache_dir", "check_data", "check_trained_on", "describe", "fingerprint", "check_metrics", "check_shapes", "digits", "mnist1d", "resolve", "sample_shape", "signal_tokens"]
