"""Does the MNIST-1D search front hold the MNIST-1D repository's hand-designed models? (issue 16)

Runs (or resumes) ``nas search --spec runs/mnist1d.toml`` (cnn1d, accuracy vs params, <= 300
evaluations, the family's default training recipe) and, for each target of issue 16 --
<= 5,210 parameters at >= 94% (the repository's CNN) and <= 26,250 parameters at >= 98% (its
ResNet1D) -- picks the front member under the parameter bound with the best *validation*
accuracy and prints its *test* accuracy (the test split is never used by training or
search) with inherited weights, and again after fine-tuning the pick alone from its
inherited weights (`nas.training.train_standalone(init="supernet")`).

    python bench/mnist1d_front.py [--run DIR] [--budget 300] [--finetune-epochs 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = [(5_210, 0.94, "MNIST-1D repository CNN"), (26_250, 0.98, "MNIST-1D repository ResNet1D")]


def test_accuracy(model, data) -> float:
    """Accuracy of a dense model on the test split."""
    import torch

    from nas.evaluate import score

    model.eval()
    return score(model, data.val_batches(256, torch.device("cpu"), split="test"), torch.nn.functional.cross_entropy, True)["accuracy"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="", help="run directory (default: a folder under /tmp, resumed when it exists)")
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--finetune-epochs", type=int, default=10, help="epochs of fine-tuning each pick (0: skip)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    import torch

    from nas.evaluate import evaluate
    from nas.runs import run_spec
    from nas.training import train_standalone

    torch.set_num_threads(1)
    began = time.perf_counter()
    run_dir = Path(args.run or "/tmp/nas-mnist1d-front")
    run = run_spec(ROOT / "runs" / "mnist1d.toml", run=run_dir, budget=args.budget, progress=False)
    searched = time.perf_counter() - began
    net, data = run.net, run.data()
    front = [e for e in run.front if e.ok]
    print(f"front of {len(run.evaluations)} evaluations: {len(front)} members, "
          f"params {min(e.metrics['params'] for e in front)}..{max(e.metrics['params'] for e in front)}, "
          f"val accuracy {min(e.metrics['accuracy'] for e in front):.3f}..{max(e.metrics['accuracy'] for e in front):.3f}")
    recipe = run.spec
    missed = 0
    header = f"{'target':<58} {'pick params':>11} {'val':>6} {'test (inherited)':>16} {'test (fine-tuned)':>17}  ok"
    print(header)
    for bound, accuracy, name in TARGETS:
        under = [e for e in front if e.metrics["params"] <= bound]
        label = f"<= {bound:,} params at >= {accuracy:.0%} ({name})"
        if not under:
            print(f"{label:<58} {'none':>11}")
            missed += 1
            continue
        pick = max(under, key=lambda e: e.metrics["accuracy"])
        inherited = evaluate(net, [pick.config], data, metrics=("accuracy",), split="test",
                             calibration_batches=recipe["evaluate.calibration_batches"])[0].metrics["accuracy"]
        tuned = float("nan")
        if args.finetune_epochs:
            result = train_standalone(net, pick.config, data, init="supernet", epochs=args.finetune_epochs,
                                      lr=recipe["train.lr"] / 10, batch_size=recipe["train.batch_size"], seed=0)
            tuned = test_accuracy(result.model, data)
        ok = inherited >= accuracy
        missed += not ok
        print(f"{label:<58} {pick.metrics['params']:>11,} {pick.metrics['accuracy']:>6.3f} {inherited:>16.3f} {tuned:>17.3f}  "
              f"{'yes' if ok else 'MISSED'}")
    print(f"run {run_dir}; search (training included) {searched:.0f} s; total {time.perf_counter() - began:.0f} s")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
