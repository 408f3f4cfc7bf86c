"""nas: neural architecture search over weight-entangled supernets."""

from nas import search
from nas.evaluation import Evaluation
from nas.from_model import from_model
from nas.pareto import Constraint, Objective, hypervolume, knee_point, pareto_front, pick
from nas.space import Choice, Config, InvalidConfig, SearchSpace
from nas.supernet import Supernet

__all__ = [
    "Choice",
    "Config",
    "Constraint",
    "Evaluation",
    "InvalidConfig",
    "Objective",
    "SearchSpace",
    "Supernet",
    "from_model",
    "hypervolume",
    "knee_point",
    "pareto_front",
    "pick",
    "search",
]
__version__ = "0.1.0"
