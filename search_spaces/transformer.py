"""`transformer`: a small ViT over 8x8 images as row tokens or patches, or over given tokens (MNIST-1D)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from nas.elastic import (
    ElasticLayerNorm,
    ElasticLinear,
    ElasticLowRankLinear,
    ElasticMultiheadAttention,
    ElasticPositionalEmbedding,
    ElasticSequential,
    Rule,
    times_input,
)
from nas.layers import MeanTokens, Patchify, Residual
from nas.space import Choice
from nas.supernet import Supernet
from search_spaces import register


@register("transformer")
class Transformer(Supernet):
    """A ViT: searchable depth, heads, head width, embedding width, MLP ratio and MLP ranks.

    Example:
        >>> net = Transformer(depths=(1,), heads=(2,), head_dims=(8,), embed_dims=(16,), mlp_ratios=(2,), ranks=(8,))
        >>> net.space.size()
        1

    Args:
        tokens: ``"rows"`` (each image row a token) or ``"patches"`` (``patch x patch`` patches).
        image_size: input height and width.
        patch: patch size when ``tokens="patches"``.
        num_classes: output width.
        depths: allowed numbers of blocks.
        heads: allowed numbers of attention heads per block.
        head_dims: allowed widths of each head (one choice for the whole net).
        embed_dims: allowed embedding widths (one choice for the whole net).
        mlp_ratios: allowed MLP hidden width / embedding width per block.
        ranks: allowed ranks of both MLP projections per block.
        token_shape: ``(tokens, features)`` of the input when ``tokens="rows"`` (default
            ``(image_size, image_size)``): e.g. ``(8, 5)`` for `nas.data.mnist1d`'s tokens.
    """

    def __init__(
        self,
        tokens: str = "rows",
        image_size: int = 8,
        patch: int = 2,
        num_classes: int = 10,
        depths: Sequence[int] = (1, 2, 3),
        heads: Sequence[int] = (1, 2, 4),
        head_dims: Sequence[int] = (8, 16),
        embed_dims: Sequence[int] = (32, 48, 64),
        mlp_ratios: Sequence[int] = (1, 2, 4),
        ranks: Sequence[int] = (8, 16, 32),
        token_shape: Sequence[int] | None = None,
    ):
        if tokens not in ("rows", "patches"):
            raise ValueError(f"the 'tokens' parameter of Transformer must be 'rows' or 'patches', got {tokens!r}")
        args = dict(tokens=tokens, image_size=image_size, patch=patch, num_classes=num_classes, depths=list(depths),
                    heads=list(heads), head_dims=list(head_dims), embed_dims=list(embed_dims),
                    mlp_ratios=list(mlp_ratios), ranks=list(ranks))
        if token_shape is not None:
            if tokens != "rows" or len(token_shape) != 2 or min(int(v) for v in token_shape) < 1:
                raise ValueError(f"the 'token_shape' parameter of Transformer must be (tokens, features) >= 1 with tokens='rows', got {token_shape!r}")
            args["token_shape"] = [int(v) for v in token_shape]
        self.data_kind = "tokens" if tokens == "rows" else "image"
        if tokens == "rows":
            n_tokens, features = (int(v) for v in token_shape) if token_shape is not None else (image_size, image_size)
            input_shape = (n_tokens, features)
        else:
            n_tokens, features, input_shape = (image_size // patch) ** 2, patch * patch, (1, image_size, image_size)
        embed = Choice("embed", list(embed_dims))
        e_max, head_dim = max(embed_dims), Choice("head_dim", list(head_dims))
        hidden = e_max * max(mlp_ratios)
        blocks = []
        for i in range(max(depths)):
            rank = Choice(f"blocks.{i}.rank", list(ranks))
            ratio = Rule(Choice(f"blocks.{i}.mlp_ratio", list(mlp_ratios)), times_input)
            attention = nn.Sequential(
                ElasticLayerNorm(e_max),
                ElasticMultiheadAttention(e_max, max(heads), max(head_dims), heads=Choice(f"blocks.{i}.heads", list(heads)), head_dim=head_dim),
            )
            mlp = nn.Sequential(
                ElasticLayerNorm(e_max),
                ElasticLowRankLinear(e_max, hidden, rank=rank, out=ratio),
                nn.GELU(),
                ElasticLowRankLinear(hidden, e_max, rank=rank, out=embed),
            )
            blocks.append(nn.Sequential(Residual(attention), Residual(mlp)))
        body = nn.Sequential(
            Patchify(0 if tokens == "rows" else patch),
            ElasticLinear(features, e_max, out=embed),
            ElasticPositionalEmbedding(n_tokens, e_max),
            ElasticSequential(blocks, Choice("depth", list(depths))),
            ElasticLayerNorm(e_max),
            MeanTokens(),
            ElasticLinear(e_max, num_classes),
        )
        super().__init__(body, input_shape, family="transformer", family_args=args)
