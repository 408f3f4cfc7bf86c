"""`mlp`: a multi-layer perceptron with searchable depth, per-layer width and low rank."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from nas.elastic import ElasticLinear, ElasticLowRankLinear, ElasticSequential
from nas.space import Choice
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
