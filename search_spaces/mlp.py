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
    # Progressive shrinking (OFA; nas/training/_progressive.py) with in-place KL distillation, the library's 40 epochs at
    # lr 3e-3, and label smoothing 0.1 on the largest subnet's loss: the largest alone for the first 20% of the steps,
    # then each dimension opens from its largest value down until all are open at 70%, 4 random open subnets a step. On
    # MNIST-1D (bench/ranking.py --data mnist1d, 16 subnets, 5 from-scratch seeds, noise ceiling 0.728), supernet seeds
    # 0-3: Kendall tau 0.867 / 0.833 / 0.711 / 0.883, largest subnet 60.7 / 60.9 / 52.3 / 61.1 vs 60.8 from scratch,
    # smallest 34.4 / 35.3 / 33.3 / 34.3 vs 35.9; the sandwich rule (n=4 + KL, the previous default): tau 0.762 / 0.850 /
    # 0.695 / 0.750, largest 55.8-59.4, smallest 35.8-37.2; without the smoothing: tau 0.828 / 0.917 / 0.850 / 0.833,
    # largest 58.9 / 60.8 / 48.2 / 60.9, smallest 30.4-35.0. Mid-size subnets still sit up to 6-21 points below their
    # from-scratch selves. Ranked lower: an SVD re-basis of the low-rank factors (tau 0.48-0.62), KD temperature 2 / 4,
    # a 5% warmup, gradient clipping at 1, a mixture of K=4 copies, n=2, n=3, no KD, alpha-divergence, FairNAS, a ladder,
    # ordered dropout, lr 4e-3 / 6e-3, weight decay 0, batch 128, 60 epochs (bench/ranking.py's docstring has the figures).
    recipe = {"strategy": "progressive", "strategy_args": {"n": 4, "warm": 0.2, "open": 0.7, "smoothing": 0.1}}

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
        # Not super().canonical: its proposals are the blocks' own at their largest input widths, and the loop
        # below asks each block at its actual input width, which proposes those and more. Each block's answer
        # for (input width, width, rank) is memoised: a training step checks several unseen configs.
        out = dict(config)
        in_width = self.family_args["in_features"]
        blocks = self.body._modules["1"]._modules["blocks"]._modules  # self.body[1].blocks, without Sequential indexing's 3 us
        answers = self.__dict__.setdefault("_equivalents", {})
        for i in range(int(out.get("depth", 0))):  # indexing: slicing a ModuleList builds a new one
            width = out.get(f"blocks.{i}.width")
            if width is None:
                break
            key = (i, in_width, width, out.get(f"blocks.{i}.rank"))
            try:
                change = answers.get(key)
            except TypeError:  # an unhashable value: asked, not memoised
                key, change = None, None
            if change is None:
                change = blocks[str(i)][0].equivalent(out, in_width=in_width)
                if key is not None:
                    answers[key] = change
            if change:
                out.update(change)
            in_width = int(width)
        return out
