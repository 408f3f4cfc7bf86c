"""Data checked before any work, no silent digits fallback, and a search that never succeeds fails loudly."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import nas
import nas.data
from nas.data import Data, resolve
from nas.evaluate import evaluate
from search_spaces.mlp import MLP

ROOT = Path(__file__).resolve().parents[1]


def small_mlp(num_classes: int = 10, in_features: int = 64) -> MLP:
    torch.manual_seed(0)
    return MLP(in_features=in_features, num_classes=num_classes, depths=(1,), widths=(16,), ranks=(4, 16))


def test_labels_outside_num_classes_are_refused_in_one_line():
    x, y = torch.zeros(8, 64), torch.tensor([0, 1, 2, 3, 4, 5, 6, 12])
    with pytest.raises(ValueError, match=r"train split has label 12, outside the 10 classes .*num_classes=13"):
        resolve(small_mlp(), (TensorDataset(x, y), TensorDataset(x, y % 10)))
    with pytest.raises(ValueError, match="val split has label -1"):
        resolve(small_mlp(), (TensorDataset(x, y % 10), TensorDataset(x, y - 1)))


def test_an_empty_split_is_refused():
    full, empty = TensorDataset(torch.zeros(4, 64), torch.zeros(4, dtype=torch.long)), TensorDataset(torch.zeros(0, 64), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="the val split of the data is empty"):
        resolve(small_mlp(), (full, empty))
    with pytest.raises(ValueError, match="the train split of the data is empty"):
        nas.train_supernet(small_mlp(), (empty, full), epochs=1, progress=False)


def test_flat_regression_targets_for_a_one_wide_output_are_refused_not_broadcast():
    x = torch.randn(16, 64)
    flat = TensorDataset(x, x[:, 0].clone())
    with pytest.raises(ValueError, match=r"per-sample shape \[\] but the net outputs \[1\].*reshape"):
        resolve(small_mlp(num_classes=1), (flat, flat))
    column = TensorDataset(x, x[:, :1].clone())
    assert resolve(small_mlp(num_classes=1), (column, column)).classification is False


def test_regression_evaluations_give_mae_and_r2_as_sklearn_computes_them():
    from sklearn.metrics import mean_absolute_error, r2_score

    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 8, generator=g)
    y = torch.cat([x[:, :1] * 2, x[:, 1:2] - 1], 1)
    net = small_mlp(num_classes=2, in_features=8).eval()
    data = Data(TensorDataset(x, y), TensorDataset(x, y))
    ev = evaluate(net, [net.largest()], data, metrics=("loss", "mae", "r2"), batch_size=16)[0]
    assert ev.ok, ev.error
    with torch.no_grad():
        pred = net(x).numpy()
    assert ev.metrics["mae"] == pytest.approx(mean_absolute_error(y.numpy(), pred), rel=1e-5)
    assert ev.metrics["r2"] == pytest.approx(r2_score(y.numpy(), pred), rel=1e-5)
    assert nas.metrics.METRICS["mae"].direction == "min" and nas.metrics.METRICS["r2"].direction == "max"


def test_accuracy_is_refused_for_regression_data_before_any_work(tmp_path):
    x = torch.randn(16, 64)
    data = (TensorDataset(x, x[:, :1]), TensorDataset(x, x[:, :1]))
    with pytest.raises(ValueError, match="'accuracy' needs class labels"):
        nas.search(small_mlp(num_classes=1), data, objectives=["accuracy:max", "params:min"], budget=2, run=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    result = nas.search(small_mlp(num_classes=1), data, objectives=["r2:max", "params:min"], searcher="random", budget=2, progress=False)
    assert result.evaluations and all(e.ok and np.isfinite(e.metrics["r2"]) for e in result.evaluations)


def test_the_digits_fallback_is_announced_once():
    net = small_mlp()
    nas.data._ANNOUNCED.clear()
    with pytest.warns(UserWarning, match="using the built-in digits data"):
        evaluate(net, [net.smallest()], metrics=("accuracy",))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate(net, [net.smallest()], metrics=("accuracy",))
    with warnings.catch_warnings():  # data given: no fallback, no announcement
        warnings.simplefilter("error")
        nas.data._ANNOUNCED.clear()
        evaluate(net, [net.smallest()], nas.data.digits("flat"), metrics=("accuracy",))


def test_a_search_in_which_no_evaluation_succeeded_raises_with_the_first_errors():
    def broken(out, y):
        raise RuntimeError("this loss always fails")

    with pytest.raises(nas.SearchFailed, match=r"no evaluation succeeded \(2 failed\).*this loss always fails"):
        nas.search(small_mlp(), nas.data.digits("flat"), searcher="random", budget=2, progress=False, backend_kwargs={"loss": broken})
    assert issubclass(nas.SearchFailed, nas.NASError)


def _cli(tmp_path: Path, spec: str) -> subprocess.CompletedProcess:
    (tmp_path / "mydata.py").write_text(textwrap.dedent('''
        import torch
        from torch.utils.data import TensorDataset

        def regression():
            x = torch.randn(32, 64)
            return TensorDataset(x, x[:, :1]), TensorDataset(x, x[:, :1])

        def nothing():
            return None
    '''))
    (tmp_path / "spec.toml").write_text(textwrap.dedent(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "nas.cli", "search", "--spec", "spec.toml"], check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


SPEC = """
    name = "r"
    [space]
    family = "mlp"
    args = {{ num_classes = 1, depths = [1], widths = [16], ranks = [4] }}
    [data]
    source = "mydata:{source}"
    [train]
    epochs = 1
    [search]
    searcher = "random"
    budget = 2
    objectives = {objectives}
"""


@pytest.mark.parametrize(
    ("source", "objectives", "message"),
    [
        ("regression", '["accuracy:max", "params:min"]', "'accuracy' needs class labels"),
        ("nothing", '["loss:min", "params:min"]', "returned None"),
    ],
)
def test_the_cli_refuses_bad_data_in_one_line_and_writes_nothing(tmp_path, source, objectives, message):
    proc = _cli(tmp_path, SPEC.format(source=source, objectives=objectives))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas: error: ") and message in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists()
