"""`cnn`: MobileNetV2/V3-style inverted-residual stages with searchable depth, expansion, kernel, width."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from torch import nn

from nas.elastic import ElasticBatchNorm2d, ElasticConv2d, ElasticLinear, ElasticSequential, Rule, scaled, times_input
from nas.layers import GlobalAvgPool, Residual
from nas.space import Choice
from nas.supernet import Supernet
from search_spaces import register


def _conv_bn(conv: ElasticConv2d, channels: int, act: bool = True) -> list[nn.Module]:
    return [conv, ElasticBatchNorm2d(channels)] + ([nn.ReLU6()] if act else [])


@register("cnn")
class CNN(Supernet):
    """Inverted-residual stages (expand 1x1, depthwise kxk, project 1x1) over small images.

    Example:
        >>> net = CNN(stages=((8, 1, 1),), kernels=(3,), expands=(2,), width_mults=(1.0,))
        >>> net.space.size()
        1

    Args:
        in_channels: input image channels (digits: 1).
        num_classes: output width.
        stem: stem channels at width multiplier 1.
        stages: ``(channels, max depth, stride)`` per stage, channels at multiplier 1.
        depths: allowed depths of each stage (each at most the stage's max depth).
        expands: allowed expansion ratios of each block.
        kernels: allowed depthwise kernel sizes of each block.
        width_mults: allowed global width multipliers.
        head: channels of the last 1x1 conv before pooling.
        image_size: input height and width.
    """

    data_kind = "image"

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        stem: int = 16,
        stages: Sequence[Sequence[int]] = ((16, 2, 1), (24, 2, 2), (32, 2, 2)),
        depths: Sequence[int] = (1, 2),
        expands: Sequence[int] = (2, 4, 6),
        kernels: Sequence[int] = (3, 5, 7),
        width_mults: Sequence[float] = (0.5, 0.75, 1.0),
        head: int = 64,
        image_size: int = 8,
    ):
        args = dict(in_channels=in_channels, num_classes=num_classes, stem=stem, stages=[list(s) for s in stages],
                    depths=list(depths), expands=list(expands), kernels=list(kernels), width_mults=list(width_mults),
                    head=head, image_size=image_size)
        mult = Choice("width", [float(m) for m in width_mults])
        top = max(mult.values)

        def width(base: int) -> tuple[int, Rule]:
            rule = Rule(mult, partial(scaled, base, divisor=4))
            return rule.size(top, 0), rule

        c_max, c_rule = width(stem)
        layers: list[nn.Module] = _conv_bn(ElasticConv2d(in_channels, c_max, 3, out=c_rule), c_max)
        kernel_max = max(kernels)
        for s, (channels, max_depth, stride) in enumerate(stages):
            out_max, out_rule = width(channels)
            blocks = []
            for b in range(max_depth):
                name = f"stages.{s}.blocks.{b}"
                hidden = c_max * max(expands)
                expand = Rule(Choice(f"{name}.expand", list(expands)), times_input)
                body = nn.Sequential(
                    *_conv_bn(ElasticConv2d(c_max, hidden, 1, out=expand), hidden),
                    *_conv_bn(ElasticConv2d(hidden, hidden, kernel_max, kernel=Choice(f"{name}.kernel", list(kernels)),
                                            stride=stride if b == 0 else 1, depthwise=True), hidden),
                    *_conv_bn(ElasticConv2d(hidden, out_max, 1, out=out_rule), out_max, act=False),
                )
                blocks.append(Residual(body))
                c_max = out_max
            stage_depths = [d for d in depths if d <= max_depth] or [max_depth]
            layers.append(ElasticSequential(blocks, Choice(f"stages.{s}.depth", stage_depths)))
        layers += _conv_bn(ElasticConv2d(c_max, head, 1), head)
        layers += [GlobalAvgPool(), ElasticLinear(head, num_classes)]
        super().__init__(nn.Sequential(*layers), (in_channels, image_size, image_size), family="cnn", family_args=args)
