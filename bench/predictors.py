"""Benchmark: how well each predictor ranks unseen configs after 50, 100 and 200 evaluations.

Usage: python bench/predictors.py [--source supernet|synthetic] [--seeds 3] [--check]
       python bench/predictors.py --data mnist1d [--family mlp|cnn1d] [--reference 3000]

The default source is a trained digits `mlp` supernet, every config evaluated (accuracy);
``synthetic`` is a made-up NAS-shaped function over a similar space. ``--data mnist1d``
trains the family's supernet on MNIST-1D with its default recipe; the mlp space (4,368
configs) is evaluated whole, the cnn1d space (9.2 million) through ``--reference`` random configs.

Prints one table: Kendall tau on 1,000 held-out configs for every registered predictor
trained on the first 50, 100 and 200 of the other configs (mean over seeds), its ratio to
the ridge baseline measured in the same run, and the fit+predict time at 200; for the
supernet source also the measurement ceiling (the held-out configs' validation accuracy
ranked by the same subnets' accuracy on the test split) and the asymptote (a predictor
trained on every config that is not held out: what more evaluations can buy). The target
is that the best predictor reaches tau >= 0.85 with 100 evaluations; with ``--check`` the
script exits non-zero when it does not.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time

# Run as `python bench/predictors.py`: this file's folder must not shadow the package.
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402

import predictors  # noqa: E402
from nas.space import Choice, Config, SearchSpace  # noqa: E402

SIZES = (50, 100, 200)
HELD_OUT = 1000
TARGET_TAU, TARGET_AT = 0.85, 100
BASELINE = "ridge"


# -- data sources ------------------------------------------------------------------------
def mlp_space() -> SearchSpace:
    """An MLP-like space: depth 1..3, each block a low-rank linear layer with width and rank."""
    dims = [Choice("depth", [1, 2, 3])]
    for i in range(3):
        reach = [d for d in (1, 2, 3) if d > i]
        dims.append(Choice(f"blocks.{i}.width", [64, 128, 256, 512], when=("depth", reach)))
        dims.append(Choice(f"blocks.{i}.rank", [8, 16, 32, 64], when=(f"blocks.{i}.width", [64, 128, 256, 512])))
    return SearchSpace(dims, graph=mlp_graph)


def mlp_graph(config: Config) -> nx.DiGraph:
    """input -> one low-rank linear node per block (width, rank) -> output."""
    graph = nx.DiGraph()
    graph.add_node("input", op="input")
    previous = "input"
    for i in range(config["depth"]):
        node = f"blocks.{i}"
        graph.add_node(node, op="lowrank_linear", width=config[f"{node}.width"], rank=config[f"{node}.rank"])
        graph.add_edge(previous, node)
        previous = node
    graph.add_node("output", op="output")
    graph.add_edge(previous, "output")
    return graph


def synthetic_accuracy(config: Config, rng: np.random.Generator) -> float:
    """A made-up but NAS-shaped accuracy: saturating in capacity, limited by the narrowest
    rank (a bottleneck), with diminishing returns of depth, a width-rank interaction and noise."""
    depth = config["depth"]
    widths = [math.log2(config[f"blocks.{i}.width"]) - 6 for i in range(depth)]  # 0..3
    ranks = [math.log2(config[f"blocks.{i}.rank"]) - 3 for i in range(depth)]  # 0..3
    capacity = sum((0.6 * w + r + 0.15 * w * r) * 0.7**i for i, (w, r) in enumerate(zip(widths, ranks)))
    bottleneck = min(ranks)
    score = capacity + 0.8 * bottleneck + 0.9 * (depth - 1) - 0.4 * (depth == 3) * (widths[-1] < 1)
    return 0.55 + 0.4 / (1 + math.exp(-(score - 5.0) / 2.0)) + rng.normal(0, 0.004)


def load_data(source: str, seed: int) -> tuple[SearchSpace, list[Config], np.ndarray]:
    """A space, every config to draw from, and each config's value, from a named source."""
    if source == "synthetic":
        space = mlp_space()
        rng = np.random.default_rng(seed)
        configs = list(space.enumerate())
        return space, configs, np.array([synthetic_accuracy(c, rng) for c in configs])
    if source == "supernet":
        return _supernet_data(**SUPERNET)
    raise ValueError(f"unknown --source {source!r}; known sources: supernet, synthetic")


_CACHE: dict[str, tuple] = {}
_TESTS: list[np.ndarray] = []  # the held-out indices of each seed
_ASYMPTOTE: list[float] = []  # per seed: tau of ASYMPTOTE trained on every config not held out
ASYMPTOTE = "boosting"  # fast to fit on thousands of configs
SUPERNET: dict = {}  # the supernet source's data, family and reference-set size (from the command line)


