"""`mixture`: K weight copies, each architecture routed to one by a learned router under a balance constraint.

Balanced Mixture of SuperNets (PAPERS.md): where shared weights make choices fight, keep K
copies of the supernet's weights and let each architecture train and be evaluated with one
of them. The copies live in the supernet (`WeightMixture`, attached as ``net.mixture``): every
`Supernet.activate` routes its config and binds the body's parameters to that copy, so
``extract``, evaluation, export, checkpoints and resume see one supernet as before.

The router here is a linear map from the config's one-hot encoding (one slot per value of
each active dimension) to K logits, plus a per-copy balance bias. It learns by cross-entropy
toward the copy that scores the lowest loss on the current batch for `probe` random configs
a step (every copy is tried, without gradients); the bias keeps the copies' shares of
uniformly sampled configs equal (each step it moves towards the under-used copies, as in
loss-free load balancing). The copies start equal; training on different architectures
makes them differ.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.training._base import STRATEGIES, Strategy, get_strategy

REBALANCE_SAMPLES = 2048  # uniformly sampled configs that the final balance splits evenly
ROUTER_SEED = 0  # the router's initial weights: the same for every run, so a resume rebuilds them


class WeightMixture(nn.Module):
    """K copies of a supernet body's parameters and the router that gives each config one copy.

    Attach it with `attach` (training with strategy ``"mixture"`` does; loading a mixture's
    state dict into a plain supernet does too). Copy 0 holds the body's own parameters;
    frozen parameters (``requires_grad=False``, e.g. a LoRA base), BatchNorm statistics and
    other buffers stay shared (evaluation recalibrates the statistics per subnet).

    Example:
        >>> from search_spaces.mlp import MLP
        >>> net = MLP(depths=(1,), widths=(16, 32), ranks=(4, 8))
        >>> mixture = WeightMixture.attach(net, 2)
        >>> [len(c) for c in mixture.copies] == [len(list(net.body.parameters()))] * 2
        True
        >>> with mixture.forced(1), net.activate(net.smallest()):
        ...     mixture.current
        1
    """

    def __init__(self, net: nn.Module, k: int):
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"The 'k' parameter of WeightMixture must be an int >= 1, got {k!r}.")
        self.k = k
        owners: dict[int, list[tuple[nn.Module, str]]] = {}
        originals: list[nn.Parameter] = []
        for module in net.body.modules():
            for name, param in module._parameters.items():
                if param is None:
                    continue
                if id(param) not in owners:
                    owners[id(param)] = []
                    originals.append(param)
                owners[id(param)].append((module, name))
        # where each parameter is bound: (module, attribute) slots per parameter (tied ones share one)
        self._slots = [owners[id(p)] for p in originals]
        self.copies = nn.ModuleList(
            [nn.ParameterList(originals)]
            + [nn.ParameterList([nn.Parameter(p.detach().clone()) if p.requires_grad else p for p in originals]) for _ in range(k - 1)]
        )
        self._space = net.space
        self._offsets: dict[str, tuple[int, int]] = {}
        width = 0
        for dim in net.space.dimensions:
            self._offsets[dim.name] = (width, len(dim.values))
            width += len(dim.values)
        generator = torch.Generator().manual_seed(ROUTER_SEED)
        self.router_weight = nn.Parameter(0.01 * torch.randn(k, max(width, 1), generator=generator))
        self.router_bias = nn.Parameter(torch.zeros(k))
        self.register_buffer("balance", torch.zeros(k))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # routing steps taken (route_steps + 1: routes fixed)
        self._forced: int | None = None
        self.current = 0

    @classmethod
    def attach(cls, net: nn.Module, k: int) -> WeightMixture:
        """Add a K-copy mixture to `net` as ``net.mixture`` (its copies equal to the current weights) and bind its config."""
        if getattr(net, "mixture", None) is not None:
            raise ValueError(f"{type(net).__name__} already has a weight mixture (k={net.mixture.k})")
        net.mixture = cls(net, k)
        net._configure(net._config)
        return net.mixture

    # -- routing -----------------------------------------------------------------------------
    def encode(self, configs: list[Mapping[str, Any]]) -> torch.Tensor:
        """The one-hot encodings of `configs` (one row each; inactive dimensions all zero)."""
        out = torch.zeros(len(configs), self.router_weight.shape[1])
        for row, config in enumerate(configs):
            for name in self._space.active_names(config):
                out[row, self._offsets[name][0] + self._space[name].index(config[name])] = 1.0
        return out.to(self.router_weight.device)

    def logits(self, configs: list[Mapping[str, Any]]) -> torch.Tensor:
        """The router's learned logits (without the balance bias) for `configs`."""
        return self.encode(configs) @ self.router_weight.t() + self.router_bias

    def route(self, config: Mapping[str, Any]) -> int:
        """The copy that `config` trains and is evaluated with."""
        if self._forced is not None:
            return self._forced
        if self.k == 1:
            return 0
        with torch.no_grad():
            return int(torch.argmax(self.logits([config])[0] + self.balance))

    def routes(self, configs: list[Mapping[str, Any]]) -> list[int]:
        """`route` for several configs."""
        with torch.no_grad():
            return torch.argmax(self.logits(configs) + self.balance, dim=1).tolist()

    def shares(self, configs: list[Mapping[str, Any]]) -> list[float]:
        """The fraction of `configs` routed to each copy."""
        counts = np.bincount(self.routes([self._space.canonical(self._space.validate(c)) for c in configs]), minlength=self.k)
        return (counts / max(len(configs), 1)).tolist()

    def rebalance(self, configs: list[Mapping[str, Any]], iterations: int = 500) -> list[float]:
        """Set the balance bias so that `configs` split as evenly as it can over the copies; returns their shares."""
        with torch.no_grad():
            logits = self.logits([self._space.canonical(self._space.validate(c)) for c in configs])
            bias, best, best_gap = self.balance.clone(), self.balance.clone(), math.inf
            for i in range(iterations):
                shares = torch.bincount(torch.argmax(logits + bias, dim=1), minlength=self.k).float() / len(configs)
                gap = float((shares - 1.0 / self.k).abs().max())
                if gap < best_gap:
                    best, best_gap = bias.clone(), gap
                bias += (1.0 / self.k - shares) * (logits.std() + 1e-3) / (1 + i / 50)
            self.balance.copy_(best)
            return (torch.bincount(torch.argmax(logits + best, dim=1), minlength=self.k).float() / len(configs)).tolist()

    @contextmanager
    def forced(self, copy: int) -> Iterator[None]:
        """Route every config to `copy` inside the block."""
        previous, self._forced = self._forced, copy
        try:
            yield
        finally:
            self._forced = previous

    def bind(self, copy: int) -> None:
        """Make the body's layers use the parameters of `copy`."""
        params = self.copies[copy]
        for i, slots in enumerate(self._slots):
            for module, name in slots:
                module._parameters[name] = params[i]
        self.current = copy


