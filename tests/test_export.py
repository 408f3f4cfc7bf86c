"""Export: dense models that equal their subnet, in PyTorch, TorchScript and ONNX, rebuilt with no supernet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import search_spaces
from nas.data import Data, digits
from nas.evaluate import default_loss, evaluate, score
from nas.export import ExportError, ExportInputError, export, load_model
from nas.runs import load_run, run_spec
from nas.space import InvalidConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny",
    "space": {"family": "mlp", "args": {"depths": [1, 2], "widths": [16, 32], "ranks": [4, 8]}},
    "train": {"epochs": 2, "lr": 0.01},
    "search": {"searcher": "random", "budget": 10},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_spec(TINY, run=tmp_path_factory.mktemp("export") / "tiny", progress=False)


@pytest.fixture(scope="module")
def exported(run):
    return export(run, "knee", formats="pt,torchscript,onnx")


def subnet_outputs(net, config, x):
    with torch.no_grad(), net.activate(config):
        return net.eval()(x)


def test_export_writes_every_format_and_the_arch(run, exported):
    assert exported.path == run.run / "export" / "knee"
    assert {p.name for p in exported.path.iterdir()} == {"model.pt", "model.torchscript.pt", "model.onnx", "arch.json"}
    arch = json.loads((exported.path / "arch.json").read_text())
    knee = run.pick("knee")
    assert arch["config"] == knee.config and arch["metrics"] == knee.metrics
    assert arch["family"] == "mlp" and arch["family_args"] == run.net.family_args
    assert arch["checks"]["accuracy"]["exported"] == knee.metrics["accuracy"]


def test_exported_accuracy_equals_the_stored_evaluation(run, exported):
    model = load_model(exported.path)
    data = run.data()
    scores = score(model, data.val_batches(256, "cpu"), default_loss(data, None), True)
    assert scores["accuracy"] == run.pick("knee").metrics["accuracy"]


def test_load_model_rebuilds_the_subnet_without_the_supernet(run, exported):
    model = load_model(exported.path)
    assert not any(type(m).__module__.startswith("nas.elastic") for m in model.modules())
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(1))
    expected = subnet_outputs(run.net, exported.config, x)
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-5)
    state = torch.get_rng_state()
    load_model(exported.path)
    assert torch.equal(torch.get_rng_state(), state)  # building the skeleton leaves the caller's RNG alone


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_equals_pytorch(run, exported):
    scripted = torch.jit.load(str(exported.path / "model.torchscript.pt"))
    for batch in (1, 7):
        x = torch.randn(batch, 64, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), subnet_outputs(run.net, exported.config, x), rtol=0, atol=1e-5)


def test_onnx_equals_pytorch_through_onnxruntime(run, exported):
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(exported.path / "model.onnx"))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == 17
    session = ort.InferenceSession(str(exported.path / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 33):  # dynamic batch axis
        x = torch.randn(batch, 64, generator=torch.Generator().manual_seed(batch))
        got = session.run(None, {"input": x.numpy()})[0]
        want = subnet_outputs(run.net, exported.config, x).numpy()
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_export_of_a_batchnorm_net_recalibrates_like_evaluation(tmp_path):
    net = search_spaces.get("cnn", stages=((8, 1, 1),), kernels=(3, 5), expands=(2,), width_mults=(1.0,), head=16)
    config = {**net.largest(), "stages.0.blocks.0.kernel": 3}
    full = digits("image")
    small = Data(*(TensorDataset(*(t[:n] for t in part.tensors)) for part, n in ((full.train, 192), (full.val, 96))))
    done = export(net, config, tmp_path / "cnn", formats=("pt", "onnx"), data=small)
    fresh = evaluate(net, [config], small)[0]
    assert done.checks["accuracy"]["exported"] == fresh.metrics["accuracy"]
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    model = load_model(done.path)
    dense = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert dense and not torch.equal(dense[0].running_mean, torch.zeros_like(dense[0].running_mean))
    assert model(x).shape == (4, 10)


def test_a_failed_check_raises(run, tmp_path, monkeypatch):
    module = sys.modules["nas.export"]  # the module (`nas.export` may name the function)
    monkeypatch.setattr(module, "ONNX_TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="ONNX model's outputs differ"):
        export(run, "knee", tmp_path / "x", formats="onnx")


def test_export_validates_its_input(run, tmp_path):
    net = run.net
    with pytest.raises(InvalidConfig, match="dimension 'depth' must be one of"):
        export(run, {"depth": 7}, tmp_path / "x")
    with pytest.raises(ExportInputError, match="chooses from a run's evaluations"):
        export(net, "knee", tmp_path / "x")
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        export(run, "knee", tmp_path / "x", formats="tflite")
    with pytest.raises(ExportInputError, match="no exported model at"):
        load_model(tmp_path / "nothing")
    assert not (tmp_path / "x").exists()


def test_importing_nas_imports_no_optional_framework():
    code = "import sys, nas, nas.runs, nas.export, nas.report, nas.cli; print(sorted(m for m in ('onnx', 'onnxruntime', 'matplotlib', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.strip() == "[]"


def test_load_run_then_export_from_its_directory(run, tmp_path):
    again = load_run(run.run)
    done = export(again.run, "best:accuracy", tmp_path / "best", formats="pt")
    assert done.metrics == again.pick("best:accuracy").metrics