def _supernet_data(data: str = "digits", family: str = "mlp", reference: int = 3000) -> tuple[SearchSpace, list[Config], np.ndarray]:
    """Every config of a trained `mlp` supernet (4,368; digits or MNIST-1D) with its validation
    accuracy, or `reference` random configs of a space too large to enumerate (cnn1d)."""
    if "supernet" not in _CACHE:
        import torch

        import search_spaces
        from nas.data import Data, mnist1d, resolve
        from nas.evaluate import evaluate
        from nas.training import train_supernet

        torch.set_num_threads(1)
        torch.manual_seed(0)  # initial weights: the same supernet as bench/search.py
        mnist = data == "mnist1d"
        net = search_spaces.get(family, **({"in_features": 40} if mnist and family == "mlp" else {}))
        split = resolve(net, mnist1d(net.data_kind) if mnist else None)
        # digits: the mlp recipe of bench/ranking.py; MNIST-1D: the family's default recipe
        train_supernet(net, split, progress=False, seed=0, **({} if mnist else {"epochs": 150, "lr": 1e-2}))
        if net.space.size() <= 20_000:
            configs = list(net.space.enumerate())
        else:
            rng = np.random.default_rng(12345)
            configs = list({net.space.key(c): c for c in (net.sample(rng) for _ in range(reference))}.values())
        values = np.array([e.metrics["accuracy"] for e in evaluate(net, configs, split, metrics=("accuracy",))])
        _CACHE["supernet"] = (net.space, configs, values)
        # the same subnets measured again on other samples (the test split): how far one
        # measurement of accuracy ranks another, the ceiling of any predictor of it
        again = evaluate(net, configs, Data(split.train, split.test), metrics=("accuracy",))
        _CACHE["remeasured"] = np.array([e.metrics["accuracy"] for e in again])
    return _CACHE["supernet"]


# -- the measurement ---------------------------------------------------------------------
def run(source: str, seeds: int) -> tuple[dict[str, dict[int, list[float]]], dict[str, list[float]], int]:
    taus: dict[str, dict[int, list[float]]] = {n: {s: [] for s in SIZES} for n in predictors.names()}
    seconds: dict[str, list[float]] = {n: [] for n in predictors.names()}
    size = 0
    for seed in range(seeds):
        space, configs, values = load_data(source, seed)
        size = len(configs)
        order = np.random.default_rng(seed).permutation(len(configs))
        test, pool = order[:HELD_OUT], order[HELD_OUT:]
        _TESTS.append(test)
        test_configs = [configs[i] for i in test]
        for name in predictors.names():
            for n in SIZES:
                train = pool[:n]
                start = time.perf_counter()
                model = predictors.get(name, space, seed=seed).fit([configs[i] for i in train], values[train])
                predicted = model.predict(test_configs)
                if n == SIZES[-1]:
                    seconds[name].append(time.perf_counter() - start)
                taus[name][n].append(predictors.ranking_scores(values[test], predicted)["kendall_tau"])
        if source == "supernet":  # how far a predictor gets with every other config to learn from
            model = predictors.get(ASYMPTOTE, space, seed=seed).fit([configs[i] for i in pool], values[pool])
            _ASYMPTOTE.append(predictors.ranking_scores(values[test], model.predict(test_configs))["kendall_tau"])
    return taus, seconds, size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="supernet", choices=["supernet", "synthetic"], help="data source (default: supernet)")
    parser.add_argument("--seeds", type=int, default=3, help="repetitions with different data and splits")
    parser.add_argument("--data", choices=("digits", "mnist1d"), default="digits", help="the supernet source's data")
    parser.add_argument("--family", choices=("mlp", "cnn1d"), default="mlp", help="the supernet source's family (cnn1d: MNIST-1D only)")
    parser.add_argument("--reference", type=int, default=3000, help="random configs where the space is not enumerated")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args(argv)
    if args.family == "cnn1d" and args.data != "mnist1d":
        parser.error("--family cnn1d needs --data mnist1d")
    SUPERNET.update(data=args.data, family=args.family, reference=args.reference)

    taus, seconds, size = run(args.source, args.seeds)
    mean = {name: {n: float(np.mean(t)) for n, t in per.items()} for name, per in taus.items()}
    base = mean[BASELINE][TARGET_AT]
    where = f"{args.source}: {args.family} on {args.data}" if args.source == "supernet" else args.source
    print(f"Predictor ranking on {HELD_OUT:,} held-out configs of {size:,} ({where}, {args.seeds} seeds)")
    print(f"Kendall tau after N evaluations; ratio = tau@{TARGET_AT} / {BASELINE} tau@{TARGET_AT} (baseline, same run)")
    header = f"{'predictor':<10}" + "".join(f"{'tau@' + str(n):>9}" for n in SIZES) + f"{'ratio':>8}{'s@200':>8}"
    print(header)
    print("-" * len(header))
    for name in sorted(mean, key=lambda k: -mean[k][TARGET_AT]):
        row = "".join(f"{mean[name][n]:>9.3f}" for n in SIZES)
        print(f"{name:<10}{row}{mean[name][TARGET_AT] / base:>8.2f}{np.mean(seconds[name]):>8.2f}")
    if "remeasured" in _CACHE:
        _, _, values = _CACHE["supernet"]
        ceiling = np.mean([predictors.ranking_scores(values[t], _CACHE["remeasured"][t])["kendall_tau"] for t in _TESTS])
        print(f"measurement ceiling: the held-out configs' validation accuracy against their test-split accuracy, tau {ceiling:.3f}")
        print(f"asymptote: {ASYMPTOTE} trained on all {size - HELD_OUT:,} other configs, tau {np.mean(_ASYMPTOTE):.3f}")
    best = max(mean, key=lambda k: mean[k][TARGET_AT])
    ok = mean[best][TARGET_AT] >= TARGET_TAU
    verdict = "met" if ok else "MISSED"
    print(f"target: best tau@{TARGET_AT} >= {TARGET_TAU}: {best} {mean[best][TARGET_AT]:.3f} -> {verdict}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
