"""Elastic linear layers: width slicing, low rank (ordered dropout) and LoRA adapters."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nas.elastic._base import ElasticModule, Rule, Size, check_size, crop
from nas.space import Choice, Value


def _features(inputs: tuple) -> tuple[int, int]:
    """(in features, rows per sample) of a traced linear input."""
    x = inputs[0]
    return x.shape[-1], x[0].numel() // x.shape[-1]


class ElasticLinear(ElasticModule):
    """A linear layer whose output width is a search dimension (leading rows of one weight).

    Example:
        >>> layer = ElasticLinear(8, 32, out=Choice("width", [16, 32]))
        >>> layer(torch.zeros(2, 8)).shape
        torch.Size([2, 32])

    Args:
        in_features: largest input width (the active one is read from the input).
        out_features: largest output width.
        out: the output width: fixed (None or int), a `Choice`, or a `Rule`.
        bias: whether the layer has a bias.
    """

    def __init__(self, in_features: int, out_features: int, out: Size = None, bias: bool = True):
        super().__init__()
        check_size(out, out_features, "ElasticLinear out")
        self.in_features, self.out_features, self.out = in_features, out_features, out
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self._own(out)

    def _slices(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        o = self._resolve(self.out, self.out_features, i)
        weight = crop(self.weight, (o, i))
        bias = self.bias if self.bias is None or o == self.out_features else self.bias[:o]
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = x.shape[-1]
        weight, bias = self._cached(i, lambda: self._slices(i))
        return F.linear(x, weight, bias)

    def _cost(self, inputs, output):
        i, rows = _features(inputs)
        o = output.shape[-1]
        return o * i + (o if self.bias is not None else 0), rows * o * i, {"op": "linear", "in": i, "out": o}

    def to_dense(self, inputs, densify):
        i = inputs[0].shape[-1]
        o = self._resolve(self.out, self.out_features, i)
        dense = nn.Linear(i, o, bias=self.bias is not None)
        with torch.no_grad():
            dense.weight.copy_(self.weight[:o, :i])
            if self.bias is not None:
                dense.bias.copy_(self.bias[:o])
        return dense


class ElasticLowRankLinear(ElasticModule):
    """A linear layer factorised as ``W ~= U V`` whose rank (and output width) are searchable.

    Rank ``r`` uses the leading ``r`` columns of ``U`` and rows of ``V``; trained with ordered
    dropout (`cutoff`), the leading components carry the most important directions (Maestro).

    Example:
        >>> layer = ElasticLowRankLinear(16, 16, rank=Choice("rank", [2, 4, 8]))
        >>> layer(torch.zeros(3, 16)).shape
        torch.Size([3, 16])

    Args:
        in_features: largest input width.
        out_features: largest output width.
        rank: the rank: fixed (None: the largest, ``max_rank``), a `Choice` or a `Rule`.
        out: the output width: fixed, a `Choice` or a `Rule`.
        max_rank: components allocated (default: the largest rank choice, else min(in, out)).
        bias: whether the layer has a bias.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: Size = None,
        out: Size = None,
        max_rank: int | None = None,
        bias: bool = True,
    ):
        super().__init__()
        if max_rank is None:
            max_rank = max(rank.values) if isinstance(rank, Choice) else min(in_features, out_features)
        check_size(rank, max_rank, "ElasticLowRankLinear rank")
        check_size(out, out_features, "ElasticLowRankLinear out")
        self.in_features, self.out_features, self.max_rank = in_features, out_features, max_rank
        self.rank, self.out = rank, out
        self.U = nn.Parameter(torch.empty(out_features, max_rank))
        self.V = nn.Parameter(torch.empty(max_rank, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.kaiming_uniform_(self.V, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.U, a=math.sqrt(5))
        self.cutoff: int | None = None  # ordered-dropout override of the rank (training only)
        self._own(rank)
        self._own(out)

    @classmethod
    def from_linear(cls, linear: nn.Linear, ranks: Sequence[int] | Choice, name: str = "rank") -> ElasticLowRankLinear:
        """A low-rank layer initialised from the truncated SVD of a trained `nn.Linear`."""
        choice = ranks if isinstance(ranks, Choice) else Choice(name, sorted(set(int(r) for r in ranks)))
        out_f, in_f = linear.weight.shape
        layer = cls(in_f, out_f, rank=choice, bias=linear.bias is not None)
        with torch.no_grad():
            w = linear.weight.detach().to(torch.float64)
            u, s, vh = torch.linalg.svd(w, full_matrices=False)
            k = min(layer.max_rank, s.numel())
            root = s[:k].sqrt()
            layer.U.zero_()
            layer.V.zero_()
            layer.U[:, :k] = (u[:, :k] * root).to(layer.U.dtype)
            layer.V[:k] = (root[:, None] * vh[:k]).to(layer.V.dtype)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer.to(linear.weight.device)

    def equivalent(self, config: Mapping[str, Value], in_width: int | None = None) -> dict[str, Value]:
        """A rank of at least min(in, out) is full rank: every such rank is the largest one.

        Example:
            >>> layer = ElasticLowRankLinear(64, 16, rank=Choice("rank", [4, 16, 32]))
            >>> layer.equivalent({"rank": 16}), layer.equivalent({"rank": 4})
            ({'rank': 32}, {})
        """
        if not isinstance(self.rank, Choice) or self.rank.name not in config:
            return {}
        if isinstance(self.out, Choice):
            if self.out.name not in config:
                return {}
            out = int(config[self.out.name])
        elif isinstance(self.out, Rule):
            return {}
        else:
            out = self.out_features
        full = min(self.in_features if in_width is None else in_width, out)
        rank, largest = config[self.rank.name], self.rank.values[-1]
        return {self.rank.name: largest} if rank != largest and int(rank) >= full else {}

    def active_rank(self, in_width: int) -> int:
        """The rank used now: the ordered-dropout cutoff if set, else the configured one."""
        return self.cutoff if self.cutoff is not None else self._resolve(self.rank, self.max_rank, in_width)

    def _slices(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        r, o = self.active_rank(i), self._resolve(self.out, self.out_features, i)
        bias = self.bias if self.bias is None or o == self.out_features else self.bias[:o]
        return crop(self.V, (r, i)), crop(self.U, (o, r)), bias

    def _inference(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """What extraction builds: ``(U V, None, bias)`` when the rank is not worth factoring, else ``(V, U, bias)`` slices."""
        v, u, bias = self._slices(i)
        (r, i), o = v.shape, u.shape[0]
        if r * (i + o) < i * o:
            return v, u, bias
        return u @ v, None, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = x.shape[-1]
        if torch.is_grad_enabled():  # training: the two sliced factors (training the merged product
            # changes float rounding, and a whole run's trajectory with it)
            first, second, bias = self._cached((i, self.cutoff), lambda: self._slices(i))
        else:  # `_cached`'s lookup, inlined on this per-forward path (no closure); the product is a copy,
            key = (i, self.cutoff, self.U._version, self.V._version)  # so it is keyed by the weights' versions
            views = self._views.get(key)
            if views is None:
                views = self._views[key] = self._inference(i)
            first, second, bias = views
        if second is None:
            return F.linear(x, first, bias)
        return F.linear(F.linear(x, first), second, bias)

    def _sizes(self, inputs) -> tuple[int, int, int, bool]:
        i = inputs[0].shape[-1]
        r, o = self.active_rank(i), self._resolve(self.out, self.out_features, i)
        return i, r, o, r * (i + o) < i * o

    def _cost(self, inputs, output):
        i, r, o, factored = self._sizes(inputs)
        _, rows = _features(inputs)
        weights = r * (i + o) if factored else i * o
        attrs = {"op": "lowrank_linear" if factored else "linear", "in": i, "out": o, "rank": r}
        return weights + (o if self.bias is not None else 0), rows * weights, attrs

    def to_dense(self, inputs, densify):
        i, r, o, factored = self._sizes(inputs)
        has_bias = self.bias is not None
        with torch.no_grad():
            if factored:
                first, second = nn.Linear(i, r, bias=False), nn.Linear(r, o, bias=has_bias)
                first.weight.copy_(self.V[:r, :i])
                second.weight.copy_(self.U[:o, :r])
                if has_bias:
                    second.bias.copy_(self.bias[:o])
                return nn.Sequential(first, second)
            dense = nn.Linear(i, o, bias=has_bias)
            dense.weight.copy_(self.U[:o, :r] @ self.V[:r, :i])
            if has_bias:
                dense.bias.copy_(self.bias[:o])
            return dense


class ElasticLoRALinear(ElasticModule):
    """A frozen linear layer plus a LoRA adapter ``B A`` whose rank is searchable (LoNAS/Shears).

    Rank ``r`` uses the leading ``r`` rows of ``A`` and columns of ``B``; rank 0 is the base
    layer alone. The scale ``alpha / max_rank`` is fixed so that ranks nest. Extracting merges
    the adapter into one dense layer.

    Example:
        >>> layer = ElasticLoRALinear.from_linear(nn.Linear(8, 4), [0, 2, 4])
        >>> layer(torch.zeros(1, 8)).shape
        torch.Size([1, 4])

    Args:
        in_features: input width.
        out_features: output width.
        rank: the adapter rank: fixed or a `Choice` (0 allowed).
        alpha: LoRA scale numerator.
        bias: whether the base layer has a bias.
        out: the output width: fixed, a `Choice` or a `Rule` (the input width is read from the input).
    """

    def __init__(
        self, in_features: int, out_features: int, rank: Size = None, alpha: float | None = None, bias: bool = True, out: Size = None
    ):
        super().__init__()
        check_size(out, out_features, "ElasticLoRALinear out")
        self.out = out
        max_rank = max(rank.values) if isinstance(rank, Choice) else int(rank or 8)
        if isinstance(rank, Choice) and (rank.kind is not int or min(rank.values) < 0):
            raise ValueError(f"ElasticLoRALinear rank: Choice {rank.name!r} needs int values >= 0, got {list(rank.values)}")
        self.in_features, self.out_features, self.max_rank, self.rank = in_features, out_features, max_rank, rank
        self.alpha = float(alpha if alpha is not None else max(max_rank, 1))
        self.weight = nn.Parameter(torch.empty(out_features, in_features), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.lora_A = nn.Parameter(torch.empty(max_rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, max_rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.cutoff: int | None = None
        self._own(rank if isinstance(rank, Choice) else None)
        self._own(out)

    @classmethod
    def from_linear(cls, linear: nn.Linear, ranks: Sequence[int] | Choice, name: str = "lora_rank", alpha: float | None = None) -> ElasticLoRALinear:
        """An adapter layer around a copy of a trained `nn.Linear` (frozen)."""
        choice = ranks if isinstance(ranks, Choice) else Choice(name, sorted(set(int(r) for r in ranks)))
        out_f, in_f = linear.weight.shape
        layer = cls(in_f, out_f, rank=choice, alpha=alpha, bias=linear.bias is not None).to(linear.weight.device)
        with torch.no_grad():
            layer.weight.copy_(linear.weight)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer

    @property
    def scale(self) -> float:
        """The adapter's output scale."""
        return self.alpha / max(self.max_rank, 1)

    def active_rank(self) -> int:
        """The adapter rank used now."""
        return self.cutoff if self.cutoff is not None else self._resolve(self.rank, self.max_rank)

    def _slices(self, i: int) -> tuple[torch.Tensor, ...]:
        o, r = self._resolve(self.out, self.out_features, i), self.active_rank()
        if (o, i) == (self.out_features, self.in_features):
            return self.weight, self.bias, self.lora_A[:r], self.lora_B[:, :r]
        bias = None if self.bias is None else self.bias[:o]
        return crop(self.weight, (o, i)), bias, crop(self.lora_A, (r, i)), crop(self.lora_B, (o, r))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = x.shape[-1]
        weight, bias, a, b = self._cached((i, self.cutoff), lambda: self._slices(i))
        out = F.linear(x, weight, bias)
        if a.shape[0] > 0:
            out = out + F.linear(F.linear(x, a), b) * self.scale
        return out

    def _cost(self, inputs, output):
        i, rows = _features(inputs)
        o = output.shape[-1]
        params = i * o + (o if self.bias is not None else 0)
        return params, rows * i * o, {"op": "lora_linear", "in": i, "out": o, "rank": self.active_rank()}

    def to_dense(self, inputs, densify):
        i = inputs[0].shape[-1]
        weight, bias, a, b = self._slices(i)
        dense = nn.Linear(i, weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            dense.weight.copy_(weight + self.scale * (b @ a))
            if bias is not None:
                dense.bias.copy_(bias)
        return dense
