"""Does a trained supernet rank its subnets truthfully? (issues 4 and 16)

For each family (mlp, cnn) on the built-in digits data, or (mlp, cnn1d) on MNIST-1D
(``--data mnist1d``, where architectures differ far more than seed noise): train the supernet with the
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

On MNIST-1D the default recipe is each family's own (``net.recipe``: what
`nas.train_supernet(net, data)` uses when given nothing else, scaled by the data size), the
16 subnets are spread over log-params, the targets are those of issue 16 (tau >= 0.8;
largest / smallest / each of the 16 within 1.0 / 2.0 / 3.0 points of its from-scratch
accuracy; supernet time <= 0.3x the 16 from-scratch trainings) and the noise ceiling is
printed beside each tau.

    python bench/ranking.py            # full run (< 10 minutes on 2 CPU cores)
    python bench/ranking.py --quick    # smoke run
    python bench/ranking.py --check    # exit 1 when a target is missed
    python bench/ranking.py --data mnist1d [--quick] [--cache DIR]
    # MNIST-1D is far heavier: --quick (8 subnets, 2 seeds, cnn1d only) took 23 minutes of
    # wall time on 2 shared CPU cores; --cache keeps the from-scratch results between runs.
    python bench/ranking.py --data mnist1d --quick --families cnn1d \
        --strategies default,sandwich+none,"mixture(k=2)","mixture(k=3)" --calibrations 4,16 --cache DIR
    # issue 16's levers on cnn1d (15 minutes with the from-scratch results cached): tau 0.473
    # (default), 0.296 (n=4), 0.370 / 0.400 (mixture K=2 / 3), 0.400 (16 BN batches); mlp
    # (--families mlp --strategies default,"mixture(k=2)"): 0.929 (default; noise ceiling 0.929)
    # and 0.786 (mixture K=2, though its largest subnet matched scratch: 61.1 vs 60.9); --lr 0.01
    # (supernet and scratch): 0.643, largest 54.2 vs 63.6.
    python bench/ranking.py --data mnist1d --families mlp --scratch-seeds 5 --cache DIR \
        --strategies default,s2kl_e60 --extra '[["s2kl_e60", ["sandwich", {"n": 2}], "kl", {"epochs": 60}]]'
    # --extra: variants as JSON [label, strategy or [name, args] or null (the family default),
    # distill ("kl", "alpha", "kl_t2" / "kl_t4": KD at temperature 2 / 4, false), {supernet-only epochs, lr, batch_size,
    # weight_decay, grad_clip, seed, label_smoothing (the largest's label loss), warmup (share of the steps)}]; the
    # scratch runs keep the family recipe, so a cached sweep costs only the supernets. Sweep of issue 16's levers
    # (mlp: 16 subnets, 5 seeds, noise ceiling 0.728; cnn1d: --quick, ceiling 0.741):
    #   mlp sandwich n=4 + KL (the default before progressive shrinking), 40 epochs, lr 3e-3: tau 0.762 / 0.850 / 0.695 / 0.750 over
    #   supernet seeds 0-3 (so tau moves ~0.06 with the seed alone), worst gap ~13 points, largest
    #   ~56-59 vs 60.8, smallest ~36 vs 35.9, time ratio 0.34-0.43. n=2: tau 0.733 / 0.717 /
    #   0.533 / 0.567 (ratio 0.26-0.30, largest 58.9-61.4); n=3 0.750; no KD 0.527; alpha 0.633;
    #   FairNAS 0.650; Starbucks ladder 0.117; ordered dropout n=2 / 4: 0.417 / 0.350; 60 epochs
    #   0.767 (worst gap 9.9, ratio 0.356); supernet lr 6e-3 0.600 (worst gap 8.2); batch 128 at
    #   40 / 60 epochs 0.800 (largest 46.2) / 0.728; weight decay 0: 0.594.
    #   mlp progressive shrinking (n=4 + KL, largest alone for 20% of the steps, all open at 70%):
    #   tau 0.828 / 0.917 / 0.850 / 0.833 at supernet seeds 0-3, worst gap 18.1 / 7.2 / 15.6 / 6.7, largest 58.9 / 60.8 /
    #   48.2 / 60.9 vs 60.8, smallest 30.4 / 35.0 / 33.8 / 33.3 vs 35.9, ratio 0.26 / 0.25 / 0.34 / 0.32. Opening at
    #   10-50%: 0.845 / 0.807 (largest 51.8 / 51.5); 10-70%: 0.767 / 0.867 (largest 48.2 / 47.9); 30-80%: 0.783 / 0.850;
    #   20-90%: 0.783 / 0.833; n=2: 0.683 / 0.850. With label smoothing 0.1 on the largest's loss (the mlp default since,
    #   strategy arg smoothing=0.1; here the override "label_smoothing": 0.1): tau 0.867 / 0.833 / 0.711 / 0.883, worst gap 9.0 / 6.5 / 21.4
    #   / 6.0, largest 60.7 / 60.9 / 52.3 / 61.1, smallest 34.4 / 35.3 / 33.3 / 34.3, ratio 0.39-0.44 (measured under load
    #   8 against scratch times cached at lower load; the unsmoothed runs beside it read 0.37-0.38). Beside it, seeds 0 / 1:
    #   KD temperature 2: 0.561 / 0.695 (largest 44-45); temperature 4: 0.243; a 5% linear warmup ("warmup": 0.05):
    #   0.717 / 0.767 (largest 47.7 / 49.2); grad clip 1.0: 0.833 / 0.650; mixture K=4 (n=2, no KD): 0.059 / 0.350.
    #   SVD re-basis of the low-rank factors (strategy sandwich_svd below, n=4 + KL; U V = A S B^T -> A sqrt(S), sqrt(S)
    #   B^T, the full-rank product unchanged, Adam moments of U, V reset) every 50 / 200 steps: tau 0.533 / 0.527 and
    #   0.533 / 0.483 (seeds 0 / 1); every 50 keeping the moments 0.594 / 0.567; every 50 for the first half 0.622 / 0.600.
    #   mlp, issue 16 round 2 (m16; cache rebuilt, 253 s wall for 5 supernets + 80 scratch runs, load 2.5-8.6; the default
    #   reproduced: tau 0.867 / 0.833, worst gap 9.0 / 6.5 at seeds 0 / 1, ratio 0.336 / 0.329 under that load). Figures are
    #   seeds 0 / 1: tau, worst gap, ratio. progressive late=0.85 (the smallest left out from 85% of the steps, one more
    #   random open subnet instead): 0.850 / 0.817, 9.2 / 6.6, 0.25 / 0.26. spread=True (random subnets' sizes spread over
    #   the open range, u ~ U(0, 1), each open dimension at Binomial(k - 1, u)): 0.594 / 0.750, 19.5 / 20.0 (the 922-param
    #   subnet inherits 21-28% vs 41.0), 0.26; with late=0.85: 0.567 / 19.4 (seed 0). n=6 at batch 85 (equal passes per
    #   sample): 0.767, worst gap 21.9, largest 46.3 (seed 0). The supernet's lr is already cosine (the loop's default).
    #   --strategies default,default_s1,late85,late85_s1,n6b85 --extra '[["default_s1", null, null, {"seed": 1}],
    #   ["late85", ["progressive", {"n": 4, "warm": 0.2, "open": 0.7, "smoothing": 0.1, "late": 0.85}], "kl", {}], ...]'
    #   Over seeds 0-3 (tau, worst gap, largest vs 60.8): late=0.6 0.900 / 0.850 / 0.790 / 0.850, 8.4 / 5.2 / 19.3 / 4.7,
    #   59.7 / 60.9 / 51.9 / 61.1 (smallest 34.3 / 35.6 / 32.0 / 34.7 vs 35.9; ratio 0.21-0.25 loaded): above the default's
    #   tau at 3 seeds and its worst gap at all 4, but the largest 1.1 points low at seed 0 (the default meets it there), so
    #   not the default; late=0.5 0.895 / 0.817 / 0.783 / 0.800, 8.1 / 5.8 / 19.7 / 5.2. Seeds 0 / 1: label smoothing 0.2
    #   0.750 / 0.883, worst gap 5.7 / 17.2; n=5 at batch 80 0.867 / 0.828, 18.7 / 18.5, largest 45.9 / 55.6 (fewer steps
    #   under-train the supernet). The depth-2 mid-size subnets (8,090 and 2,058 params) stay 7-9 points low at every seed.
    #   cnn1d default (sandwich n=2, no KD, 1,500 steps): 0.473 / 0.473 / 0.327 over supernet seeds
    #   0-2 (worst gap 4.3 / 3.8 / 3.6, largest and smallest within 1 point, ratio ~0.3 of 16); KD (KL) 0.255 (largest 93.0 vs
    #   98.6); FairNAS 0.593 but largest / smallest 94.7 / 91.8 vs 98.6 / 96.5; 45 epochs 0.327
    #   (worst gap 3.1, 2.9 with 32 BN batches; ratio +18%); n=1 at 40 epochs 0.182; progressive shrinking (n=2, no KD,
    #   largest alone for 20%, all open at 70%) 0.182 / 0.473 at seeds 0 / 1 (worst gap 5.8 / 7.2, largest 98.0 / 98.4,
    #   smallest 95.8 / 93.6; ratio 0.54 of 8).
    #   cnn1d, the full 16 subnets with 3 scratch seeds (noise ceiling 0.773; the 16 trainings 474 CPU s of seed 0;
    #   53 minutes of wall time for 4 supernets and 44 scratch runs on 2 loaded cores):
    #   python bench/ranking.py --data mnist1d --families cnn1d --scratch-seeds 3 --strategies default,default_s1,spread,spread_s1 \
    #       --extra '[["default_s1", null, null, {"seed": 1}], ["spread", ["sandwich_spread", {"n": 2}], false, {}],
    #       ["spread_s1", ["sandwich_spread", {"n": 2}], false, {"seed": 1}]]' --calibrations 4,32 --cache DIR --no-latency --verbose
    #   default tau 0.538 / 0.460 at supernet seeds 0 / 1, worst gap 3.57 / 3.37 (13 / 12 of 16 within 3.0), largest 98.5 /
    #   98.7 vs 98.6, smallest 95.8 / 96.9 vs 96.2, ratio 0.347 / 0.344 (target 0.3); with 32 BN batches 0.510 / 0.444.
    #   Spread sampling (sandwich_spread: one t ~ U(0, 1) per random subnet, each dimension at index Binomial(len - 1, t),
    #   so their sizes cover the log-params range evenly where uniform draws are nearly all mid-size): 0.303 / 0.295,
    #   worst gap 5.1 / 6.0 (9 / 8 of 16 within 3.0), largest 98.6 / 98.7, smallest 96.4 / 96.2, ratio 0.353 / 0.359: the
    #   mid-size subnets, sampled less, fall further behind. Distillation after a warm-up (sandwich_kdwarm: the students
    #   on labels for 30% of the steps, then (1 - w) CE + w KL, w rising to 0.5 over the next 20%; --extra
    #   '[["kdwarm", ["sandwich_kdwarm", {"n": 2, "warm": 0.3, "ramp": 0.2, "mix": 0.5}], false, {}]]', and seed 1):
    #   0.544 / 0.414, worst gap 3.7 / 3.7 (15 / 13 of 16 within 3.0), largest 98.2 / 98.7, smallest 96.2 / 96.5, ratio
    #   0.43 / 0.42 (CPU time under heavier load than the scratch runs'). None beats the default beyond the seed's
    #   own spread (0.08 here), and the ceiling 0.773 is below the 0.8 target.
    #   The 16 x 5 truth (seeds 3-4 added; quiet machine, 525 s wall on 2 workers):
    #   python bench/ranking.py --data mnist1d --families cnn1d --scratch-seeds 5 --strategies default,default_s1 \
    #       --extra '[["default_s1", null, null, {"seed": 1}]]' --calibrations 4 --cache DIR --no-latency --verbose
    #   noise ceiling 0.708 (5 seeds); default tau 0.494 / 0.450 at supernet seeds 0 / 1, worst gap 3.40 / 3.78 (13 / 12
    #   of 16 within 3.0), largest 98.5 vs 98.6, smallest 95.8 vs 96.0, ratio 0.264 / 0.279 (timed quiet: the 0.34
    #   above were loaded). Not run: the ladder on cnn1d.
    #   That space spans only 96.0-98.6% from scratch, so the target cannot be verified on it. Wider spaces (--space, not
    #   the default; all loaded, --scratch-seeds 1 unless said, --strategies default plus --extra variants as above):
    #   WIDE = '{"stem": [4, 8, 16], "stages": [[2, 4, 8, 16], [4, 8, 16, 24, 32], [8, 16, 24, 32, 48]]}' (153.6M subnets,
    #   570-118,874 parameters, one scratch seed 73.0-98.7%): the default recipe collapses, every subnet but the largest
    #   inheriting 41-77% (tau 0.500 / 0.750 at supernet seeds 0 / 1, worst gap 34.7 / 45.1, 1 of 16 within 3.0, ratio
    #   0.39); progressive shrinking tau 0.700, worst gap 35.8; n=4 0.717 / 29.0; half-way (channels from 4, stem (8, 16);
    #   scratch 90.2-98.7%) 0.380 / 22.6. Diagnosis (issue 16): not BatchNorm (32 calibration batches, or batch statistics
    #   at evaluation: tau 0.533 / 0.533, worst gap 34.4 / 34.0); the mid-size subnets underfit (training accuracy 54-75%,
    #   the largest 99.9%); any one change in stage 0 costs the largest 20-30 points (its down-sampling 68-71%, kernel 3
    #   75%, 8 channels 71%, stem 4 72%; down-sampling and kernels of stages 1-2 <= 3 points). A mixture of K=2 copies
    #   routed by log-params (a fixed router: the two halves of the range; each step the largest, the smallest and one
    #   spread-sampled config per copy; a prototype, not kept) is worse: tau 0.517, worst gap 50.9, the small copy's
    #   subnets 36-60%. Sharing fails where kernels and down-sampling vary at 2-8 channels. With them fixed, WONLY =
    #   WIDE + '"kernels": [5], "downsamples": ["max"]' (2,880 subnets, 834-66,650 parameters; 2 scratch seeds span
    #   67.1-97.0%, noise ceiling 0.833), the default recipe ranks: tau 0.862, but worst gap 10.6 (5 of 16 within 3.0:
    #   mid-size subnets 5-11 points low), largest 97.1 vs 96.8, smallest 74.7 vs 67.1, ratio 0.285; 60 epochs tau 0.828,
    #   worst gap 4.1 (14 of 16 within 3.0), ratio 0.54; 45 epochs 0.795 / 8.4 (10 of 16) / 0.41 (an "e45" variant in
    #   --extra); 90 epochs 0.762 / 4.1 / 0.79 (every small subnet then inherits 7-15 points above its from-scratch self:
    #   1,500 steps under-train them from scratch). Against one scratch seed: n=4 0.706 / 13.8; progressive shrinking
    #   0.767 / 31.1; the K=2 size mixture 0.444 / 29.7.
    #   python bench/ranking.py --data mnist1d --families cnn1d --scratch-seeds 2 --strategies default,e60,e90 --extra \
    #       '[["e60", null, null, {"epochs": 60}], ["e90", null, null, {"epochs": 90}]]' --space '{"stem": [4, 8, 16],
    #       "stages": [[2, 4, 8, 16], [4, 8, 16, 24, 32], [8, 16, 24, 32, 48]], "kernels": [5], "downsamples": ["max"]}'
    #       --calibrations 4 --cache DIR --no-latency --verbose     # 18 minutes of wall time on 2 loaded cores
    #   So no space with spread meets every target with this recipe: WONLY meets tau and time, not the gaps (it also
    #   drops the searchable kernels and down-sampling that issue 16 asks for); the default space stays the narrow one.
    #   Stage 0 fixed, later stages searchable (per-stage kernels and downsamples): S0F = WIDE's stages, '"stem": 16 (fixed),
    #   "kernels": [[5], [3, 5, 7, 9], [3, 5, 7, 9]], "downsamples": [["max"], ["stride", "max", "avg", "none"], ["stride",
    #   "max", "avg", "none"]]' (798-114,778 parameters, 2 scratch seeds span 79.8-97.6%, noise ceiling 0.795; 256 s wall, load ~4):
    #   default recipe tau 0.661, worst gap 22.3 (1 of 16 within 3.0), largest 97.6 vs 97.6, smallest 75.6 vs 82.8,
    #   ratio 0.318; width-balanced random subnets (sandwich_balanced, n=2, no KD) 0.483, worst gap 16.0 (3 of 16):
    #   --strategies default,balanced --extra '[["balanced", ["sandwich_balanced", {"n": 2}], false, {}]]' --space S0F.
    #   S0F at 60 supernet epochs ("e60" as above): tau 0.711, worst gap 9.3 (10 of 16), smallest 87.4 vs 82.8, ratio 0.63.
    #   Its worst gaps are subnets with "none" down-sampling in stages 1-2 and 2-4 channels in stage 0. One dimension at a
    #   time (stem 16, WIDE's stages, stage 0 kernel 5 + max; load ~5): K12 (kernels 3-9 in stages 1-2, down-sampling max
    #   everywhere; 798-114,778 params, scratch 78.0-97.5%, ceiling 0.734): tau 0.683, worst gap 11.8 (5 of 16), largest
    #   95.9 vs 96.5, smallest 81.8 vs 78.0, ratio 0.267; D12 (kernels 5 everywhere, down-sampling searchable in stages
    #   1-2; 1,038-66,650 params, scratch 82.2-97.6%, ceiling 0.683): tau 0.633, worst gap 14.1 (6 of 16), largest 97.4 vs
    #   97.6, smallest 84.6 vs 86.1, ratio 0.29. So searchable kernels alone cost mid-size subnets ~12 points and
    #   searchable down-sampling ~14 at 4-8 channels, fixing stage 0 or not.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import multiprocessing
import os
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
SCRATCH_SEEDS = {"mlp": 5, "cnn": 3, "cnn1d": 5}
# MNIST-1D: each family built for the data's shape; the recipe is the family's default (net.recipe).
MNIST1D_FAMILIES = {"mlp": {"in_features": 40}, "cnn1d": {}, "transformer": {"token_shape": (8, 5)}}
MNIST1D_TARGETS = {"tau": 0.8, "largest": 1.0, "smallest": 2.0, "each": 3.0, "time": 0.3}
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


def _build(family: str, seed: int, data: str = "digits", space: dict | None = None):
    import torch

    import search_spaces

    torch.manual_seed(seed)
    return search_spaces.get(family, **(_space(family, space) if data == "mnist1d" else {}))


def _space(family: str, space: dict | None) -> dict:
    """The family's keyword arguments on MNIST-1D: its shape for the data, then ``--space``'s."""
    return {**MNIST1D_FAMILIES[family], **(space or {})}


def _data(net, data: str = "digits"):
    from torch.utils.data import ConcatDataset

    from nas.data import Data, mnist1d, resolve

    split = resolve(net, mnist1d(net.data_kind) if data == "mnist1d" else None)
    return split, Data(split.train, ConcatDataset([split.val, split.test]))


def _job(job: tuple) -> tuple:
    kind, family, key, payload, recipe, seed, data = job
    from nas.evaluate import evaluate
    from nas.training import get_strategy, train_standalone, train_supernet

    net = _build(family, seed, data, payload.get("space"))
    split, heldout = _data(net, data)
    began = time.process_time()
    if kind == "scratch":
        stored = _stored(payload.get("cache"), family, data, payload["config"], recipe, seed, payload.get("space"))
        if stored is not None and stored.exists():
            accuracy, seconds = json.loads(stored.read_text())
            return kind, family, key, accuracy, seconds
        accuracy = train_standalone(net, payload["config"], heldout, seed=seed, **recipe).accuracy
        seconds = time.process_time() - began
        _store(stored, [accuracy, seconds])
        return kind, family, key, accuracy, seconds
    strategy = payload["strategy"]
    variant = [kind, strategy, payload["distill"], payload.get("overrides", {}),
               bool(payload.get("default")) and getattr(net, "recipe", None), payload["configs"], payload.get("calibrations")]
    stored = _stored(payload.get("cache"), family, data, variant, recipe, seed, payload.get("space"))
    if stored is not None and stored.exists():  # a supernet variant's inherited accuracies, cached like the scratch runs
        accuracies, seconds = json.loads(stored.read_text())
        return kind, family, key, {int(b): a for b, a in accuracies.items()}, seconds
    recipe = {**recipe, **payload.get("overrides", {})}  # the supernet's own epochs, lr, ... (never the scratch runs')
    seed = recipe.pop("seed", seed)  # a supernet seed of its own: how much the figures vary with the seed alone
    smoothing = recipe.pop("label_smoothing", None)  # the largest subnet's label loss, smoothed
    if smoothing:
        recipe["loss"] = functools.partial(_smoothed, smoothing)
    warmup = recipe.pop("warmup", None)  # a linear warmup over this share of the steps, then the cosine
    if warmup:
        recipe["schedule"] = functools.partial(_warmup_cosine, warmup)
    if payload.get("default"):  # the family's own recipe: nothing but the data (and the seed)
        train_supernet(net, split, seed=seed, progress=False, **recipe)
    else:
        if isinstance(strategy, (tuple, list)):  # (name, args)
            strategy = get_strategy(strategy[0], **strategy[1])
        train_supernet(net, split, strategy=strategy, distill=payload["distill"], seed=seed, progress=False, **recipe)
    seconds = time.process_time() - began
    accuracies = {}
    for batches in payload.get("calibrations") or (4,):  # BatchNorm recalibration: training batches per subnet
        evals = evaluate(net, payload["configs"], heldout, metrics=("accuracy",), calibration_batches=batches)
        accuracies[batches] = [e.metrics.get("accuracy", math.nan) for e in evals]
    _store(stored, [accuracies, seconds])
    return kind, family, key, accuracies, seconds


def _store(stored, value) -> None:
    """Write `value` (JSON) to the cache file `stored` atomically; nothing when there is no cache."""
    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        tmp = stored.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(value))
        os.replace(tmp, stored)


def _stored(cache, family: str, data: str, config, recipe: dict, seed: int, space: dict | None = None):
    """Where a result is cached (None: no cache): keyed by everything it depends on (a from-scratch run: its
    config; a supernet: its variant, subnets and BN batches in place of the config)."""
    if not cache:
        return None
    family_args = _space(family, space) if data == "mnist1d" and family in MNIST1D_FAMILIES else None
    key = json.dumps([family, family_args, data, config, recipe, seed], sort_keys=True, default=list)
    return Path(cache) / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


# -- strategies tried here (issue 16), not in the library: neither beat the family defaults -----
from nas.registry import STRATEGIES as REGISTRY  # noqa: E402
from nas.training import Strategy  # noqa: E402


def _pick(net, picks: dict) -> dict:
    """The config of `picks` (a value per dimension) restricted to its active dimensions."""
    config: dict = {}
    for dim in net.space.dimensions:
        if net.space.is_active(dim.name, config):
            config[dim.name] = picks[dim.name]
    return config


class FairNAS(Strategy):
    """FairNAS-style strict fairness: each step trains `m` subnets in which every value of
    every dimension appears equally often (m = the most values of any dimension)."""

    name = "fairnas"

    def step(self, net, x, y, rng, loss, distill):
        dims = net.space.dimensions
        m = max(len(d.values) for d in dims)
        columns = {d.name: [d.values[i % len(d.values)] for i in rng.permutation(m)] for d in dims}
        total = 0.0
        for j in range(m):
            with net.activate(_pick(net, {k: v[j] for k, v in columns.items()})):
                value = loss(net(x), y)
            value.backward()
            total += value.item()
        return total / m


class Ladder(Strategy):
    """Starbucks-style fixed ladder: each step trains the same `rungs` subnets, each dimension
    at the same relative position from its smallest to its largest value."""

    name = "ladder"

    def __init__(self, rungs: int = 4):
        self.rungs = rungs

    def step(self, net, x, y, rng, loss, distill):
        total = 0.0
        for t in np.linspace(0.0, 1.0, self.rungs):
            picks = {d.name: d.values[int(round(t * (len(d.values) - 1)))] for d in net.space.dimensions}
            with net.activate(_pick(net, picks)):
                value = loss(net(x), y)
            value.backward()
            total = value.item()
        return total


# -- issue 16 item: an SVD re-basis of the low-rank factors during training (ranked worse; kept here) --
import torch  # noqa: E402
from torch import nn  # noqa: E402

from nas.elastic import ElasticLowRankLinear  # noqa: E402
from nas.training import Sandwich, steps_taken  # noqa: E402


def svd_rebase(layer: ElasticLowRankLinear) -> None:
    """Re-base ``U V`` in place as ``(A sqrt(S)) (sqrt(S) B^T)`` from the SVD ``U V = A S B^T``.

    The full-rank product (and with it every subnet at the largest rank, whatever its widths)
    is unchanged; every rank-r prefix becomes the best rank-r approximation of it (Eckart-Young).

    Example:
        >>> torch.manual_seed(0) and None
        >>> layer = ElasticLowRankLinear(6, 5, max_rank=4)
        >>> before = layer.U @ layer.V
        >>> svd_rebase(layer)
        >>> bool(torch.allclose(layer.U @ layer.V, before, atol=1e-5))
        True
    """
    with torch.no_grad():
        u, v = layer.U.to(torch.float64), layer.V.to(torch.float64)
        qu, ru = torch.linalg.qr(u)  # U V = Qu (Ru Rv^T) Qv^T: the SVD of a small r x r core
        qv, rv = torch.linalg.qr(v.T)
        a, s, bh = torch.linalg.svd(ru @ rv.T)
        root = s.sqrt()
        layer.U.copy_(((qu @ a) * root).to(layer.U.dtype))
        layer.V.copy_((root[:, None] * (bh @ qv.T)).to(layer.V.dtype))


class SandwichSVD(Sandwich):
    """The sandwich rule; every `every` optimizer steps each low-rank layer is re-based (`svd_rebase`).

    Re-basing stops after the `until` share of the steps. With `reset` the optimizer's
    moments of the re-based factors are reset (they belong to the old basis).
    The step count survives a resume through the optimizer's own (Adam, AdamW; with SGD the
    count restarts at a resume).

    Example:
        >>> SandwichSVD(n=2, every=50)
        SandwichSVD(n=2, every=50, until=1.0, reset=True)
    """

    def __init__(self, n: int = 4, every: int = 50, until: float = 1.0, reset: bool = True):
        super().__init__(n=n)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"The 'every' parameter of SandwichSVD must be an int >= 1, got {every!r}.")
        if not 0 <= until <= 1:
            raise ValueError(f"The 'until' parameter of SandwichSVD must be in [0, 1], got {until!r}.")
        self.every, self.until, self.reset = every, until, reset
        self._total = 1
        self._layers: list[ElasticLowRankLinear] = []
        self._optimizer: torch.optim.Optimizer | None = None
        self._count: int | None = None
        self._others: list[nn.Parameter] = []

    def bind(self, net: nn.Module, optimizer: torch.optim.Optimizer, total_steps: int) -> None:
        self._layers = [m for m in net.modules() if isinstance(m, ElasticLowRankLinear)]
        rebased = {id(p) for m in self._layers for p in (m.U, m.V)}
        self._others = [p for p in net.parameters() if id(p) not in rebased]
        self._optimizer, self._count, self._total = optimizer, None, total_steps

    def step(self, net, x, y, rng, loss, distill):
        if self._count is None:  # the first step of this run (or of a resumed one: the optimizer's count)
            self._count = steps_taken(self._optimizer, self._others)
        if self._count and self._count % self.every == 0 and self._count <= self.until * self._total:
            for layer in self._layers:
                svd_rebase(layer)
                if self.reset and self._optimizer is not None:
                    for p in (layer.U, layer.V):
                        self._optimizer.state.pop(p, None)
        self._count += 1
        return super().step(net, x, y, rng, loss, distill)


SandwichSVD.name = "sandwich_svd"


def spread_sample(space, rng: np.random.Generator) -> dict:
    """A random config whose size is spread from the smallest to the largest: one ``t ~ U(0, 1)``, then each
    active dimension at index ``Binomial(len(values) - 1, t)`` (uniform sampling leaves nearly every sample
    mid-size: on cnn1d none of 200 had under 10k parameters, a quarter of the log-params range)."""
    t = rng.random()
    out: dict = {}
    for dim in space.dimensions:
        if space.is_active(dim.name, out):
            out[dim.name] = dim.values[int(rng.binomial(len(dim.values) - 1, t))]
    return out


class SandwichSpread(Sandwich):
    """The sandwich rule with the random subnets drawn by `spread_sample` (sizes spread over the range)."""

    name = "sandwich_spread"

    def draw(self, net, rng):
        return [spread_sample(net.space, rng) for _ in range(self.n)]


class SandwichBalanced(Sandwich):
    """The sandwich rule with width-balanced random subnets: each is the pool config nearest to a target drawn
    uniformly over the log-params range (the pool: `pool` configs drawn at bind time, half uniform, half by
    `spread_sample`, so that every size has candidates), instead of uniform per choice (nearly all mid-size)."""

    name = "sandwich_balanced"

    def __init__(self, n: int = 2, pool: int = 2000, near: int = 8):
        super().__init__(n=n)
        self.pool, self.near = pool, near
        self._configs: list[dict] = []
        self._sizes = np.zeros(0)

    def _fill(self, net) -> None:
        rng = np.random.default_rng(12345)
        configs = [net.sample(rng) if i % 2 else spread_sample(net.space, rng) for i in range(self.pool)]
        sizes = np.log(np.array([net.cost(c)["params"] for c in configs], dtype=float))
        order = np.argsort(sizes)
        self._configs, self._sizes = [configs[i] for i in order], sizes[order]

    def draw(self, net, rng):
        if not self._configs:
            self._fill(net)
        out = []
        for _ in range(self.n):
            target = rng.uniform(self._sizes[0], self._sizes[-1])
            at = int(np.searchsorted(self._sizes, target))
            lo, hi = max(0, at - self.near // 2), min(len(self._configs), at + self.near // 2)
            out.append(self._configs[int(rng.integers(lo, hi))])  # one of the `near` nearest: no one config repeats
        return out


class SandwichKDWarm(Sandwich):
    """The sandwich rule with distillation after a warm-up: the students learn from the labels for the
    first `warm` share of the steps, then from ``(1 - w) CE + w KL(teacher || student)``, w rising
    linearly to `mix` over the next `ramp` share (the teacher is poor early on; issue 16's lever)."""

    name = "sandwich_kdwarm"
    distills_by_default = False

    def __init__(self, n: int = 2, warm: float = 0.3, ramp: float = 0.2, mix: float = 0.5):
        super().__init__(n=n)
        self.warm, self.ramp, self.mix = warm, ramp, mix
        self._count, self._total, self._w = 0, 1, 0.0

    def bind(self, net, optimizer, total_steps):
        self._count, self._total = 0, total_steps

    def step(self, net, x, y, rng, loss, distill):
        t = self._count / self._total
        self._count += 1
        self._w = self.mix * min(1.0, max(0.0, (t - self.warm) / max(self.ramp, 1e-9)))
        return super().step(net, x, y, rng, loss, distill)

    def student_loss(self, student, teacher, y, loss, distill):
        from nas.training import kl_divergence

        part = loss(student, y)
        return (1 - self._w) * part + self._w * kl_divergence(student, teacher) if self._w > 0 else part


# registered so that spawned workers (which import this file as their main module) find them by name
for _cls in (FairNAS, Ladder, SandwichSVD, SandwichSpread, SandwichBalanced, SandwichKDWarm):
    REGISTRY.register(_cls.name)(_cls)


def _smoothed(smoothing: float, outputs, targets):
    import torch.nn.functional as F

    return F.cross_entropy(outputs, targets, label_smoothing=smoothing)


def _warmup_cosine(share: float, optimizer, total: int):
    import torch

    warm = max(1, round(share * total))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))


