"""Devices: auto/cpu/cuda resolution, bf16 only on CUDA, and the one-line errors (exit code 2) for devices not here."""

import pytest
import torch

import nas
from nas.cli import main
from nas.devices import DeviceError, autocast, check_precision, resolve_device, to_device
from nas.runs import SpecError, load_spec, run_spec
from search_spaces.mlp import MLP

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
TINY = {"space": {"args": {"depths": [1], "widths": [16], "ranks": [4]}}, "train": {"epochs": 1}}


def test_auto_is_cuda_when_present_else_cpu():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("bad", ["tpu", "cuda:x", "", 3])
def test_unknown_device_names_the_parameter_and_the_choices(bad):
    with pytest.raises(DeviceError, match=r"The 'device' parameter must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device(bad)


@no_cuda
def test_cuda_without_a_cuda_device_is_one_clear_error():
    with pytest.raises(DeviceError, match="torch sees no CUDA device") as info:
        resolve_device("cuda")
    assert isinstance(info.value, ValueError) and isinstance(info.value, nas.NASError)
    assert "\n" not in str(info.value)


def test_bf16_is_refused_off_cuda_and_fp32_runs_anywhere():
    assert check_precision("fp32", "cpu") == "fp32"
    with pytest.raises(DeviceError, match="'bf16', which trains under CUDA autocast; the device is cpu"):
        check_precision("bf16", "cpu")
    with pytest.raises(DeviceError, match="must be one of"):
        check_precision("fp16", "cpu")
    with autocast("fp32", "cpu"):
        assert (torch.ones(2) @ torch.ones(2)).dtype == torch.float32


def test_to_device_keeps_values():
    x, y = to_device((torch.arange(3.0), torch.tensor([1, 2])), torch.device("cpu"))
    assert x.tolist() == [0.0, 1.0, 2.0] and y.tolist() == [1, 2]


def test_train_supernet_moves_the_net_once_to_the_device_and_trains_there():
    net = MLP(depths=(1,), widths=(16,), ranks=(4,))
    history = nas.train_supernet(net, epochs=3, lr=0.01, batch_size=64, device="cpu", progress=False)
    assert net.device == torch.device("cpu") and history[-1]["largest_accuracy"] > 0.3


def test_bf16_on_cpu_is_refused_before_training(tmp_path):
    net = MLP(depths=(1,), widths=(16,), ranks=(4,))
    before = [p.clone() for p in net.parameters()]
    with pytest.raises(DeviceError, match="bf16"):
        nas.train_supernet(net, epochs=1, device="cpu", precision="bf16", run=tmp_path / "r", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert not (tmp_path / "r" / "supernet.pt").exists()


def test_spec_device_and_precision_keys():
    assert load_spec(TINY)["device"] == "auto"
    assert load_spec(TINY, device="cpu")["device"] == "cpu"
    with pytest.raises(SpecError, match="device must be one of"):
        load_spec({**TINY, "device": "gpu"})
    with pytest.raises(SpecError, match="'precision' argument must be one of"):
        load_spec(TINY, precision="fp8")


def test_run_spec_on_cpu_evaluates_where_it_trained(tmp_path):
    run = run_spec(TINY, run=tmp_path / "r", device="cpu", budget=2, progress=False)
    assert run.net.device == torch.device("cpu") and all(e.ok for e in run.evaluations)
    assert load_spec(tmp_path / "r")["device"] == "cpu"


@no_cuda
@pytest.mark.parametrize("argv", [["train", "--device", "cuda"], ["search", "--device", "cuda"], ["train", "--precision", "bf16", "--device", "cpu"]])
def test_cli_device_errors_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, argv):
    run = tmp_path / "r"
    assert main([*argv, "--run", str(run), "--quiet", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nas: error: ") and "\n" not in err
    assert "--device" in err or "--precision" in err
    assert not run.exists()


@no_cuda
def test_cli_export_device_cuda_is_refused(tmp_path, capsys):
    run_spec(TINY, run=tmp_path / "r", budget=2, progress=False)
    assert main(["export", str(tmp_path / "r"), "--device", "cuda"]) == 2
    assert "torch sees no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "r" / "export").exists()


def test_cli_export_on_cpu_device(tmp_path, capsys):
    run_spec(TINY, run=tmp_path / "r", budget=2, progress=False)
    assert main(["export", str(tmp_path / "r"), "--device", "cpu", "--format", "pt"]) == 0
    assert "check: validation accuracy" in capsys.readouterr().out
