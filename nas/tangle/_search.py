"""`search_tangle`: bi-level gradient search over an entangled supernet (TangleNAS)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.data import resolve
from nas.evaluate import default_loss, evaluate
from nas.evaluation import Evaluation
from nas.pareto import Constraint, Objective, parse_objectives
from nas.result import SearchResult, hypervolume_history
from nas.space import Config
from nas.tangle._arch import ArchParameters, one_hot
from nas.tangle._bilevel import BiLevel, CostObjective
from nas.tangle._budget import COST_METRICS, Budget
from nas.tangle._mode import Tangle
from nas.tangle._sampling import Sampler, get_sampler
from nas.training import CHECKPOINT

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
    objectives = parse_objectives(objectives)
    unknown = [o.name for o in objectives if o.name not in METRICS]
    if unknown:
        raise ValueError(f"unknown objective metric {unknown[0]!r}; the metrics are: {', '.join(METRICS)}")
    _check(epochs=epochs, cost_weight=cost_weight, warmup_epochs=warmup_epochs, arch_lr=arch_lr, seed=seed)
    if resume and run is None:
        raise ValueError("resume=True needs the run directory: pass run=...")
    from nas.training import (
        check_recipe,
        make_optimizer,
        make_schedule,
        steps_per_epoch,
    )

    check_recipe(epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, grad_clip=grad_clip, seed=seed)
    sampler = get_sampler(sampling)
    temps = _temperatures(sampler.temperature if temperature is None else temperature, epochs)
    data = resolve(net, data)
    loss_fn = default_loss(data, loss)
    device = next(net.parameters()).device
    cost_metric = next((o.name for o in objectives if o.name in COST_METRICS), None)
    if cost_weight and cost_metric is None:
        raise ValueError("cost_weight > 0 needs a cost objective (params, macs or latency_ms) in 'objectives'.")
    budget_metric = Constraint.parse(budget_constraint).metric if budget_constraint is not None else None
    if latency is None and "latency_ms" in (budget_metric, *(o.name for o in objectives)):
        latency = "table"
    table = _latency_table(net, latency)
    tangle = Tangle(net, combine, table)

    def exact(metric: str) -> Callable[[Config], float]:
        return lambda config: float(tangle.expected_cost(one_hot(net.space, config, device))[metric])

    budget = Budget(budget_constraint, exact(budget_metric), net.space) if budget_constraint is not None else None
    largest = {k: float(v) for k, v in tangle.expected_cost(one_hot(net.space, net.largest(), device)).items()}
    scale = largest[cost_metric] if cost_metric else 1.0

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    arch = ArchParameters(net.space, generator=torch.Generator().manual_seed(seed)).to(device)
    opt_w = make_optimizer(optimizer, [p for p in net.parameters() if p.requires_grad], lr, weight_decay)
    sched = make_schedule(schedule, opt_w, max(1, epochs * steps_per_epoch(data, batch_size)))
    opt_a = _arch_optimizer(arch_optimizer, list(arch.parameters()), arch_lr, arch_weight_decay)
    cost = CostObjective(tangle, sampler, cost_metric, cost_weight, scale, budget)
    steps = BiLevel(tangle, arch, sampler, loss_fn, opt_w, opt_a, cost, ordered_dropout, second_order, grad_clip, rng)
    recipe = {
        "kind": "tangle", "family": getattr(net, "family", None), "objectives": [str(o) for o in objectives],
        "cost_weight": cost_weight, "budget_constraint": budget_constraint, "sampling": repr(sampler),
        "combine": combine, "temperature": temps[0] if len(set(temps)) == 1 else [temps[0], temps[-1]],
        "second_order": second_order, "ordered_dropout": ordered_dropout, "warmup_epochs": warmup_epochs, "lr": lr,
        "batch_size": batch_size, "arch_lr": arch_lr, "seed": seed,
    }

    store = None
    evaluations: list[Evaluation] = []
    history: list[dict[str, Any]] = []
    start = 0
    path = Path(run) / CHECKPOINT if run is not None else None
    if run is not None:
        from nas.store import FILENAME, EvaluationStore

        store = EvaluationStore(Path(run) / FILENAME)
        state = torch.load(path, map_location=device, weights_only=True) if resume and path.exists() else None
        if state is not None and state.get("recipe", {}).get("kind") == "tangle":
            if state["recipe"] != recipe:
                store.close()
                raise ValueError(f"cannot resume from {path}: its recipe {state['recipe']} differs from {recipe}")
            net.load_state_dict(state["model"])
            arch.load_state_dict(state["arch"])
            opt_w.load_state_dict(state["weight_optimizer"])
            opt_a.load_state_dict(state["arch_optimizer"])
            if sched is not None and state["scheduler"] is not None:
                sched.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"]["torch"])
            rng.bit_generator.state = _unjson(state["rng"]["numpy"])
            if budget is not None:
                budget.lam = float(state["lambda"])
            history, start = list(state["history"]), int(state["epoch"])
            evaluations = store.load()

    wanted = [m for m in ("accuracy", "loss", "params", "macs") if m != "accuracy" or data.classification]
    timed = table if any(o.name == "latency_ms" for o in objectives) else False

    def score(configs: list[Config]) -> list[Evaluation]:
        return evaluate(net, configs, data, metrics=wanted, latency=timed, loss=loss_fn, **dict(evaluate_kwargs or {}))

    def record() -> Evaluation:
        return score([budget.decode(arch) if budget is not None else arch.argmax()])[0]

    from tqdm.auto import tqdm

    bar = tqdm(total=epochs, initial=start, desc="tangle", disable=not progress, leave=False)
    try:
        for epoch in range(start, epochs):
            began = time.perf_counter()
            sampler.temperature = temps[epoch]
            net.train()
            val = data.val_batches(batch_size, device)
            order = rng.permutation(len(val))
            train_sum = val_sum = 0.0
            n_steps = arch_steps = 0
            info: dict[str, float] = {}
            for x, y in data.train_batches(batch_size, seed * 1_000_003 + epoch, device):
                if epoch >= warmup_epochs:
                    xv, yv = val[order[arch_steps % len(order)]]
                    v, info = steps.arch_step(x, y, xv, yv)
                    val_sum += v
                    arch_steps += 1
                train_sum += steps.weight_step(x, y)
                if sched is not None:
                    sched.step()
                n_steps += 1
            ev = record()
            evaluations = _latest(evaluations, ev, net.space)
            entry: dict[str, Any] = {
                "epoch": epoch + 1, "train_loss": train_sum / max(n_steps, 1), "val_loss": val_sum / max(arch_steps, 1) if arch_steps else math.nan,
                "temperature": sampler.temperature, **info, "config": ev.config, **{f"arch_{k}": v for k, v in ev.metrics.items()},
            }
            if budget is not None:
                entry["lambda"] = budget.lam
            entry["seconds"] = time.perf_counter() - began
            history.append(entry)
            if store is not None:
                facts = {"objectives": [str(o) for o in objectives], "reference": _reference(objectives, evaluations, largest)}
                store.append([ev], [net.space.key(ev.config)], facts)
                _save(path, net, arch, opt_w, opt_a, sched, rng, budget, epoch + 1, history, recipe)
            bar.update(1)
            bar.set_postfix({k: f"{ev.metrics[k]:.4g}" for k in ("accuracy", cost_metric) if k and k in ev.metrics}, refresh=False)
            if callback is not None and callback(entry):
                break
        if history:
            evaluations = _refresh(evaluations, score, store, net.space, int(history[-1]["epoch"]),
                                   lambda evs: {"reference": _reference(objectives, evs, largest)})
    finally:
        bar.close()
        if store is not None:
            store.close()
    net.train()
    result = SearchResult(
        evaluations=evaluations,
        objectives=objectives,
        space=net.space,
        reference=_reference(objectives, evaluations, largest),
        run=Path(run) if run is not None else None,
    )
    # one row per recording epoch in the store, so its batches are these (see `nas.runs.load_run`)
    result.hypervolume_history = hypervolume_history(evaluations, objectives, result.reference, list(range(1, len(evaluations) + 1)))
    result.arch = arch  # the learned architecture parameters
    result.history = history
    if run is not None and evaluations:
        from nas.result import write_front

        write_front(result)
    return result


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
        from nas.latency import LatencyTable

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


def _reference(objectives: list[Objective], evaluations: list[Evaluation], largest: dict[str, float]) -> dict[str, float]:
    """Accuracy 0, costs 1.1x the largest subnet's, other metrics 1.5x the worst seen."""
    out = {}
    for o in objectives:
        if o.name == "accuracy":
            out[o.name] = 0.0
        elif o.name in largest:
            out[o.name] = 1.1 * largest[o.name]
        else:
            seen = [e.metrics[o.name] for e in evaluations if e.ok and o.name in e.metrics]
            worst = (max(seen) if o.direction == "min" else min(seen)) if seen else 0.0
            out[o.name] = worst + o.sign * (0.5 * abs(worst) + 1e-9)
    return out


