"""In-place distillation losses: a student's logits against the (detached) largest subnet's."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

DistillFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def kl_divergence(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``KL(teacher || student)`` of the softmax distributions over the last dimension (batch mean).

    Example:
        >>> logits = torch.tensor([[2.0, 0.0, -1.0]])
        >>> float(kl_divergence(logits, logits))
        0.0
    """
    student = student.reshape(-1, student.shape[-1])
    teacher = teacher.detach().reshape(-1, teacher.shape[-1])
    return F.kl_div(F.log_softmax(student, -1), F.log_softmax(teacher, -1), reduction="batchmean", log_target=True)


def _f_divergence(log_q: torch.Tensor, log_p: torch.Tensor, alpha: float, clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Alpha-divergence ``D_alpha(p || q)`` per sample, and a surrogate whose gradient (through
    ``log_q`` only) is its clipped gradient. Computed from log-probabilities, so probabilities
    that underflow to zero give no NaN."""
    q_prob = log_q.detach().exp()
    log_ratio = log_p - log_q.detach()
    if abs(alpha) < 1e-3:
        log_ratio = log_ratio.clamp(max=math.log(clip))
        value = (q_prob * -log_ratio).sum(-1)
        weight = q_prob * (log_ratio - 1.0)
    elif abs(alpha - 1.0) < 1e-3:
        p_prob = log_p.exp()
        value = (p_prob * log_ratio).sum(-1)
        weight = p_prob
    else:
        powered = (alpha * log_ratio).clamp(max=math.log(clip)).exp()
        base = 1.0 / alpha / (alpha - 1.0)
        value = (q_prob * (powered / alpha / (alpha - 1.0) - base)).sum(-1)
        weight = q_prob * (powered / alpha + base)
    surrogate = -(weight * log_q).sum(-1)
    return value, surrogate


class AlphaDivergence:
    """AlphaNet's adaptive alpha-divergence: per sample, the larger of ``D_alpha_min`` and
    ``D_alpha_max``, so the student neither over- nor under-estimates the teacher's uncertainty.

    Example:
        >>> loss = AlphaDivergence()
        >>> float(loss(torch.zeros(2, 3), torch.zeros(2, 3)))
        0.0

    Args:
        alpha_min: the negative alpha (mass-covering side).
        alpha_max: the positive alpha (mode-seeking side).
        clip: clip of the importance ratio ``(p/q)^alpha`` (stabilises the gradient).
    """

    def __init__(self, alpha_min: float = -1.0, alpha_max: float = 1.0, clip: float = 5.0):
        self.alpha_min, self.alpha_max, self.clip = float(alpha_min), float(alpha_max), float(clip)

    def __call__(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        log_q = F.log_softmax(student.reshape(-1, student.shape[-1]), -1)
        log_p = F.log_softmax(teacher.detach().reshape(-1, teacher.shape[-1]), -1)
        left, grad_left = _f_divergence(log_q, log_p, self.alpha_min, self.clip)
        right, grad_right = _f_divergence(log_q, log_p, self.alpha_max, self.clip)
        pick = (left > right).to(log_q.dtype)
        value = pick * left + (1.0 - pick) * right
        surrogate = pick * grad_left + (1.0 - pick) * grad_right
        # the divergence's value, with the (clipped) gradient of the surrogate
        return (value + surrogate - surrogate.detach()).mean()

    def __repr__(self) -> str:
        return f"AlphaDivergence(alpha_min={self.alpha_min}, alpha_max={self.alpha_max}, clip={self.clip})"


DISTILLS: dict[str, Callable[[], DistillFn]] = {"kl": lambda: kl_divergence, "alpha": AlphaDivergence}


def make_distill(distill: str | DistillFn | bool | None, default_on: bool, supported: bool, classification: bool, strategy: str) -> tuple[DistillFn | None, str]:
    """The distillation loss for a run, and its name for the recipe."""
    if distill is None:
        distill = "kl" if (default_on and classification) else False
    if distill is False:
        return None, "off"
    if not supported:
        raise ValueError(f"The '{strategy}' strategy does not use in-place distillation; pass distill=None or False.")
    if callable(distill):
        return distill, getattr(distill, "__qualname__", type(distill).__name__)
    if distill not in DISTILLS:
        raise ValueError(f"The 'distill' parameter must be one of {sorted(DISTILLS)}, False, None or a callable, got {distill!r}.")
    if not classification:
        raise ValueError(f"distill={distill!r} compares class distributions; regression targets need distill=False or a callable.")
    return DISTILLS[distill](), distill