@STRATEGIES.register("mixture")
class Mixture(Strategy):
    """Balanced Mixture of SuperNets: K weight copies, each config trained with the copy its router picks.

    Each step runs the `rule` strategy (its subnets each routed to their copy); in the first
    `route_steps` steps it then teaches the router on `probe` random configs (every copy
    scored on the batch without gradients, cross-entropy toward the best) and moves the
    balance bias towards equal shares of `balance_samples` uniformly sampled configs.

    Example:
        >>> Mixture(k=2)
        Mixture(k=2, rule='sandwich', n=2, probe=1, balance_rate=0.05, balance_samples=32, route_steps=500)

    Args:
        k: weight copies (1: one supernet, as the rule strategy alone).
        rule: the strategy that picks each step's subnets, ``"sandwich"`` or ``"uniform"``.
        n: random subnets per step of the sandwich rule.
        probe: configs per step on which the router learns (0: a fixed random router).
        balance_rate: how far the balance bias moves per step per unit of share deviation.
        balance_samples: configs sampled per step to measure the shares.
        route_steps: steps during which the router learns and the balance moves; after them
            every config keeps its copy, which then trains it undisturbed (routes that still
            moved at the end left configs with a copy that had not trained them). The step
            after them sets the bias so that 2,048 uniformly sampled configs split evenly.
    """

    supports_distill = True

    def __init__(self, k: int = 2, rule: str = "sandwich", n: int = 2, probe: int = 1, balance_rate: float = 0.05, balance_samples: int = 32,
                 route_steps: int = 500):
        checks = (("k", k, 1), ("n", n, 0), ("probe", probe, 0), ("balance_samples", balance_samples, 1), ("route_steps", route_steps, 0))
        for name, value, low in checks:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"The '{name}' parameter of Mixture must be an int >= {low}, got {value!r}.")
        if rule not in ("sandwich", "uniform"):
            raise ValueError(f"The 'rule' parameter of Mixture must be 'sandwich' or 'uniform', got {rule!r}.")
        if isinstance(balance_rate, bool) or not isinstance(balance_rate, (int, float)) or balance_rate < 0:
            raise ValueError(f"The 'balance_rate' parameter of Mixture must be a number >= 0, got {balance_rate!r}.")
        self.k, self.rule, self.n, self.probe = k, rule, n, probe
        self.balance_rate, self.balance_samples, self.route_steps = balance_rate, balance_samples, route_steps
        self._rule = get_strategy(rule, **({"n": n} if rule == "sandwich" else {}))

    def prepare(self, net: nn.Module) -> None:
        mixture = getattr(net, "mixture", None)
        if mixture is None:
            WeightMixture.attach(net, self.k)
        elif mixture.k != self.k:
            raise ValueError(f"the supernet already holds a weight mixture of k={mixture.k}, but this Mixture has k={self.k}")

    def step(self, net, x, y, rng, loss, distill):
        mixture: WeightMixture = net.mixture
        value = self._rule.step(net, x, y, rng, loss, distill)
        steps = int(mixture.steps)
        if mixture.k == 1 or steps > self.route_steps:
            return value
        mixture.steps += 1
        if steps == self.route_steps:  # the router's last update is in: fix the routes, split evenly
            mixture.rebalance([net.sample(rng) for _ in range(REBALANCE_SAMPLES)])
            return value
        configs = [net.space.canonical(net.space.validate(net.sample(rng))) for _ in range(self.probe)]
        targets = []
        with torch.no_grad():
            for config in configs:
                scores = []
                for copy in range(mixture.k):
                    with mixture.forced(copy), net.activate(config):
                        scores.append(float(loss(net(x), y)))
                targets.append(int(np.argmin(scores)) if max(scores) - min(scores) > 1e-7 else -1)
        chosen = [(c, t) for c, t in zip(configs, targets) if t >= 0]
        if chosen:
            logits = mixture.logits([c for c, _ in chosen])
            nn.functional.cross_entropy(logits, torch.tensor([t for _, t in chosen], device=logits.device)).backward()
        sample = [net.space.canonical(net.space.validate(net.sample(rng))) for _ in range(self.balance_samples)]
        shares = torch.bincount(torch.tensor(mixture.routes(sample)), minlength=mixture.k).float() / len(sample)
        mixture.balance += self.balance_rate * (1.0 / mixture.k - shares).to(mixture.balance.device) * mixture.k
        return value
