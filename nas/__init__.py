"""nas: neural architecture search over weight-entangled supernets.

Train a supernet once (`train_supernet`), search its subnets for the Pareto front of
accuracy against cost (`search`), and ship the one you pick (`export`, `load_model`).
`import nas` imports torch but never Ray, ONNX or matplotlib, and does not touch CUDA.
"""

from nas.data import DataMismatch
from nas.errors import NASError, SearchFailed
from nas.evaluate import evaluate
from nas.evaluation import Evaluation
from nas.export import export, load_model
from nas.from_model import from_model
from nas.latency import LatencyTable, measure_latency
from nas.pareto import Constraint, Objective, hypervolume, knee_point, pareto_front, pick
from nas.report import report
from nas.result import SearchResult
from nas.runs import Run, RunError, RunSpec, SpecError, load_run, load_spec, run_spec
from nas.searching import search
from nas.space import Choice, Config, InvalidConfig, SearchSpace
from nas.supernet import Supernet
from nas.training import train_standalone, train_supernet

__all__ = [
    "Choice",
    "Config",
    "Constraint",
    "Evaluation",
    "InvalidConfig",
    "LatencyTable",
    "NASError",
    "DataMismatch",
    "SearchFailed",
    "Objective",
    "Run",
    "RunError",
    "RunSpec",
    "SearchResult",
    "SearchSpace",
    "SpecError",
    "Supernet",
    "evaluate",
    "export",
    "from_model",
    "hypervolume",
    "knee_point",
    "load_model",
    "load_run",
    "load_spec",
    "measure_latency",
    "pareto_front",
    "pick",
    "report",
    "run_spec",
    "search",
    "train_standalone",
    "train_supernet",
]
__version__ = "0.1.0"
