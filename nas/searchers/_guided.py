"""Predictor-guided multi-objective search (Neural Predictor, LINAS / DyNAS-T)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import ndtr

from nas.registry import PREDICTOR_SELECTION, PREDICTORS
from nas.searchers._base import Constraints, CostFn, Searcher, Told, register
from nas.searchers._operators import best_spread, crossover, first_front, mutate, rank_and_crowding, select, tournament
from nas.space import Config, SearchSpace


@register("guided")
class GuidedSearcher(Searcher):
    """Predictor-guided search: fit predictors, search their predicted front, evaluate a spread of it.

    The first `n_init` evaluations are random. Then, at every `ask`, one predictor per
    objective that `cost` does not compute is (re)fitted on the ok evaluations told so far;
    `cost` objectives are computed, never predicted. Candidates are all unseen configs when
    the space has at most `enumerate_limit` of them, otherwise the unseen configs that an
    NSGA-II run of `generations` x `population_size` on the predicted objectives visits
    (started from the evaluated front). That run is scheduled: it runs again when the ok
    evaluations have grown by `evolve_growth` since the last run (at fixed counts
    ``n_init, n_init * (1 + growth), ...``, with its own seed per count, so a resumed search
    rebuilds the same candidates); in between, every ask re-scores the remaining candidates
    with the predictors refitted on all evaluations. The candidates' feature rows and `cost`
    columns are computed once per run (and each ok config's rows once for every refit), so
    an ask costs a refit and one prediction over the candidates: on ``bench/overhead.py``
    (ridge, 2,000 evaluations of a 160k-config space) about half the engine time per
    evaluation it cost when each ask featurised them all again, with the same proposals.

    The acquisition picks the batch among the candidates. ``"ehvi"`` (the ``"auto"`` choice
    when there are two objectives and `cost` computes one of them, e.g. accuracy vs params):
    candidates one by one by expected hypervolume improvement over the evaluated front
    (closed form, the predicted objective normal with the predictor's mean and standard
    deviation), each pick joining the front at its predicted mean (Kriging believer), and
    every `anchor_every`-th proposal the cheapest config not taken yet, so the low-cost end
    of the front is walked as well. ``"spread"`` (``"auto"`` otherwise): the best predicted
    fronts, thinned to a spread along the front (each objective's best, then farthest
    points); with a predictor that has ``predict_std``, `explore` > 0 scores candidates
    optimistically (mean + explore * std in the good direction). On ``bench/search.py``
    (accuracy vs params, true front known, median of 5 seeds, HV share at 50/100/200)
    ehvi gives 0.968 / 0.992 / 0.999 on MNIST-1D mlp against spread's 0.946 / 0.978 /
    0.999, and 0.982 / 0.994 / 1.000 on digits mlp against 0.980 / 0.992 / 0.997.

    Example:
        >>> from nas import Choice, Evaluation, SearchSpace
        >>> from nas.searchers import GuidedSearcher
        >>> space = SearchSpace([Choice("width", [8, 16, 32, 64]), Choice("op", ["conv", "sep", "mb"])])
        >>> params = lambda c: {"params": c["width"] * (1 + (c["op"] == "mb"))}
        >>> searcher = GuidedSearcher(space, ["accuracy:max", "params:min"], n_init=4, cost=params, seed=0)
        >>> for _ in range(2):
        ...     configs = searcher.ask(4)
        ...     searcher.tell([Evaluation(c, {"accuracy": c["width"] / 64, **params(c)}) for c in configs])
        >>> len(searcher.evaluations)
        8

    Args:
        space: the search space.
        objectives: objectives or their specs (``"accuracy:max"``, ``"params:min"``).
        predictor: a `predictors` name (``"gp"``, ``"forest"``, ...), ``"auto"`` (the
            best cross-validated one, chosen again at every fit), or a `predictors.Predictor`
            (cloned for each objective and fit).
        predictor_kwargs: constructor arguments of a predictor given by name; for
            ``"auto"``, the keyword arguments of ``predictors.auto`` (e.g. ``candidates``).
            Default: ``{"ard": False}`` for ``"gp"`` (one length scale; per-feature ones
            overfit a few dozen evaluations: HV@100 0.990 -> 0.992 on MNIST-1D mlp,
            HV@50 0.965 -> 0.968), none otherwise.
        n_init: random evaluations before the first fit; default ``max(10, budget // 10)``.
        budget: the expected number of evaluations (only sets the default `n_init`).
        explore: weight of the predictive standard deviation in the ``"spread"`` score (0:
            the mean only; ``"ehvi"`` weighs the uncertainty itself).
        acquisition: ``"auto"``, ``"ehvi"`` (needs two objectives, one computed by `cost`)
            or ``"spread"``, see above.
        anchor_every: with ``"ehvi"``, every this many proposals (counted over the whole
            search) is the cheapest config not taken yet (0: never).
        enumerate_limit: spaces with at most this many configs are scored exhaustively.
        population_size: population of the NSGA-II run on predictions (large spaces).
        generations: generations of that run.
        evolve_growth: the fraction by which the ok evaluations grow between two NSGA-II
            candidate runs (0: a run at every new ok evaluation).
        seed: seed of every random choice (and of predictors built by name).
        cost: optional analytic metrics ``config -> dict``; objectives it gives are
            computed for every candidate instead of predicted.
        constraints: hard bounds on `cost` metrics (``["params<=50000"]``): candidates that
            break one are never scored or proposed, see `Searcher`.
    """

    def __init__(
        self,
        space: SearchSpace,
        objectives,
        *,
        predictor: Any = "gp",
        predictor_kwargs: Mapping[str, Any] | None = None,
        n_init: int | None = None,
        budget: int | None = None,
        explore: float = 0.5,
        acquisition: str = "auto",
        anchor_every: int = 8,
        enumerate_limit: int = 20_000,
        population_size: int = 100,
        generations: int = 20,
        evolve_growth: float = 0.5,
        seed: int | None = None,
        cost: CostFn | None = None,
        constraints: Constraints = None,
    ) -> None:
        super().__init__(space, objectives, seed=seed, cost=cost, constraints=constraints)
        for name, value, low in (("budget", budget, 1), ("n_init", n_init, 2)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ValueError(f"The '{name}' parameter must be None or an int >= {low}, got {value!r}.")
        for name, value, low in (
            ("enumerate_limit", enumerate_limit, 0),
            ("population_size", population_size, 2),
            ("generations", generations, 1),
            ("anchor_every", anchor_every, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"The '{name}' parameter must be an int >= {low}, got {value!r}.")
        if isinstance(evolve_growth, bool) or not (isinstance(evolve_growth, (int, float)) and evolve_growth >= 0):
            raise ValueError(f"The 'evolve_growth' parameter must be a number >= 0, got {evolve_growth!r}.")
        if not (isinstance(explore, (int, float)) and explore >= 0):
            raise ValueError(f"The 'explore' parameter must be a number >= 0, got {explore!r}.")
        if acquisition not in _ACQUISITIONS:
            raise ValueError(f"The 'acquisition' parameter must be one of {list(_ACQUISITIONS)}, got {acquisition!r}.")
        if predictor_kwargs is None and isinstance(predictor, str) and predictor == "gp":
            predictor_kwargs = {"ard": False}  # one length scale: ARD's per-feature ones overfit a few dozen evaluations
        self.predictor_kwargs = dict(predictor_kwargs or {})
        if _is_predictor(predictor):
            if predictor.space is not space:
                raise ValueError("The 'predictor' parameter was built on another search space than 'space'.")
            if self.predictor_kwargs:
                raise ValueError("The 'predictor_kwargs' parameter applies only to a predictor given by name.")
        elif predictor == "auto":
            pass
        elif isinstance(predictor, str):
            PREDICTORS.build(predictor, space, **self.predictor_kwargs)  # fail early on a bad name or kwargs
        else:
            raise ValueError(
                f"The 'predictor' parameter must be 'auto', one of {PREDICTORS.names()} or a "
                f"predictors.Predictor, got {predictor!r}."
            )
        self.predictor = predictor
        self.budget = budget
        self.n_init = n_init if n_init is not None else max(10, (budget or 0) // 10)
        self.explore = float(explore)
        self.acquisition = acquisition
        self.anchor_every = anchor_every
        if acquisition == "ehvi" and self._acquisition() != "ehvi":
            raise ValueError(
                "The 'acquisition' parameter 'ehvi' needs two objectives of which 'cost' computes exactly one; got "
                f"objectives {[str(o) for o in self.objectives]} and cost metrics {sorted(self.cost_names())}."
            )
        self.enumerate_limit = enumerate_limit
        self.population_size = population_size
        self.generations = generations
        self.evolve_growth = float(evolve_growth)
        self._pool: tuple[int, _Candidates] | None = None  # (ok count it was evolved at, its candidates)
        self.models_: dict[str, Any] = {}
        self._ok_configs: list[Config] = []
        self._ok_values: list[np.ndarray] = []
        self._ok_features = np.zeros((0, 0))  # feature rows of the leading ok configs, each featurised once
        self._fitted_on = -1
        self._cost_cache: dict[str, dict[str, float]] = {}
        self._all: _Candidates | None = None
        self._keys: dict[tuple, str] = {}  # space.key of configs met, by their items and the values' types

    # -- learning ------------------------------------------------------------------------
    def _tell(self, told: list[Told]) -> None:
        ok = [t for t in told if t.evaluation.ok]
        if ok:
            self._ok_configs.extend(t.config for t in ok)
            self._ok_values.extend(self.objective_values([t.evaluation for t in ok]))

    def _fit(self) -> None:
        """Refit the predictors when new ok evaluations arrived since the last fit."""
        if self._fitted_on == len(self._ok_configs):
            return
        self.models_ = self._fitted(len(self._ok_configs))
        self._fitted_on = len(self._ok_configs)

    def _fitted(self, n: int) -> dict[str, Any]:
        """One predictor per predicted objective, fitted on the first `n` ok evaluations."""
        configs = self._ok_configs[:n]
        values = np.asarray(self._ok_values[:n]) * self._signs  # back to the metrics' own units
        costed = self.cost_names()
        models: dict[str, Any] = {}
        for j, objective in enumerate(self.objectives):
            if objective.name in costed:
                continue
            y = values[:, j]
            if self.predictor == "auto":
                kwargs = {"seed": self.seed or 0, **self.predictor_kwargs}
                model = PREDICTOR_SELECTION.lookup("auto")(self.space, configs, y, **kwargs)
            else:
                if isinstance(self.predictor, str):
                    kwargs = {"seed": self.seed, **self.predictor_kwargs}
                    model = PREDICTORS.build(self.predictor, self.space, **kwargs)
                else:
                    model = self.predictor.clone()
                if _takes_features(model):  # the ok configs' rows, featurised once for every refit
                    model = model.fit(configs, y, features=self._ok_rows(n, model))
                else:
                    model = model.fit(configs, y)
            models[objective.name] = model
        return models

    def _ok_rows(self, n: int, model: Any) -> np.ndarray:
        """The feature rows of the first `n` ok configs, `model` featurising only those not done yet.

        New rows make a new array, never written into afterwards: a model may keep the rows it was fitted on."""
        done = len(self._ok_features)
        if n > done:
            rows = model.featurise(self._ok_configs[done:n])
            self._ok_features = np.concatenate([self._ok_features, rows]) if done else rows
        return self._ok_features[:n]

    def score(
        self,
        configs: list[Config],
        keys: list[str] | None = None,
        models: Mapping[str, Any] | None = None,
        *,
        features: np.ndarray | None = None,
    ) -> np.ndarray:
        """The n x k minimisation matrix of predicted (and computed `cost`) objectives (`models`: default `models_`).

        `features`: the configs' feature rows when the caller keeps them (see `predictors.Predictor.fit`).
        """
        models = self.models_ if models is None else models
        keys = keys if keys is not None else [self.space.key(c) for c in configs]
        out = np.empty((len(configs), len(self.objectives)))
        if not configs:
            return out
        costed = self.cost_names()
        for j, objective in enumerate(self.objectives):
            if objective.name in costed:
                out[:, j] = self._score_cost(configs, keys, j)
                continue
            model = models[objective.name]
            if self.explore > 0 and getattr(model, "supports_std", False):
                mean, std = _mean_and_std(model, configs, features)
                out[:, j] = objective.sign * mean
                out[:, j] -= self.explore * std
            else:
                out[:, j] = objective.sign * _predicted(model, configs, features)
        return out

    def _cost_of(self, config: Config, key: str) -> dict[str, float]:
        row = self._cost_cache.get(key)
        if row is None:
            row = self._cost_cache[key] = dict(self.cost(config))
        return row

    # -- proposing -----------------------------------------------------------------------
    def _ask(self, n: int) -> list[Config]:
        if len(self._ok_configs) < max(self.n_init, 2):
            return self.random_unseen(n)
        self._fit()
        pool, unseen = self._unseen() if self._size <= self.enumerate_limit else self._evolve_candidates()
        if not len(unseen):
            return []
        configs, keys = pool.take(unseen)
        features = pool.features(unseen) if self._featurised() else None
        if self._acquisition() == "ehvi":
            costs = pool.cost(self._exact_objective(), unseen)
            return [configs[i] for i in self._ehvi_batch(configs, keys, n, features=features, costs=costs)]
        values = self.score(configs, keys, features=features)
        return [configs[i] for i in best_spread(values, n)]

    def _featurised(self) -> bool:
        """Whether the predictors take feature rows (so candidates are featurised once, not at every ask)."""
        return bool(self.models_) and all(_takes_features(m) for m in self.models_.values())

    def _acquisition(self) -> str:
        """The acquisition in use: ``"auto"`` is ``"ehvi"`` for two objectives of which `cost` computes one."""
        if self.acquisition == "spread":
            return "spread"
        return "ehvi" if len(self.objectives) == 2 and len(self.cost_names() & {o.name for o in self.objectives}) == 1 else "spread"

    def _exact_objective(self) -> int:
        """Under ``"ehvi"``: the index of the objective that `cost` computes (the other is predicted)."""
        return 0 if self.objectives[0].name in self.cost_names() else 1

    def _ehvi_batch(
        self,
        configs: list[Config],
        keys: list[str],
        n: int,
        *,
        features: np.ndarray | None = None,
        costs: np.ndarray | None = None,
    ) -> list[int]:
        """Indices of `n` candidates picked one by one by expected hypervolume improvement.

        Two objectives, `cost` computing one (`c`, exact) and a predictor the other (`a`,
        normal with the predictor's mean and standard deviation, or exact without one). The
        improvement of a candidate over the front is the area it adds; its expectation is a
        sum over the front's steps of ``width * E[max(0, level - a)]`` (closed form). After
        each pick the pick joins the front at its predicted mean (Kriging believer), so the
        batch spreads to where the improvement is. The reference point is the worst value of
        each objective among the evaluations and the candidates. `features` and `costs`: the
        candidates' feature rows and `_score_cost` column, when the caller keeps them.
        """
        exact = self._exact_objective()
        predicted = 1 - exact
        objective = self.objectives[predicted]
        model = self.models_[objective.name]
        c = self._score_cost(configs, keys, exact) if costs is None else costs
        if getattr(model, "supports_std", False):
            mean, std = _mean_and_std(model, configs, features)
        else:
            mean, std = _predicted(model, configs, features), np.zeros(len(configs))
        mean = objective.sign * mean
        known = np.asarray(self._ok_values)
        ref_c = max(float(known[:, exact].max()), float(c.max()))
        ref_a = float(known[:, predicted].max())
        front = known[first_front(known)][:, [exact, predicted]]
        chosen: list[int] = []
        available = np.ones(len(configs), dtype=bool)
        start = len(self._told) + len(self._pending)  # proposals made before this batch
        cheapest = iter(np.lexsort((mean, c)))  # by cost, then predicted value
        # the improvement over a front only shrinks as the front grows, so last computed gains bound
        # the current ones: recompute the few best bounds after each pick (lazy greedy, same picks)
        bound = np.zeros(len(configs))
        # a candidate whose optimistic value (mean - 6 std) does not beat the front's level at its cost
        # adds (next to) nothing: only the others are scored
        front_c, front_a = _staircase(front, ref_c, ref_a)
        level = np.r_[ref_a, front_a][np.searchsorted(front_c, c, side="right")]
        alive = np.flatnonzero((mean - 6 * std < level) & (c < ref_c))
        bound[alive] = _expected_improvement(front, c[alive], mean[alive], std[alive], ref_c, ref_a)
        for j in range(min(n, len(configs))):
            if self.anchor_every and (start + j) % self.anchor_every == 0:  # the low-cost end of the front
                pick = next(int(i) for i in cheapest if available[i])
            else:
                while True:  # the 16 best bounds of the available (argpartition: no sort of them all)
                    masked = np.where(available, bound, -np.inf)
                    k = min(16, int(available.sum()))
                    top = np.argpartition(-masked, k - 1)[:k]
                    bound[top] = _expected_improvement(front, c[top], mean[top], std[top], ref_c, ref_a)
                    best = top[np.lexsort((top, -bound[top]))[0]]
                    masked[top] = -np.inf
                    runner_up = masked.max()  # the best stale bound outside the 16
                    if runner_up == -np.inf or bound[best] >= runner_up:
                        break
                pick = int(best)
                if bound[pick] <= 0:  # nothing is expected to improve the front: the spread of the predicted front
                    values = np.empty((len(configs), 2))
                    values[:, exact], values[:, predicted] = c, mean
                    rest = np.flatnonzero(available)
                    chosen.extend(int(rest[i]) for i in best_spread(values[rest], n - len(chosen)))
                    break
            chosen.append(pick)
            available[pick] = False
            front = np.vstack([front, [c[pick], mean[pick]]])
            front = front[first_front(front)]
        return chosen

    def _score_cost(self, configs: list[Config], keys: list[str], j: int) -> np.ndarray:
        """The minimisation values of the `cost` objective `j` of `configs`."""
        objective = self.objectives[j]
        return objective.sign * np.array([self._cost_of(cfg, k)[objective.name] for cfg, k in zip(configs, keys)], dtype=float)

    def _unseen(self) -> tuple[_Candidates, np.ndarray]:
        """Every feasible config of the space (enumerated once), and the indices of those not taken."""
        if self._all is None:
            configs = list(self.space.enumerate())
            keys = [self.space.key(c) for c in configs]
            feasible = [i for i, (c, k) in enumerate(zip(configs, keys)) if self.feasible(c, k)]
            self._all = _Candidates(self, [configs[i] for i in feasible], [keys[i] for i in feasible])
        return self._all, self._all.untaken()

    def _evolve_candidates(self) -> tuple[_Candidates, np.ndarray]:
        """The candidates of the latest scheduled NSGA-II run (run now if it is due), and the indices of those not taken."""
        point = self._schedule_point(len(self._ok_configs))
        if self._pool is None or self._pool[0] != point:
            models = self.models_ if point == self._fitted_on else self._fitted(point)
            configs, keys = self._evolve(point, models)
            self._pool = (point, _Candidates(self, configs, keys))
        pool = self._pool[1]
        return pool, pool.untaken()

    def _schedule_point(self, n_ok: int) -> int:
        """The last ok-evaluation count at or below `n_ok` at which an NSGA-II candidate run is due."""
        point = max(self.n_init, 2)
        while True:
            following = max(point + 1, math.ceil(point * (1 + self.evolve_growth)))
            if following > n_ok:
                return point
            point = following

    def _evolve(self, point: int, models: Mapping[str, Any]) -> tuple[list[Config], list[str]]:
        """Feasible configs visited by NSGA-II on `models`' predictions, from the first `point` ok evaluations.

        Its random stream is seeded by (seed, point) and it sees only those evaluations, so
        the candidates depend on nothing else (a resumed search evolves the same ones).
        """
        space, size = self.space, self.population_size
        rng = np.random.default_rng([self._entropy, point, 1])
        known = self._ok_configs[:point]
        key_of = self._key_of
        told = {key_of(c) for c in known}
        parents = [known[i] for i in select(np.asarray(self._ok_values[:point]), size)]
        parent_keys = [key_of(c) for c in parents]
        pool: dict[str, Config] = {}
        for _attempt in range(20 * size):  # fill the population with random feasible configs
            if len(parents) >= size:
                break
            config = space.canonical(space.sample(rng))
            key = key_of(config)
            if key not in pool and key not in told and self.feasible(config, key):
                pool[key] = config
                parents.append(config)
                parent_keys.append(key)
        parent_values = self.score(parents, parent_keys, models)
        for _ in range(self.generations):
            rank, crowd = rank_and_crowding(parent_values)
            children: list[Config] = []
            child_keys: list[str] = []
            for _child in range(size):
                for _attempt in range(5):
                    a, b = tournament(rank, crowd, 2, rng)
                    child = crossover(space, parents[a], parents[b], rng) if rng.random() < 0.9 else parents[a]
                    child = mutate(space, child, rng)
                    key = key_of(child)
                    if key not in pool and key not in told and self.feasible(child, key):
                        pool[key] = child
                        children.append(child)
                        child_keys.append(key)
                        break
            if not children:
                break
            values = np.vstack([parent_values, self.score(children, child_keys, models)])
            everyone = parents + children
            keep = select(values, size)
            parents, parent_values = [everyone[i] for i in keep], values[keep]
        keys = list(pool)
        return [pool[k] for k in keys], keys

    def _key_of(self, config: Config) -> str:
        """`space.key(config)`, remembered by the config's items (NSGA-II runs meet the same children again)."""
        items = (tuple(config.items()), tuple(map(type, config.values())))
        key = self._keys.get(items)
        if key is None:
            if len(self._keys) >= _REMEMBERED_KEYS:
                self._keys.clear()
            key = self._keys[items] = self.space.key(config)
        return key


_ACQUISITIONS = ("auto", "ehvi", "spread")
_REMEMBERED_KEYS = 200_000  # configs whose keys a searcher keeps


class _Candidates:
    """A searcher's candidate configs, whose feature rows and cost columns are computed once.

    The same candidates recur at every ask until the next NSGA-II run (or for the whole
    search, when the space is enumerated): each ask takes the rows of those not taken yet.
    """

    def __init__(self, searcher: GuidedSearcher, configs: list[Config], keys: list[str]):
        self.searcher, self.configs, self.keys = searcher, configs, keys
        self._features: np.ndarray | None = None
        self._costs: dict[int, np.ndarray] = {}

    def untaken(self) -> np.ndarray:
        """The indices of the candidates neither told nor pending, in order."""
        taken = self.searcher.taken
        return np.array([i for i, k in enumerate(self.keys) if not taken(k)], dtype=np.intp)

    def take(self, index: np.ndarray) -> tuple[list[Config], list[str]]:
        return [self.configs[i] for i in index], [self.keys[i] for i in index]

    def features(self, index: np.ndarray) -> np.ndarray:
        """The feature rows of the candidates at `index` (all of them featurised on first use)."""
        if self._features is None:
            model = next(iter(self.searcher.models_.values()))
            self._features = model.featurise(self.configs)
        return self._features[index]

    def cost(self, j: int, index: np.ndarray) -> np.ndarray:
        """The `cost` objective `j`'s minimisation values of the candidates at `index`."""
        if j not in self._costs:
            self._costs[j] = self.searcher._score_cost(self.configs, self.keys, j)
        return self._costs[j][index]


def _takes_features(model: Any) -> bool:
    """Whether `model` is a `predictors.Predictor`-like one: `featurise`, and `features=` in fit and the predicts."""
    kind = type(model)
    answer = _TAKES_FEATURES.get(kind)
    if answer is None:
        methods = ("fit", "predict", "predict_std", "predict_mean_std")
        answer = _TAKES_FEATURES[kind] = callable(getattr(kind, "featurise", None)) and all(
            callable(getattr(kind, m, None)) and "features" in inspect.signature(getattr(kind, m)).parameters
            for m in methods
        )
    return answer


_TAKES_FEATURES: dict[type, bool] = {}  # per predictor class (a subclass may override fit without `features`)


def _predicted(model: Any, configs: list[Config], features: np.ndarray | None) -> np.ndarray:
    """`model`'s prediction for `configs`, from their feature rows when given and taken."""
    if features is not None and _takes_features(model):
        return model.predict(configs, features=features)
    return model.predict(configs)


def _mean_and_std(model: Any, configs: list[Config], features: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """`model`'s prediction and predictive std for `configs` (a `predictors.Predictor`: from one posterior)."""
    if _takes_features(model):
        return model.predict_mean_std(configs, **({} if features is None else {"features": features}))
    return model.predict(configs), model.predict_std(configs)


def _staircase(front: np.ndarray, ref_c: float, ref_a: float) -> tuple[np.ndarray, np.ndarray]:
    """The (c, a) rows of a 2-D minimisation front inside the reference box, by increasing `c`."""
    front = front[(front[:, 0] < ref_c) & (front[:, 1] < ref_a)]
    front = front[np.argsort(front[:, 0], kind="stable")]
    return front[:, 0], front[:, 1]


def _expected_improvement(front: np.ndarray, c: np.ndarray, mean: np.ndarray, std: np.ndarray, ref_c: float, ref_a: float) -> np.ndarray:
    """Expected area each candidate (exact `c`, normal `a`) adds to a 2-D minimisation `front` of (c, a) rows.

    The front's attainment is a staircase: below the first point's `c` the level is `ref_a`,
    from each point's `c` to the next one's the level is that point's `a`, up to `ref_c`. A
    candidate at `c` adds, on every step right of it, the step's width times
    ``E[max(0, level - a)] = d * Phi(d / std) + std * phi(d / std)`` with ``d = level - mean``.
    """
    front_c, front_a = _staircase(front, ref_c, ref_a)
    low = np.r_[-np.inf, front_c]
    high = np.r_[front_c, ref_c]
    level = np.r_[ref_a, front_a]
    width = np.clip(high[None, :] - np.maximum(low[None, :], c[:, None]), 0.0, None)
    d = level[None, :] - mean[:, None]
    s = std[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(s > 0, d / np.where(s > 0, s, 1.0), 0.0)
        expected = np.where(s > 0, d * ndtr(z) + s * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi), np.maximum(d, 0.0))
    return (width * expected).sum(axis=1)


def _is_predictor(value: Any) -> bool:
    """Whether `value` is a predictor object (a `predictors.Predictor`: it fits, predicts and clones)."""
    return not isinstance(value, str) and all(callable(getattr(value, m, None)) for m in ("fit", "predict", "clone"))

