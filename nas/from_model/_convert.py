"""`from_model`: a user's model, traced with torch.fx, as a supernet over its widths, depths, kernels and ranks."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from nas.data import resolve
from nas.elastic import (
    DepthGate,
    ElasticLinear,
    ElasticLoRALinear,
    ElasticLowRankLinear,
    SlicedConv,
    SlicedNorm,
)
from nas.from_model._groups import CONVS, Analysis, Group, analyse
from nas.from_model._importance import order_by_importance
from nas.from_model._net import ModelSupernet, tensor_output
from nas.from_model._trace import trace
from nas.space import Choice

log = logging.getLogger("nas.from_model")
Targets = Sequence[str] | Callable[[str, nn.Module], bool] | None
KINDS = ("lowrank", "lora")
LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)


def from_model(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    widths: Sequence[float] | None = (0.25, 0.5, 0.75, 1.0),
    depth: bool = True,
    kernels: Sequence[int] | None = None,
    ranks: Sequence[int | float] | None = None,
    kind: str = "lowrank",
    targets: Targets = None,
    data: Any = None,
    importance: bool = True,
    output: str | None = None,
) -> ModelSupernet:
    """A supernet over a user's model: channel widths, stage depths, kernel sizes and ranks, found by tracing it.

    The model is traced with torch.fx (a layer fx cannot trace is kept whole and fixed, and
    said so). Conv1d/Conv2d output channels and Linear widths become elastic, with channels
    that must move together (residual adds, multiplies, norms, depthwise convs) sharing one
    dimension; stages of blocks whose input and output shapes match get an elastic depth.
    Channels are permuted once, most important first (by weight norm; by activations when
    `data` is given), which leaves the full model's outputs unchanged. A Hugging Face
    transformer (BERT, GPT-2, LLaMA/Qwen-style) gets heads, FFN width, layers and ranks.

    Example:
        >>> model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
        >>> net = from_model(model, torch.zeros(1, 8), widths=(0.5, 1.0))
        >>> net.space.names(), net.space["0.width"].values
        (['0.width'], (16, 32))

    Args:
        model: the (trained) model; copied, the original is not changed.
        example_input: one input batch (float features, images or integer token ids).
        widths: fractions in (0, 1] of each group's channels offered (the full width always
            is); None: no elastic widths.
        depth: give stages of skippable blocks (children of an `nn.Sequential`/`nn.ModuleList`
            whose input and output shapes match) an elastic depth.
        kernels: odd kernel sizes offered to convs with a larger odd, "same"-padded kernel.
        ranks: rank choices of linear layers: ints or fractions of the full rank
            (``kind="lowrank"``), or adapter ranks >= 0 (``kind="lora"``); None: none.
        kind: ``"lowrank"`` (SVD-initialised ``W ~= U V``) or ``"lora"`` (frozen base + adapter).
        targets: qualified names of the conv/linear layers that may become elastic, or a
            predicate ``(name, layer) -> bool``; default: all.
        data: training data (as `nas.evaluate` takes it) for activation-based importance.
        importance: order channels by importance first (False: keep the model's order).
        output: the field of the model's output object to read (default: the tensor itself,
            ``logits``, or its first tensor).
    """
    widths, kernels, ranks = _check_arguments(model, example_input, widths, kernels, ranks, kind)
    model = copy.deepcopy(model)
    mode = model.training
    model.eval()
    _check_fits(model, example_input)
    if _is_hugging_face(model):
        from nas.from_model._hf import convert_hf

        net = convert_hf(model, example_input, widths=widths, depth=depth, ranks=ranks, kind=kind, targets=targets,
                         data=data, importance=importance, output=output)
        return net.train(mode)
    gm, opaque = trace(model, example_input)
    analysis = analyse(gm, opaque)
    layers = {n: m for n, m in model.named_modules() if isinstance(m, LAYERS)}
    chosen = _select(layers, targets)
    notes = [f"{o} ({type(model.get_submodule(o)).__name__}): kept whole and fixed: {why}" for o, why in opaque.items()]
    elastic = _elastic_groups(analysis, chosen, widths, layers, notes)
    if importance and elastic:
        batches = _batches(data, example_input) if data is not None else None
        order_by_importance(model, [g for g, _ in elastic], batches)
    stages = _stages(model, example_input) if depth else []
    choices = {name: choice for g, choice in elastic for name in g.producers}
    reads = {name for g, _ in elastic for name in g.norms + g.depthwise + [c for c, _ in g.consumers]}
    replaced = 0
    for name, layer in layers.items():
        if name in analysis.skipped:
            notes.append(f"{name}: left as it is: {analysis.skipped[name]}")
            continue
        inside = next((o for o in opaque if name.startswith(o + ".")), None)
        if inside is not None:
            notes.append(f"{name}: left as it is: inside {inside}, which {opaque[inside]}")
            continue
        kernel = _kernel_choice(name, layer, kernels, chosen, notes)
        rank = _rank_choice(name, layer, ranks, kind, chosen)
        if name not in choices and name not in reads and kernel is None and rank is None:
            continue
        new = _convert_layer(layer, choices.get(name), kernel, rank, kind)
        if rank is not None and not isinstance(new, (ElasticLowRankLinear, ElasticLoRALinear)):
            notes.append(f"{name}: rank left fixed: {kind} ranks apply to nn.Linear layers only")
        elif rank is not None:
            notes.append(f"{name}: {'adapter ' if kind == 'lora' else ''}rank elastic {list(rank.values)} ({rank.name})")
        _set(model, name, new)
        replaced += 1
    for g, _ in elastic:
        for norm in g.norms:
            if isinstance(model.get_submodule(norm), nn.Module) and not isinstance(model.get_submodule(norm), SlicedNorm):
                _set(model, norm, SlicedNorm(model.get_submodule(norm)))
        for dw in g.depthwise:
            if not isinstance(model.get_submodule(dw), SlicedConv):
                _set(model, dw, SlicedConv(model.get_submodule(dw)))
    gated = _gate(model, stages, notes)
    if not replaced and not gated:
        found = ", ".join(f"{n} ({type(m).__name__})" for n, m in list(layers.items())[:6]) or "none"
        raise ValueError(
            f"from_model found nothing to make elastic in {type(model).__name__}: no Conv1d/Conv2d/Linear layer whose width, "
            f"kernel or rank can change, and no stage of skippable blocks (convertible layers found: {found}). "
            + (f"Left fixed: {'; '.join(notes[:4])}" if notes else "")
        )
    net = ModelSupernet(model, example_input, notes, output=output)
    for line in net.notes:
        log.info("from_model: %s", line)
    return net.train(mode)


# -- arguments ------------------------------------------------------------------------------
def _check_arguments(model, example, widths, kernels, ranks, kind):
    if not isinstance(model, nn.Module):
        raise TypeError(f"from_model needs an nn.Module, got {type(model).__name__}")
    if not isinstance(example, torch.Tensor) or example.dim() < 1 or example.shape[0] < 1:
        raise TypeError(f"The 'example_input' parameter of from_model must be an input batch tensor, got {type(example).__name__}")
    if kind not in KINDS:
        raise ValueError(f"The 'kind' parameter of from_model must be 'lowrank' or 'lora', got {kind!r}")
    if widths is not None:
        widths = list(widths)
        if not widths or any(isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w <= 1 for w in widths):
            raise ValueError(f"The 'widths' parameter of from_model must be fractions in (0, 1], got {widths!r}")
    if kernels is not None:
        kernels = sorted(set(kernels))
        if not kernels or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 or k % 2 != 1 for k in kernels):
            raise ValueError(f"The 'kernels' parameter of from_model must be odd ints >= 1, got {kernels!r}")
    if ranks is not None:
        ranks = list(ranks)
        if not ranks or any(isinstance(r, bool) or not isinstance(r, (int, float)) for r in ranks):
            raise ValueError(f"The 'ranks' parameter of from_model must be a non-empty list of ints or fractions, got {ranks!r}")
        if kind == "lora" and any(isinstance(r, float) or r < 0 for r in ranks):
            raise ValueError(f"The 'ranks' parameter of from_model with kind='lora' must be ints >= 0 (adapter ranks), got {ranks!r}")
        for r in ranks:
            if kind == "lowrank" and isinstance(r, float) and not 0 < r <= 1:
                raise ValueError(f"The 'ranks' parameter of from_model: rank fractions must lie in (0, 1], got {r}")
            if kind == "lowrank" and isinstance(r, int) and r < 1:
                raise ValueError(f"The 'ranks' parameter of from_model: ranks must be >= 1, got {r}")
    return widths, kernels, ranks


def _check_fits(model: nn.Module, example: torch.Tensor) -> None:
    """Run the model once; the first conv/linear/embedding that gets the wrong input shape is named with both shapes."""
    problem: list[str] = []

    def check(name):
        def hook(module, args):
            x = args[0] if args else None
            if problem or not isinstance(x, torch.Tensor):
                return
            if isinstance(module, CONVS):
                want, got = module.in_channels, (x.shape[1] if x.dim() == len(module.kernel_size) + 2 else None)
                expected = f"(batch, {want}, {', '.join('...' for _ in module.kernel_size)})"
            elif isinstance(module, nn.Linear):
                want, got, expected = module.in_features, x.shape[-1], f"(..., {module.in_features})"
            elif isinstance(module, nn.Embedding):
                if x.is_floating_point():
                    problem.append(f"{name} ({type(module).__name__}) takes integer token ids, got {x.dtype}")
                return
            else:
                return
            if got != want:
                problem.append(f"{name} ({type(module).__name__}) expects input of shape {expected}, got {tuple(x.shape)}")
            raise _Checked
        return hook

    handles = [m.register_forward_pre_hook(check(n)) for n, m in model.named_modules() if isinstance(m, (*LAYERS, nn.Embedding))]
    try:
        with torch.no_grad():
            model(example)
    except _Checked:
        pass
    except Exception as err:
        if not problem:
            raise ValueError(
                f"from_model: the model fails on example_input of shape {tuple(example.shape)} ({example.dtype}): {type(err).__name__}: {err}"
            ) from err
    finally:
        for h in handles:
            h.remove()
    if problem:
        raise ValueError(f"The 'example_input' of shape {tuple(example.shape)} does not fit the model's first layer: {problem[0]}")


class _Checked(Exception):
    """Raised by the shape check once the first layer has been checked (the rest need not run)."""


def _is_hugging_face(model: nn.Module) -> bool:
    return type(model).__module__.startswith("transformers.") and hasattr(model, "config")


def _select(layers: dict[str, nn.Module], targets: Targets) -> set[str]:
    if targets is None:
        return set(layers)
    if callable(targets):
        return {n for n, m in layers.items() if targets(n, m)}
    targets = list(targets)
    unknown = [t for t in targets if t not in layers]
    if unknown:
        raise ValueError(f"The 'targets' parameter of from_model names {unknown}, which are not Conv1d/Conv2d/Linear layers; they are: {sorted(layers)}")
    return set(targets)


def _batches(data: Any, example: torch.Tensor, count: int = 4, batch_size: int = 64) -> list[torch.Tensor]:
    return resolve(None, data).calibration_inputs(count, batch_size, 0, example.device)


# -- what becomes elastic -------------------------------------------------------------------
def _widths(fractions: Sequence[float], channels: int) -> list[int]:
    return sorted({max(1, round(f * channels)) for f in fractions} | {channels})


def _elastic_groups(analysis: Analysis, chosen: set[str], widths, layers, notes: list[str]) -> list[tuple[Group, Choice]]:
    elastic = []
    for g in analysis.groups:
        if g.producers[0] not in layers:
            continue
        why = g.fixed
        if why is None and widths is None:
            why = "widths not asked (widths=None)"
        if why is None and any(p not in chosen for p in g.producers):
            why = f"{', '.join(p for p in g.producers if p not in chosen)} not in targets"
        values = _widths(widths or [1.0], g.channels)
        if why is None and len(values) < 2:
            why = f"{g.channels} channels leave no smaller width"
        kind = "channels" if isinstance(layers[g.producers[0]], CONVS) else "features"
        if why is not None:
            notes.append(f"{g.name}: output {kind} fixed at {g.channels}: {why}")
            continue
        choice = Choice(f"{g.name}.width", values)
        elastic.append((g, choice))
        shared = f", shared with {', '.join(g.producers[1:])}" if len(g.producers) > 1 else ""
        notes.append(f"{g.name}: output {kind} elastic {values} ({choice.name}){shared}")
        notes.extend(g.ties)
        if g.depthwise:
            notes.append(f"{', '.join(g.depthwise)}: depthwise, channels follow {choice.name}")
    return elastic


def _kernel_choice(name, layer, kernels, chosen, notes) -> Choice | None:
    if kernels is None or not isinstance(layer, CONVS) or name not in chosen:
        return None
    k = layer.kernel_size[0]
    if len(set(layer.kernel_size)) != 1 or k % 2 != 1 or k == 1:
        return None
    same = all(p == d * (k - 1) // 2 for p, d in zip(layer.padding, layer.dilation)) if not isinstance(layer.padding, str) else False
    values = sorted({v for v in kernels if v < k} | {k})
    if len(values) < 2:
        return None
    if not same:
        notes.append(f"{name}: kernel fixed at {k}: its padding {layer.padding} is not 'same', so a smaller kernel changes the output size")
        return None
    notes.append(f"{name}: kernel elastic {values} ({name}.kernel)")
    return Choice(f"{name}.kernel", values)


def _rank_choice(name, layer, ranks, kind, chosen) -> Choice | None:
    if ranks is None or not isinstance(layer, nn.Linear) or name not in chosen:
        return None
    if kind == "lora":
        return Choice(f"{name}.lora_rank", sorted({int(r) for r in ranks}))
    full = min(layer.in_features, layer.out_features)
    values = {full}
    for r in ranks:
        values.add(max(1, round(r * full)) if isinstance(r, float) else min(int(r), full))
    return Choice(f"{name}.rank", sorted(values)) if len(values) > 1 else None


def _convert_layer(layer: nn.Module, out: Choice | None, kernel: Choice | None, rank: Choice | None, kind: str) -> nn.Module:
    if isinstance(layer, CONVS):
        return SlicedConv(layer, out=out, kernel=kernel)
    if rank is not None and kind == "lowrank":
        new = ElasticLowRankLinear.from_linear(layer, rank)
        if out is not None:
            new.out = out
            new._own(out)
        return new
    if rank is not None:
        new = ElasticLoRALinear.from_linear(layer, rank)
        if out is not None:
            new.out = out
            new._own(out)
        return new
    new = ElasticLinear(layer.in_features, layer.out_features, out=out, bias=layer.bias is not None)
    with torch.no_grad():
        new.weight.copy_(layer.weight)
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    return new.to(device=layer.weight.device, dtype=layer.weight.dtype)


def _set(model: nn.Module, name: str, layer: nn.Module) -> None:
    if not name:
        raise ValueError("from_model cannot convert the model itself; wrap the layer in a container")
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    parent._modules[child] = layer


# -- depth ----------------------------------------------------------------------------------
def _stages(model: nn.Module, example: torch.Tensor) -> list[tuple[str, list[str], bool]]:
    """Runs of consecutive skippable children of Sequential/ModuleList containers: (container, children, preceded)."""
    shapes: dict[str, list] = {}

    def hook(name):
        def record(module, args, output):
            x = args[0] if args else None
            same = isinstance(x, torch.Tensor) and isinstance(output, torch.Tensor) and x.shape == output.shape and x.dtype == output.dtype
            shapes.setdefault(name, []).append(same)
        return record

    containers = [(n, m) for n, m in model.named_modules() if type(m) in (nn.Sequential, nn.ModuleList)]
    handles = [c.register_forward_hook(hook(f"{n}.{k}" if n else k)) for n, m in containers for k, c in m.named_children()]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    stages = []
    chosen: list[str] = []
    for name, container in containers:
        if any(name == c or name.startswith(c + ".") for c in chosen):
            continue  # inside a block already made skippable: outermost blocks only
        run: list[str] = []
        preceded = False
        for key, child in list(container.named_children()) + [(None, None)]:
            full = f"{name}.{key}" if name else key
            skippable = (
                child is not None
                and not isinstance(child, nn.Sequential)  # a plain chain of layers is not a block
                and shapes.get(full) == [True]
                and any(isinstance(m, LAYERS) for m in child.modules() if m is not child)
            )
            if skippable:
                run.append(full)
                continue
            if run:
                stages.append((name, run, preceded))
                chosen.extend(run)
            run = []
            preceded = preceded or child is not None and full in shapes
    return stages


def _gate(model: nn.Module, stages, notes: list[str]) -> int:
    gated = 0
    for container, blocks, preceded in stages:
        low = 0 if preceded else 1
        n = len(blocks)
        if n < 1 or (n == 1 and low == 1):
            continue
        label = container if sum(1 for s in stages if s[0] == container) == 1 else blocks[0]
        choice = Choice(f"{label}.depth" if label else "depth", list(range(low, n + 1)))
        for i, block in enumerate(blocks):
            _set(model, block, DepthGate(model.get_submodule(block), choice, index=i))
            gated += 1
        notes.append(f"{label or type(model).__name__}: depth elastic {list(choice.values)} ({choice.name}): "
                     f"blocks {', '.join(blocks)} keep their input shape and can be skipped")
    return gated


__all__ = ["from_model", "tensor_output"]