def _check(**values: Any) -> None:
    for name in ("epochs", "warmup_epochs", "seed"):
        v = values[name]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"The '{name}' parameter of search_tangle must be an int >= 0, got {v!r}.")
    for name in ("cost_weight", "arch_lr"):
        v = values[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (name == "arch_lr" and v == 0):
            raise ValueError(f"The '{name}' parameter of search_tangle must be a number {'> 0' if name == 'arch_lr' else '>= 0'}, got {v!r}.")


def _json(state: Any) -> Any:
    if isinstance(state, dict):
        return {k: _json(v) for k, v in state.items()}
    return str(state) if isinstance(state, int) and not isinstance(state, bool) else state


def _unjson(state: Any) -> Any:
    if isinstance(state, dict):
        return {k: _unjson(v) for k, v in state.items()}
    return int(state) if isinstance(state, str) and state.lstrip("-").isdigit() else state


def _save(path: Path, net, arch, opt_w, opt_a, sched, rng, budget, epoch: int, history: list, recipe: dict) -> None:
    state = {
        "model": net.state_dict(),
        "arch": arch.state_dict(),
        "arch_names": arch.names,
        "weight_optimizer": opt_w.state_dict(),
        "arch_optimizer": opt_a.state_dict(),
        "scheduler": sched.state_dict() if sched is not None else None,
        "lambda": budget.lam if budget is not None else 0.0,
        "rng": {"torch": torch.get_rng_state(), "numpy": _json(rng.bit_generator.state)},
        "epoch": epoch,
        "history": history,
        "recipe": recipe,
    }
    from nas.training import save_checkpoint

    save_checkpoint(path, state)
