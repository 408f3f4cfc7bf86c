"""Optuna samplers (TPE, NSGA-II/III, GP, QMC, random) driven by ask and tell."""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Mapping
from typing import Any

from nas.searchers._base import Constraints, CostFn, Searcher, Told, register
from nas.searchers._operators import mutate
from nas.space import Config, SearchSpace

_SAMPLERS = {
    "tpe": "TPESampler",
    "nsga2": "NSGAIISampler",
    "nsga3": "NSGAIIISampler",
    "gp": "GPSampler",
    "qmc": "QMCSampler",
    "random": "RandomSampler",
}


@register("optuna")
class OptunaSearcher(Searcher):
    """An in-memory Optuna study over the space, one trial per proposed config.

    Each active dimension is suggested with ``trial.suggest_categorical`` in the space's
    order (define-by-run), so inactive dimensions are never suggested. The study's
    directions come from the objectives. When the sampler proposes a config that is
    already told or pending, that trial is finished at once (with the known values, as
    failed, or as pruned while pending) and the sampler asked again, up to `max_retries`
    times; then an unseen neighbour of its last proposal (a `mutate` of it), or else a
    random unseen config, is enqueued as the trial instead. A resumed run is replayed
    (`resume`), so a seeded search continues exactly; told evaluations that this searcher
    did not ask enter the study with ``study.add_trials``; failed evaluations become
    ``FAIL`` trials. Optuna's info logging is silenced.

    With `constraints`, every trial carries its constraint values (``trial.set_constraint``,
    Optuna's native constrained optimisation: TPE, NSGA-II/III and GP treat trials that
    break one as worse than any feasible trial). A proposal that breaks a constraint is
    never returned: its trial is closed at once, with the cost objectives it has and the
    worst told value of the others (pruned before any evaluation is told), and the sampler
    asked again.

    Example:
        >>> from nas import Choice, Evaluation, SearchSpace
        >>> from nas.searchers import OptunaSearcher
        >>> space = SearchSpace([Choice("width", [8, 16, 32, 64]), Choice("op", ["conv", "sep"])])
        >>> searcher = OptunaSearcher(space, ["accuracy:max", "params:min"], sampler="tpe", seed=0)
        >>> configs = searcher.ask(3)
        >>> searcher.tell([Evaluation(c, {"accuracy": c["width"] / 64, "params": c["width"]}) for c in configs])
        >>> len(searcher.evaluations), [d.name for d in searcher.study.directions]
        (3, ['MAXIMIZE', 'MINIMIZE'])

    Args:
        space: the search space.
        objectives: objectives or their specs (``"accuracy:max"``, ``"params:min"``).
        sampler: ``"tpe"``, ``"nsga2"``, ``"nsga3"``, ``"gp"``, ``"qmc"``, ``"random"``, or an
            ``optuna.samplers.BaseSampler`` instance (then `seed` and `sampler_kwargs` do
            not apply to it).
        sampler_kwargs: extra constructor arguments of the named sampler
            (e.g. ``{"population_size": 20}`` for ``"nsga2"``). ``"tpe"`` defaults to
            ``multivariate=True, group=True`` (joint model per group of dimensions that
            are active together, Optuna's setting for conditional spaces).
        max_retries: how many already-seen proposals to skip per config before taking a
            neighbour of the last one.
        seed: seed of the sampler and of the random fallback.
        cost: optional analytic metrics ``config -> dict`` for objectives that evaluations lack.
        constraints: hard bounds on `cost` metrics (``["params<=50000"]``), see `Searcher`.
    """

    def __init__(
        self,
        space: SearchSpace,
        objectives,
        *,
        sampler: Any = "tpe",
        sampler_kwargs: Mapping[str, Any] | None = None,
        max_retries: int = 3,
        seed: int | None = None,
        cost: CostFn | None = None,
        constraints: Constraints = None,
    ) -> None:
        super().__init__(space, objectives, seed=seed, cost=cost, constraints=constraints)
        import optuna

        if optuna.logging.get_verbosity() < optuna.logging.WARNING:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"The 'max_retries' parameter must be an int >= 0, got {max_retries!r}.")
        self.max_retries = max_retries
        self.sampler = sampler
        self.sampler_kwargs = dict(sampler_kwargs or {})
        self._optuna = optuna
        self._distributions = {
            d.name: optuna.distributions.CategoricalDistribution(d.values) for d in space.dimensions
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study = optuna.create_study(
                directions=["maximize" if o.direction == "max" else "minimize" for o in self.objectives],
                sampler=self._make_sampler(sampler, self.sampler_kwargs, seed),
            )
        self._open: dict[str, Any] = {}  # key -> optuna Trial asked and not yet told
        self._known: dict[str, list[float] | None] = {}  # key -> told values (None: failed)

    @staticmethod
    def _make_sampler(sampler: Any, kwargs: dict[str, Any], seed: int | None) -> Any:
        import optuna

        if isinstance(sampler, optuna.samplers.BaseSampler):
            if kwargs:
                raise ValueError("The 'sampler_kwargs' parameter applies only to a sampler given by name.")
            return sampler
        if not isinstance(sampler, str) or sampler not in _SAMPLERS:
            raise ValueError(
                f"The 'sampler' parameter must be one of {list(_SAMPLERS)} or an optuna sampler "
                f"instance, got {sampler!r}."
            )
        cls = getattr(optuna.samplers, _SAMPLERS[sampler])
        accepted = inspect.signature(cls.__init__).parameters
        unknown = [k for k in kwargs if k not in accepted]
        if unknown:
            raise TypeError(
                f"optuna's {cls.__name__} has no parameter {unknown[0]!r}; its parameters are: "
                f"{', '.join(p for p in accepted if p != 'self')}"
            )
        defaults: dict[str, Any] = {"seed": seed}
        if sampler == "tpe":  # Optuna's advice for conditional (define-by-run) spaces: model dimensions jointly, per group
            defaults.update(multivariate=True, group=True)
        if sampler in ("gp", "qmc"):  # conditional dimensions are sampled independently: no warnings
            defaults["warn_independent_sampling"] = False
        if sampler == "qmc":
            _quiet_qmc_conditions()
        return cls(**{**defaults, **kwargs})

    # -- ask -----------------------------------------------------------------------------
    def _suggest(self, trial: Any) -> Config:
        out: Config = {}
        for dim in self.space.dimensions:
            if dim.when is None or (dim.when[0] in out and out[dim.when[0]] in dim.when[1]):
                out[dim.name] = trial.suggest_categorical(dim.name, dim.values)
        return out

    def _ask(self, n: int) -> list[Config]:
        out: list[Config] = []
        keys: set[str] = set()
        for _ in range(n):
            for _attempt in range(self.max_retries + 1):
                trial = self.study.ask()
                config = self._suggest(trial)
                key = self.space.key(config)
                self._constrain(trial, config, key)
                if not self.feasible(config, key):
                    self._finish_infeasible(trial, config, key)
                    continue
                if key not in keys and not self.taken(key):
                    keys.add(key)
                    self._open[key] = trial
                    out.append(config)
                    break
                self._finish_duplicate(trial, key)
            else:
                # the sampler insists on seen configs: take an unseen neighbour of its last
                # proposal (enqueued as a trial in `_on_asked`); failing that, the base
                # class fills in a random unseen config
                neighbour = self._unseen_neighbour(config, keys)
                if neighbour is not None:
                    keys.add(self.space.key(neighbour))
                    out.append(neighbour)
        return out

    def _unseen_neighbour(self, config: Config, exclude: set[str]) -> Config | None:
        for attempt in range(20):
            rate = min(1.0, (1 + attempt) / max(1, len(config)))
            neighbour = mutate(self.space, config, self.rng, rate)
            key = self.space.key(neighbour)
            if key not in exclude and not self.taken(key) and self.feasible(neighbour, key):
                return neighbour
        return None

    def _constrain(self, trial: Any, config: Config, key: str) -> None:
        """Give the trial its constraint values (<= 0: met), which Optuna's samplers read."""
        for constraint, value in zip(self.constraints, self.violations(config, key)):
            trial.set_constraint(str(constraint), value)

    def _finish_infeasible(self, trial: Any, config: Config, key: str) -> None:
        """Close a trial whose config breaks a constraint, so the sampler learns where not to go."""
        ok = [v for v in self._known.values() if v is not None]
        if not ok:
            self.study.tell(trial, state=self._optuna.trial.TrialState.PRUNED)
            return
        costs = self.cost_of(config, key)
        worst = [(min if o.direction == "max" else max)(v[j] for v in ok) for j, o in enumerate(self.objectives)]
        self.study.tell(trial, [costs.get(o.name, w) for o, w in zip(self.objectives, worst)])

    def _finish_duplicate(self, trial: Any, key: str) -> None:
        """Close a trial whose config is already known, so the sampler learns from it."""
        state = self._optuna.trial.TrialState
        if key in self._known:
            values = self._known[key]
            if values is None:
                self.study.tell(trial, state=state.FAIL)
            else:
                self.study.tell(trial, values)
        else:  # pending, or repeated within this batch
            self.study.tell(trial, state=state.PRUNED)

    def _on_asked(self, configs: list[Config], keys: list[str]) -> None:
        # random fill-ins of the base class get a trial with exactly their params
        for config, key in zip(configs, keys):
            if key not in self._open:
                self.study.enqueue_trial(config)
                trial = self.study.ask()
                self._suggest(trial)
                self._constrain(trial, config, key)
                self._open[key] = trial

    # -- resume --------------------------------------------------------------------------
    def resume(self, evaluations, batches) -> None:
        """Replay the stored search: ask each stored batch again and tell its evaluations.

        The sampler keeps state the evaluations alone do not rebuild (its random stream, the
        trials it closed as repeats, NSGA-II's generations), so a seeded searcher is asked
        again batch by batch; while it proposes exactly the stored configs, its study ends
        as the uninterrupted one was. From the first batch it proposes otherwise (another
        seed or sampler than the stored run's), those trials are closed as pruned and the
        rest is told as it is.
        """
        start = 0
        for end in batches:
            batch = list(evaluations[start:end])
            asked = self.ask(len(batch))
            keys = [self.space.key(self.space.validate(e.config)) for e in batch]
            if [self.space.key(c) for c in asked] != keys:
                self._release(asked)
                break
            self.tell(batch)
            start = end
        self.tell(evaluations[start:])

    def _release(self, configs: list[Config]) -> None:
        """Close the trials of asked configs that will never be told (pruned) and free them."""
        state = self._optuna.trial.TrialState
        for config in configs:
            key = self.space.key(config)
            trial = self._open.pop(key, None)
            if trial is not None:
                self.study.tell(trial, state=state.PRUNED)
            self._pending.discard(key)

    # -- tell ----------------------------------------------------------------------------
    def _tell(self, told: list[Told]) -> None:
        state = self._optuna.trial.TrialState
        added = []
        for ev, config, key in told:
            values = None
            if ev.ok:
                metrics = self.metrics(ev)
                values = [float(metrics[o.name]) for o in self.objectives]
            self._known[key] = values
            trial = self._open.pop(key, None)
            if trial is not None:
                if values is None:
                    self.study.tell(trial, state=state.FAIL)
                else:
                    self.study.tell(trial, values)
            else:
                added.append(
                    self._optuna.trial.create_trial(
                        params=config,
                        distributions={name: self._distributions[name] for name in config},
                        values=values,
                        state=state.FAIL if values is None else state.COMPLETE,
                        constraints=dict(zip(map(str, self.constraints), self.violations(config, key))) or None,
                    )
                )
        if added:
            self.study.add_trials(added)


def _drop_qmc_condition_warning(record: logging.LogRecord) -> bool:
    return "assumes that the search space does not include any conditions" not in record.getMessage()


def _quiet_qmc_conditions() -> None:
    """Drop QMCSampler's warning about conditional spaces (we suggest conditional dimensions on purpose)."""
    logger = logging.getLogger("optuna.samplers._qmc")
    if _drop_qmc_condition_warning not in logger.filters:
        logger.addFilter(_drop_qmc_condition_warning)
