"""`mlp`: a multi-layer perceptron with searchable depth, per-layer width and low rank."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from nas.elastic import ElasticLinear, ElasticLowRankLinear, ElasticSequential
from nas.space import Choice, Config
from nas.supernet import Supernet
from search_spaces import register


@register("mlp")
class MLP(Supernet):
    """An MLP whose hidden layers are low-rank ``W ~= U V`` with searchable width and rank.

    Example:
        >>> net = MLP(depths=(1, 2), widths=(16, 32), ranks=(4, 8))
        >>> net.space.size()
        20

    Args:
        in_features: input width (digits: 64 pixels).
        num_classes: output width.
        depths: allowed numbers of hidden layers.
        widths: allowed widths of each hidden layer.
        ranks: allowed ranks of each hidden layer's factorised weight.
        dropout: dropout after each hidden activation.
    """

    data_kind = "flat"
    # No recipe of its own: on MNIST-1D (bench/ranking.py --data mnist1d, 16 subnets, 5 seeds) the library default,
    # sandwich n=4 + KL for 40 epochs at lr 3e-3, ranked best (tau 0.76, mean of 4 supernet seeds; n=2: 0.64). One
    # seed each: n=3, no KD, alpha-divergence, FairNAS, a ladder, ordered dropout, lr 4e-3 / 6e-3, weight decay 0
    # ranked lower; batch 128 (tau 0.80) left the largest 15 points low; 60 epochs (0.77) cost 0.36x. Even so its
    # largest subnet sits ~2-5 points below from scratch, mid-size ones up to ~13, and the time ratio is ~0.35.

    def __init__(
        self,
        in_features: int = 64,
        num_classes: int = 10,
        depths: Sequence[int] = (1, 2, 3),
        widths: Sequence[int] = (16, 32, 64, 128),
        ranks: Sequence[int] = (4, 8, 16, 32),
        dropout: float = 0.0,
    ):
        args = dict(in_features=in_features, num_classes=num_classes, depths=list(depths), widths=list(widths), ranks=list(ranks), dropout=dropout)
        max_width = max(widths)
        blocks = []
        for i in range(max(depths)):
            layer = ElasticLowRankLinear(
                in_features if i == 0 else max_width,
                max_width,
                rank=Choice(f"blocks.{i}.rank", ranks),
                out=Choice(f"blocks.{i}.width", widths),
            )
            blocks.append(nn.Sequential(layer, nn.ReLU(), nn.Dropout(dropout)) if dropout else nn.Sequential(layer, nn.ReLU()))
        body = nn.Sequential(
            nn.Flatten(),
            ElasticSequential(blocks, Choice("depth", depths)),
            ElasticLinear(max(max_width, in_features), num_classes),
        )
        super().__init__(body, (in_features,), family="mlp", family_args=args)

    def canonical(self, config: Mapping[str, Any]) -> Config:
        """Equivalent configs as one: a block's rank of at least min(its input width, its width) is full rank.

        Example:
            >>> net = MLP(depths=(2,), widths=(16, 32), ranks=(8, 16, 32))
            >>> net.canonical({"depth": 2, "blocks.0.width": 16, "blocks.0.rank": 16, "blocks.1.width": 32, "blocks.1.rank": 16})["blocks.1.rank"]
            32
        """
        out = super().canonical(config)
        in_width = self.family_args["in_features"]
        blocks = self.body[1].blocks
        for i in range(int(out.get("depth", 0))):  # indexing: slicing a ModuleList builds a new one
            block = blocks[i]
            layer, width = block[0], out.get(f"blocks.{i}.width")
            if width is None:
                break
            out.update(layer.equivalent(out, in_width=in_width))
            in_width = int(width)
        return out
