"""Searchers against the true Pareto front of an enumerable space (or a large random reference set).

Trains a digits `mlp` supernet (4,368 configs), evaluates every config once to get the true
front, then runs each searcher at budgets 50/100/200 over 5 seeds on those stored
evaluations. With ``--data mnist1d`` the supernet is trained on MNIST-1D with its family's
default recipe (``--family mlp``: the same enumerable 4,368 configs; ``--family cnn1d``: 9.2
million configs, so the reference front is that of ``--reference`` random configs plus
every config any searcher evaluated, each evaluated once on demand). Prints the median fraction of the true front's hypervolume reached, and the
best accuracy under a params budget as improvement over the average random architecture
under that budget (points). Plain Optuna NSGA-II and TPE, in their own study loop at the
same budget, are the outside baseline.

``--cache DIR`` keeps the trained supernet and the evaluation table in DIR (a second run with
the same data, family, recipe and init seed skips training and the reference evaluations).

    python bench/search.py [--check] [--quick] [--init-seed N] [--cache DIR]
    python bench/search.py --data mnist1d [--family cnn1d] [--quick] [--cache DIR]

Figures (HV share at 50 / 100 / 200, median of 5 seeds; the evaluations are stored lookups,
so they depend on the trained supernet, not on the machine's load). Guided's acquisition is
expected hypervolume improvement with a low-cost anchor every 8 proposals and a
one-length-scale GP. Measured 2026-12-03 on an AVX2 machine, after the mlp family moved to
progressive shrinking (the earlier figures, taken on the sandwich mlp, no longer apply;
the digits ones were taken at lr 1e-2, which now leaves the supernet near chance):

    searcher                   MNIST-1D mlp (--data mnist1d)   digits mlp (default)
    random                     0.942 / 0.957 / 0.962           0.977 / 0.990 / 0.991
    evolution                  0.956 / 0.968 / 0.984           0.976 / 0.997 / 1.000
    optuna (our searcher)      0.938 / 0.963 / 0.980           0.983 / 0.994 / 0.996
    guided                     0.971 / 0.991 / 0.998           0.995 / 0.999 / 1.000
    optuna-nsga2 (own loop)    0.916 / 0.930 / 0.947           0.956 / 0.979 / 0.995
    optuna-tpe (own loop)      0.906 / 0.953 / 0.959           0.948 / 0.957 / 0.957

Guided leads at every budget on both. Not met: on MNIST-1D our Optuna searcher is below
random at 50; on digits evolution is below random at 50.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import nas  # noqa: E402
import search_spaces  # noqa: E402
from nas.backends import Backend  # noqa: E402
from nas.data import _output_shape, mnist1d  # noqa: E402
from nas.evaluate import evaluate  # noqa: E402
from nas.pareto import hypervolume, parse_objectives  # noqa: E402
from nas.training import train_supernet  # noqa: E402

OBJECTIVES = parse_objectives(["accuracy:max", "params:min"])
SEARCHERS = ["random", "evolution", "optuna", "guided"]


class Lookup(Backend):
    """Serves the stored evaluation of each config (evaluation cost ~0); a config not stored
    yet (a space too large to enumerate) is evaluated once and stored."""

    def __init__(self, net, table, data=None):
        self.net, self.table, self.data = net, table, data
        self.served: set[str] = set()  # the keys asked for in this run (a cached table may hold more)

    def evaluate(self, configs):
        self.served.update(self.net.space.key(c) for c in configs)
        missing = list({self.net.space.key(c): c for c in configs if self.net.space.key(c) not in self.table}.values())
        if missing:
            self.table.update({self.net.space.key(e.config): e for e in evaluate(self.net, missing, self.data)})
        return [self.table[self.net.space.key(c)] for c in configs]


def optuna_study(net, table, sampler: str, budget: int, seed: int) -> list:
    """Optuna's own loop (repeats cost budget, as in Optuna) over the stored evaluations."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samplers = {"nsga2": optuna.samplers.NSGAIISampler, "tpe": optuna.samplers.TPESampler}
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=samplers[sampler](seed=seed))
    found = []

    def objective(trial):
        config = {}
        for dim in net.space.dimensions:
            if net.space.is_active(dim.name, config):
                config[dim.name] = trial.suggest_categorical(dim.name, list(dim.values))
        evaluation = table.evaluate([config])[0] if isinstance(table, Lookup) else table[net.space.key(config)]
        found.append(evaluation)
        return evaluation.metrics["accuracy"], evaluation.metrics["params"]

    study.optimize(objective, n_trials=budget)
    return found


