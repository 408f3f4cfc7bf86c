"""Weisfeiler-Lehman subtree features of the config's graph, with a GP or ridge on top (NAS-BOWL style)."""

from __future__ import annotations

import warnings
import weakref
from collections import Counter
from collections.abc import Mapping

import networkx as nx
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction import DictVectorizer
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, DotProduct, WhiteKernel
from sklearn.linear_model import Ridge

from nas.space import SearchSpace
from predictors._base import Predictor, _is_int, _is_number, check_param
from predictors._registry import register

# Per space: (h, config key) -> WL feature counts. The features are a pure function of
# the space's graph builder, the key and h, so the cache is shared by every predictor
# on the space (cross-validation refits reuse it) and dies with the space.
_CACHE: weakref.WeakKeyDictionary[SearchSpace, dict] = weakref.WeakKeyDictionary()


def node_label(attrs: Mapping) -> str:
    """The initial WL label of a node: its ``op`` and its size attributes, sorted by name."""
    sizes = ",".join(f"{k}={v}" for k, v in sorted(attrs.items()) if k != "op")
    return f"{attrs.get('op', '?')}({sizes})"


def wl_features(graph: nx.DiGraph, h: int) -> dict[str, int]:
    """Counts of the graph's WL subtree patterns of depth 0..h (depth 0: the node labels).

    Uses `networkx.weisfeiler_lehman_subgraph_hashes`; on directed graphs (networkx >= 3.5)
    in- and out-neighbours are told apart.
    """
    labelled = nx.DiGraph()
    labelled.add_nodes_from((n, {"label": node_label(a)}) for n, a in graph.nodes(data=True))
    labelled.add_edges_from(graph.edges())
    counts = Counter(f"0:{a['label']}" for _, a in labelled.nodes(data=True))
    # Each size on its own too ("lowrank_linear.width=128"): patterns that share a width but
    # not a rank then share a feature, which the full labels alone cannot express.
    counts.update(
        f"0:{a.get('op', '?')}.{k}={v}" for _, a in graph.nodes(data=True) for k, v in a.items() if k != "op"
    )
    if h > 0:
        with warnings.catch_warnings():
            # networkx 3.5 warns that directed hashes changed from earlier versions; features
            # are only ever compared within one process, so that does not matter here.
            warnings.filterwarnings("ignore", "The hashes produced for directed graphs", UserWarning)
            hashes = nx.weisfeiler_lehman_subgraph_hashes(labelled, node_attr="label", iterations=h, digest_size=8)
        for per_node in hashes.values():
            counts.update(f"{i}:{x}" for i, x in enumerate(per_node[-h:], start=1))
    return dict(counts)


@register("graph")
class GraphPredictor(Predictor):
    """A regressor on Weisfeiler-Lehman subtree counts of ``space.to_graph(config)``.

    Each node starts labelled by its ``op`` and sizes; ``h`` WL iterations hash each node's
    neighbourhood up to ``h`` hops, and a config becomes the counts of those patterns plus
    of each ``op.size=value`` on its own (vectorised by `DictVectorizer`; patterns unseen in
    training are dropped). With ``regressor="gp"`` this is a GP whose kernel is the WL kernel
    (dot product of the counts) plus noise, as in NAS-BOWL, and has `predict_std`;
    ``"ridge"`` is a linear model on the counts. Features are cached per config key, so
    repeated predictions over a candidate pool are cheap.

    Example:
        >>> import predictors
        >>> from nas import Choice, SearchSpace
        >>> space = SearchSpace([Choice("depth", [1, 2]), Choice("w1", [8, 16], when=("depth", [2]))])
        >>> configs = [{"depth": 1}, {"depth": 2, "w1": 8}, {"depth": 2, "w1": 16}]
        >>> model = predictors.GraphPredictor(space).fit(configs, [0.5, 0.6, 0.7])
        >>> model.predict(configs).shape
        (3,)

    Args:
        space: the `nas.SearchSpace`; its graph builder (or the default chain graph) gives the graphs.
        h: WL iterations (subtree depth), >= 0.
        regressor: ``"gp"`` or ``"ridge"``.
        alpha: ridge penalty (``regressor="ridge"`` only), > 0.
        seed: seed of the GP optimiser.
    """

    def __init__(self, space, h: int = 2, regressor: str = "gp", alpha: float = 1.0, seed: int | None = 0):
        self.h = h
        self.regressor = regressor
        self.alpha = alpha
        super().__init__(space, seed)

    @property
    def supports_std(self) -> bool:  # type: ignore[override]
        return self.regressor == "gp"

    def _check_params(self) -> None:
        super()._check_params()
        check_param(self, "h", lambda v: _is_int(v) and v >= 0, "an int >= 0")
        check_param(self, "regressor", lambda v: v in ("gp", "ridge"), "'gp' or 'ridge'")
        check_param(self, "alpha", lambda v: _is_number(v) and v > 0, "a float > 0")

    def features(self, configs) -> list[dict[str, int]]:
        """The WL pattern counts of each config (cached by ``space.key(config)``)."""
        cache = _CACHE.setdefault(self.space, {})
        out = []
        for config in configs:
            key = (self.h, self.space.key(config))
            counts = cache.get(key)
            if counts is None:
                counts = cache[key] = wl_features(self.space.to_graph(config), self.h)
            out.append(counts)
        return out

    def _fit(self, configs, y):
        self._encode(configs)  # validates every config against the space
        self.vectoriser_ = DictVectorizer(sparse=False)
        X = self.vectoriser_.fit_transform(self.features(configs))
        if self.regressor == "ridge":
            self.model_ = Ridge(alpha=self.alpha).fit(X, y)
            return
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * DotProduct(1.0, (1e-3, 1e3)) + WhiteKernel(1e-2, (1e-8, 1.0))
        self.model_ = GaussianProcessRegressor(kernel, normalize_y=True, random_state=self.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model_.fit(X, y)

    def _transform(self, configs) -> np.ndarray:
        self._encode(configs)
        return self.vectoriser_.transform(self.features(configs))

    def _predict(self, configs) -> np.ndarray:
        return self.model_.predict(self._transform(configs))

    def _predict_std(self, configs) -> np.ndarray:
        return self.model_.predict(self._transform(configs), return_std=True)[1]

    def _predict_mean_std(self, configs) -> tuple[np.ndarray, np.ndarray]:
        return self.model_.predict(self._transform(configs), return_std=True)  # one posterior for both
