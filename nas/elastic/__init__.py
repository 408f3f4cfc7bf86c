"""Elastic (weight-entangled) layers that supernets are built from."""

from nas.elastic._attention import ElasticMultiheadAttention
from nas.elastic._base import ElasticModule, Rule, scaled, times_input
from nas.elastic._containers import ElasticSequential, OpChoice
from nas.elastic._conv import ElasticConv2d, ElasticConvNd
from nas.elastic._conv1d import DOWNSAMPLES, ElasticBatchNorm1d, ElasticConv1d, ElasticPool1d, stride_of
from nas.elastic._embedding import ElasticPositionalEmbedding
from nas.elastic._gate import DepthGate
from nas.elastic._grads import SliceGradients
from nas.elastic._linear import ElasticLinear, ElasticLoRALinear, ElasticLowRankLinear
from nas.elastic._norm import ElasticBatchNorm2d, ElasticLayerNorm
from nas.elastic._quant import ElasticQuant, fake_quantize, with_bits
from nas.elastic._sliced import SlicedConv, SlicedLinear, SlicedNorm, conv_macs

__all__ = [
    "DOWNSAMPLES",
    "DepthGate",
    "ElasticBatchNorm1d",
    "ElasticBatchNorm2d",
    "ElasticConv1d",
    "ElasticConv2d",
    "ElasticConvNd",
    "ElasticLayerNorm",
    "ElasticLinear",
    "ElasticLoRALinear",
    "ElasticLowRankLinear",
    "ElasticModule",
    "ElasticMultiheadAttention",
    "ElasticPool1d",
    "ElasticPositionalEmbedding",
    "ElasticQuant",
    "ElasticSequential",
    "OpChoice",
    "Rule",
    "SlicedConv",
    "SlicedLinear",
    "SliceGradients",
    "SlicedNorm",
    "conv_macs",
    "fake_quantize",
    "scaled",
    "stride_of",
    "times_input",
    "with_bits",
]
