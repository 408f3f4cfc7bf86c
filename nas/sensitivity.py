"""Per-layer sensitivity priors: weight-spectrum metrics and Hutchinson Hessian traces.

Two families of priors say, before any subnet is evaluated, how much each layer minds
being compressed:

- the *spectrum* of its effective weight matrix: the heavy-tail exponent ``alpha`` of the
  empirical spectral density (Hill estimator; a heavy tail, small alpha, marks a
  well-trained, structured layer, as WeLore and the HT-SR line use it), the same exponent
  measured FARMS-style on fixed-aspect-ratio square windows so that tall and wide layers
  are comparable, the stable rank, and the spectral energy each rank level drops;
- the trace of the loss Hessian over its parameters, estimated with Hutchinson's method
  (HAWQ-V2), as the average curvature ``trace / parameters``.

`sensitivity(net, data)` measures both for every layer whose dimension is a level, and
gives each level a second-order error proxy, ``0.5 * curvature * ||W - W_level||_F^2``
(HAWQ-V2's Omega). `Sensitivity.features` serves them to predictors; `Sensitivity.initial`
turns them into allocations under a budget (the exact dynamic program of `nas.searchers.DPSearcher`
on the proxy errors), e.g. as `EvoPressSearcher`'s initial population.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.data import resolve
from nas.elastic import ElasticModule
from nas.evaluate import default_loss, preserved
from nas.pareto import Constraint
from nas.searchers import allocate
from nas.space import Config

__all__ = ["Sensitivity", "alpha_farms", "alpha_hill", "hutchinson_trace", "sensitivity", "spectrum_metrics"]


def hutchinson_trace(
    loss: torch.Tensor | Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    *,
    probes: int = 100,
    seed: int = 0,
) -> list[float]:
    """Hutchinson estimates of the Hessian trace of `loss` over each tensor in `params`.

    Each probe draws a Rademacher vector ``v`` over all of `params`, computes ``H v`` by a
    second backward pass and adds ``v_i . (H v)_i`` to tensor i's estimate; the cross terms
    between tensors vanish in expectation, so one Hessian-vector product serves all of them.

    Example:
        >>> A = torch.tensor([[2.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
        >>> x = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        >>> hutchinson_trace(lambda: 0.5 * x @ A @ x + x.sum(), [x], probes=10)  # exact for a diagonal Hessian
        [5.0]

    Args:
        loss: a scalar built with autograd from `params`, or a function returning one.
        params: tensors that require grad.
        probes: Rademacher probes.
        seed: seed of the probes.
    """
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ValueError(f"The 'probes' parameter must be an int >= 1, got {probes!r}.")
    params = list(params)
    value = loss() if callable(loss) else loss
    grads = torch.autograd.grad(value, params, create_graph=True)
    generator = torch.Generator().manual_seed(int(seed))
    totals = [0.0] * len(params)
    for k in range(probes):
        vs = [(torch.randint(0, 2, p.shape, generator=generator) * 2 - 1).to(p) for p in params]
        hvs = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=k < probes - 1)
        for i, (v, hv) in enumerate(zip(vs, hvs)):
            totals[i] += float((v * hv).sum())
    return [t / probes for t in totals]


def alpha_hill(eigenvalues: np.ndarray, k: int | None = None) -> float:
    """Hill estimate of the power-law tail exponent of an empirical spectral density.

    ``alpha = 1 + k / sum_{i<k} log(lambda_i / lambda_k)`` over the `k` largest eigenvalues
    (default: half of them), the estimator AlphaPruning and TempBalance use.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> round(alpha_hill(rng.pareto(2.0, 100_000) + 1), 1)  # a density with tail exponent 3
        3.0
    """
    lam = np.sort(np.asarray(eigenvalues, dtype=float))[::-1]
    lam = lam[lam > 0]
    if len(lam) < 2:
        return math.nan
    k = max(1, min(len(lam) - 1, len(lam) // 2 if k is None else k))
    logs = np.log(lam[:k] / lam[k])
    total = float(logs.sum())
    return 1.0 + k / total if total > 0 else math.inf


def alpha_farms(weight: np.ndarray, *, stride: float = 0.5) -> float:
    """The tail exponent on fixed-aspect-ratio windows (FARMS): square submatrices along the longer side.

    A tall or wide matrix has a spectral density shaped by its aspect ratio, which biases
    ``alpha``; FARMS measures square windows (side: the shorter dimension) slid along the
    longer one with overlap `stride`, pools their eigenvalues (each window's divided by its
    mean, so windows weigh alike) and fits the tail of the pooled density.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> square, wide = rng.normal(size=(64, 64)), rng.normal(size=(64, 1024))  # both pure noise
        >>> plain = [alpha_hill(np.linalg.svd(w, compute_uv=False) ** 2) for w in (square, wide)]
        >>> [round(a, 1) for a in plain], [round(alpha_farms(w), 1) for w in (square, wide)]
        ([2.1, 5.7], [2.1, 2.1])
    """
    w = np.asarray(weight, dtype=float)
    if w.ndim != 2:
        w = w.reshape(w.shape[0], -1)
    if w.shape[0] > w.shape[1]:
        w = w.T
    side, long = w.shape
    step = max(1, int(side * stride))
    starts = list(range(0, long - side + 1, step)) or [0]
    if starts[-1] != long - side:
        starts.append(long - side)
    pooled = []
    for s in starts:
        eig = np.linalg.svd(w[:, s : s + side], compute_uv=False) ** 2
        pooled.append(eig / max(eig.mean(), 1e-300))
    return alpha_hill(np.concatenate(pooled))


def spectrum_metrics(weight: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Spectrum metrics of one weight matrix: ``alpha``, ``alpha_farms``, ``stable_rank``.

    Example:
        >>> sorted(spectrum_metrics(np.eye(4)))
        ['alpha', 'alpha_farms', 'stable_rank']
    """
    w = weight.detach().cpu().double().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight, dtype=float)
    w = w.reshape(w.shape[0], -1)
    sigma = np.linalg.svd(w, compute_uv=False)
    top = float(sigma[0] ** 2) if len(sigma) else 0.0
    return {
        "alpha": alpha_hill(sigma**2),
        "alpha_farms": alpha_farms(w),
        "stable_rank": float((sigma**2).sum() / top) if top > 0 else 0.0,
    }


@dataclass
class Sensitivity:
    """Per-layer sensitivity priors of a supernet's level dimensions.

    Attributes:
        layers: dimension name -> metrics (``alpha``, ``alpha_farms``, ``stable_rank``,
            ``hessian_trace``, ``curvature`` = trace / parameters).
        errors: dimension name -> second-order error proxy at each of its values (in the
            dimension's order; 0 at the largest value).
    """

    layers: dict[str, dict[str, float]]
    errors: dict[str, np.ndarray] = field(default_factory=dict)

    def features(self, configs: Sequence[Mapping[str, Any]], space: Any) -> np.ndarray:
        """An n x L matrix: each layer's error proxy at each config's level (predictor features)."""
        names = list(self.errors)
        out = np.zeros((len(configs), len(names)))
        for i, config in enumerate(configs):
            for j, name in enumerate(names):
                if name in config:
                    out[i, j] = self.errors[name][space[name].index(config[name])]
        return out

    def predict(self, configs: Sequence[Mapping[str, Any]], space: Any) -> np.ndarray:
        """The summed error proxy of each config (lower: expected to lose less)."""
        return self.features(configs, space).sum(axis=1)

    def initial(self, space: Any, cost: Callable[[Config], Mapping[str, float]], budget: Constraint | str, k: int = 4) -> list[Config]:
        """Up to `k` allocations of least summed proxy error under `budget` (the dynamic program of `nas.searchers.DPSearcher`)."""
        budget = budget if isinstance(budget, Constraint) else Constraint.parse(budget)
        return [config for config, _ in allocate(space, self.errors, cost, budget)[:k]]


def sensitivity(
    net: Any,
    data: Any = None,
    *,
    probes: int = 50,
    batches: int = 2,
    batch_size: int = 128,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    seed: int = 0,
) -> Sensitivity:
    """Spectrum metrics, Hutchinson Hessian traces and per-level error proxies of `net`'s level layers.

    A *level layer* is an elastic linear-like module owning one numeric dimension with
    several values (a rank, LoRA rank or width). Its effective weight under a config is
    read by feeding it the identity (outputs minus the bias), so factorised, adapted and
    sliced layers are all measured as the dense matrix they compute; a level's error proxy
    is ``0.5 * curvature * ||W_largest - W_level||_F^2`` (zero-padded where widths differ).
    Traces are taken on the largest config over `batches` training batches. Modules that
    are not linear-like (convolutions, depth) get no entry.

    Example:
        >>> import nas, nas.data, torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        >>> net = nas.from_model(model, torch.zeros(1, 64), widths=None, ranks=[4, 8, 16])
        >>> s = sensitivity(net, nas.data.digits("flat"), probes=4, batches=1)
        >>> sorted(s.layers), float(s.errors["0.rank"][-1]), bool(s.errors["0.rank"][0] > s.errors["0.rank"][1] > 0)
        (['0.rank', '2.rank'], 0.0, True)

    Args:
        net: the supernet.
        data: as `nas.data.resolve` takes it (None: the family's digits split).
        probes: Hutchinson probes per batch.
        batches: training batches the traces average over.
        batch_size: their size.
        loss: the loss ``(outputs, targets) -> scalar`` (default: as `nas.evaluate` picks it).
        seed: seed of the batches and probes.
    """
    data = resolve(net, data)
    loss_fn = default_loss(data, loss)
    largest = net.space.largest()
    owners: dict[str, nn.Module] = {}
    for module in net.modules():
        if not isinstance(module, ElasticModule) or not module.leaf:
            continue
        for choice in module.dimensions():
            if choice.kind is not str and len(choice.values) > 1 and choice.name in largest and _in_width(module) is not None:
                owners.setdefault(choice.name, module)
    layers: dict[str, dict[str, float]] = {}
    errors: dict[str, np.ndarray] = {}
    full: dict[str, torch.Tensor] = {}
    for name, module in owners.items():
        with net.activate(largest):
            full[name] = _effective_weight(module)
        layers[name] = spectrum_metrics(full[name])

    traces = _traces(net, data, owners, loss_fn, probes, batches, batch_size, seed)
    for name, module in owners.items():
        n = sum(p.numel() for p in module.parameters() if p.requires_grad)
        layers[name]["hessian_trace"] = traces[name]
        layers[name]["curvature"] = traces[name] / max(n, 1)
        values = net.space[name].values
        row = np.zeros(len(values))
        for j, value in enumerate(values):
            with net.activate({**largest, name: value}):
                w = _effective_weight(module)
            row[j] = 0.5 * max(layers[name]["curvature"], 0.0) * float(_padded_diff(full[name], w))
        errors[name] = row
    return Sensitivity(layers, errors)


def _in_width(module: nn.Module) -> int | None:
    width = getattr(module, "in_features", None)
    return int(width) if isinstance(width, int) else None


def _effective_weight(module: nn.Module) -> torch.Tensor:
    """The dense (out x in) matrix a linear-like module computes now: f(I) - f(0)."""
    width = _in_width(module)
    param = next(module.parameters())
    eye = torch.eye(width, dtype=param.dtype, device=param.device)
    with torch.no_grad():
        out = module(eye) - module(torch.zeros(1, width, dtype=param.dtype, device=param.device))
    return out.T.detach().cpu().double()


def _padded_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    rows, cols = max(a.shape[0], b.shape[0]), max(a.shape[1], b.shape[1])
    pa = torch.zeros(rows, cols, dtype=torch.float64)
    pb = torch.zeros(rows, cols, dtype=torch.float64)
    pa[: a.shape[0], : a.shape[1]] = a
    pb[: b.shape[0], : b.shape[1]] = b
    return float(((pa - pb) ** 2).sum())


def _traces(net, data, owners, loss_fn, probes, batches, batch_size, seed) -> dict[str, float]:
    """Each owner's Hessian trace over its trainable parameters, averaged over training batches."""
    groups = {name: [p for p in module.parameters() if p.requires_grad] for name, module in owners.items()}
    flat = [p for ps in groups.values() for p in ps]
    sums = dict.fromkeys(owners, 0.0)
    used = 0
    with preserved(net), net.activate(net.space.largest()):
        net.eval()
        for b, (x, y) in enumerate(data.train_batches(batch_size, seed, net.device)):
            if b == batches:
                break
            estimates = hutchinson_trace(loss_fn(net(x), y), flat, probes=probes, seed=seed + b)
            i = 0
            for name, ps in groups.items():
                sums[name] += sum(estimates[i : i + len(ps)])
                i += len(ps)
            used += 1
    return {name: total / max(used, 1) for name, total in sums.items()}
