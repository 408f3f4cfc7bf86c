"""The record of one evaluated config."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from nas.space import Config


@dataclass
class Evaluation:
    """One config's metrics (``accuracy``, ``loss``, ``params``, ``macs``, ``latency_ms``, ...).

    Example:
        >>> Evaluation({"depth": 2}, {"accuracy": 0.9, "params": 1200}).ok
        True

    Args:
        config: the evaluated config.
        metrics: metric name -> number.
        status: ``"ok"`` or ``"failed"``.
        error: the error text of a failed evaluation.
        seconds: wall time spent evaluating it.
    """

    config: Config
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in ("ok", "failed"):
            raise ValueError(f"Evaluation status must be 'ok' or 'failed', got {self.status!r}")

    @property
    def ok(self) -> bool:
        """Whether the evaluation succeeded and every metric is finite."""
        return self.status == "ok" and all(math.isfinite(v) for v in self.metrics.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        """Inverse of `to_dict`."""
        return cls(**data)
