"""nas: neural architecture search over weight-entangled supernets."""

from nas.evaluation import Evaluation
from nas.space import Choice, Config, InvalidConfig, SearchSpace

__all__ = ["Choice", "Config", "Evaluation", "InvalidConfig", "SearchSpace"]
__version__ = "0.1.0"
