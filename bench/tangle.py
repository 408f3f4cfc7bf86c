"""Gradient search over entangled supernets (TangleNAS) against guided black-box search (issue 8).

For each family on the built-in digits data (`mlp`, whose hidden layers are low rank with
searchable ranks, and `cnn`):

- the baseline: train the supernet (sandwich rule + in-place distillation), then run the
  `guided` searcher for a budget of evaluations; its wall time is the compute budget;
- `tangle`: `nas.tangle.search_tangle` from a fresh supernet for that same wall time (its
  weights' learning rate follows a cosine over that time, and it stops before an epoch would
  overrun it; both times are printed);
- the tangle architecture's test accuracy (BatchNorm recalibrated) against the best guided
  architecture with at most as many parameters, both inherited from their supernets, and
  (full run) both retrained from scratch with the same recipe;
- the peak memory of one training step of the search (architecture step + weight step, as
  `search_tangle` runs them, with the superposition) over one plain sandwich step (largest,
  smallest and the default 4 random subnets, in-place distillation), both with their optimizer steps,
  batch 64, target <= 1.5x: CUDA memory statistics on a GPU, else every tensor storage
  allocated during the step is tracked (a torch dispatch mode) and the peak of the live
  bytes is taken (the largest of 3 steps); the DARTS-style weighted sum is shown beside it.
  Time per step against the sandwich step.

One table is printed; a front plot (validation accuracy against parameters: the guided
front and every evaluation, the tangle architecture after each epoch) is written to
``--out`` (default ``bench/out/``).

    python bench/tangle.py            # full run (< 10 minutes on 2 CPU cores)
    python bench/tangle.py --quick    # smoke run
    python bench/tangle.py --check    # exit 1 when a target is missed
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import weakref
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import search_spaces  # noqa: E402
from nas import search as black_box_search  # noqa: E402
from nas.data import resolve  # noqa: E402
from nas.evaluate import evaluate  # noqa: E402
from nas.pareto import pareto_front  # noqa: E402
from nas.tangle import ArchParameters, BiLevel, CostObjective, Tangle, get_sampler, one_hot, search_tangle  # noqa: E402
from nas.training import Sandwich, kl_divergence, train_standalone, train_supernet  # noqa: E402

MEMORY_TARGET = 1.5
OBJECTIVES = ["accuracy:max", "params:min"]
# Per family: the baseline's recipe (supernet epochs, guided evaluations) and tangle's cost weight.
SETTINGS = {
    "mlp": {"args": {}, "epochs": 40, "budget": 80, "cost_weight": 0.3, "retrain": 40},
    "cnn": {"args": {}, "epochs": 10, "budget": 32, "cost_weight": 0.3, "retrain": 8},
}
QUICK = {
    "mlp": {"args": {}, "epochs": 3, "budget": 12, "cost_weight": 0.3, "retrain": 0},
    "cnn": {"args": {"stages": ((16, 1, 1), (24, 1, 2))}, "epochs": 1, "budget": 8, "cost_weight": 0.3, "retrain": 0},
}
BATCH = 64


class LiveBytes(TorchDispatchMode):
    """Peak bytes of tensor storages allocated inside the block and alive at the same time."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._tracked: dict[int, int] = {}

    def _free(self, key: int, size: int) -> None:
        if self._tracked.pop(key, None) is not None:
            self.live -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = {id(t.untyped_storage()) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        out = func(*args, **kwargs)
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key = id(storage)
                if key in inputs or key in self._tracked:
                    continue
                size = storage.nbytes()
                self._tracked[key] = size
                self.live += size
                self.peak = max(self.peak, self.live)
                weakref.finalize(storage, self._free, key, size)
        return out


def peak_bytes(step, device: torch.device) -> int:
    """Peak memory allocated by one call of `step` beyond what was allocated before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    with LiveBytes() as tracker:
        step()
    return tracker.peak


def seconds(step, device: torch.device, repeats: int) -> float:
    """Median wall time of one call of `step`."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_costs(family: str, settings: dict, device: torch.device, repeats: int) -> dict[str, float]:
    """Peak memory and time of one training step: the search's bi-level step (architecture
    step + weight step, `BiLevel` as `search_tangle` runs it) with the superposition and with
    the weighted sum, and a sandwich step; each includes its optimizer steps."""
    torch.manual_seed(0)
    net = search_spaces.get(family, **settings["args"]).to(device).train()
    data = resolve(net)
    (x, y), (xv, yv) = next(data.train_batches(BATCH, 0, device)), data.val_batches(BATCH, device)[0]
    loss = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    sandwich = Sandwich()  # the default step of train_supernet
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)

    def sandwich_step():
        opt.zero_grad(set_to_none=True)
        sandwich.step(net, x, y, rng, loss, kl_divergence)
        opt.step()

    def bilevel_step(combine: str):
        tangle = Tangle(net, combine)
        arch = ArchParameters(net.space).to(device)
        sampler = get_sampler("dirichlet")  # search_tangle's default
        scale = float(tangle.expected_cost(one_hot(net.space, net.largest(), device))["params"])
        cost = CostObjective(tangle, sampler, "params", settings["cost_weight"], scale)
        steps = BiLevel(tangle, arch, sampler, loss, torch.optim.AdamW(net.parameters(), lr=3e-3),
                        torch.optim.Adam(arch.parameters(), lr=3e-2, betas=(0.5, 0.999)), cost, grad_clip=5.0, rng=rng)

        def step():
            steps.arch_step(x, y, xv, yv)
            steps.weight_step(x, y)

        return step

    steps = {"sandwich": sandwich_step, **{c: bilevel_step(c) for c in ("superposition", "weighted_sum")}}
    for step in steps.values():  # warm up (first calls allocate optimizer states and caches)
        step()
    # the largest peak of 3 steps: a sandwich step's peak depends on the random subnets it draws
    out = {f"{name}_bytes": float(max(peak_bytes(step, device) for _ in range(3))) for name, step in steps.items()}
    for _ in range(2):  # interleave so that load from other processes hits all alike
        for name, step in steps.items():
            n = repeats if name != "weighted_sum" else 1  # the slow reference: one timing per round
            out[f"{name}_s"] = min(out.get(f"{name}_s", float("inf")), seconds(step, device, n))
    return out


