"""Does a trained supernet rank its subnets truthfully? (issue 4)

For each family (mlp, cnn) on the built-in digits data: train the supernet with the
sandwich rule + in-place distillation (KL, AlphaNet's alpha-divergence, and none) and with
uniform sampling (SPOS; plus ordered dropout where the family has low-rank layers), pick 16
subnets spread evenly over the log-MACs range, train each from scratch with the same recipe
(epochs, lr, batch size; several seeds, averaged), and report on the held-out samples
(val + test splits; nothing is selected on them):

- Kendall tau between inherited (supernet) and from-scratch accuracy (target >= 0.7 for
  the default recipe, sandwich + KL), against uniform sampling as the baseline, and the
  noise ceiling: the tau of one from-scratch seed against the mean of the others;
- largest / smallest subnet: inherited accuracy against its from-scratch accuracy (target:
  at most 1.0 / 2.0 points below);
- the latency table's median relative error against measured latency (target <= 15%);
- the cost ratio: supernet training time / time to train the 16 subnets from scratch
  (CPU seconds of one seed, each job timed on its own).

Training jobs run in `--jobs` worker processes with one torch thread each; latency is
measured afterwards, alone.

    python bench/ranking.py            # full run (< 10 minutes on 2 CPU cores)
    python bench/ranking.py --quick    # smoke run
    python bench/ranking.py --check    # exit 1 when a target is missed
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Per-family recipe, the same for the supernet and for every from-scratch subnet.
RECIPES = {
    "mlp": {"epochs": 150, "lr": 1e-2, "batch_size": 64},
    # lr 3e-3 left the small cnn subnets under-trained from scratch (smallest 93.6% vs 96.3%
    # at 1e-2, 3 seeds), so the "truth" ranked how fast a subnet learns, not how good it is.
    "cnn": {"epochs": 15, "lr": 1e-2, "batch_size": 64},
}
SCRATCH_SEEDS = {"mlp": 5, "cnn": 3}
# (label, strategy, distill); the first is the default recipe the targets apply to.
STRATEGIES = [
    ("sandwich+kl", "sandwich", "kl"),
    ("sandwich+alpha", "sandwich", "alpha"),
    ("sandwich+none", "sandwich", False),
    ("uniform", "uniform", False),
    ("ordered_dropout", "ordered_dropout", False),
]
TAU_TARGET, LARGEST_GAP, SMALLEST_GAP, LATENCY_ERROR = 0.7, 1.0, 2.0, 0.15


# -- jobs (run in worker processes) ----------------------------------------------------------
def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _build(family: str, seed: int):
    import torch

    import search_spaces

    torch.manual_seed(seed)
    return search_spaces.get(family)


def _data(net):
    from torch.utils.data import ConcatDataset

    from nas.data import Data, resolve

    split = resolve(net, None)
    return split, Data(split.train, ConcatDataset([split.val, split.test]))


def _job(job: tuple) -> tuple:
    kind, family, key, payload, recipe, seed = job
    from nas.evaluate import evaluate
    from nas.training import train_standalone, train_supernet

    net = _build(family, seed)
    split, heldout = _data(net)
    began = time.process_time()
    if kind == "scratch":
        accuracy = train_standalone(net, payload["config"], heldout, seed=seed, **recipe).accuracy
        return kind, family, key, accuracy, time.process_time() - began
    train_supernet(net, split, strategy=payload["strategy"], distill=payload["distill"], seed=seed, progress=False, **recipe)
    seconds = time.process_time() - began
    evals = evaluate(net, payload["configs"], heldout, metrics=("accuracy",))
    return kind, family, key, [e.metrics.get("accuracy", math.nan) for e in evals], seconds


# -- planning and reporting ------------------------------------------------------------------
def spread_configs(net, n: int, seed: int, pool: int) -> list[dict]:
    """`n` distinct configs with MACs spread evenly in log scale from the smallest to the largest."""
    rng = np.random.default_rng(seed)
    candidates = {net.space.key(c): c for c in [net.smallest(), net.largest()] + [net.sample(rng) for _ in range(pool)]}
    configs = list(candidates.values())
    macs = np.log(np.array([net.cost(c)["macs"] for c in configs], dtype=float))
    chosen = [0, 1]  # smallest, largest
    for target in np.linspace(macs[0], macs[1], n)[1:-1]:
        order = np.argsort(np.abs(macs - target))
        chosen.append(next(int(i) for i in order if int(i) not in chosen))
    return sorted((configs[i] for i in chosen), key=lambda c: net.cost(c)["macs"])


def _kendall(a, b) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, 4 subnets, 2 seeds")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--families", default="mlp,cnn")
    parser.add_argument("--strategies", default="", help="comma-separated labels to run (default: all)")
    parser.add_argument("--subnets", type=int, default=16)
    parser.add_argument("--scratch-seeds", type=int, default=0, help="from-scratch seeds per subnet (default: per family)")
    parser.add_argument("--epochs", type=int, default=0, help="override the per-family epochs")
    parser.add_argument("--lr", type=float, default=0.0, help="override the per-family learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the supernets and of the subnet picks")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each)")
    parser.add_argument("--verbose", action="store_true", help="print per-subnet accuracies")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    began = time.perf_counter()
    families = args.families.split(",")
    plans, jobs = {}, []
    for family in families:
        recipe = dict(RECIPES[family], **({"epochs": args.epochs} if args.epochs else {}), **({"lr": args.lr} if args.lr else {}))
        if args.quick:
            recipe["epochs"] = 2
        seeds = args.scratch_seeds or (2 if args.quick else SCRATCH_SEEDS[family])
        net = _build(family, args.seed)
        configs = spread_configs(net, 4 if args.quick else args.subnets, args.seed, 60 if args.quick else 400)
        low_rank = any(hasattr(m, "cutoff") for m in net.modules())
        strategies = [s for s in STRATEGIES if s[1] != "ordered_dropout" or low_rank]
        if args.strategies:
            strategies = [s for s in strategies if s[0] in args.strategies.split(",")]
        plans[family] = dict(recipe=recipe, seeds=seeds, configs=configs, strategies=strategies, net=net)
        for label, strategy, distill in strategies:
            payload = dict(strategy=strategy, distill=distill, configs=configs)
            jobs.append(("supernet", family, label, payload, recipe, args.seed))
        for s in range(seeds):
            for i, config in enumerate(configs):
                jobs.append(("scratch", family, (s, i), dict(config=config), recipe, args.seed + s))

    # longest first: supernets, then the big subnets
    jobs.sort(key=lambda j: (j[0] != "supernet", -(plans[j[1]]["net"].cost(j[3]["config"])["macs"] if j[0] == "scratch" else 0)))
    results: dict[tuple, tuple] = {}
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(args.jobs, initializer=_init_worker) as pool:
        for kind, family, key, value, seconds in pool.imap_unordered(_job, jobs):
            results[(kind, family, key)] = (value, seconds)
        pool.close()  # a clean exit: the context manager alone terminates the workers (leaked semaphores)
        pool.join()
    train_wall = time.perf_counter() - began

    from nas.latency import LatencyTable

    rows: list[dict] = []
    notes: list[str] = []
    for family in families:
        plan = plans[family]
        configs, seeds, n = plan["configs"], plan["seeds"], len(plan["configs"])
        scratch = np.array([[results[("scratch", family, (s, i))][0] for i in range(n)] for s in range(seeds)])
        scratch_seconds = sum(results[("scratch", family, (0, i))][1] for i in range(n))
        truth = scratch.mean(0)
        if args.verbose:
            print(f"[{family}] from scratch (mean of {seeds} seeds): {np.round(truth * 100, 1).tolist()}")
        taus = {}
        for label, _, _ in plan["strategies"]:
            inherited, seconds = results[("supernet", family, label)]
            taus[label] = (_kendall(inherited, truth), np.array(inherited), seconds)
            if args.verbose:
                print(f"[{family}] {label}: tau {taus[label][0]:.3f}, {np.round(np.array(inherited) * 100, 1).tolist()}")
        default = plan["strategies"][0][0]
        base = taus["uniform"][0] if "uniform" in taus else math.nan
        for label, (tau, _, _) in taus.items():
            rows.append(dict(family=family, measure="kendall tau, inherited vs scratch", method=label, value=tau, baseline=base,
                             baseline_name="uniform", target=f">= {TAU_TARGET}" if label == default else "-",
                             ok=(tau >= TAU_TARGET) if label == default else None))
        if seeds > 1:
            ceiling = float(np.mean([_kendall(scratch[s], np.delete(scratch, s, 0).mean(0)) for s in range(seeds)]))
            rows.append(dict(family=family, measure="kendall tau, scratch seed vs other seeds", method=f"{seeds} seeds",
                             value=ceiling, baseline=math.nan, baseline_name="noise ceiling", target="-", ok=None))
            if ceiling < TAU_TARGET:
                notes.append(f"[{family}] the noise ceiling ({ceiling:.3f}) is below the tau target ({TAU_TARGET}): one from-scratch "
                             "seed ranks the other seeds' mean worse than the target asks of the supernet, so here the target "
                             "cannot be told apart from seed noise")
        _, inherited, seconds = taus[default]
        largest, smallest = plan["net"].largest(), plan["net"].smallest()
        for which, index, gap in (("largest", configs.index(largest), LARGEST_GAP), ("smallest", configs.index(smallest), SMALLEST_GAP)):
            value, reference = 100 * inherited[index], 100 * truth[index]
            rows.append(dict(family=family, measure=f"{which} subnet accuracy (%)", method=default, value=value, baseline=reference,
                             baseline_name="scratch", target=f">= scratch - {gap}", ok=value >= reference - gap))

        net = plan["net"]
        table = LatencyTable.build(net, samples=40 if args.quick else 200, repeats=10 if args.quick else 20)
        error = table.error(configs, repeats=20 if args.quick else 100)
        rows.append(dict(family=family, measure="latency table, median rel. error", method=f"table, {len(table.entries)} layers",
                         value=error, baseline=math.nan, baseline_name="measured", target=f"<= {LATENCY_ERROR:.0%}", ok=error <= LATENCY_ERROR))
        rows.append(dict(family=family, measure=f"train CPU s, supernet / {n} from scratch", method=default, value=seconds,
                         baseline=scratch_seconds, baseline_name=f"{n} subnets", target="print", ok=None))

    header = ("family", "measure", "method", "value", "baseline", "ratio", "target", "ok")
    lines = []
    for r in rows:
        ratio = r["value"] / r["baseline"] if r["baseline"] and not math.isnan(r["baseline"]) else math.nan
        ok = "-" if r["ok"] is None else ("yes" if r["ok"] else "MISSED")
        lines.append((r["family"], r["measure"], r["method"], _fmt(r["value"]), f"{_fmt(r['baseline'])} ({r['baseline_name']})", _fmt(ratio), r["target"], ok))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for line in lines:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)))
    recipes = "; ".join(f"{f}: {plans[f]['recipe']}, {plans[f]['seeds']} scratch seeds" for f in families)
    print(f"recipes {recipes}")
    for note in notes:
        print(note)
    print(f"wall {time.perf_counter() - began:.0f} s (training {train_wall:.0f} s on {args.jobs} workers x 1 thread)")
    missed = [r for r in rows if r["ok"] is False]
    return 1 if args.check and missed else 0


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


if __name__ == "__main__":
    sys.exit(main())