def best_under(evaluations, limit: float) -> float:
    accs = [e.metrics["accuracy"] for e in evaluations if e.ok and e.metrics["params"] <= limit]
    return max(accs) if accs else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=("digits", "mnist1d"), default="digits")
    parser.add_argument("--family", choices=("mlp", "cnn1d"), default="mlp", help="the searched family (cnn1d: MNIST-1D only)")
    parser.add_argument("--reference", type=int, default=2000, help="random reference configs where the space is not enumerated")
    parser.add_argument("--epochs", type=int, default=0, help="default: 150 on digits, the family's recipe on MNIST-1D")
    parser.add_argument("--lr", type=float, default=0.0, help="default: 1e-2 on digits, the family's recipe on MNIST-1D")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--init-seed", type=int, default=0, help="seed of the supernet's initial weights (another supernet)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 epochs, 2 seeds, budgets 50 100")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--cache", type=Path, default=None, metavar="DIR",
                        help="keep the trained supernet and the evaluation table in DIR and reuse them on the next run "
                             "with the same data, family, recipe and init seed (iterate on a searcher in seconds)")
    args = parser.parse_args(argv)
    if args.family == "cnn1d" and args.data != "mnist1d":
        parser.error("--family cnn1d needs --data mnist1d")
    if args.quick:
        args.epochs, args.seeds, args.budgets = 3, 2, [50, 100]
        args.reference = min(args.reference, 300)

    import torch

    torch.set_num_threads(1)  # tiny models: one thread is as fast and immune to oversubscription
    torch.manual_seed(args.init_seed)  # the supernet's initial weights: the whole benchmark is deterministic
    mnist = args.data == "mnist1d"
    net = search_spaces.get(args.family, **({"in_features": 40} if mnist and args.family == "mlp" else {}))
    data = mnist1d(net.data_kind) if mnist else None
    # digits: 150 epochs at the family's lr; MNIST-1D: the family's recipe. (lr 1e-2, the digits setting before
    # the mlp trained by progressive shrinking, leaves that supernet near chance: median subnet 10.3%, best 17.2%.)
    recipe = {} if mnist else {"epochs": 150}
    recipe.update({k: v for k, v in (("epochs", args.epochs), ("lr", args.lr)) if v})
    enumerable = net.space.size() <= 20_000
    rng = np.random.default_rng(12345)
    configs = list(net.space.enumerate()) if enumerable else list({net.space.key(c): c for c in (net.sample(rng) for _ in range(args.reference))}.values())
    cached = None
    if args.cache is not None:
        tag = "-".join(f"{k}{v}" for k, v in sorted(recipe.items()))
        cached = args.cache / f"search-{args.data}-{args.family}-init{args.init_seed}-{tag or 'default'}-ref{len(configs)}.pt"
    hit = cached is not None and cached.exists()
    start = time.perf_counter()
    if hit:
        saved = torch.load(cached, weights_only=False)
        net.load_state_dict(saved["state"])
        table = saved["table"]
    else:
        train_supernet(net, data, progress=False, seed=0, **recipe)
    trained = time.perf_counter() - start
    start = time.perf_counter()
    if not hit:
        table = {net.space.key(e.config): e for e in evaluate(net, configs, data)}
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"state": net.state_dict(), "table": table}, cached)
    print(f"data {args.data}, family {args.family}: {net.space.size():,} configs, {len(configs):,} in the reference set "
          f"({'all' if enumerable else 'random'}); supernet trained in {trained:.0f} s; reference evaluated in {time.perf_counter() - start:.0f} s")
    lookup = Lookup(net, table, data)
    reference_set = [table[net.space.key(c)] for c in configs]
    everything = reference_set
    accs = np.array([e.metrics["accuracy"] for e in everything])
    params = np.array([e.metrics["params"] for e in everything])
    reference = {"accuracy": float(accs.min()), "params": float(max(params.max(), net.cost(net.largest())["params"]))}
    chance = 1 / _output_shape(net)[-1]  # one over the classes
    if accs.max() <= 2 * chance:  # a supernet that did not train: every searcher would score noise
        sys.exit(f"the supernet did not train: its best subnet scores {accs.max():.3f} (chance {chance:.3f}); "
                 "change --epochs/--lr")
    true_hv = hypervolume(everything, reference, OBJECTIVES)
    limit = float(np.median(params))
    random_mean = float(accs[params <= limit].mean())
    print(f"true front: {len(nas.pareto_front(everything, OBJECTIVES))} configs, hypervolume {true_hv:.4g}; "
          f"params budget {limit:,.0f}: average random architecture {random_mean:.4f}, best {accs[params <= limit].max():.4f}")

    runs = {name: {} for name in SEARCHERS + ["optuna-nsga2 (own loop)", "optuna-tpe (own loop)"]}
    for budget in args.budgets:
        for seed in range(args.seeds):
            for name in SEARCHERS:
                result = nas.search(net, data, searcher=name, budget=budget, backend=lookup, seed=seed, progress=False,
                                    reference=reference)
                runs[name].setdefault(budget, []).append(result.evaluations)
            for sampler in ("nsga2", "tpe"):
                found = optuna_study(net, lookup, sampler, budget, seed)
                runs[f"optuna-{sampler} (own loop)"].setdefault(budget, []).append(found)
    if cached is not None and len(table) > len(configs):  # keep the configs the searchers added (cnn1d) for the next run
        torch.save({"state": net.state_dict(), "table": table}, cached)
    if not enumerable:  # the best known front: the random reference set and everything the searchers found
        everything = list({**{net.space.key(e.config): e for e in reference_set}, **{k: table[k] for k in lookup.served}}.values())
        true_hv = hypervolume(everything, reference, OBJECTIVES)
        print(f"best known front (reference set + {len(everything) - len(reference_set):,} configs the searchers found): "
              f"{len(nas.pareto_front(everything, OBJECTIVES))} configs, hypervolume {true_hv:.4g}")

    def hv_fraction(name, budget):
        return statistics.median(hypervolume(ev, reference, OBJECTIVES) / true_hv for ev in runs[name][budget])

    def gain(name, budget):
        return statistics.median(100 * (best_under(ev, limit) - random_mean) for ev in runs[name][budget])

    header = f"{'searcher':<24}" + "".join(f"{'HV@' + str(b):>10}" for b in args.budgets) + "".join(
        f"{'gain@' + str(b):>10}" for b in args.budgets)
    print(f"\nmedian over {args.seeds} seeds; HV = fraction of the true front's hypervolume; "
          f"gain = best accuracy with params <= {limit:,.0f} minus the random average, in points")
    print(header)
    for name in runs:
        print(f"{name:<24}" + "".join(f"{hv_fraction(name, b):>10.4f}" for b in args.budgets)
              + "".join(f"{gain(name, b):>10.2f}" for b in args.budgets))

    misses = []
    if 100 in args.budgets and hv_fraction("guided", 100) < 0.99:
        misses.append(f"guided HV@100 {hv_fraction('guided', 100):.4f} < 0.99")
    for b in args.budgets:
        for name in SEARCHERS[1:]:
            if hv_fraction(name, b) < hv_fraction("random", b):
                misses.append(f"{name} below random at {b}")
        for outside in ("optuna-nsga2 (own loop)", "optuna-tpe (own loop)"):
            if hv_fraction("guided", b) <= hv_fraction(outside, b):
                misses.append(f"guided does not beat {outside} at {b}")
    print("\ntargets: guided HV@100 >= 0.99; every searcher >= random; guided > Optuna's own NSGA-II and TPE")
    print("all met" if not misses else "missed: " + "; ".join(misses))
    return 1 if (args.check and misses) else 0


if __name__ == "__main__":
    sys.exit(main())
