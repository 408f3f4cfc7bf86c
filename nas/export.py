"""Export a subnet as a standalone dense model: state dict + arch JSON, TorchScript, ONNX.

`export` extracts the picked subnet from the trained supernet (`Supernet.extract` with
data: BatchNorm statistics recalibrated exactly as evaluation does), writes it in the asked formats and checks it:
its validation accuracy equals the stored evaluation's, the TorchScript and ONNX models
give the PyTorch model's outputs (ONNX through onnxruntime, to 1e-4), and `load_model`
rebuilds it from ``model.pt`` + ``arch.json`` with no supernet. onnx, onnxruntime and
TorchScript are imported only here, and only when their format is asked for.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.data import resolve
from nas.errors import ExportInputError, NASError
from nas.evaluate import default_loss, evaluate, score
from nas.evaluation import Evaluation
from nas.registry import build_family
from nas.rundir import RunDir, atomic_dir, atomic_write
from nas.runs import Run, load_run

FORMATS = ("pt", "torchscript", "onnx")
FILES = {"pt": "model.pt", "torchscript": "model.torchscript.pt", "onnx": "model.onnx"}
ARCH = "arch.json"
OPSET = 17  # LayerNormalization is native from 17; onnxruntime has supported it for years
ONNX_TOLERANCE = 1e-4
TORCHSCRIPT_TOLERANCE = 1e-5


class ExportError(NASError, RuntimeError):
    """An exported model that fails a check (accuracy, TorchScript or ONNX outputs)."""


@dataclass
class Exported:
    """What `export` wrote.

    Attributes:
        path: the output directory.
        config: the exported subnet's config.
        metrics: its stored (or freshly evaluated) metrics.
        files: format -> file (``arch`` -> ``arch.json``).
        checks: what was verified, with the measured numbers.
    """

    path: Path
    config: dict[str, Any]
    metrics: dict[str, float]
    files: dict[str, Path] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)


def parse_formats(formats: str | Sequence[str]) -> list[str]:
    """Formats from ``"pt,onnx"`` or a list; raises ValueError naming the allowed ones."""
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = list(dict.fromkeys(formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"unknown export format {bad[0] if bad else ''!r}; the formats are: {', '.join(FORMATS)}")
    return formats


def export(
    source: Any,
    pick: str | Mapping[str, Any] | Evaluation = "knee",
    out: str | os.PathLike | None = None,
    formats: str | Sequence[str] = FORMATS,
    *,
    data: Any = None,
    check: bool = True,
    opset: int = OPSET,
    trust: bool = False,
) -> Exported:
    """Write one subnet as a dense model and check it against the supernet.

    Example:
        >>> import search_spaces
        >>> net = search_spaces.get("mlp", depths=(1,), widths=(16,), ranks=(4,))
        >>> import tempfile
        >>> done = export(net, net.largest(), Path(tempfile.mkdtemp()) / "m", formats="pt")
        >>> sorted(done.files), load_model(done.path)(torch.zeros(2, 64)).shape
        (['arch', 'pt'], torch.Size([2, 10]))

    Args:
        source: a run (a `nas.runs.Run` or its directory) or a trained `Supernet`.
        pick: with a run, ``"knee"``, ``"best:accuracy"``, constraints such as
            ``"latency_ms<=2"`` (see `nas.pick`), or a config; with a supernet, a config
            (or an `Evaluation`).
        out: output directory (default: ``<run>/export/<pick>``; required for a supernet).
        formats: any of ``"pt"`` (state dict + arch JSON, read by `load_model`),
            ``"torchscript"``, ``"onnx"``, as a list or ``"pt,onnx"``. ``arch.json`` is always written.
        data: the data for the accuracy check (default: the run's, or the family's digits).
        check: verify accuracy against the stored evaluation (or a fresh `nas.evaluate` of
            the config), TorchScript and ONNX outputs, and the `load_model` round trip;
            raises `ExportError` on a mismatch.
        opset: ONNX opset version.
        trust: with a run directory, whether its spec may import and call the code its
            sources name (as for `nas.load_run`; default no, unless ``NAS_TRUSTED_SOURCES`` lists it).
    """

    formats = parse_formats(formats)
    run = None
    if isinstance(source, (str, os.PathLike)):
        source = load_run(source, trust=trust)
    if isinstance(source, Run):
        run = source
        net = run.net
    elif hasattr(source, "extract") and hasattr(source, "space"):
        net = source
    else:
        raise TypeError(f"export() takes a run, a run directory or a Supernet, got {type(source).__name__}")

    # the config and the metrics it was stored with
    how = None
    stored: Evaluation | None = None
    if isinstance(pick, Evaluation):
        config = pick.config
        stored = pick
    elif isinstance(pick, str):
        if run is None:
            raise ExportInputError(f"pick={pick!r} chooses from a run's evaluations; with a supernet, pass a config")
        how = pick
        stored = run.pick(pick)
        config = stored.config
    elif isinstance(pick, Mapping):
        config = dict(pick)
    else:
        raise TypeError(f"The 'pick' parameter must be a pick string, a config dict or an Evaluation, got {type(pick).__name__}.")
    config = net.space.validate(config)
    if run is not None and stored is None:
        key = net.space.key(config)
        stored = next((e for e in run.evaluations if e.ok and net.space.key(e.config) == key), None)

    if out is None:
        if run is None:
            raise ValueError("The 'out' parameter is required when exporting from a supernet.")
        out = RunDir(run.run).export_dir(_slug(how or "config"))
    out = Path(out)

    settings = _evaluation_settings(run)
    if data is None:
        data = run.data() if run is not None else None
    data = resolve(net, data)
    dense = net.extract(config, data, **settings).eval()

    checks: dict[str, Any] = {}
    metrics = dict(stored.metrics) if stored is not None else {}
    if check:
        if stored is None:  # nothing stored: compare with what evaluation says now
            fresh = evaluate(net, [config], data, metrics=("accuracy", "loss", "params", "macs") if data.classification else ("loss", "params", "macs"), **settings)[0]
            if not fresh.ok:
                raise ExportError(f"the config cannot be evaluated: {fresh.error}")
            metrics = {**fresh.metrics, **metrics}
        checks["accuracy"] = _check_accuracy(dense, data, metrics, settings["batch_size"])

    _check_out(out)
    example = net.example_input(2).to(next(dense.parameters()).device)
    with torch.no_grad():
        if example.is_floating_point():  # token ids (integer inputs) stay zeros: a valid id for any vocabulary
            example.normal_(generator=torch.Generator(device=example.device).manual_seed(0))
    arch = {
        "format": 1,
        "family": net.family,
        "family_args": getattr(net, "family_args", {}),
        "input_shape": list(net.input_shape),
        "data_kind": getattr(net, "data_kind", None),
        "config": config,
        "key": net.space.key(config),
        "metrics": metrics,
        "pick": how,
        "run": str(run.run) if run is not None else None,
        "objectives": [str(o) for o in run.objectives] if run is not None else None,
        "files": {k: FILES[k] for k in FORMATS if k in formats},
        "torch": torch.__version__,
    }

    def write(tmp: Path) -> None:  # into a fresh directory, swapped in whole: a kill never mixes two exports
        if "pt" in formats:
            torch.save(dense.state_dict(), tmp / FILES["pt"])
        if "torchscript" in formats:
            _save_torchscript(dense, example, tmp / FILES["torchscript"])
        if "onnx" in formats:
            _save_onnx(dense, example, tmp / FILES["onnx"], opset)
            checks["onnx_opset"] = opset
        if check:
            inputs = data.val_batches(settings["batch_size"], example.device)[0][0]
            if "pt" in formats:
                _write_json(tmp / ARCH, {**arch, "checks": checks})
                rebuilt = load_model(tmp, net=net if net.family == "custom" else None).to(example.device)
                checks["load_model_max_abs_diff"] = _max_diff(dense, rebuilt, inputs, "load_model", 0.0)
            if "torchscript" in formats:
                scripted = _load_torchscript(tmp / FILES["torchscript"], example.device)
                checks["torchscript_max_abs_diff"] = _max_diff(dense, scripted, inputs, "TorchScript", TORCHSCRIPT_TOLERANCE)
            if "onnx" in formats:
                checks["onnx_max_abs_diff"] = _check_onnx(dense, tmp / FILES["onnx"], inputs)
        _write_json(tmp / ARCH, {**arch, "checks": checks})

    atomic_dir(out, write)
    files = {k: out / FILES[k] for k in FORMATS if k in formats}
    files["arch"] = out / ARCH
    return Exported(out, config, metrics, files, checks)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", *, net: Any = None, torchscript: bool = False) -> nn.Module:
    """The dense model exported to `path`, rebuilt from ``arch.json`` + ``model.pt`` with no trained supernet.

    The family's skeleton is built from its arguments (with throw-away weights), the
    config's dense model extracted from it, and the exported state dict loaded into it.
    A model of a custom family (`nas.from_model`) is rebuilt the same way from `net`: its
    supernet, or `nas.from_model` of a fresh instance of the user's class (only the shapes
    matter). Its TorchScript file, which runs code when loaded, is loaded only with
    ``torchscript=True``.

    Example:
        >>> load_model("no/such/export")
        Traceback (most recent call last):
        ...
        nas.export.ExportInputError: no exported model at no/such/export: it has no arch.json
    """

    path = Path(path)
    if not (path / ARCH).is_file():
        raise ExportInputError(f"no exported model at {path}: it has no {ARCH}")
    try:
        arch = json.loads((path / ARCH).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ExportInputError(f"{path / ARCH} is damaged ({err}); export the model again") from None
    if not isinstance(arch, dict) or not isinstance(arch.get("family"), str):
        raise ExportInputError(f"{path / ARCH} is not a nas export (it names no family); export the model again")
    if arch["family"] == "custom" and net is None:
        if torchscript and (path / FILES["torchscript"]).is_file():
            return _load_torchscript(path / FILES["torchscript"], device).eval()
        raise ExportInputError(
            f"{path} holds a custom model (nas.from_model): pass net=nas.from_model(YourModel(), example_input) to rebuild it "
            "from model.pt, or torchscript=True to load its TorchScript file (which runs code from the file)"
        )
    if not (path / FILES["pt"]).is_file():
        raise ExportInputError(f"{path} has no {FILES['pt']}: export it with format 'pt'")
    _check_sizes(arch, path, build=net is None)
    with torch.random.fork_rng(devices=[]):  # skeleton weights are overwritten: leave the caller's RNG alone
        skeleton = net if net is not None else build_family(arch["family"], **arch["family_args"])
        model = skeleton.extract(arch["config"], calibrate=False)  # the statistics come with the state dict
    model.load_state_dict(torch.load(path / FILES["pt"], map_location="cpu", weights_only=True))
    return model.to(device).eval()


MAX_INT = 10**7  # no dimension of a model loaded from arch.json is larger
MAX_SKELETON_BYTES = 8 * 2**30  # the supernet skeleton `load_model` builds to extract the model


def _check_sizes(arch: Mapping[str, Any], path: Path, *, build: bool = True) -> None:
    """Refuse an ``arch.json`` whose sizes would allocate more than its weights file holds, before allocating.

    The skeleton is built on the meta device (no memory) to count what the real one needs;
    with ``build=False`` (the caller brings the supernet) only the sizes are bounded.
    """

    where = path / ARCH

    def ints(value: Any) -> list[int]:
        if isinstance(value, Mapping):
            return [i for v in value.values() for i in ints(v)]
        if isinstance(value, (list, tuple)):
            return [i for v in value for i in ints(v)]
        return [value] if isinstance(value, int) and not isinstance(value, bool) else []

    if not isinstance(arch.get("family_args", {}), Mapping) or not isinstance(arch.get("config"), Mapping):
        raise ExportInputError(f"{where} is malformed: 'family_args' and 'config' must be objects; export the model again")
    big = [i for i in ints([arch.get("family_args", {}), arch["config"]]) if abs(i) > MAX_INT]
    if big:
        raise ExportInputError(f"{where} asks for a size of {big[0]:,} (at most {MAX_INT:,} is allowed); it is not a nas export: export the model again")

    if not build:
        return
    try:
        with torch.device("meta"):
            skeleton = build_family(arch["family"], **arch["family_args"])
            model = skeleton.extract(arch["config"], calibrate=False)
    except Exception as err:  # noqa: BLE001 (any failure to rebuild is a bad arch.json)
        raise ExportInputError(f"{where} does not describe a model nas can rebuild ({type(err).__name__}: {err}); export the model again") from None
    need = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    skeleton_bytes = sum(t.numel() * t.element_size() for t in skeleton.state_dict().values())
    have = (path / FILES["pt"]).stat().st_size
    if need > have or skeleton_bytes > MAX_SKELETON_BYTES:
        raise ExportInputError(
            f"{where} describes a model of {need / 2**20:,.1f} MiB (built from a {skeleton_bytes / 2**20:,.1f} MiB supernet), "
            f"but {FILES['pt']} holds {have / 2**20:,.1f} MiB: the arch.json does not belong to these weights; export the model again"
        )


def _evaluation_settings(run: Any) -> dict[str, Any]:
    if run is None:
        return {"batch_size": 256, "calibration_batches": 4}
    return {"batch_size": run.spec["evaluate.batch_size"], "calibration_batches": run.spec["evaluate.calibration_batches"]}


def _check_accuracy(dense: nn.Module, data: Any, metrics: Mapping[str, float], batch_size: int) -> dict[str, float]:
    device = next(dense.parameters()).device
    scores = score(dense, data.val_batches(batch_size, device), default_loss(data, None), data.classification)
    name = "accuracy" if "accuracy" in scores and "accuracy" in metrics else "loss"
    if name not in metrics:
        return {f"exported_{k}": v for k, v in scores.items()}
    stored, now = float(metrics[name]), float(scores[name])
    # accuracy is a count over the same samples: equal; the loss may differ in the last float bits
    same = now == stored if name == "accuracy" else math.isclose(now, stored, rel_tol=1e-4, abs_tol=1e-6)
    if not same:
        raise ExportError(f"the exported model's validation {name} is {now:.6g}, the stored evaluation's {stored:.6g}")
    return {"metric": name, "stored": stored, "exported": now}


def _max_diff(reference: nn.Module, other: Any, inputs: torch.Tensor, what: str, tolerance: float) -> float:
    with torch.no_grad():
        diff = float((reference(inputs) - other(inputs)).abs().max())
    if not diff <= tolerance:
        raise ExportError(f"the {what} model's outputs differ from PyTorch's by {diff:.3g} (tolerance {tolerance:g})")
    return diff


def _save_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export, and still the portable format
        traced = torch.jit.trace(model, example)
        torch.jit.save(traced, str(path))


def _load_torchscript(path: Path, device: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location=device)


def _save_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    # The TorchScript-based exporter works offline with no extra package (the dynamo one needs onnxscript).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=opset,
            input_names=["input"], output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )


def _check_onnx(model: nn.Module, path: Path, inputs: torch.Tensor) -> float:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("checking the ONNX model needs onnxruntime: pip install 'nas[export]' (or pass check=False)") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in (inputs, inputs[:1]):  # two batch sizes: the batch axis is dynamic
        got = torch.from_numpy(session.run(None, {"input": batch.detach().cpu().numpy()})[0])
        with torch.no_grad():
            want = model(batch).cpu()
        worst = max(worst, float((got - want).abs().max()))
    if not worst <= ONNX_TOLERANCE:
        raise ExportError(f"the ONNX model's outputs differ from PyTorch's by {worst:.3g} (tolerance {ONNX_TOLERANCE:g})")
    return worst


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(payload, indent=2))


def _check_out(out: Path) -> None:
    """`out` may be new, empty or an earlier export (replaced whole); anything else is refused."""

    if out.exists() and not out.is_dir():
        raise ExportInputError(f"the export directory {out} is a file; choose another --out")
    if out.is_dir():
        ours = {ARCH, *FILES.values()}
        foreign = sorted(p.name for p in out.iterdir() if p.name not in ours)
        if foreign:
            raise ExportInputError(
                f"{out} holds files that are not an export ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); "
                "choose a new or empty directory for --out"
            )


def _slug(text: str) -> str:
    """A folder name for a pick: ``latency_ms<=2`` -> ``latency_ms-le-2``."""
    for op, word in (("<=", "-le-"), (">=", "-ge-"), ("<", "-lt-"), (">", "-gt-"), ("==", "-eq-"), (":", "-"), (",", "_")):
        text = text.replace(op, word)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "model"


__all__ = ["ExportError", "ExportInputError", "Exported", "FORMATS", "export", "load_model", "parse_formats"]
