"""Which channels move together: groups of conv/linear outputs tied by adds, norms and depthwise convs.

A walk over the fx graph labels every tensor with the channel group on one of its
dimensions (as a leading-slice layout: channel ``c`` fills positions ``c*e .. c*e+e-1``
after a channel-major flatten). Adds and multiplies tie their operands' groups; BatchNorm,
LayerNorm, activations, pooling and depthwise convs pass a group through; a conv or
linear layer consumes it and starts its own. Anything else that sees a labelled tensor
(a concatenation along the channels, a reshape with a literal size, an unknown function,
the model's output) fixes the group and says why.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from networkx.utils import UnionFind
from torch import fx, nn

from nas.from_model._trace import shape_of

CONVS = (nn.Conv1d, nn.Conv2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)
_PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU, nn.ELU,
    nn.Mish, nn.Softplus, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_UNARY = {
    torch.relu, F.relu, F.relu6, F.gelu, F.silu, F.hardswish, F.hardsigmoid, torch.sigmoid, torch.tanh, F.sigmoid,
    F.leaky_relu, F.elu, F.mish, F.dropout, torch.nn.functional.softplus, operator.neg,
}
_UNARY_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "neg", "float"}
_BINARY = {operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.imul, torch.add, torch.mul, torch.sub}
_BINARY_METHODS = {"add", "add_", "mul", "mul_", "sub", "div"}
_POOL_FUNCTIONS = {F.adaptive_avg_pool2d, F.adaptive_avg_pool1d, F.avg_pool2d, F.max_pool2d, F.avg_pool1d, F.max_pool1d, F.adaptive_max_pool2d}
_RESHAPE_METHODS = {"view", "reshape", "flatten"}
_SHAPE_METHODS = {"size", "dim"}


@dataclass
class Group:
    """Channels that must keep one width: the outputs of `producers` and what passes them on."""

    name: str
    channels: int
    producers: list[str] = field(default_factory=list)
    depthwise: list[str] = field(default_factory=list)
    norms: list[str] = field(default_factory=list)
    consumers: list[tuple[str, int]] = field(default_factory=list)  # (layer, positions per channel)
    ties: list[str] = field(default_factory=list)
    fixed: str | None = None


@dataclass
class Analysis:
    """The channel groups of a traced model and the layers it could not analyse."""

    groups: list[Group]
    out_group: dict[str, Group]  # producer layer -> its output group
    in_group: dict[str, Group]  # consumer/norm/depthwise layer -> the group it reads
    skipped: dict[str, str]  # layer -> why it stays as it is


def _describe(node: fx.Node) -> str:
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"{target} (node {node.name})"


def analyse(gm: fx.GraphModule, opaque: dict[str, str]) -> Analysis:
    """Group the channels of every conv/linear output of the traced model `gm`."""
    uf = UnionFind()
    groups: list[Group] = []
    reasons: dict[int, str] = {}
    label: dict[fx.Node, tuple[int, int, int]] = {}  # node -> (group id, dim, positions per channel)
    members: dict[int, dict[str, list]] = {}
    skipped: dict[str, str] = dict(opaque)

    def new_group(name: str, channels: int) -> int:
        groups.append(Group(name, channels, producers=[name]))
        uf[len(groups) - 1]
        return len(groups) - 1

    def fix(gid: int, why: str) -> None:
        reasons.setdefault(uf[gid], why)
        reasons.setdefault(gid, why)

    def tensors(node: fx.Node) -> list[fx.Node]:
        found: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n))
        return found

    def fix_inputs(node: fx.Node, why: str) -> None:
        for arg in tensors(node):
            if arg in label:
                fix(label[arg][0], why)

    def add_member(kind: str, gid: int, item) -> None:
        members.setdefault(gid, {}).setdefault(kind, []).append(item)

    def rank(node: fx.Node) -> int:
        shape = shape_of(node)
        return len(shape) if shape is not None else -1

    for node in gm.graph.nodes:
        first = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        inp = label.get(first) if first is not None else None
        if node.op in ("placeholder", "get_attr"):
            continue
        if node.op == "output":
            fix_inputs(node, "the model's output")
            continue
        if node.op == "call_module":
            name, mod = node.target, gm.get_submodule(node.target)
            if name in opaque:
                fix_inputs(node, f"read by {name}, which {opaque[name]}")
                continue
            if isinstance(mod, CONVS):
                depthwise = mod.groups > 1 and mod.groups == mod.in_channels == mod.out_channels
                if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
                    fix_inputs(node, f"read by {name}, whose padding ({mod.padding_mode}, {mod.padding!r}) is not sliced")
                    skipped[name] = f"padding mode {mod.padding_mode!r} / padding {mod.padding!r} is not supported"
                elif depthwise:
                    if inp is not None and inp[1] == 1 and inp[2] == 1:
                        add_member("depthwise", inp[0], name)
                        label[node] = inp
                    else:
                        fix_inputs(node, f"read by depthwise {name}")
                        skipped[name] = "depthwise conv of a fixed input"
                elif mod.groups > 1:
                    fix_inputs(node, f"read by grouped conv {name} (groups={mod.groups})")
                    skipped[name] = f"grouped conv (groups={mod.groups}): channels stay fixed"
                else:
                    if inp is not None:
                        if inp[1] == 1 and inp[2] == 1:
                            add_member("consumers", inp[0], (name, 1))
                        else:
                            fix(inp[0], f"read by {name} along another dimension")
                    label[node] = (new_group(name, mod.out_channels), 1, 1)
            elif isinstance(mod, nn.Linear):
                if inp is not None:
                    if inp[1] == rank(first) - 1:
                        add_member("consumers", inp[0], (name, inp[2]))
                    else:
                        fix(inp[0], f"read by {name} along another dimension")
                label[node] = (new_group(name, mod.out_features), rank(node) - 1, 1)
            elif isinstance(mod, NORMS):
                along = 1 if isinstance(mod, nn.modules.batchnorm._BatchNorm) else rank(first) - 1
                ok = inp is not None and inp[1] == along and inp[2] == 1
                if isinstance(mod, nn.LayerNorm) and len(mod.normalized_shape) != 1:
                    ok = False
                if ok:
                    add_member("norms", inp[0], name)
                    label[node] = inp
                elif inp is not None:
                    fix(inp[0], f"normalised by {name} over other dimensions")
            elif isinstance(mod, _PASS_MODULES):
                if inp is not None:
                    label[node] = inp
            elif isinstance(mod, _POOLS):
                if inp is not None:
                    if inp[1] == 1 and rank(first) >= 3:
                        label[node] = inp
                    else:
                        fix(inp[0], f"pooled by {name} over its channels")
            elif isinstance(mod, nn.Flatten):
                _reshape(node, inp, first, label, fix, (mod.start_dim, mod.end_dim))
            else:
                fix_inputs(node, f"read by {name} ({type(mod).__name__}), which is not sliced")
                if any(True for _ in mod.parameters()):
                    skipped.setdefault(name, f"{type(mod).__name__} layers are not made elastic")
            continue
        # call_function / call_method
        target = node.target
        if target in _UNARY or (node.op == "call_method" and target in _UNARY_METHODS):
            if inp is not None:
                label[node] = inp
        elif target in _BINARY or (node.op == "call_method" and target in _BINARY_METHODS):
            _binary(node, label, uf, fix, groups)
        elif target is torch.cat:
            operands = list(node.args[0]) if node.args else list(node.kwargs.get("tensors", []))
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            dim = dim % rank(node)
            labelled = [label[a] for a in operands if a in label]
            if labelled and (dim == labelled[0][1] or len(labelled) < len(operands) or len({(item[1], item[2]) for item in labelled}) > 1):
                for lab in labelled:
                    fix(lab[0], f"concatenated with other tensors along its channels at {_describe(node)}")
            elif labelled:
                for lab in labelled[1:]:
                    _tie(uf, groups, labelled[0][0], lab[0], node)
                label[node] = labelled[0]
        elif target in _POOL_FUNCTIONS:
            if inp is not None:
                if inp[1] == 1 and rank(first) >= 3:
                    label[node] = inp
                else:
                    fix(inp[0], f"pooled over its channels at {_describe(node)}")
        elif target in (torch.flatten,) or (node.op == "call_method" and target in _RESHAPE_METHODS):
            if target in ("view", "reshape"):
                _reshape(node, inp, first, label, fix, None)
            else:
                start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
                end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
                _reshape(node, inp, first, label, fix, (start, end))
        elif target in (torch.mean, torch.sum, torch.amax) or (node.op == "call_method" and target in ("mean", "sum", "amax")):
            if inp is not None:
                dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
                dims = [dims] if isinstance(dims, int) else list(dims or [])
                r = rank(first)
                dims = [d % r for d in dims]
                if dims and all(d > inp[1] for d in dims) and inp[2] == 1:
                    label[node] = inp
                else:
                    fix(inp[0], f"reduced over its channels at {_describe(node)}")
        elif node.op == "call_method" and target in _SHAPE_METHODS or target is getattr or target is operator.getitem and shape_of(first) is None:
            continue
        else:
            fix_inputs(node, f"used by {_describe(node)}, which is not sliced")

    # merge members and reasons by union-find root
    merged: dict[int, Group] = {}
    out_group: dict[str, Group] = {}
    in_group: dict[str, Group] = {}
    for gid, group in enumerate(groups):
        root = uf[gid]
        target = merged.get(root)
        if target is None:
            target = merged[root] = Group(groups[root].name, group.channels)
        target.producers.extend(group.producers)
        target.ties.extend(group.ties)
        for kind, items in members.get(gid, {}).items():
            getattr(target, kind).extend(items)
        why = reasons.get(gid) or reasons.get(root)
        if why and target.fixed is None:
            target.fixed = why
        out_group[group.name] = target
    for target in merged.values():
        target.producers = sorted(set(target.producers), key=target.producers.index)
        target.name = target.producers[0]
        for layer in target.depthwise + target.norms:
            in_group[layer] = target
        for layer, _ in target.consumers:
            in_group[layer] = target
    return Analysis(list(merged.values()), out_group, in_group, skipped)


def _tie(uf: UnionFind, groups: list[Group], a: int, b: int, node: fx.Node) -> None:
    if uf[a] != uf[b]:
        groups[b].ties.append(f"{groups[b].name}: output channels tied to {groups[a].name} by {_describe(node)}")
        uf.union(a, b)


def _binary(node: fx.Node, label: dict, uf: UnionFind, fix, groups: list[Group]) -> None:
    operands = [a for a in list(node.args) + list(node.kwargs.values()) if isinstance(a, fx.Node) and shape_of(a) is not None]
    labelled = [label[a] for a in operands if a in label]
    if not labelled:
        return
    dim, per = labelled[0][1], labelled[0][2]
    out_rank = len(shape_of(node) or ())
    for a in operands:
        if a in label:
            continue
        shape = shape_of(a)
        # a fixed tensor broadcast along the channels (a scale of size 1 there) is fine
        offset = out_rank - len(shape)
        along = dim - offset
        if 0 <= along < len(shape) and shape[along] != 1:
            for lab in labelled:
                fix(lab[0], f"combined with a fixed-width tensor at {_describe(node)}")
            return
    if any(lab[1] != dim or lab[2] != per for lab in labelled):
        for lab in labelled:
            fix(lab[0], f"combined along different dimensions at {_describe(node)}")
        return
    for lab in labelled[1:]:
        _tie(uf, groups, labelled[0][0], lab[0], node)
    label[node] = labelled[0]


def _reshape(node: fx.Node, inp, first, label: dict, fix, flatten: tuple[int, int] | None) -> None:
    """A flatten or view keeping a channel-major layout relabels; anything else fixes the group."""
    if inp is None:
        return
    gid, dim, per = inp
    before, after = shape_of(first), shape_of(node)
    why = f"reshaped at {_describe(node)}"
    if before is None or after is None or tuple(after[:dim]) != tuple(before[:dim]):
        fix(gid, why)
        return
    if flatten is None:  # view/reshape: the size given for the channel dimension must not be a literal
        sizes = node.args[1:]
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = sizes[0]
        if dim < len(sizes) and isinstance(sizes[dim], int) and sizes[dim] != -1:
            fix(gid, f"{why} with a literal size {sizes[dim]} for its channels")
            return
    else:
        start = flatten[0] % len(before)
        if start > dim:
            label[node] = inp
            return
        if start < dim or flatten[1] % len(before) != len(before) - 1:
            fix(gid, why)
            return
    channels = before[dim] // per
    rest_before, rest_after = math.prod(before[dim + 1 :]), math.prod(after[dim + 1 :])
    new_per = per * rest_before // rest_after if rest_after and (per * rest_before) % rest_after == 0 else 0
    if not new_per or after[dim] != channels * new_per:
        fix(gid, why)
        return
    label[node] = (gid, dim, new_per)
