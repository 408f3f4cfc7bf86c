"""The end-to-end example a user copies: runs/custom.toml names examples/custom_model.py; search, export, reload in fresh processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def nas(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("NAS_TRUSTED_SOURCES", None)
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_the_custom_model_example_searches_exports_and_reloads_in_fresh_processes(tmp_path):
    run = tmp_path / "custom"
    proc = nas("-m", "nas.cli", "search", "--spec", "runs/custom.toml", "--run", str(run), "--budget", "6", "--epochs", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "--trust" in proc.stdout  # the next step it prints says the run needs trust to reopen

    refused = nas("-m", "nas.cli", "export", str(run), "--pick", "knee", "--format", "pt,onnx")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "'examples.custom_model:model'" in refused.stderr and "--trust" in refused.stderr
    assert not (run / "export").exists()

    proc = nas("-m", "nas.cli", "export", str(run), "--pick", "knee", "--format", "pt,onnx", "--trust")
    assert proc.returncode == 0, proc.stderr
    assert "check: load_model outputs within 0 of PyTorch" in proc.stdout
    out = run / "export" / "knee"
    assert {"model.pt", "model.onnx", "arch.json"} <= {p.name for p in out.iterdir()}

    script = f"""
import numpy as np, onnxruntime, torch
import nas
from examples.custom_model import SmallCNN, data
net = nas.load_run({str(run)!r}, trust=True).net   # the supernet, rebuilt through space.source
model = nas.load_model({str(out)!r}, net=net)
assert type(model) is SmallCNN, type(model)
x = torch.stack([data(samples=1000).val[i][0] for i in range(8)])
with torch.no_grad():
    y = model(x)
onnx = onnxruntime.InferenceSession({str(out / 'model.onnx')!r}).run(None, {{"input": x.numpy()}})[0]
print("shape", tuple(y.shape), "onnx diff", float(np.abs(onnx - y.numpy()).max()))
"""
    proc = nas("-c", script)
    assert proc.returncode == 0, proc.stderr
    shape, diff = proc.stdout.split("onnx diff")
    assert shape.strip() == "shape (8, 10)" and float(diff) < 1e-4

    resumed = nas("-m", "nas.cli", "search", "--run", str(run), "--quiet")  # a new process reopens the run: trust needed
    assert resumed.returncode == 2 and "NAS_TRUSTED_SOURCES" in resumed.stderr
    resumed = nas("-m", "nas.cli", "search", "--run", str(run), "--quiet", "--trust", "--no-report")
    assert resumed.returncode == 0, resumed.stderr
