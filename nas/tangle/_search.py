"""`search_tangle`: bi-level gradient search over an entangled supernet (TangleNAS), run by `nas.training.fit`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.data import resolve
from nas.evaluate import default_loss, evaluate
from nas.evaluation import Evaluation
from nas.latency import LatencyTable
from nas.metrics import default_reference
from nas.pareto import Constraint, Objective, parse_objectives
from nas.result import SearchResult, hypervolume_history, write_front
from nas.rundir import RunDir
from nas.space import Config
from nas.store import EvaluationStore
from nas.tangle._arch import ArchParameters, one_hot
from nas.tangle._bilevel import BiLevel, BiLevelStep, CostObjective
from nas.tangle._budget import COST_METRICS, Budget
from nas.tangle._mode import Tangle
from nas.tangle._sampling import Sampler, get_sampler
from nas.training import Recipe, fit

METRICS = ("accuracy", "loss", "params", "macs", "latency_ms")


def search_tangle(
    net: nn.Module,
    data: Any = None,
    objectives: Sequence[str | Objective] | str = ("accuracy:max", "params:min"),
    *,
    epochs: int = 20,
    cost_weight: float = 0.0,
    budget_constraint: str | None = None,
    sampling: str | Sampler = "dirichlet",
    combine: str = "superposition",
    temperature: float | tuple[float, float] | None = None,
    second_order: bool = False,
    ordered_dropout: bool = True,
    warmup_epochs: int = 0,
    lr: float = 3e-3,
    batch_size: int = 64,
    optimizer: Any = "adamw",
    weight_decay: float = 1e-4,
    schedule: Any = "cosine",
    grad_clip: float | None = 5.0,
    arch_lr: float = 3e-2,
    arch_optimizer: Any = "adam",
    arch_weight_decay: float = 1e-3,
    latency: Any = None,
    evaluate_kwargs: Mapping[str, Any] | None = None,
    loss: Callable | None = None,
    seed: int = 0,
    run: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
) -> SearchResult:
    """Learn architecture weights with the supernet's weights; record the argmax after each epoch.

    Bi-level (DARTS) training: each step first updates the architecture parameters on a
    validation batch (loss plus the cost terms), then the supernet weights on a training
    batch, both through the mixed forward (`Tangle`: entangled superposition by default). The
    architecture recorded after each epoch (the argmax, or with a budget the most likely
    config within it) is evaluated with `nas.evaluate` into an `Evaluation`, so the
    evaluations are any-time results and the run store, report and export work unchanged.
    An architecture recorded again replaces its earlier evaluation and moves to the end
    (as in the run's store), so ``evaluations[-1]`` is the last epoch's architecture; when
    the search ends, every other recorded architecture is evaluated again with the final
    weights, so each evaluation is what the returned (or checkpointed) supernet gives.
    To trace a front, run once per `cost_weight` (or per budget).

    Example:
        >>> import search_spaces
        >>> net = search_spaces.get("mlp", depths=(1, 2), widths=(16, 32), ranks=(4, 8))
        >>> result = search_tangle(net, epochs=2, cost_weight=0.5, progress=False)
        >>> len(result.history), 1 <= len(result.evaluations) <= 2, net.space.contains(result.evaluations[-1].config)
        (2, True, True)

    Args:
        net: a `Supernet` (trained or not: the search trains it, in place).
        data: as `nas.data.resolve` takes it (None: the family's digits split). Weights
            learn on its train split, architecture parameters on its val split.
        objectives: as for `nas.search`; the first cost objective (params, macs,
            latency_ms) is the cost that `cost_weight` weighs.
        epochs: passes over the training data; one recorded architecture per epoch.
        cost_weight: weight of the expected cost, as a fraction of the largest subnet's
            (1.0: the largest subnet's cost costs as much as one nat of validation loss).
        budget_constraint: e.g. ``"params<=50000"``: a Lagrangian penalty on the expected
            cost and a hard bound on every recorded architecture (`Budget`).
        sampling: how parameters become weights: ``"dirichlet"`` (DrNAS, the default:
            the random mixtures also train the discrete subnets, so the recorded argmax
            works with its inherited weights; with ``"softmax"`` (DARTS) the deterministic
            superposition trains the mixture only, and on `cnn` the argmax subnet scores
            ~30% after 10 epochs against ~95% with Dirichlet), ``"gumbel"`` (GDAS: hard
            one-hot draws, straight-through gradients), or a `Sampler`.
        combine: ``"superposition"`` (one mixed weight per layer) or ``"weighted_sum"``.
        temperature: the sampler's temperature, or ``(start, end)`` annealed geometrically
            over the epochs (None: the sampler's own, 1 for a sampler given by name).
        second_order: DARTS' unrolled architecture gradient (finite-difference Hessian).
        ordered_dropout: in weight steps, also cut each low-rank layer at a random rank
            (Maestro), so every truncation stays near-optimal while the ranks are searched.
        warmup_epochs: first epochs train the weights only.
        lr, batch_size, optimizer, weight_decay, schedule, grad_clip: the weights' recipe,
            as `nas.train_supernet` takes it.
        arch_lr: learning rate of the architecture parameters.
        arch_optimizer: ``"adam"`` (betas 0.5, 0.999 as DARTS), ``"sgd"`` or
            ``callable(params, lr) -> Optimizer``.
        arch_weight_decay: weight decay of the architecture parameters.
        latency: ``"table"`` or a `nas.latency.LatencyTable`: expected latency (from the
            table's entries) becomes available as a cost, and ``latency_ms`` is evaluated
            (None: ``"table"`` when an objective or the budget is ``latency_ms``).
        evaluate_kwargs: passed to `nas.evaluate` for the recorded architectures, as a
            backend passes them (``batch_size``, ``calibration_batches``, ...; default:
            `nas.evaluate`'s, the local backend's and `nas.export`'s check's).
        loss: ``(outputs, targets) -> scalar`` (default: cross-entropy for class targets).
        seed: seeds the architecture initialisation, data order, ordered dropout and torch.
        run: a directory: evaluations go to its store (``evaluations.sqlite``), the front
            to ``front.json``, and after every epoch a checkpoint (``supernet.pt``: the
            supernet's weights as `nas.training.load_checkpoint` reads them, plus the
            architecture parameters and the search state).
        resume: continue from the tangle checkpoint in `run`, if there is one (the recipe
            must match); a trained supernet's checkpoint there is not resumed from: the
            search starts from `net` as given and then replaces it.
        progress: show a progress bar.
        callback: called with each epoch's history record; returning True stops the search.

    Besides the `SearchResult` fields, the result carries ``arch`` (the learned
    `ArchParameters`) and ``history`` (one record per epoch: losses, expected costs,
    temperature, the recorded config and its metrics as ``arch_*``).
    """
    options = TangleOptions(
        objectives=objectives, cost_weight=cost_weight, budget_constraint=budget_constraint, sampling=sampling,
        combine=combine, temperature=temperature, second_order=second_order, ordered_dropout=ordered_dropout,
        warmup_epochs=warmup_epochs, arch_lr=arch_lr, arch_optimizer=arch_optimizer, arch_weight_decay=arch_weight_decay,
        latency=latency, evaluate_kwargs=dict(evaluate_kwargs or {}), epochs=epochs, seed=seed,
    )
    if resume and run is None:
        raise ValueError("resume=True needs the run directory: pass run=...")
    recipe = Recipe(epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, weight_decay=weight_decay,
                    schedule=schedule, grad_clip=grad_clip, seed=seed)
    rundir = RunDir(run) if run is not None else None
    with rundir.lock() if rundir is not None else contextlib.nullcontext():
        return _Search(net, data, options, recipe, loss, rundir).run(resume, progress, callback)


@dataclass(frozen=True)
class TangleOptions:
    """The options of `search_tangle` besides the weights' `nas.training.Recipe` (see its arguments); checked on construction."""

    objectives: list[Objective]
    cost_weight: float = 0.0
    budget_constraint: str | None = None
    sampling: str | Sampler = "dirichlet"
    combine: str = "superposition"
    temperature: float | tuple[float, float] | None = None
    second_order: bool = False
    ordered_dropout: bool = True
    warmup_epochs: int = 0
    arch_lr: float = 3e-2
    arch_optimizer: Any = "adam"
    arch_weight_decay: float = 1e-3
    latency: Any = None
    evaluate_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        objectives = parse_objectives(self.objectives)
        object.__setattr__(self, "objectives", objectives)
        unknown = [o.name for o in objectives if o.name not in METRICS]
        if unknown:
            raise ValueError(f"unknown objective metric {unknown[0]!r}; the metrics are: {', '.join(METRICS)}")
        for name in ("epochs", "warmup_epochs", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"The '{name}' parameter of search_tangle must be an int >= 0, got {v!r}.")
        for name in ("cost_weight", "arch_lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (name == "arch_lr" and v == 0):
                raise ValueError(f"The '{name}' parameter of search_tangle must be a number {'> 0' if name == 'arch_lr' else '>= 0'}, got {v!r}.")

    @property
    def cost_metric(self) -> str | None:
        """The first cost objective (the one `cost_weight` weighs), if any."""
        return next((o.name for o in self.objectives if o.name in COST_METRICS), None)

    @property
    def budget_metric(self) -> str | None:
        """The metric of the budget constraint, if any."""
        return Constraint.parse(self.budget_constraint).metric if self.budget_constraint is not None else None


class _Search:
    """One tangle search: the prepared supernet, its `BiLevelStep`, and the recording of one
    architecture per epoch into the evaluations (and the run's store)."""

    def __init__(self, net: nn.Module, data: Any, options: TangleOptions, recipe: Recipe, loss: Callable | None, rundir: RunDir | None):
        self.net, self.options, self.recipe, self.rundir = net, options, recipe, rundir
        sampler = get_sampler(options.sampling)
        temps = _temperatures(sampler.temperature if options.temperature is None else options.temperature, recipe.epochs)
        self.data = data = resolve(net, data)
        self.loss = loss_fn = default_loss(data, loss)
        device = next(net.parameters()).device
        objectives, cost_metric, budget_metric = options.objectives, options.cost_metric, options.budget_metric
        if options.cost_weight and cost_metric is None:
            raise ValueError("cost_weight > 0 needs a cost objective (params, macs or latency_ms) in 'objectives'.")
        latency = options.latency
        if latency is None and "latency_ms" in (budget_metric, *(o.name for o in objectives)):
            latency = "table"
        self.table = _latency_table(net, latency)
        tangle = Tangle(net, options.combine, self.table)

        def exact(metric: str) -> Callable[[Config], float]:
            return lambda config: float(tangle.expected_cost(one_hot(net.space, config, device))[metric])

        self.budget = Budget(options.budget_constraint, exact(budget_metric), net.space) if options.budget_constraint is not None else None
        self.largest = {k: float(v) for k, v in tangle.expected_cost(one_hot(net.space, net.largest(), device)).items()}
        scale = self.largest[cost_metric] if cost_metric else 1.0

        torch.manual_seed(recipe.seed)
        self.arch = ArchParameters(net.space, generator=torch.Generator().manual_seed(recipe.seed)).to(device)
        opt_w, sched = recipe.build([p for p in net.parameters() if p.requires_grad], data)
        opt_a = _arch_optimizer(options.arch_optimizer, list(self.arch.parameters()), options.arch_lr, options.arch_weight_decay)
        cost = CostObjective(tangle, sampler, cost_metric, options.cost_weight, scale, self.budget)
        steps = BiLevel(tangle, self.arch, sampler, loss_fn, opt_w, opt_a, cost, options.ordered_dropout, options.second_order,
                        recipe.grad_clip, np.random.default_rng(recipe.seed))
        self.step = _Recording(self, steps, data, recipe.batch_size, temps, options.warmup_epochs, sched)
        self.identity = {
            "kind": "tangle", "family": getattr(net, "family", None), "objectives": [str(o) for o in objectives],
            "cost_weight": options.cost_weight, "budget_constraint": options.budget_constraint, "sampling": repr(sampler),
            "combine": options.combine, "temperature": temps[0] if len(set(temps)) == 1 else [temps[0], temps[-1]],
            "second_order": options.second_order, "ordered_dropout": options.ordered_dropout,
            "warmup_epochs": options.warmup_epochs, "arch_lr": options.arch_lr,
            "arch_optimizer": _optimizer_name(options.arch_optimizer), "arch_weight_decay": options.arch_weight_decay,
        }
        self.wanted = [m for m in ("accuracy", "loss", "params", "macs") if m != "accuracy" or data.classification]
        self.timed = self.table if any(o.name == "latency_ms" for o in objectives) else False
        self.evaluations: list[Evaluation] = []
        self.store: Any = None

    def score(self, configs: list[Config]) -> list[Evaluation]:
        """`nas.evaluate` of `configs` with the search's metrics and evaluation settings."""
        return evaluate(self.net, configs, self.data, metrics=self.wanted, latency=self.timed, loss=self.loss, **self.options.evaluate_kwargs)

    def reference(self, evaluations: list[Evaluation]) -> dict[str, float]:
        ref = default_reference(self.options.objectives, self.largest, evaluations)  # the one rule; a metric not yet seen sits at 0
        return {o.name: ref[o.name] if ref[o.name] is not None else o.sign * 1e-9 for o in self.options.objectives}

    def record(self) -> Evaluation:
        """Evaluate the architecture the parameters now choose, and keep it (in the store too)."""
        config = self.budget.decode(self.arch) if self.budget is not None else self.arch.argmax()
        ev = self.score([config])[0]
        self.evaluations = _latest(self.evaluations, ev, self.net.space)
        if self.store is not None:
            facts = {"objectives": [str(o) for o in self.options.objectives], "reference": self.reference(self.evaluations)}
            self.store.append([ev], [self.net.space.key(ev.config)], facts)
        return ev

    def run(self, resume: bool, progress: bool, callback: Callable[[dict[str, Any]], bool | None] | None) -> SearchResult:
        net, rundir = self.net, self.rundir
        if rundir is not None:
            self.store = EvaluationStore(rundir.store)
        try:
            history = fit(self.step, self.data, self.recipe, identity=self.identity, run=rundir, resume=resume,
                          other_kinds="restart", progress=progress, callback=callback, desc="tangle")
            if history:
                self.evaluations = _refresh(self.evaluations, self.score, self.store, net.space, int(history[-1]["epoch"]),
                                            lambda evs: {"reference": self.reference(evs)})
        finally:
            if self.store is not None:
                self.store.close()
        net.train()
        evaluations = self.evaluations
        result = SearchResult(
            evaluations=evaluations,
            objectives=self.options.objectives,
            space=net.space,
            reference=self.reference(evaluations),
            run=rundir.path if rundir is not None else None,
        )
        # one row per recording epoch in the store, so its batches are these (see `nas.runs.load_run`)
        result.hypervolume_history = hypervolume_history(evaluations, self.options.objectives, result.reference, list(range(1, len(evaluations) + 1)))
        result.arch = self.arch  # the learned architecture parameters
        result.history = history
        if rundir is not None and evaluations:
            write_front(result)
        return result


class _Recording(BiLevelStep):
    """The search's step: after each epoch, the architecture the parameters choose is evaluated and recorded."""

    def __init__(self, search: _Search, *args: Any):
        super().__init__(*args)
        self.search = search

    def end_epoch(self, epoch: int, loss: float) -> dict[str, Any]:
        entry = super().end_epoch(epoch, loss)
        ev = self.search.record()
        entry.update({"config": ev.config, **{f"arch_{k}": v for k, v in ev.metrics.items()}})
        if self.budget is not None:
            entry["lambda"] = self.budget.lam
        return entry

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        if self.search.store is not None:
            self.search.evaluations = self.search.store.load()

    def postfix(self, record: Mapping[str, Any]) -> dict[str, str]:
        keys = ("accuracy", self.search.options.cost_metric)
        return {k: f"{record[f'arch_{k}']:.4g}" for k in keys if k and f"arch_{k}" in record}


def _latest(evaluations: list[Evaluation], ev: Evaluation, space: Any) -> list[Evaluation]:
    """`evaluations` with `ev` at the end, replacing an earlier evaluation of its config (as the store does)."""
    key = space.key(ev.config)
    return [e for e in evaluations if space.key(e.config) != key] + [ev]


def _refresh(
    evaluations: list[Evaluation],
    score: Callable[[list[Config]], list[Evaluation]],
    store: Any,
    space: Any,
    epoch: int,
    facts: Callable[[list[Evaluation]], dict[str, Any]],
) -> list[Evaluation]:
    """Every recorded architecture but the last (just evaluated) evaluated again with the weights of `epoch`.

    The store is rewritten in place in one transaction that notes ``refreshed_epoch``: a
    resumed search that finds it done evaluates nothing again, and `nas.runs.load_run`
    knows the stored evaluations are those of the checkpoint's weights.
    """
    if store is not None and store.meta("refreshed_epoch") == epoch:
        return evaluations
    fresh = (score([e.config for e in evaluations[:-1]]) if len(evaluations) > 1 else []) + evaluations[-1:]
    if store is not None:
        store.update(fresh[:-1], [space.key(e.config) for e in fresh[:-1]], {**facts(fresh), "refreshed_epoch": epoch})
    return fresh


def _temperatures(temperature: float | tuple[float, float], epochs: int) -> list[float]:
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        if not temperature > 0:
            raise ValueError(f"The 'temperature' parameter must be > 0, got {temperature!r}.")
        return [float(temperature)] * max(epochs, 1)
    if not (isinstance(temperature, (tuple, list)) and len(temperature) == 2 and all(t > 0 for t in temperature)):
        raise ValueError(f"The 'temperature' parameter must be a number > 0 or a (start, end) pair of them, got {temperature!r}.")
    start, end = float(temperature[0]), float(temperature[1])
    n = max(epochs - 1, 1)
    return [start * (end / start) ** (e / n) for e in range(max(epochs, 1))]


def _latency_table(net: nn.Module, latency: Any) -> Any:
    if latency is None or latency is False:
        return None
    if latency == "table":
        return LatencyTable.for_net(net)
    if hasattr(latency, "predict") and hasattr(latency, "entries"):
        return latency
    raise ValueError(f"The 'latency' parameter must be None, 'table' or a LatencyTable, got {latency!r}.")


def _arch_optimizer(spec: Any, params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if callable(spec):
        return spec(params, lr)
    if spec == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999), weight_decay=weight_decay)
    if spec == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"The 'arch_optimizer' parameter must be 'adam', 'sgd' or a callable (params, lr) -> Optimizer, got {spec!r}.")


def _optimizer_name(spec: Any) -> Any:
    return spec if spec is None or isinstance(spec, str) else getattr(spec, "__qualname__", type(spec).__name__)