def guided(family: str, settings: dict, device: torch.device, seed: int):
    """Baseline: sandwich supernet training, then guided search; returns (net, result, seconds)."""
    torch.manual_seed(seed)
    net = search_spaces.get(family, **settings["args"]).to(device)
    start = time.perf_counter()
    train_supernet(net, epochs=settings["epochs"], seed=seed, progress=False)
    result = black_box_search(net, objectives=OBJECTIVES, searcher="guided", budget=settings["budget"], seed=seed, progress=False)
    return net, result, time.perf_counter() - start


class TimeCosine:
    """LR factor: cosine from 1 to 0 over `seconds` of wall time from the first step."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, None

    def __call__(self, step: int) -> float:
        if self.start is None:
            self.start = time.perf_counter()
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (time.perf_counter() - self.start) / self.seconds)))


def tangle(family: str, settings: dict, device: torch.device, seed: int, seconds: float):
    """Tangle from a fresh supernet within `seconds` of wall time (the weights' LR follows a
    cosine over that time; the search stops before an epoch would overrun it)."""
    torch.manual_seed(seed)
    net = search_spaces.get(family, **settings["args"]).to(device)
    start = time.perf_counter()

    def schedule(optimizer, total_steps):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, TimeCosine(seconds))

    def out_of_time(record) -> bool:
        return time.perf_counter() - start + record["seconds"] > seconds

    result = search_tangle(net, objectives=OBJECTIVES, epochs=10_000, cost_weight=settings["cost_weight"], schedule=schedule,
                           callback=out_of_time, seed=seed, progress=False)
    return net, result, time.perf_counter() - start


def test_accuracy(net, config) -> float:
    return evaluate(net, [config], split="test", metrics=("accuracy",))[0].metrics["accuracy"]


def retrained_accuracy(net, config, epochs: int, seed: int) -> float:
    """Test accuracy of `config` trained from scratch alone (the supernet recipe)."""
    result = train_standalone(net, config, epochs=epochs, seed=seed)
    model = result.model.eval()
    data = resolve(net)
    device = next(model.parameters()).device
    correct = total = 0
    with torch.no_grad():
        for xb, yb in data.val_batches(256, device, split="test"):
            correct += int((model(xb).argmax(-1) == yb).sum())
            total += len(xb)
    return correct / total


def plot(panels: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        evs = [e for e in panel["guided"].evaluations if e.ok]
        ax.scatter([e.metrics["params"] for e in evs], [e.metrics["accuracy"] for e in evs], s=10, c="0.75", label="guided: evaluated")
        front = sorted(pareto_front(evs, OBJECTIVES), key=lambda e: e.metrics["params"])
        ax.step([e.metrics["params"] for e in front], [e.metrics["accuracy"] for e in front], where="post", c="C0", label="guided: front")
        ax.scatter([e.metrics["params"] for e in front], [e.metrics["accuracy"] for e in front], s=18, c="C0")
        tevs = [e for e in panel["tangle"].evaluations if e.ok]
        ax.scatter([e.metrics["params"] for e in tevs], [e.metrics["accuracy"] for e in tevs], s=22,
                   c=np.arange(len(tevs)), cmap="Oranges", vmin=-len(tevs) / 2, label="tangle: architectures picked (final weights)")
        last = tevs[-1]
        ax.scatter([last.metrics["params"]], [last.metrics["accuracy"]], marker="*", s=220, c="C3", label="tangle: final")
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel("validation accuracy (inherited weights)")
        ax.set_title(f"{panel['family']}: guided {panel['seconds'][0]:.0f} s, tangle {panel['seconds'][1]:.0f} s")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny budgets")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "out"), help="folder for the front plot")
    parser.add_argument("--families", default="mlp,cnn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier timings on a shared machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    table = QUICK if args.quick else SETTINGS
    began = time.perf_counter()
    rows, panels, missed = [], [], False
    for family in [f.strip() for f in args.families.split(",") if f.strip()]:
        settings = table[family]
        costs = step_costs(family, settings, device, repeats=2 if args.quick else 5)
        g_net, g_result, g_seconds = guided(family, settings, device, args.seed)
        t_net, t_result, t_seconds = tangle(family, settings, device, args.seed, g_seconds)
        epochs = len(t_result.history)  # one record per epoch (evaluations: one per distinct architecture)
        final = t_result.evaluations[-1]
        limit = final.metrics["params"]
        ok = [e for e in g_result.evaluations if e.ok]
        within = [e for e in ok if e.metrics["params"] <= limit]
        rival = max(within, key=lambda e: e.metrics["accuracy"]) if within else min(ok, key=lambda e: e.metrics["params"])
        t_test, g_test = test_accuracy(t_net, final.config), test_accuracy(g_net, rival.config)
        rows += [
            (f"{family}: compute, seconds (epochs / evals)", f"{t_seconds:.0f} ({epochs} ep)", f"{g_seconds:.0f} ({settings['epochs']} ep + {settings['budget']} ev)", t_seconds / g_seconds, "~1"),
            (f"{family}: params (guided: its best within tangle's)", f"{limit:,.0f}", f"{rival.metrics['params']:,.0f}", limit / rival.metrics["params"], "-"),
            (f"{family}: test accuracy, inherited", f"{t_test:.3f}", f"{g_test:.3f}", t_test / g_test, "-"),
        ]
        if settings["retrain"]:
            t_re = retrained_accuracy(t_net, final.config, settings["retrain"], args.seed)
            g_re = retrained_accuracy(g_net, rival.config, settings["retrain"], args.seed)
            rows.append((f"{family}: test accuracy, retrained", f"{t_re:.3f}", f"{g_re:.3f}", t_re / g_re, "-"))
        ratio = costs["superposition_bytes"] / costs["sandwich_bytes"]
        missed |= ratio > MEMORY_TARGET
        rows += [
            (f"{family}: peak memory/step, superposition", f"{costs['superposition_bytes'] / 2**20:.2f} MiB", f"{costs['sandwich_bytes'] / 2**20:.2f} MiB", ratio, f"<= {MEMORY_TARGET}" + ("" if ratio <= MEMORY_TARGET else " MISSED")),
            (f"{family}: peak memory/step, weighted sum", f"{costs['weighted_sum_bytes'] / 2**20:.2f} MiB", f"{costs['sandwich_bytes'] / 2**20:.2f} MiB", costs["weighted_sum_bytes"] / costs["sandwich_bytes"], "-"),
            (f"{family}: time/step, superposition", f"{costs['superposition_s'] * 1e3:.0f} ms", f"{costs['sandwich_s'] * 1e3:.0f} ms", costs["superposition_s"] / costs["sandwich_s"], "-"),
            (f"{family}: time/step, weighted sum", f"{costs['weighted_sum_s'] * 1e3:.0f} ms", f"{costs['sandwich_s'] * 1e3:.0f} ms", costs["weighted_sum_s"] / costs["sandwich_s"], "-"),
        ]
        panels.append({"family": family, "guided": g_result, "tangle": t_result, "seconds": (g_seconds, t_seconds)})
    figure = plot(panels, Path(args.out) / "tangle_front.png")
    print(f"tangle vs guided on digits ({device}, {torch.get_num_threads()} thread(s), seed {args.seed}); baseline = guided "
          f"(sandwich supernet + guided search) for accuracy, params and compute, a default sandwich step (n=4) for memory and time")
    widths = [max(len(str(r[i])) if i != 3 else 6 for r in rows) for i in range(5)]
    head = ("measured", "tangle", "baseline", "ratio", "target")
    widths = [max(w, len(h)) for w, h in zip(widths, head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for r in rows:
        print("  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].rjust(widths[2]), f"{r[3]:.3f}".rjust(widths[3]), r[4].ljust(widths[4])]))
    print(f"front plot: {figure}   total {time.perf_counter() - began:.0f} s")
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
