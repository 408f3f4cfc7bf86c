"""Turn a user's trained model into a supernet over the ranks of its linear layers."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

from torch import nn

from nas.elastic import ElasticLoRALinear, ElasticLowRankLinear
from nas.space import Choice
from nas.supernet import Supernet

Targets = Sequence[str] | Callable[[str, nn.Module], bool] | None


def from_model(
    module: nn.Module,
    ranks: Sequence[int | float] = (0.25, 0.5, 1.0),
    targets: Targets = None,
    kind: str = "lowrank",
    input_shape: Sequence[int] | None = None,
) -> Supernet:
    """A supernet whose chosen `nn.Linear` layers become SVD-initialised low-rank layers or LoRA adapters.

    Example:
        >>> net = from_model(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)), ranks=[2, 4])
        >>> net.space.names()
        ['0.rank', '2.rank']

    Args:
        module: the trained model (copied; the original is not changed).
        ranks: ints (clipped to each layer's full rank, which is always a choice) or
            fractions in (0, 1] of each layer's full rank; with ``kind="lora"``: adapter ranks (0 allowed).
        targets: qualified names of the linear layers to convert, or a predicate
            ``(name, layer) -> bool``; default: every `nn.Linear`.
        kind: ``"lowrank"`` (rank search, W ~= U V) or ``"lora"`` (frozen base plus elastic adapter).
        input_shape: one input sample's shape; default: ``(in_features,)`` of the first linear layer.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"from_model needs an nn.Module, got {type(module).__name__}")
    if kind not in ("lowrank", "lora"):
        raise ValueError(f"the 'kind' parameter of from_model must be 'lowrank' or 'lora', got {kind!r}")
    ranks = list(ranks)
    if not ranks or any(isinstance(r, bool) or not isinstance(r, (int, float)) for r in ranks):
        raise ValueError(f"the 'ranks' parameter of from_model must be a non-empty list of ints or fractions, got {ranks!r}")
    model = copy.deepcopy(module)
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("from_model found no nn.Linear layer in the model")
    chosen = _select(linears, targets)
    if input_shape is None:
        input_shape = (linears[0][1].in_features,)
    for name, linear in chosen:
        if kind == "lowrank":
            layer = ElasticLowRankLinear.from_linear(linear, Choice(f"{name}.rank", _ranks(ranks, linear)))
        else:
            if any(isinstance(r, float) or r < 0 for r in ranks):
                raise ValueError(f"LoRA ranks must be ints >= 0, got {ranks!r}")
            layer = ElasticLoRALinear.from_linear(linear, Choice(f"{name}.lora_rank", sorted(set(ranks))))
        _set_submodule(model, name, layer)
    return Supernet(model, tuple(input_shape), family="custom", family_args={})


def _select(linears: list[tuple[str, nn.Linear]], targets: Targets) -> list[tuple[str, nn.Linear]]:
    if targets is None:
        return linears
    if callable(targets):
        chosen = [(n, m) for n, m in linears if targets(n, m)]
    else:
        names = {n for n, _ in linears}
        unknown = [t for t in targets if t not in names]
        if unknown:
            raise ValueError(f"from_model targets {unknown} are not nn.Linear layers of the model; they are: {sorted(names)}")
        chosen = [(n, m) for n, m in linears if n in set(targets)]
    if not chosen:
        raise ValueError("from_model targets selected no layer")
    return chosen


def _ranks(ranks: list[int | float], linear: nn.Linear) -> list[int]:
    full = min(linear.in_features, linear.out_features)
    out = {full}
    for r in ranks:
        if isinstance(r, float):
            if not 0 < r <= 1:
                raise ValueError(f"rank fractions must lie in (0, 1], got {r}")
            out.add(max(1, round(r * full)))
        else:
            if r < 1:
                raise ValueError(f"ranks must be >= 1, got {r}")
            out.add(min(r, full))
    return sorted(out)


def _set_submodule(model: nn.Module, name: str, layer: nn.Module) -> None:
    if not name:
        raise ValueError("from_model cannot convert the model itself; wrap the linear layer in a container")
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, layer)
