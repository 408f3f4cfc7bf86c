"""Architecture parameters: one vector of logits per dimension of a search space."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nas.space import Config, SearchSpace
from nas.tangle._sampling import Sampler


class ArchParameters(nn.Module):
    """One logit per value of every dimension of `space` (``alpha``), the thing gradient NAS learns.

    Dimensions shared by several layers (one ``"width"`` for a whole net) have one vector,
    so every layer that owns the dimension reads the same weights.

    Example:
        >>> from nas import Choice, SearchSpace
        >>> space = SearchSpace([Choice("depth", [1, 2]), Choice("width", [8, 16, 32])])
        >>> arch = ArchParameters(space)
        >>> with torch.no_grad():
        ...     arch["width"][1] = 1.0
        >>> arch.argmax()
        {'depth': 1, 'width': 16}

    Args:
        space: the search space.
        init_std: the logits start as ``init_std * randn`` (DARTS: 1e-3), drawn from `generator`.
        generator: the torch generator of the initial logits (default: torch's global one).
    """

    def __init__(self, space: SearchSpace, init_std: float = 1e-3, generator: torch.Generator | None = None):
        super().__init__()
        self.space = space
        self.names = [d.name for d in space.dimensions]
        self._index = {n: i for i, n in enumerate(self.names)}
        self.alphas = nn.ParameterList(
            [nn.Parameter(init_std * torch.randn(len(d.values), generator=generator)) for d in space.dimensions]
        )

    def __getitem__(self, name: str) -> nn.Parameter:
        if name not in self._index:
            raise KeyError(f"no architecture parameter for {name!r}; the dimensions are: {', '.join(self.names)}")
        return self.alphas[self._index[name]]

    def weights(self, sampler: Sampler, training: bool = True) -> dict[str, torch.Tensor]:
        """Each dimension's weights over its values, drawn once by `sampler`."""
        return {n: sampler(a, training) for n, a in zip(self.names, self.alphas)}

    def probabilities(self) -> dict[str, torch.Tensor]:
        """``softmax(alpha)`` per dimension (detached)."""
        return {n: torch.softmax(a.detach(), -1) for n, a in zip(self.names, self.alphas)}

    def argmax(self) -> Config:
        """The config taking each active dimension's most likely value (a valid config)."""
        return argmax_config(self.space, {n: a.detach() for n, a in zip(self.names, self.alphas)})

    def load_config(self, config: Mapping[str, Any], strength: float = 10.0) -> None:
        """Set the logits so that `config` is the argmax (``strength`` on its values, 0 elsewhere)."""
        config = self.space.validate(config)
        with torch.no_grad():
            for dim, alpha in zip(self.space.dimensions, self.alphas):
                alpha.zero_()
                if dim.name in config:
                    alpha[dim.index(config[dim.name])] = strength


def argmax_config(space: SearchSpace, scores: Mapping[str, torch.Tensor]) -> Config:
    """The valid config taking, for each active dimension in order, the value of highest score."""
    out: Config = {}
    for dim in space.dimensions:
        if dim.when is None or (dim.when[0] in out and out[dim.when[0]] in dim.when[1]):
            out[dim.name] = dim.values[int(torch.argmax(scores[dim.name]))]
    return space.validate(out)


def one_hot(space: SearchSpace, config: Mapping[str, Any], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """Weights that put all mass on `config`'s values (inactive dimensions: on their largest value).

    Example:
        >>> from nas import Choice, SearchSpace
        >>> one_hot(SearchSpace([Choice("width", [8, 16])]), {"width": 8})["width"].tolist()
        [1.0, 0.0]
    """
    config = space.validate(config)
    out = {}
    for dim in space.dimensions:
        w = torch.zeros(len(dim.values), device=device)
        w[dim.index(config[dim.name]) if dim.name in config else -1] = 1.0
        out[dim.name] = w
    return out
