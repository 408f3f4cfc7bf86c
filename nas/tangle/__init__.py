"""Gradient-based search over entangled supernets (TangleNAS).

Two independent axes, each a small pluggable piece: how architecture parameters become
weights (`Softmax`, `Gumbel`, `Dirichlet`: a `Sampler`) and how a layer's candidates
combine (``"superposition"``: one mixed weight, zero-padded slices summed with their
weights; ``"weighted_sum"``: one forward per candidate). `Tangle` prepares a supernet (mixed
forwards for every elastic layer, a differentiable expected cost), `tangle_mode` runs it
under given weights and restores every layer on exit, `BiLevel` is one step of bi-level
training (with the cost terms of `CostObjective` and a `Budget`), and `search_tangle` is
the search that records the argmax architecture after each epoch; `TangleMethod` makes it
the method of searcher ``"tangle"`` for `nas.search`, specs and the ``nas`` command.

    >>> import search_spaces
    >>> from nas.tangle import ArchParameters, Softmax, tangle_mode
    >>> net = search_spaces.get("mlp", depths=(1, 2), widths=(16, 32), ranks=(4, 8))
    >>> arch = ArchParameters(net.space)
    >>> with tangle_mode(net, arch.weights(Softmax())):
    ...     net(torch.zeros(2, 64)).shape
    torch.Size([2, 10])
"""

import torch  # noqa: F401  (used by the doctest above)

from nas.tangle._arch import ArchParameters, argmax_config, one_hot
from nas.tangle._bilevel import BiLevel, CostObjective
from nas.tangle._budget import Budget
from nas.tangle._cost import CostModel
from nas.tangle._layout import Layout
from nas.tangle._method import TangleMethod, tangle_fields, with_constraints
from nas.tangle._mode import COMBINES, Tangle, tangle_mode
from nas.tangle._sampling import SAMPLERS, Dirichlet, Gumbel, Sampler, Softmax, get_sampler
from nas.tangle._search import search_tangle

__all__ = [
    "COMBINES",
    "SAMPLERS",
    "ArchParameters",
    "BiLevel",
    "Budget",
    "CostModel",
    "CostObjective",
    "Dirichlet",
    "Gumbel",
    "Layout",
    "Sampler",
    "Softmax",
    "Tangle",
    "TangleMethod",
    "argmax_config",
    "get_sampler",
    "one_hot",
    "search_tangle",
    "tangle_fields",
    "with_constraints",
    "tangle_mode",
]