def _kl_temperature(temperature: float, student, teacher):
    """Hinton's KD: ``T^2 KL(softmax(teacher / T) || softmax(student / T))``."""
    from nas.training import kl_divergence

    return temperature**2 * kl_divergence(student / temperature, teacher / temperature)


from nas.training._distill import DISTILLS  # noqa: E402

for _t in (2, 4):  # distill "kl_t2", "kl_t4" in --extra variants
    DISTILLS.setdefault(f"kl_t{_t}", functools.partial(functools.partial, _kl_temperature, float(_t)))


# -- planning and reporting ------------------------------------------------------------------
def spread_configs(net, n: int, seed: int, pool: int, by: str = "macs") -> list[dict]:
    """`n` distinct configs with `by` (MACs or params) spread evenly in log scale from the smallest to the largest."""
    rng = np.random.default_rng(seed)
    candidates = {net.space.key(c): c for c in [net.smallest(), net.largest()] + [net.sample(rng) for _ in range(pool)]}
    configs = list(candidates.values())
    macs = np.log(np.array([net.cost(c)[by] for c in configs], dtype=float))
    chosen = [0, 1]  # smallest, largest
    for target in np.linspace(macs[0], macs[1], n)[1:-1]:
        order = np.argsort(np.abs(macs - target))
        chosen.append(next(int(i) for i in order if int(i) not in chosen))
    return sorted((configs[i] for i in chosen), key=lambda c: net.cost(c)[by])


