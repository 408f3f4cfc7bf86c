"""On CUDA: slicing ratios, supernet training-step throughput (fp32 and bf16) and evaluation throughput.

Prints, for the built-in families on the GPU:

* slicing: the median over `--configs` random configs of (sliced forward under `activate` /
  extracted dense forward) at batch 1 and 64, both timed with CUDA synchronisation;
* training: sandwich steps per second (batch 128) in fp32 and under bf16 autocast;
* evaluation: subnets per second of `nas.evaluate` (validation accuracy with BatchNorm
  recalibration, the supernet moved to the GPU once).

Without a CUDA device it prints "no CUDA device; skipped" and exits 0.

    python bench/gpu.py
    python bench/gpu.py --families mlp cnn --configs 10
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
from nas.data import resolve
from nas.devices import autocast
from nas.evaluate import default_loss
from nas.training import get_strategy


def _cuda_time(fn, repeats: int) -> float:
    """Median seconds of one call, synchronised."""
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def slicing(net, configs, batch: int, repeats: int) -> float:
    """Median sliced / dense forward time over `configs`."""
    ratios = []
    x = net.example_input(batch)
    if x.is_floating_point():
        x.normal_()
    with torch.no_grad():
        for config in configs:
            dense = net.extract(config, calibrate=False).eval()
            with net.activate(config):
                net.eval()
                for _ in range(3):
                    net(x), dense(x)
                sliced = _cuda_time(lambda: net(x), repeats)
            ratios.append(sliced / _cuda_time(lambda dense=dense: dense(x), repeats))
    return statistics.median(ratios)


def training(net, data, precision: str, steps: int) -> float:
    """Sandwich training steps per second at batch 128."""
    strategy = get_strategy("sandwich")
    loss = default_loss(data, None)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    batches = list(data.train_batches(128, 0, net.device))
    net.train()

    def one(i: int) -> None:
        x, y = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        with autocast(precision, net.device), net.sliced_gradients():  # as nas.training runs a step
            strategy.step(net, x, y, rng, loss, None)
        opt.step()

    for i in range(5):
        one(i)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        one(i)
    torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def evaluation(net, data, configs) -> float:
    """Subnets per second of `nas.evaluate` (accuracy and loss, BatchNorm recalibrated)."""
    nas.evaluate(net, configs[:2], data, metrics=("accuracy", "loss"))  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    nas.evaluate(net, configs, data, metrics=("accuracy", "loss"))
    torch.cuda.synchronize()
    return len(configs) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=["mlp", "cnn", "transformer"])
    parser.add_argument("--configs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device; skipped")
        return 0
    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    print(f"{'family':<12} {'slice b1':>9} {'slice b64':>10} {'train fp32':>11} {'train bf16':>11} {'eval':>10}")
    for family in args.families:
        torch.manual_seed(0)
        net = search_spaces.get(family)
        data = resolve(net, None)
        net.to(device)  # once
        rng = np.random.default_rng(0)
        configs = [net.sample(rng) for _ in range(args.configs)]
        ratios = [slicing(net, configs, b, args.repeats) for b in (1, 64)]
        fp32 = training(net, data, "fp32", args.steps)
        bf16 = training(net, data, "bf16", args.steps)
        evals = evaluation(net, data, configs)
        print(f"{family:<12} {ratios[0]:>8.2f}x {ratios[1]:>9.2f}x {fp32:>7.1f} st/s {bf16:>7.1f} st/s {evals:>6.1f} sub/s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
