"""Hugging Face transformers (BERT, GPT-2, LLaMA/Qwen-style decoders) as supernets over heads, FFN width, layers and ranks.

The decoder/encoder layers are found through the config (the `nn.ModuleList` holding
``num_hidden_layers`` layers) and each layer's projections by their names, so any model
built like BERT (``attention.self.query``), GPT-2 (``attn.c_attn``) or LLaMA
(``self_attn.q_proj``) converts. Heads (KV groups for grouped-query attention), FFN width
and depth are one dimension each for the whole model, so every subnet is a config of the
same class: the extracted model is that class with a smaller config.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from nas.elastic import (
    DepthGate,
    ElasticLoRALinear,
    ElasticLowRankLinear,
    Rule,
    SlicedLinear,
)
from nas.from_model._net import ModelSupernet
from nas.space import Choice


@dataclass(frozen=True)
class _Layout:
    """Where one layer's projections live, relative to the layer."""

    name: str
    q: str
    k: str | None  # None: fused with q (GPT-2's c_attn: Q, K, V blocks)
    v: str | None
    o: str
    ffn_in: tuple[str, ...]
    ffn_out: str
    ffn_config: str
    attention: str  # the attention module (holds head counts)


LAYOUTS = (
    _Layout("bert", "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
            ("intermediate.dense",), "output.dense", "intermediate_size", "attention.self"),
    _Layout("gpt2", "attn.c_attn", None, None, "attn.c_proj", ("mlp.c_fc",), "mlp.c_proj", "n_inner", "attn"),
    _Layout("llama", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
            ("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj", "intermediate_size", "self_attn"),
)


def _times(unit: int, value: int, in_width: int) -> int:
    """Size rule: `value` units of `unit` rows (heads of head_dim, KV groups of their Q heads)."""
    return unit * int(value)


def _has(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
        return True
    except AttributeError:
        return False


def _values(fractions: Sequence[float] | None, full: int) -> list[int]:
    return sorted({max(1, round(f * full)) for f in (fractions or [1.0])} | {full})


def _weight_rows(layer: nn.Module) -> torch.Tensor:
    """The layer's weight as (out, in) — a view, so in-place writes reach the layer."""
    return layer.weight if isinstance(layer, nn.Linear) else layer.weight.t()


def convert_hf(
    model: nn.Module,
    example: torch.Tensor,
    *,
    widths: Sequence[float] | None,
    depth: bool,
    ranks: Sequence[int | float] | None,
    kind: str,
    targets: Any,
    data: Any,
    importance: bool,
    output: str | None,
) -> ModelSupernet:
    """A supernet over a Hugging Face model's heads, FFN width, layers and projection ranks (see `nas.from_model`)."""
    config = model.config
    n_layers = config.num_hidden_layers
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == n_layers]
    if example.is_floating_point():
        raise ValueError(f"The 'example_input' of a {type(model).__name__} must be integer token ids, got {example.dtype}")
    if not found:
        raise ValueError(f"from_model: found no nn.ModuleList of {n_layers} layers in {type(model).__name__}")
    list_name, layers = found[0]
    layout = next((lay for lay in LAYOUTS if _has(layers[0], lay.q) and _has(layers[0], lay.ffn_out)), None)
    if layout is None:
        raise ValueError(
            f"from_model: {type(layers[0]).__name__} is laid out like none of {[lay.name for lay in LAYOUTS]} "
            "(query/key/value/output and FFN projections); convert it by tracing a wrapper, or name its layers in targets"
        )
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    attn0 = layers[0].get_submodule(layout.attention)
    head_dim = getattr(attn0, "head_dim", None) or getattr(attn0, "attention_head_size", None)
    ffn = layers[0].get_submodule(layout.ffn_out)
    ffn_full = _weight_rows(ffn).shape[1]
    notes: list[str] = []
    if importance:
        for layer in layers:
            _order_heads(layer, layout, heads, kv, head_dim)
            _order_ffn(layer, layout)
        notes.append("heads and FFN neurons of every layer ordered by weight norm (most important first)"
                     + ("; data= is not used for transformers (weight norm only)" if data is not None else ""))

    grouped = kv < heads
    unit = "kv_heads" if grouped else "heads"
    head_values = _values(widths, kv if grouped else heads)
    head_choice = Choice(unit, head_values) if widths is not None and len(head_values) > 1 else None
    ffn_values = _values(widths, ffn_full)
    ffn_choice = Choice("ffn", ffn_values) if widths is not None and len(ffn_values) > 1 else None
    depth_values = _values(widths or (0.25, 0.5, 0.75, 1.0), n_layers)
    depth_choice = Choice("depth", depth_values) if depth and len(depth_values) > 1 else None
    if head_choice is not None:
        per = f"{heads // kv} query heads each" if grouped else f"head_dim {head_dim}"
        notes.append(f"{list_name}.*.{layout.attention}: {unit} elastic {head_values} ({unit}; {per}), shared by every layer")
        if layout.name != "llama":
            notes.append(f"{unit}: a {type(config).__name__} cannot state fewer heads of the same size, so an extracted "
                         f"model with fewer heads keeps num_attention_heads={heads} in its config (from_pretrained needs the full count)")
    else:
        notes.append(f"{unit}: fixed at {kv if grouped else heads}" + (" (widths=None)" if widths is None else ""))
    notes.append(f"{list_name}.*.{layout.ffn_out}: FFN width elastic {ffn_values} (ffn), shared by every layer"
                 if ffn_choice is not None else f"ffn: fixed at {ffn_full}")
    notes.append(f"{list_name}: depth elastic {depth_values} (depth): the first d layers run" if depth_choice is not None
                 else f"depth: fixed at {n_layers}")
    q_rule = k_rule = None
    if head_choice is not None:
        q_rule = Rule(head_choice, partial(_times, head_dim * (heads // kv)))
        k_rule = Rule(head_choice, partial(_times, head_dim))

    rank_layers = _rank_targets(layers, layout, list_name, ranks, targets)
    for i, layer in enumerate(layers):
        prefix = f"{list_name}.{i}"

        def convert(path: str, out, segments: int = 1, reads: bool = False, layer: nn.Module = layer, prefix: str = prefix) -> None:
            old = layer.get_submodule(path)
            name = f"{prefix}.{path}"
            if name in rank_layers and isinstance(old, nn.Linear):
                new = _ranked(old, name, ranks, kind)
                if out is not None:
                    new.out = out
                    new._own(out)
                notes.append(f"{name}: {'adapter ' if kind == 'lora' else ''}rank elastic {list(new._choices[0].values)} ({new._choices[0].name})")
            else:
                if name in rank_layers:
                    notes.append(f"{name}: rank left fixed: {type(old).__name__} is not an nn.Linear")
                if out is None and not reads:
                    return
                new = SlicedLinear(old, out=out, segments=segments)
            parent, _, child = path.rpartition(".")
            layer.get_submodule(parent)._modules[child] = new

        if layout.k is None:
            convert(layout.q, k_rule, segments=3)
            layer.get_submodule(layout.attention).register_forward_pre_hook(_gpt2_split)
        else:
            convert(layout.q, q_rule)
            convert(layout.k, k_rule)
            convert(layout.v, k_rule)
        convert(layout.o, None, reads=head_choice is not None)
        for path in layout.ffn_in:
            convert(path, ffn_choice)
        convert(layout.ffn_out, None, reads=ffn_choice is not None)
        if depth_choice is not None:
            layers._modules[str(i)] = DepthGate(layer, depth_choice, index=i)

    finish = partial(_finish, list_name=list_name, layout=layout, heads=heads, kv=kv, head_dim=head_dim, ffn_full=ffn_full)
    return ModelSupernet(model, example, notes, output=output, finish=finish)


def _rank_targets(layers, layout: _Layout, list_name: str, ranks, targets) -> set[str]:
    if ranks is None:
        return set()
    names = set()
    for i, _layer in enumerate(layers):
        for path in (layout.q, layout.k, layout.v, layout.o, *layout.ffn_in, layout.ffn_out):
            if path is not None:
                names.add(f"{list_name}.{i}.{path}")
    if targets is None:
        return names
    if callable(targets):
        return {n for n in names if targets(n, None)}
    unknown = [t for t in targets if t not in names]
    if unknown:
        raise ValueError(f"The 'targets' parameter of from_model names {unknown}, which are not projections of the model; they are: {sorted(names)[:8]} ...")
    return set(targets)


def _ranked(linear: nn.Linear, name: str, ranks, kind: str) -> nn.Module:
    if kind == "lora":
        return ElasticLoRALinear.from_linear(linear, Choice(f"{name}.lora_rank", sorted({int(r) for r in ranks})))
    full = min(linear.in_features, linear.out_features)
    values = {full} | {max(1, round(r * full)) if isinstance(r, float) else min(int(r), full) for r in ranks}
    return ElasticLowRankLinear.from_linear(linear, Choice(f"{name}.rank", sorted(values)))


def _gpt2_split(module: nn.Module, args) -> None:
    """GPT-2 splits its fused Q/K/V output by ``split_size``: keep it at the active heads' width."""
    layer = module.c_attn
    if isinstance(layer, SlicedLinear):
        per_full = layer.out_features // layer.segments
        module.split_size = layer._resolve(layer.out, per_full, layer.in_features)


# -- importance -----------------------------------------------------------------------------
def _order_heads(layer: nn.Module, layout: _Layout, heads: int, kv: int, head_dim: int) -> None:
    rep = heads // kv
    o = _weight_rows(layer.get_submodule(layout.o))
    with torch.no_grad():
        if layout.k is None:  # fused Q, K, V blocks of `heads` heads each
            qkv = layer.get_submodule(layout.q)
            w = _weight_rows(qkv)
            e = heads * head_dim
            score = sum(w[s * e : (s + 1) * e].reshape(heads, -1).pow(2).sum(1) for s in range(3))
            score = score + o.reshape(o.shape[0], heads, head_dim).pow(2).sum((0, 2))
            order = torch.sort(score, descending=True, stable=True).indices
            rows = _blocks(order, head_dim)
            index = torch.cat([rows + s * e for s in range(3)])
            _permute_rows(qkv, index)
            _permute_cols(layer.get_submodule(layout.o), rows)
            return
        q, k, v = (layer.get_submodule(p) for p in (layout.q, layout.k, layout.v))
        group = rep * head_dim
        score = _weight_rows(q).reshape(kv, -1).pow(2).sum(1)
        score = score + sum(_weight_rows(m).reshape(kv, -1).pow(2).sum(1) for m in (k, v))
        score = score + o.reshape(o.shape[0], kv, group).pow(2).sum((0, 2))
        order = torch.sort(score, descending=True, stable=True).indices
        _permute_rows(q, _blocks(order, group))
        _permute_cols(layer.get_submodule(layout.o), _blocks(order, group))
        for m in (k, v):
            _permute_rows(m, _blocks(order, head_dim))


def _order_ffn(layer: nn.Module, layout: _Layout) -> None:
    with torch.no_grad():
        ins = [layer.get_submodule(p) for p in layout.ffn_in]
        out = layer.get_submodule(layout.ffn_out)
        score = sum(_weight_rows(m).pow(2).sum(1) for m in ins) + _weight_rows(out).pow(2).sum(0)
        order = torch.sort(score, descending=True, stable=True).indices
        for m in ins:
            _permute_rows(m, order)
        _permute_cols(out, order)


def _blocks(order: torch.Tensor, size: int) -> torch.Tensor:
    return (order[:, None] * size + torch.arange(size)).reshape(-1)


def _permute_rows(layer: nn.Module, index: torch.Tensor) -> None:
    w = _weight_rows(layer)
    w.copy_(w[index])
    if getattr(layer, "bias", None) is not None:
        layer.bias.copy_(layer.bias[index])


def _permute_cols(layer: nn.Module, index: torch.Tensor) -> None:
    w = _weight_rows(layer)
    w.copy_(w[:, index])


# -- extraction -----------------------------------------------------------------------------
def _finish(dense: nn.Module, config: Mapping[str, Any], *, list_name: str, layout: _Layout, heads: int, kv: int,
            head_dim: int, ffn_full: int) -> nn.Module:
    """Shrink the extracted model's config (and the attributes its modules read) to the subnet's sizes."""
    layers = dense.get_submodule(list_name)
    kept = [m for m in layers if not isinstance(m, nn.Identity)]
    layers._modules.clear()
    for i, m in enumerate(kept):
        layers._modules[str(i)] = m
    old = dense.config
    new = copy.deepcopy(old)
    new.num_hidden_layers = len(kept)
    if isinstance(getattr(new, "layer_types", None), list):
        new.layer_types = new.layer_types[: len(kept)]
    grouped = kv < heads
    active = config.get("kv_heads" if grouped else "heads", kv if grouped else heads)
    ffn = int(config.get("ffn", ffn_full))
    setattr(new, layout.ffn_config, ffn)
    if layout.name == "llama":
        new.num_attention_heads = active * (heads // kv)
        new.num_key_value_heads = active if grouped else new.num_attention_heads
        new.head_dim = head_dim
    for m in dense.modules():
        if getattr(m, "config", None) is old:
            m.config = new
    for layer in kept:
        attn = layer.get_submodule(layout.attention)
        if layout.name == "bert":
            attn.num_attention_heads, attn.all_head_size = active, active * head_dim
        elif layout.name == "gpt2":
            attn._forward_pre_hooks.clear()
            attn.num_heads, attn.split_size = active, active * head_dim
        mlp = layer.get_submodule(layout.ffn_out.rpartition(".")[0] or layout.ffn_out)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = ffn
    return dense
