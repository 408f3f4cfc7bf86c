"""Slicing overhead: supernet forward under `activate` vs the extracted dense model.

Prints, per family and per batch size (1 and 64 by default), the median over 20 configs of
(sliced time / dense time) on one CPU thread, both timed in the same run, for the built-in
families and for user models converted by `nas.from_model` (ResNet-18- and
MobileNetV2-shaped, from `examples/user_models.py`). `--check` exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nas
import search_spaces
from examples.user_models import MobileNetV2, ResNet18

CONVERTED = {
    "resnet18 (from_model)": lambda: nas.from_model(ResNet18(), torch.zeros(2, 3, 32, 32)),
    "mobilenet_v2 (from_model)": lambda: nas.from_model(MobileNetV2(), torch.zeros(2, 3, 32, 32)),
}
TARGETS = {"mlp": 1.05, "transformer": 1.05, "cnn": 1.05, "cell": None, **dict.fromkeys(CONVERTED, 1.05)}


def _time(fn, x: torch.Tensor, repeats: int) -> float:
    """Best-of-`repeats` seconds of one call (best filters out noise from other processes)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - start)
    return best


def ratio(net, config, x: torch.Tensor, repeats: int) -> float:
    """Sliced / dense forward time for one config, interleaving the two to share noise."""
    dense = net.extract(config, calibrate=False).eval()
    with net.activate(config):
        for _ in range(3):
            net(x), dense(x)
        sliced_t, dense_t = [], []
        for _ in range(5):
            sliced_t.append(_time(net, x, repeats))
            dense_t.append(_time(dense, x, repeats))
    return min(sliced_t) / min(dense_t)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", type=int, default=20)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--families", nargs="*", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    missed = False
    print(f"{'family':<26} {'batch':>5} {'median sliced/dense':>20} {'worst':>8} {'target':>8}")
    with torch.no_grad():
        for family in args.families:
            torch.manual_seed(0)
            net = (CONVERTED[family]() if family in CONVERTED else search_spaces.get(family)).eval()
            target = TARGETS[family]
            for batch in args.batches:
                rng = np.random.default_rng(0)
                x = torch.randn(batch, *net.input_shape)
                configs = [net.largest(), net.smallest()] + [net.sample(rng) for _ in range(args.configs - 2)]
                ratios = [ratio(net, c, x, args.repeats) for c in configs]
                median = statistics.median(ratios)
                ok = target is None or median <= target
                missed |= not ok
                shown = f"<= {target:.2f}" if target else "-"
                print(f"{family:<26} {batch:>5} {median:>20.3f} {max(ratios):>8.3f} {shown:>8} {'' if ok else 'MISSED'}", flush=True)
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
