"""How architecture parameters become choice weights: softmax, Gumbel-softmax (GDAS), Dirichlet (DrNAS)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from nas.registry import SAMPLERS, instance_or_built


class Sampler:
    """Turns one dimension's architecture parameters into weights over its values (they sum to 1).

    A subclass implements `__call__` and is registered in `SAMPLERS` under its name (which
    sets its `name`). In training the weights may be random (one draw per dimension per step, shared
    by every layer that owns the dimension); in evaluation they are deterministic.

    Example:
        >>> Softmax()(torch.zeros(4), training=False)
        tensor([0.2500, 0.2500, 0.2500, 0.2500])

    Args:
        temperature: divides the parameters before the softmax (lower: closer to one-hot);
            the search loop may anneal it by assigning the attribute.
    """

    name: ClassVar[str] = ""

    def __init__(self, temperature: float = 1.0):
        if not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"The 'temperature' parameter of {type(self).__name__} must be a number > 0, got {temperature!r}.")
        self.temperature = float(temperature)

    def __call__(self, alpha: torch.Tensor, training: bool) -> torch.Tensor:
        """The weights over the dimension's values."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(temperature={self.temperature:g})"


@SAMPLERS.register("softmax")
class Softmax(Sampler):
    """DARTS/TangleNAS: ``softmax(alpha / temperature)``, deterministic.

    Example:
        >>> Softmax(temperature=0.5)(torch.tensor([0.0, 1.0]), training=True).argmax().item()
        1
    """

    def __call__(self, alpha, training):
        return F.softmax(alpha / self.temperature, dim=-1)


@SAMPLERS.register("gumbel")
class Gumbel(Sampler):
    """GDAS: a Gumbel-softmax draw in training, one-hot in the forward with the soft draw's
    gradient (``hard=False``: the soft draw itself, as SNAS).

    Example:
        >>> w = Gumbel()(torch.zeros(3), training=True)
        >>> float(w.sum()), int((w == 1).sum())
        (1.0, 1)

    Args:
        temperature: the Gumbel-softmax temperature (GDAS anneals it from 10 to 0.1).
        hard: straight-through one-hot weights, so each training step runs one subnet.
    """

    def __init__(self, temperature: float = 1.0, hard: bool = True):
        super().__init__(temperature)
        self.hard = bool(hard)

    def __call__(self, alpha, training):
        if not training:
            return F.softmax(alpha / self.temperature, dim=-1)
        return F.gumbel_softmax(alpha, tau=self.temperature, hard=self.hard, dim=-1)

    def __repr__(self) -> str:
        return f"Gumbel(temperature={self.temperature:g}, hard={self.hard})"


@SAMPLERS.register("dirichlet")
class Dirichlet(Sampler):
    """DrNAS: weights drawn from ``Dirichlet(elu(alpha / temperature) + 1)`` (pathwise gradients);
    the distribution's mean in evaluation.

    Example:
        >>> w = Dirichlet()(torch.zeros(3), training=True)
        >>> round(float(w.sum()), 6)
        1.0
    """

    def __call__(self, alpha, training):
        concentration = F.elu(alpha / self.temperature) + 1.0
        if not training:
            return concentration / concentration.sum(-1, keepdim=True)
        return torch.distributions.Dirichlet(concentration).rsample()


def get_sampler(sampler: str | Sampler, **kwargs) -> Sampler:
    """A sampler from its registry name (built with `kwargs`) or an instance."""
    return instance_or_built(sampler, Sampler, SAMPLERS, "sampling", **kwargs)
