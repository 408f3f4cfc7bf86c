"""Per-layer allocation under a parameter budget: evopress vs uniform allocation vs the dp solution.

Generates MNIST-1D once (the `mnist1d` package, nothing downloaded; 20,000 samples: 70%
train, 15% validation, 15% test), trains a dense MLP and a small transformer on it, turns
each into a rank supernet with `nas.from_model` (every targeted linear layer SVD-factorised,
ranks 1/32 .. 16/32 of full, or full), and at parameter budgets of 25/50/75% of the dense
model allocates ranks three ways, all one-shot (no fine-tuning):

- uniform: every layer at the same rank fraction, the largest that fits (no evaluation needed);
- dp: per-layer fitness tables (one layer compressed at a time, on the whole validation
  split) and the exact dynamic program: ``1 + layers x 16`` table evaluations plus its solution's;
- evopress: level-switch evolution (half of its children level jumps instead, `--jump`: one
  layer set to any level, the rest stepped back inside the budget) seeded with the uniform
  and two sensitivity-prior allocations, and with the solution of a dp whose tables are
  measured on 10% of the validation split (`--dp-seed`; every seed evaluated first),
  screening each generation's children on growing subsets of the validation split (10% then
  30%), restarting from its next-best seed after 10 told children in a row without
  improvement (`--patience`; once every seed has had a chain, from its best config; its
  answer is its best told config), within `--evals` evaluations counted in full-evaluation
  equivalents (told evaluations, the screening fractions and the seed dp's tables x 0.1).

One evopress configuration serves every cell, chosen on validation fitness, never on test:
level jumps because from a dp-like allocation (many layers whole, a few cut deep) a level
switch cannot move (a low-rank layer one level under the dense cost has lost a third of
its rank for a saving of one level), and the dp seed because with it the validation KL was
lower in 2 of the 3 transformer cells (25%: 0.984 vs 1.002, 50%: 0.142 vs 0.165; 75%: 0.0245
vs 0.0197) and the same in the mlp cells. Levels that cost no less than a larger one (a square low-rank layer at half
rank costs as much as the dense layer) are never stepped to. Restarts because at 75% on the
transformer the chain from the dp seed (validation KL 0.0257) is a local optimum: without
them it ends at 0.0245, worse than the full dp's 0.0208, whereas a chain from a prior seed
(0.0278) gets below it. Validation KL of the transformer's 25/50/75% cells by patience (dp:
1.410/0.1543/0.0208): none 0.984/0.1415/0.0245, 8 1.002/0.1437/0.0197, 10 0.984/0.1415/0.0192,
12 0.984/0.1415/0.0215; 4 reaches 0.0199 at 75%. Patience 10 is the only one measured
that beats the dp on validation in every cell and loses nothing elsewhere (at 25% its one
restart comes after the last evaluation, at 50% there is none, at 75% there are two, after
14 and 32 told configs).

The MLP is redundant: its later layers' weights have a low effective rank (the dp's 75%
solution keeps the first two whole and the last two at ranks 16 and 20 of 128), so at 75%
the dp solution is already as accurate as the uncompressed model on test and a margin there
can only be noise; the uncompressed accuracy is printed in every row for that reason. A
narrower MLP is not a fairer test, only a weaker model, and these runs are not wins for
evopress either (`--models mlp --mlp-widths 40 64 64 64 64`, then `40 96 96 96 96`; same
training, same evopress configuration): the 4x64 MLP (15,754 params, dense test accuracy
0.717) gives 25% 0.124/0.197/0.199 (+0.001±0.008, near chance), 50% 0.258/0.692/0.693
(+0.001±0.006), 75% 0.593/0.713/0.713 (evopress returns the dp solution); the 4x96 one
(32,842, 0.771) gives 25% 0.117/0.455/0.401 (-0.054±0.010: a lower validation KL, 1.496 vs
the dp's 1.909, that does not carry to test accuracy at that depth of compression), 50% and
75% the dp solution (0.742, 0.769). At 75% both are as saturated as the wide one (dp within
0.004 of dense), and a 32-wide one reaches 0.587 uncompressed; a ReLU MLP on 40-sample
signals keeps a low-rank tail at every width tried, so the bench keeps the wide one (the
strongest MLP) and reports its thin margins as the ties they are.

Every method selects on the same fitness of the validation split: by default ``kl``, the
mean KL divergence from the dense model's predictions to the compressed model's (EvoPress's
fitness: smooth, and it asks a compressed model to keep the dense model's predictions;
`--fitness loss` selects on the cross-entropy instead). The table prints the
uncompressed model's test accuracy, held-out test accuracy of each method, the verdict of
evopress against the better of uniform and dp ("tie (=dp)" where it returns the dp
solution itself; otherwise the margin with its paired standard error over the test
samples), each solution's parameters as a fraction of the dense model (all at or under the
budget, asserted), the evaluations each method used, each solution's validation fitness and
the dp's predicted one (how far additivity holds).

Measured (seed 0, 1 core, `python bench/allocation.py --check`, exit 0, 16 minutes on a loaded
2-core machine; test accuracy uniform / dp / evopress, margin vs the better of the two ± paired SE):
mlp 25% 0.137/0.759/0.761 (+0.002±0.002), 50% 0.187/0.829/0.831 (+0.001±0.002), 75% 0.589/0.833/0.833
(+0.000±0.001; dense 0.833); transformer 25% 0.232/0.548/0.618 (+0.070±0.009), 50% 0.800/0.870/0.884
(+0.014±0.005), 75% 0.863/0.920/0.923 (+0.003±0.002; validation KL 0.0192 vs the dp's 0.0208; dense
0.928). evopress is ahead in all 6 cells, beyond 2 paired SE in 2 (transformer 25% and 50%); the
transformer 75% margin is under 2 SE and the three mlp margins are within 1 SE: ties in substance.

    python bench/allocation.py [--quick] [--check] [--models mlp transformer] [--fitness kl|loss]
                               [--patience 10] [--mlp-widths 40 256 192 192 128 128]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

import nas
from nas.data import Data
from nas.evaluate import evaluate
from nas.evaluation import Evaluation
from nas.searchers import DPSearcher, EvoPressSearcher
from nas.sensitivity import sensitivity

BUDGETS = (0.25, 0.5, 0.75)
RANKS = tuple(k / 32 for k in range(1, 17)) + (1.0,)
EPOCHS = {"mlp": 30, "transformer": 15}
DP_SEED = 0.1  # chosen on validation fitness (see the module docstring)
JUMP = 0.5
PATIENCE = 10  # chosen on validation fitness (see the module docstring)


def mnist1d_data(samples: int, seed: int) -> Data:
    """MNIST-1D from the `mnist1d` generator: 70% train, 15% validation, 15% test."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = samples, seed, 0.7
    raw = make_dataset(args)
    x = np.concatenate([raw["x"], raw["x_test"]]).astype(np.float32)
    y = np.concatenate([raw["y"], raw["y_test"]]).astype(np.int64)
    n_train, n_val = len(raw["x"]), (len(x) - len(raw["x"])) // 2

    def part(lo: int, hi: int) -> TensorDataset:
        return TensorDataset(torch.from_numpy(x[lo:hi]), torch.from_numpy(y[lo:hi]))

    return Data(part(0, n_train), part(n_train, n_train + n_val), part(n_train + n_val, len(x)))


