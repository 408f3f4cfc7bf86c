"""Elastic (weight-entangled) layers that supernets are built from."""

from nas.elastic._attention import ElasticMultiheadAttention
from nas.elastic._base import ElasticModule, Rule, scaled, times_input
from nas.elastic._containers import ElasticSequential, OpChoice
from nas.elastic._conv import ElasticConv2d
from nas.elastic._embedding import ElasticPositionalEmbedding
from nas.elastic._gate import DepthGate
from nas.elastic._linear import ElasticLinear, ElasticLoRALinear, ElasticLowRankLinear
from nas.elastic._norm import ElasticBatchNorm2d, ElasticLayerNorm
from nas.elastic._sliced import SlicedConv, SlicedLinear, SlicedNorm

__all__ = [
    "DepthGate",
    "ElasticBatchNorm2d",
    "ElasticConv2d",
    "ElasticLayerNorm",
    "ElasticLinear",
    "ElasticLoRALinear",
    "ElasticLowRankLinear",
    "ElasticModule",
    "ElasticMultiheadAttention",
    "ElasticPositionalEmbedding",
    "ElasticSequential",
    "OpChoice",
    "Rule",
    "SlicedConv",
    "SlicedLinear",
    "SlicedNorm",
    "scaled",
    "times_input",
]
