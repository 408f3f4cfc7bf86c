"""The spec's schema: one `Field` per key (`FIELDS`), their flags, and the checks of a value against its field."""

from __future__ import annotations

from nas.backends import names as backend_names
from nas.devices import DEVICES, PRECISIONS
from nas.methods import searcher_names
from nas.registry import FAMILIES
from nas.schema import Field
from nas.training import BATCH_SIZE, EPOCHS, LR, OPTIMIZERS, SCHEDULES, STRATEGIES, WEIGHT_DECAY


TRAIN_BACKENDS = ("local", "ray")


def _strategies() -> list[str]:
    return sorted(STRATEGIES)


FIELDS: tuple[Field, ...] = (
    Field("name", "str", "run", "run name; the run directory is runs/<name>", identity=False),
    Field("seed", "int", 0, "seed of the supernet's initial weights, its training and the search", flag="seed", minimum=0, maximum=2**32 - 1),
    Field("device", "str", "auto", "where the supernet trains, is evaluated and timed: 'auto' (CUDA when present), 'cpu' or 'cuda'; "
          "with train.backend = 'ray', whether the training workers get GPUs", flag="device", choices=DEVICES, identity=False),
    Field("space.family", "str", "mlp", "supernet family (see `nas spaces`)", flag="space", choices=FAMILIES.names),
    Field("space.args", "table", {}, "the family's arguments (e.g. widths = [16, 32]); with space.source: the function's"),
    Field("space.source", "str", None, "'package.module:function' returning your model, or (model, example_input), "
          "made a supernet by nas.from_model (family 'custom')", flag="model"),
    Field("space.convert", "table", {}, "nas.from_model's options for space.source (e.g. widths = [0.5, 1.0], depth = false, ranks = [4, 8])"),
    Field("data.source", "str", "digits", "'digits' (scikit-learn's bundled digits), 'mnist1d' (generated MNIST-1D) or 'package.module:function' returning the data"),
    Field("data.args", "table", {}, "arguments of the data source (digits: seed, val_fraction, test_fraction; mnist1d: samples, seed, val_fraction and the generator's)"),
    Field("train.strategy", "str", "sandwich", "supernet training strategy", choices=_strategies),
    Field("train.strategy_args", "table", {}, "the strategy's arguments (e.g. n = 2)"),
    Field("train.epochs", "int", EPOCHS, "training epochs (0: no training)", flag="epochs", minimum=0),
    Field("train.lr", "float", LR, "peak learning rate", minimum=0, above=True),
    Field("train.batch_size", "int", BATCH_SIZE, "training batch size", minimum=1),
    Field("train.optimizer", "str", "adamw", "optimizer", choices=OPTIMIZERS),
    Field("train.weight_decay", "float", WEIGHT_DECAY, "weight decay", minimum=0),
    Field("train.schedule", "str", "cosine", "learning-rate schedule", choices=SCHEDULES),
    Field("train.distill", "str", "default", "in-place distillation ('default': the strategy's)", choices=("default", "kl", "alpha", "off")),
    Field("train.grad_clip", "float", None, "clip the gradient norm to this value (unset: no clipping)", minimum=0, above=True),
    Field("train.precision", "str", "fp32", "training precision: 'fp32', or 'bf16' autocast (CUDA only)", flag="precision", choices=PRECISIONS),
    Field("train.backend", "str", "local", "where the supernet trains: 'local' (this process) or 'ray' (data-parallel Ray Train workers; "
          "`nas train --backend`)", flag="train_backend", choices=TRAIN_BACKENDS, identity=False),
    Field("train.workers", "int", None, "Ray Train workers with train.backend = 'ray' (unset: one per GPU, else per CPU of the cluster)",
          flag="workers", minimum=1, identity=False),
    Field("evaluate.batch_size", "int", 256, "evaluation batch size", minimum=1),
    Field("evaluate.calibration_batches", "int", 4, "training batches that recalibrate BatchNorm per subnet", minimum=0),
    Field("evaluate.latency", "str", None, "how latency_ms is obtained (default: 'table' when it is an objective)", choices=("table", "measured")),
    Field("evaluate.latency_batch_size", "int", 1, "batch size latency is measured or predicted at", minimum=1, maximum=4096),
    Field("search.searcher", "str", "evolution", "searcher (it chooses the method, `nas.methods`)", flag="searcher", choices=searcher_names),
    Field("search.objectives", "strs", ["accuracy:max", "params:min"], "objectives, e.g. accuracy:max,params:min", flag="objectives"),
    Field("search.constraints", "strs", [], "hard bounds on cost metrics, e.g. ['params<=50000', 'latency_ms<=2']: configs that "
          "break one are never evaluated, and the front and picks meet them", flag="constraints"),
    Field("search.budget", "int", 100, "total evaluations (a method that trains the supernet itself: its epochs); raise it to extend a finished run",
          flag="budget", minimum=1, maximum=10**9, identity=False),
    Field("search.batch_size", "int", None, "configs asked and evaluated per step (unset: the backend's parallelism, at least 8; "
          "set it to resume on another backend with the same proposals)", minimum=1),
    Field("search.args", "table", {}, "the searcher's arguments (e.g. population_size = 24)"),
    Field("backend.name", "str", "local", "where evaluations run", flag="backend", choices=backend_names, identity=False),
    Field("backend.address", "str", None, "Ray cluster address ('auto': the running cluster); ray backend only", flag="ray_address", identity=False),
    Field("backend.args", "table", {}, "the backend's own arguments", identity=False),
)
_BY_KEY = {f.key: f for f in FIELDS}
_ARGS_OF = ("space.family", "search.searcher")  # keys whose arguments table belongs to the chosen name
_BY_FLAG = {f.flag: f for f in FIELDS if f.flag}
SECTIONS = ("space", "data", "train", "evaluate", "search", "backend")


def flags() -> dict[str, Field]:
    """The spec keys that have a flag (``--budget``) and keyword (``budget=``), by that name."""
    return dict(_BY_FLAG)