class Attention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        def split(z):
            return z.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        # written out (not scaled_dot_product_attention): Hessian traces need a double backward
        out = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1) @ v
        return self.o(out.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.ff1, self.ff2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ff2(nn.functional.gelu(self.ff1(self.norm2(x))))


class TinyTransformer(nn.Module):
    """Patches of 4 samples -> 10 tokens of width 64, 2 pre-norm blocks, mean pool, linear head."""

    def __init__(self, length: int = 40, patch: int = 4, d: int = 64, depth: int = 2, heads: int = 4, classes: int = 10):
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(patch, d)
        self.pos = nn.Parameter(torch.zeros(length // patch, d))
        self.blocks = nn.Sequential(*(Block(d, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.view(x.shape[0], -1, self.patch)) + self.pos
        return self.head(self.norm(self.blocks(tokens)).mean(dim=1))


MLP_WIDTHS = (40, 256, 192, 192, 128, 128)


def build(model: str, widths: tuple[int, ...] = MLP_WIDTHS) -> tuple[nn.Module, object]:
    if model == "mlp":
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), nn.ReLU()]
        dense = nn.Sequential(*layers, nn.Linear(widths[-1], 10))
        return dense, (lambda name, layer: layer.out_features > 10)
    return TinyTransformer(), (lambda name, layer: name.startswith("blocks."))


def train(model: nn.Module, data: Data, epochs: int, seed: int) -> None:
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=epochs * (len(data.train) // 128))
    model.train()
    for epoch in range(epochs):
        for x, y in data.train_batches(128, seed + epoch, "cpu"):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            schedule.step()
    model.eval()


def uniform(net, budget: float) -> dict:
    """Every layer at the same level index (rank fraction), the largest that fits the budget."""
    names = net.space.names()
    levels = len(RANKS)
    best = net.smallest()
    for j in range(levels):
        config = {n: net.space[n].values[min(j, len(net.space[n].values) - 1)] for n in names}
        if net.cost(config)["params"] <= budget:
            best = config
    return best


def test_correct(net, config, data) -> np.ndarray:
    """Which held-out test samples `config` classifies correctly (its mean is the test accuracy `nas.evaluate` gives)."""
    x, y = data.test.tensors
    with torch.no_grad(), net.activate(config):
        net.eval()
        correct = (net(x).argmax(dim=1) == y).numpy()
    accuracy = evaluate(net, [config], data, metrics=("accuracy",), split="test")[0].metrics["accuracy"]
    assert abs(correct.mean() - accuracy) < 1e-9, (correct.mean(), accuracy)
    return correct


def test_accuracy(net, config, data) -> float:
    return float(test_correct(net, config, data).mean())


def paired_se(a: np.ndarray, b: np.ndarray) -> float:
    """Standard error of the difference of two accuracies measured on the same samples."""
    d = a.astype(float) - b.astype(float)
    return float(d.std(ddof=1) / math.sqrt(len(d)))


class Calibration:
    """The validation split as one tensor, the dense model's outputs on it, and nested seeded subsets of it.

    `measure(net, configs, fraction)` is the evaluation every method selects on: one forward
    pass of each config over the first `fraction` of a seeded permutation of the validation
    samples (nested: a larger fraction sees every sample of a smaller one), giving its
    accuracy, cross-entropy loss and ``kl``, the mean KL divergence from the dense model's
    predictions to the config's (EvoPress's fitness), and params from the cost.
    """

    def __init__(self, net, data: Data, seed: int):
        x, y = data.val.tensors
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        self.x, self.y = x[order], y[order]
        with torch.no_grad(), net.activate(net.largest()):
            net.eval()
            self.dense = torch.log_softmax(net(self.x), dim=1)

    def measure(self, net, configs, fraction: float = 1.0) -> list[Evaluation]:
        k = max(1, math.ceil(fraction * len(self.y)))
        x, y, dense = self.x[:k], self.y[:k], self.dense[:k]
        out = []
        with torch.no_grad():
            for config in configs:
                with net.activate(config):
                    net.eval()
                    logits = net(x)
                logp = torch.log_softmax(logits, dim=1)
                out.append(Evaluation(dict(config), {
                    "accuracy": float((logits.argmax(dim=1) == y).float().mean()),
                    "loss": float(nn.functional.nll_loss(logp, y)),
                    "kl": float(nn.functional.kl_div(logp, dense, log_target=True, reduction="batchmean")),
                    "params": float(net.cost(config)["params"]),
                }))
        return out

    def screen(self, net):
        """An `EvoPressSearcher` screen: `measure` on a fraction of the samples."""
        return lambda configs, fraction: self.measure(net, configs, fraction)


def drive_dp(dp: DPSearcher, net, calibration: Calibration, fraction: float = 1.0) -> Evaluation:
    """The dp's tables (one layer compressed at a time) on `fraction` of validation, then its solution (in full)."""
    dp.tell(calibration.measure(net, dp.ask(len(dp.tables)), fraction))
    dp.tell(calibration.measure(net, dp.ask(1)))  # its additivity: predicted vs measured
    return dp.evaluations[-1]


def drive_evopress(evo: EvoPressSearcher, net, calibration: Calibration, limit: float) -> Evaluation:
    """Ask one config at a time while the next ask keeps `evo.spent` (told + screening) within `limit`; the best."""
    while evo.spent + evo.ask_cost(1) <= limit:
        configs = evo.ask(1)
        if not configs:
            break
        evo.tell(calibration.measure(net, configs))
    return best_feasible(evo)


def evopress(net, calibration: Calibration, constraint: list[str], args, seeds: list[dict]) -> EvoPressSearcher:
    """An evopress searcher seeded with `seeds`, screening on growing fractions of the validation split."""
    return EvoPressSearcher(net.space, objectives(args), cost=net.cost, constraints=constraint, tolerance=args.tolerance,
                            offspring=args.offspring, screen=calibration.screen(net), fidelities=args.fidelities,
                            initial=seeds, jump=args.jump, patience=args.patience or None, seed=args.seed)


def objectives(args) -> list[str]:
    return [f"{args.fitness}:min", "params:min"]


def best_feasible(searcher) -> Evaluation:
    """The told evaluation of best fitness among those meeting the searcher's constraints."""
    fitness = searcher.fitness.name
    return min((e for e in searcher.evaluations if e.ok and searcher.feasible(e.config)), key=lambda e: e.metrics[fitness])


def verdict(config, correct: np.ndarray, rivals: dict[str, tuple[dict, np.ndarray]]) -> str:
    """'beats' / 'tie' / 'loses' against the best rival's test accuracy (returning a rival's own config is a tie),
    with the margin and its paired standard error over the test samples."""
    same = [name for name, (c, _) in rivals.items() if c == config]
    if same:
        return f"tie (={same[0]})"
    best = max(rivals.values(), key=lambda r: r[1].mean())[1]
    margin = correct.mean() - best.mean()
    word = "beats" if margin > 0 else "tie" if margin == 0 else "loses"
    return f"{word} {margin:+.3f}±{paired_se(correct, best):.3f}"


def run(model: str, data: Data, args) -> list[dict]:
    torch.manual_seed(args.seed)  # the dense model's initial weights
    dense, targets = build(model, tuple(args.mlp_widths))
    start = time.perf_counter()
    train(dense, data, args.epochs or EPOCHS[model], args.seed)
    net = nas.from_model(dense, torch.zeros(1, 40), widths=None, depth=False, ranks=RANKS, targets=targets)
    full = net.cost(net.largest())["params"]
    calibration = Calibration(net, data, args.seed)
    dense_eval = calibration.measure(net, [net.largest()])[0]
    dense_acc = test_accuracy(net, net.largest(), data)
    priors = sensitivity(net, data, probes=16, batches=2, seed=args.seed)
    print(f"# {model}: {len(net.space)} layers x {len(RANKS)} levels, {full:,} params; uncompressed: test accuracy "
          f"{dense_acc:.3f}, validation accuracy {dense_eval.metrics['accuracy']:.3f}, loss {dense_eval.metrics['loss']:.3f} "
          f"(trained in {time.perf_counter() - start:.0f}s)", flush=True)
    rows = []
    fitness = args.fitness
    for fraction in args.budgets:
        budget = fraction * full
        constraint = [f"params<={budget:.0f}"]
        t0 = time.perf_counter()
        flat = uniform(net, budget)
        flat_eval = calibration.measure(net, [flat])[0]  # for its fitness; uniform needs no evaluation to choose

        dp = DPSearcher(net.space, objectives(args), cost=net.cost, constraints=constraint, seed=args.seed)
        solution = drive_dp(dp, net, calibration)
        dp_cost = len(dp.tables) + 1.0

        seeds = [flat, *priors.initial(net.space, net.cost, constraint[0], k=2)]
        seed_cost = 0.0
        if args.dp_seed:  # seeded also with the solution of a dp whose tables are measured on a small subset (cost counted)
            cheap = DPSearcher(net.space, objectives(args), cost=net.cost, constraints=constraint, seed=args.seed)
            cheap.tell(calibration.measure(net, cheap.ask(len(cheap.tables)), args.dp_seed))
            seeds.append(cheap.ask(1)[0])
            seed_cost = len(cheap.tables) * args.dp_seed
        evo = evopress(net, calibration, constraint, args, seeds)
        evo_best = drive_evopress(evo, net, calibration, args.evals - seed_cost)

        found = {"uniform": (flat_eval, 0.0), "dp": (solution, dp_cost), "evopress": (evo_best, seed_cost + evo.spent)}
        row = {"model": model, "budget": fraction, "seconds": time.perf_counter() - t0, "dense": dense_acc,
               "dp_predicted": -dp.additivity[0]["predicted"] if dp.additivity else math.nan}
        for name, (evaluation, spent) in found.items():
            params = net.cost(evaluation.config)["params"]
            assert params <= budget, (name, params, budget)
            assert spent <= args.evals + 1e-9 or name != "evopress", spent
            correct = test_correct(net, evaluation.config, data)
            row[name] = {"config": evaluation.config, "correct": correct, "test": float(correct.mean()),
                         "fitness": evaluation.metrics[fitness], "params": params / full, "evals": spent}
        rivals = {name: (row[name]["config"], row[name]["correct"]) for name in ("uniform", "dp")}
        row["evopress"]["verdict"] = verdict(row["evopress"]["config"], row["evopress"]["correct"], rivals)
        rows.append(row)
        print_row(row)
    return rows


METHODS = ("uniform", "dp", "evopress")
HEADER = (f"{'model':<11} {'budget':>6} | {'dense':>5} | {'test acc: uniform/dp/evopress':>29} | "
          f"{'evopress vs max(u, dp) ±paired SE':<33} | {'params/dense: u/dp/evo':>22} | "
          f"{'evaluations: u/dp/evo':>21} | {'val fitness: u/dp/evo':>23} | {'dp pred':>7} | {'s':>4}")


def print_row(r: dict) -> None:
    cells = [
        "/".join(f"{r[m]['test']:.3f}" for m in METHODS),
        r["evopress"]["verdict"],
        "/".join(f"{r[m]['params']:.3f}" for m in METHODS),
        "/".join(f"{r[m]['evals']:.1f}" for m in METHODS),
        "/".join(f"{r[m]['fitness']:.4f}" for m in METHODS),
    ]
    print(f"{r['model']:<11} {r['budget']:>6.0%} | {r['dense']:>5.3f} | {cells[0]:>29} | {cells[1]:<33} | {cells[2]:>22} | "
          f"{cells[3]:>21} | {cells[4]:>23} | {r['dp_predicted']:>7.4f} | {r['seconds']:>4.0f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["mlp", "transformer"], choices=["mlp", "transformer"])
    parser.add_argument("--budgets", nargs="*", type=float, default=list(BUDGETS))
    parser.add_argument("--evals", type=int, default=200,
                        help="evaluations evopress may spend, in full-evaluation equivalents (told + screening + dp's when seeded with it)")
    parser.add_argument("--offspring", type=int, default=16)
    parser.add_argument("--fidelities", nargs="*", type=float, default=[0.1, 0.3], help="screening fractions of validation")
    parser.add_argument("--tolerance", type=float, default=0.05, help="evopress's children spend between (1 - tolerance) and 1 of the budget")
    parser.add_argument("--fitness", choices=["kl", "loss"], default="kl",
                        help="what every method selects on: KL from the dense model's predictions (EvoPress's), or the loss")
    parser.add_argument("--dp-seed", type=float, default=DP_SEED,
                        help="seed evopress also with the solution of a dp whose tables are measured on this fraction of "
                             "validation, their cost counted in --evals (0: no dp seed)")
    parser.add_argument("--jump", type=float, default=JUMP, help="probability that an evopress child is a level jump")
    parser.add_argument("--patience", type=int, default=PATIENCE,
                        help="evopress restarts from its next seed after this many told children without improvement (0: never)")
    parser.add_argument("--mlp-widths", nargs="*", type=int, default=list(MLP_WIDTHS),
                        help="the MLP's input and hidden widths (a linear head to 10 classes follows)")
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=0, help="training epochs (default: mlp 30, transformer 15)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smaller data, shorter training, 50 evaluations")
    parser.add_argument("--check", action="store_true", help="exit 1 unless evopress beats max(uniform, dp) on test accuracy at every budget")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.epochs, args.evals = 3000, 10, 50
    torch.set_num_threads(1)
    print(f"held-out test accuracy of one-shot rank allocations (no fine-tuning); every method selects on the validation split "
          f"({args.fitness}); evopress <= {args.evals} evaluations in full-evaluation equivalents, screening on "
          f"{'/'.join(f'{f:.0%}' for f in args.fidelities)} of validation, {args.offspring} offspring, level jumps with "
          f"probability {args.jump:g}, "
          + (f"restarts after {args.patience} told children without improvement, " if args.patience else "")
          + "seeded with uniform, 2 sensitivity priors"
          + (f" and the solution of a dp whose tables are measured on {args.dp_seed:.0%} of validation (their cost counted)"
             if args.dp_seed else "") + "; dense: the uncompressed model's test accuracy")
    print(HEADER)
    data = mnist1d_data(args.samples, args.seed)
    rows = []
    for model in args.models:
        rows += run(model, data, args)
    verdicts = [r["evopress"]["verdict"].split(" ")[0] for r in rows]
    margins, clear = [], 0
    for r in rows:
        best = max((r["uniform"], r["dp"]), key=lambda m: m["test"])
        margins.append(r["evopress"]["test"] - best["test"])
        clear += margins[-1] > 2 * paired_se(r["evopress"]["correct"], best["correct"])
    print(f"evopress: beats max(uniform, dp) at {verdicts.count('beats')}/{len(rows)} budgets ({clear} by more than 2 paired SE), "
          f"ties {verdicts.count('tie')}, loses {verdicts.count('loses')}; mean test-accuracy margin "
          f"{float(np.mean(margins)):+.3f} (target: beats at every budget)")
    return 1 if args.check and verdicts.count("beats") < len(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
