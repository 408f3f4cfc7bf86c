"""The local backend: evaluate in this process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nas.backends._base import Backend, register
from nas.data import resolve
from nas.evaluate import evaluate
from nas.evaluation import Evaluation
from nas.latency import LatencyTable
from nas.space import Config


@register("local")
class LocalBackend(Backend):
    """Evaluates configs one after another in this process, with `nas.evaluate`.

    Example:
        >>> from search_spaces.mlp import MLP
        >>> net = MLP(depths=(1,), widths=(16,), ranks=(4,))
        >>> [e.status for e in LocalBackend(net).evaluate([net.largest()])]
        ['ok']

    Args:
        net: the supernet.
        data: as `nas.data.resolve` takes it (None: the family's digits split).
        **evaluate_kwargs: passed to `nas.evaluate` (metrics, latency, batch_size, ...).
    """

    name = "local"

    def __init__(self, net: Any, data: Any = None, **evaluate_kwargs: Any):
        self.net = net
        self.data = resolve(net, data)
        self.kwargs = evaluate_kwargs
        self.latency_table = None
        if evaluate_kwargs.get("latency") == "table":
            self.latency_table = LatencyTable.for_net(net, batch_size=evaluate_kwargs.get("latency_batch_size", 1))
            self.kwargs["latency"] = self.latency_table

    def evaluate(self, configs: Sequence[Config]) -> list[Evaluation]:
        return evaluate(self.net, list(configs), self.data, **self.kwargs)