def _kendall(a, b) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


# MNIST-1D variants: (label, strategy or (name, args), distill); "default" is the family's own
# recipe (train_supernet given only the data); the others use its epochs, lr and batch size.
MNIST1D_VARIANTS = [
    ("default", None, None),
    ("sandwich+kl", ("sandwich", {"n": 4}), "kl"),
    ("sandwich+none", ("sandwich", {"n": 4}), False),
    ("sandwich(n=1)+none", ("sandwich", {"n": 1}), False),
    ("uniform", "uniform", False),
    ("fairnas", "fairnas", False),
    ("ladder", "ladder", False),
    ("mixture(k=2)", ("mixture", {"k": 2, "n": 2}), False),
    ("mixture(k=3)", ("mixture", {"k": 3, "n": 2}), False),
    ("mixture(k=4)", ("mixture", {"k": 4, "n": 2}), False),
]


def _variants(args, net, low_rank: bool) -> list[tuple]:
    if args.data == "mnist1d":
        known = MNIST1D_VARIANTS + [tuple(v) for v in json.loads(args.extra or "[]")]
        chosen = known if not args.strategies else [v for v in known if v[0] in args.strategies.split(",")]
        return [v for v in chosen if v[1] != "ordered_dropout" or low_rank]
    strategies = [s for s in STRATEGIES if s[1] != "ordered_dropout" or low_rank]
    if args.strategies:
        strategies = [s for s in strategies if s[0] in args.strategies.split(",")]
    return strategies


def _recipe(family: str, args, net) -> dict:
    """The per-family recipe of the supernet and of every from-scratch subnet."""
    if args.data == "mnist1d":
        from nas.training import family_recipe

        split, _ = _data(net, args.data)
        resolved = family_recipe(net, split)
        recipe = {k: resolved[k] for k in ("epochs", "lr", "batch_size")}
    else:
        recipe = dict(RECIPES[family])
    if args.epochs:
        recipe["epochs"] = args.epochs
    if args.lr:
        recipe["lr"] = args.lr
    if args.quick and args.data == "digits":
        recipe["epochs"] = 2
    return recipe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=("digits", "mnist1d"), default="digits")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 subnets, 2 seeds, 2 epochs (MNIST-1D: 8 subnets, 2 seeds, the full schedule)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--families", default="", help="default: mlp,cnn (digits) or mlp,cnn1d (mnist1d)")
    parser.add_argument("--strategies", default="", help="comma-separated labels to run (default: all)")
    parser.add_argument("--subnets", type=int, default=16)
    parser.add_argument("--scratch-seeds", type=int, default=0, help="from-scratch seeds per subnet (default: per family)")
    parser.add_argument("--epochs", type=int, default=0, help="override the per-family epochs")
    parser.add_argument("--lr", type=float, default=0.0, help="override the per-family learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the supernets and of the subnet picks")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each)")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency-table rows")
    parser.add_argument("--verbose", action="store_true", help="print per-subnet accuracies")
    parser.add_argument("--calibrations", default="4", help="BatchNorm recalibration batches per subnet; several (4,16): "
                        "each trained supernet is also scored with the others (rows 'label @ N BN batches')")
    parser.add_argument("--extra", default="", help='MNIST-1D: more variants, a JSON list of [label, strategy or [name, args] or null '
                        '(the family default), distill, {supernet-only overrides: epochs, lr, weight_decay, grad_clip, batch_size, seed, label_smoothing, warmup}]')
    parser.add_argument("--cache", default="", help="a folder caching from-scratch results and supernet variants' inherited accuracies across runs "
                        "(keyed by their recipe, seed, subnets; clear it when the training code changes; default: none)")
    parser.add_argument("--space", default="", help="MNIST-1D, one family: the family's keyword arguments as JSON, e.g. "
                        "'{\"stem\": [4, 8, 16]}' (default: the family's own space)")
    args = parser.parse_args(argv)
    try:
        args.space = json.loads(args.space) if args.space else None
    except json.JSONDecodeError as error:
        parser.error(f"--space must be a JSON object, got {args.space!r} ({error})")
    if args.space is not None and (args.data != "mnist1d" or not isinstance(args.space, dict) or len((args.families or "mlp,cnn1d").split(",")) != 1):
        parser.error(f"--space must be a JSON object, with --data mnist1d and one family in --families, got {args.space!r}")

    import torch

    torch.set_num_threads(1)
    mnist = args.data == "mnist1d"
    targets = MNIST1D_TARGETS if mnist else {"tau": TAU_TARGET, "largest": LARGEST_GAP, "smallest": SMALLEST_GAP, "each": None, "time": None}
    calibrations = [int(c) for c in args.calibrations.split(",")]
    began = time.perf_counter()
    families = (args.families or ("mlp,cnn1d" if mnist else "mlp,cnn")).split(",")
    plans, jobs = {}, []
    for family in families:
        net = _build(family, args.seed, args.data, args.space)
        recipe = _recipe(family, args, net)
        seeds = args.scratch_seeds or (2 if args.quick else SCRATCH_SEEDS[family])
        n = (8 if mnist else 4) if args.quick else args.subnets
        configs = spread_configs(net, n, args.seed, 60 if args.quick else 400, by="params" if mnist else "macs")
        low_rank = any(hasattr(m, "cutoff") for m in net.modules())
        strategies = _variants(args, net, low_rank)
        plans[family] = dict(recipe=recipe, seeds=seeds, configs=configs, strategies=strategies, net=net)
        for label, strategy, distill, *more in strategies:
            payload = dict(strategy=strategy, distill=distill, configs=configs, calibrations=calibrations, overrides=more[0] if more else {},
                           cache=args.cache, space=args.space)
            if strategy is None:  # the family's default: only the data (and, in quick mode, the shorter schedule)
                jobs.append(("supernet", family, label, dict(payload, default=True), recipe if args.quick or args.epochs or args.lr else {}, args.seed, args.data))
            else:
                jobs.append(("supernet", family, label, payload, recipe, args.seed, args.data))
        for s in range(seeds):
            for i, config in enumerate(configs):
                jobs.append(("scratch", family, (s, i), dict(config=config, cache=args.cache, space=args.space), recipe, args.seed + s, args.data))

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

    rows: list[dict] = []
    notes: list[str] = []
    for family in families:
        plan = plans[family]
        configs, seeds, n = plan["configs"], plan["seeds"], len(plan["configs"])
        scratch = np.array([[results[("scratch", family, (s, i))][0] for i in range(n)] for s in range(seeds)])
        scratch_seconds = sum(results[("scratch", family, (0, i))][1] for i in range(n))
        truth = scratch.mean(0)
        ceiling = float(np.mean([_kendall(scratch[s], np.delete(scratch, s, 0).mean(0)) for s in range(seeds)])) if seeds > 1 else math.nan
        if args.verbose:
            params = [plan["net"].cost(c)["params"] for c in configs]
            print(f"[{family}] params: {params}")
            print(f"[{family}] from scratch (mean of {seeds} seeds): {np.round(truth * 100, 1).tolist()}")
        taus = {}
        for label, *_ in plan["strategies"]:
            by_batches, seconds = results[("supernet", family, label)]
            for batches, inherited in by_batches.items():
                name = label if batches == calibrations[0] else f"{label} @ {batches} BN batches"
                taus[name] = (_kendall(inherited, truth), np.array(inherited), seconds)
                if args.verbose:
                    print(f"[{family}] {name}: tau {taus[name][0]:.3f}, {np.round(np.array(inherited) * 100, 1).tolist()}")
        default = plan["strategies"][0][0]
        base = taus["uniform"][0] if "uniform" in taus else math.nan
        for label, (tau, inherited, seconds) in taus.items():
            rows.append(dict(family=family, measure="kendall tau, inherited vs scratch", method=label, value=tau, baseline=base,
                             baseline_name="uniform", target=f">= {targets['tau']}" if label == default else "-",
                             ok=(tau >= targets["tau"]) if label == default else None, ceiling=ceiling))
            if mnist:
                worst = float(np.max(100 * (truth - inherited)))
                within = int(np.sum(100 * (truth - inherited) <= targets["each"]))
                rows.append(dict(family=family, measure=f"worst gap of {n} (points below scratch)", method=label, value=worst,
                                 baseline=math.nan, baseline_name=f"{within}/{n} within {targets['each']}",
                                 target=f"<= {targets['each']}" if label == default else "-",
                                 ok=(worst <= targets["each"]) if label == default else None))
                rows.append(dict(family=family, measure=f"train CPU s, supernet / {n} from scratch", method=label, value=seconds,
                                 baseline=scratch_seconds, baseline_name=f"{n} subnets", target=f"ratio <= {targets['time']}" if label == default else "-",
                                 ok=(seconds <= targets["time"] * scratch_seconds) if label == default else None))
        if seeds > 1:
            rows.append(dict(family=family, measure="kendall tau, scratch seed vs other seeds", method=f"{seeds} seeds",
                             value=ceiling, baseline=math.nan, baseline_name="noise ceiling", target="-", ok=None))
            if ceiling < targets["tau"]:
                notes.append(f"[{family}] the noise ceiling ({ceiling:.3f}) is below the tau target ({targets['tau']}): one from-scratch "
                             "seed ranks the other seeds' mean worse than the target asks of the supernet, so here the target "
                             "cannot be told apart from seed noise")
        _, inherited, seconds = taus[default]
        largest, smallest = plan["net"].largest(), plan["net"].smallest()
        for which, index, gap in (("largest", configs.index(largest), targets["largest"]), ("smallest", configs.index(smallest), targets["smallest"])):
            value, reference = 100 * inherited[index], 100 * truth[index]
            rows.append(dict(family=family, measure=f"{which} subnet accuracy (%)", method=default, value=value, baseline=reference,
                             baseline_name="scratch", target=f">= scratch - {gap}", ok=value >= reference - gap))
        if not args.no_latency:
            from nas.latency import LatencyTable

            net = plan["net"]
            table = LatencyTable.build(net, samples=40 if args.quick else 200, repeats=10 if args.quick else 20)
            error = table.error(configs, repeats=20 if args.quick else 100)
            rows.append(dict(family=family, measure="latency table, median rel. error", method=f"table, {len(table.entries)} layers",
                             value=error, baseline=math.nan, baseline_name="measured", target=f"<= {LATENCY_ERROR:.0%}", ok=error <= LATENCY_ERROR))
        if not mnist:
            rows.append(dict(family=family, measure=f"train CPU s, supernet / {n} from scratch", method=default, value=seconds,
                             baseline=scratch_seconds, baseline_name=f"{n} subnets", target="print", ok=None))

    header = ("family", "measure", "method", "value", "baseline", "ratio", "ceiling", "target", "ok")
    lines = []
    for r in rows:
        ratio = r["value"] / r["baseline"] if r["baseline"] and not math.isnan(r["baseline"]) else math.nan
        ok = "-" if r["ok"] is None else ("yes" if r["ok"] else "MISSED")
        lines.append((r["family"], r["measure"], r["method"], _fmt(r["value"]), f"{_fmt(r['baseline'])} ({r['baseline_name']})", _fmt(ratio),
                      _fmt(r.get("ceiling", math.nan)), r["target"], ok))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for line in lines:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)))
    recipes = "; ".join(f"{f}: {plans[f]['recipe']}, {plans[f]['seeds']} scratch seeds, {len(plans[f]['configs'])} subnets" for f in families)
    print(f"data {args.data}; recipes {recipes}")
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
