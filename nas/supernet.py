"""The supernet: a module of elastic layers whose search space is derived from them."""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import torch
from torch import nn

from nas.data import resolve
from nas.elastic import DepthGate, ElasticModule, ElasticSequential, OpChoice, SliceGradients, conv_macs
from nas.evaluate import norm_layers, preserved, recalibrate
from nas.space import Choice, Config, SearchSpace

_CACHE_SIZE = 4096


@dataclass
class _Trace:
    params: int
    macs: int
    graph: nx.DiGraph
    bits: dict[str, int] | None = None  # model_bits and bitops, when some layer has a bit-width


class Supernet(nn.Module):
    """A network of elastic layers: every config of `space` is a subnet sharing its weights.

    Families subclass it (see `search_spaces`); `nas.from_model` wraps a user's model.

    Example:
        >>> from nas.elastic import ElasticLinear
        >>> net = Supernet(ElasticLinear(4, 8, out=Choice("width", [4, 8])), input_shape=(4,))
        >>> with net.activate({"width": 4}):
        ...     net(torch.zeros(1, 4)).shape
        torch.Size([1, 4])

    Args:
        body: the module run by `forward`, built from elastic and plain layers.
        input_shape: shape of one input sample (no batch dimension).
        input_dtype: the input's dtype (None: the weights'; ``torch.long`` for token ids).
        family: registry name of the family that built it (for rebuilding exports).
        family_args: the keyword arguments the family was built with.

    Attributes:
        trained_on: the `nas.data.fingerprint` of the data `nas.train_supernet` trained it
            on (kept in its checkpoint; None until trained): evaluation, search and export
            on other data warn (`nas.DataMismatch`).
    """

    def __init__(
        self,
        body: nn.Module,
        input_shape: tuple[int, ...],
        family: str = "custom",
        family_args: Mapping[str, Any] | None = None,
        input_dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.body = body
        self.input_shape = tuple(int(s) for s in input_shape)
        self.input_dtype = input_dtype
        self.family = family
        self.family_args = dict(family_args or {})
        self.trained_on: dict[str, Any] | None = None
        self._elastic = [m for m in body.modules() if isinstance(m, ElasticModule)]
        self._configurable = [m for m in self._elastic if m.dimensions()]  # a switch touches only these
        self._owners: dict[str, int] = {}
        for module in self._elastic:
            for choice in module.dimensions():
                self._owners[choice.name] = self._owners.get(choice.name, 0) + 1
        self.space = SearchSpace(_derive_dimensions(body), graph=self._graph, canonical=self.canonical)
        self._traces: OrderedDict[str, _Trace] = OrderedDict()
        self._config: Config = self.space.largest()
        self._configure(self._config)

    # -- subnets -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def _apply(self, fn, *args, **kwargs):
        # Moving or casting replaces the weight tensors: drop cached views of the old ones.
        for module in self._elastic:
            module._views.clear()
            module._leaf_views.clear()
            module._grad_buffers.clear()
        return super()._apply(fn, *args, **kwargs)

    @property
    def config(self) -> Config:
        """The config that `forward` runs now (the largest outside `activate`)."""
        return dict(self._config)

    def _configure(self, config: Config) -> None:
        mixture = self._modules.get("mixture")  # K weight copies (strategy "mixture"): bind the config's copy
        if mixture is not None:
            copy = mixture.route(config)
            if copy != mixture.current:
                for module in self._elastic:
                    module._views.clear()  # cached views are of the other copy's weights
                    module._leaf_views.clear()
            mixture.bind(copy)
        for module in self._configurable:
            module._configure(config)
        self.__dict__["_config"] = config  # a plain attribute: no nn.Module.__setattr__ per switch

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """As `nn.Module.load_state_dict`; the state of a mixture-trained supernet (``mixture.*``
        keys) first gives this one its K weight copies (`nas.training.WeightMixture`)."""
        if self._modules.get("mixture") is None and "mixture.router_bias" in state_dict:
            from nas.training import WeightMixture

            WeightMixture.attach(self, int(state_dict["mixture.router_bias"].shape[0]))
        result = super().load_state_dict(state_dict, strict, assign)
        self._configure(self._config)  # the loaded router may route the current config elsewhere
        return result

    def canonical(self, config: Mapping[str, Any]) -> Config:
        """The representative of `config`'s equivalent configs, from what the layers declare.

        A dimension takes a layer's proposed value (`ElasticModule.equivalent`) when every
        layer owning it proposes that value. Families override this to add what they know
        (e.g. the input widths between their layers), calling ``super().canonical``.

        Example:
            >>> from nas.elastic import ElasticLowRankLinear
            >>> net = Supernet(ElasticLowRankLinear(8, 4, rank=Choice("rank", [2, 4, 8])), input_shape=(8,))
            >>> net.canonical({"rank": 4})
            {'rank': 8}
        """
        proposals: dict[str, list] = {}
        for module in self._elastic:
            for name, value in module.equivalent(config).items():
                proposals.setdefault(name, []).append(value)
        out = dict(config)
        for name, values in proposals.items():
            if len(values) == self._owners.get(name) and len(set(values)) == 1:
                out[name] = values[0]
        return out

    @contextmanager
    def sliced_gradients(self) -> Iterator[None]:
        """Inside the block, backward passes add each slice's gradient into its slice of the
        weight's ``.grad`` (no full-size buffer per slice); the gradients are complete on exit.

        The training strategies run each step inside it; a training loop of your own can too.

        Example:
            >>> from nas.elastic import ElasticLinear
            >>> net = Supernet(ElasticLinear(4, 8, out=Choice("width", [4, 8])), input_shape=(4,))
            >>> with net.sliced_gradients(), net.activate({"width": 4}):
            ...     net(torch.ones(1, 4)).sum().backward()
            >>> net.body.weight.grad[:, 0].tolist()
            [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
        """
        if self.__dict__.get("_sink") is not None:  # nested: the outer block closes
            yield
            return
        sink = SliceGradients()
        self.__dict__["_sink"] = sink
        for module in self._elastic:
            module.__dict__["_sink"] = sink
        try:
            with warnings.catch_warnings():
                # a leaf of a crop is not dense, nor is its gradient slice: autograd says so once
                warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")
                yield
        finally:
            for module in self._elastic:
                module.__dict__.pop("_sink", None)
            self.__dict__.pop("_sink", None)
            sink.close()

    def activate(self, config: Mapping[str, Any]) -> _Activation:
        """Run `config`'s subnet inside the block (equivalent configs run the same one, see `canonical`);
        the previous subnet is restored on exit."""
        return _Activation(self, self._checked(config))

    def switching(self) -> _Switching:
        """Inside the block, ``switch(config)`` runs `config`'s subnet from then on (checked as by
        `activate`); the subnet of before is restored once, on exit. Several subnets in a row cost
        one switch each, where an `activate` block per subnet switches back after each.

        Example:
            >>> from nas.elastic import ElasticLinear
            >>> net = Supernet(ElasticLinear(4, 8, out=Choice("width", [4, 8])), input_shape=(4,))
            >>> with net.switching() as switch:
            ...     widths = [(switch({"width": w}), net(torch.ones(1, 4)).shape[1])[1] for w in (4, 8)]
            >>> widths, net.config
            ([4, 8], {'width': 8})
        """
        return _Switching(self)

    def _checked(self, config: Mapping[str, Any]) -> Config:
        """`config` validated and canonical, memoised by its items (a switch re-checks nothing it has seen)."""
        try:
            key = (tuple(config.items()), tuple(map(type, config.values())))  # types too: True is not 1 here
            hit = self.__dict__.setdefault("_checked_configs", {}).get(key)
        except (AttributeError, TypeError):  # not a mapping, or unhashable values: validate says what is wrong
            return self.space.representative(self.space.validate(config))
        if hit is None:
            hit = self.space.representative(self.space.validate(config))
            if len(self._checked_configs) >= _CACHE_SIZE:
                self._checked_configs.clear()
            self._checked_configs[key] = hit
        return hit

    def sample(self, rng: np.random.Generator | int | None = None) -> Config:
        """A random config of the space."""
        return self.space.sample(rng)

    def largest(self) -> Config:
        """The largest config."""
        return self.space.largest()

    def smallest(self) -> Config:
        """The smallest config."""
        return self.space.smallest()

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return next(self.parameters()).device

    def example_input(self, batch: int = 1) -> torch.Tensor:
        """A zero input batch of the right shape and dtype on the supernet's device."""
        return torch.zeros(batch, *self.input_shape, device=self.device, dtype=self.input_dtype)

    # -- analysis ------------------------------------------------------------------------
    def cost(self, config: Mapping[str, Any]) -> dict[str, int]:
        """Parameters and per-sample multiply-accumulates of `config`'s subnet."""
        trace = self._trace(config)
        return {"params": trace.params, "macs": trace.macs, **(trace.bits or {})}

    def _graph(self, config: Config) -> nx.DiGraph:
        return self._trace(config).graph.copy()

    def _trace(self, config: Mapping[str, Any]) -> _Trace:
        config = self.space.validate(config)
        key = self.space.key(config)
        trace = self._traces.get(key)
        if trace is None:
            trace = _trace_run(self, config, {})
        self._remember(key, trace)
        return trace

    def _remember(self, key: str, trace: _Trace) -> None:
        self._traces[key] = trace
        self._traces.move_to_end(key)
        if len(self._traces) > _CACHE_SIZE:
            self._traces.popitem(last=False)

    # -- extraction ----------------------------------------------------------------------
    def extract(
        self,
        config: Mapping[str, Any],
        data: Any = None,
        *,
        calibrate: bool = True,
        batch_size: int = 256,
        calibration_batches: int = 4,
        seed: int = 0,
    ) -> nn.Module:
        """A dense standalone model holding copies of `config`'s slices (no elastic layer).

        BatchNorm statistics are recalibrated for the subnet on `data` exactly as
        `nas.evaluate` does (same batches for the same `batch_size`, `calibration_batches`
        and `seed`), so the model scores what its evaluation stored; the supernet's own
        statistics are left unchanged. The model is in the supernet's train/eval mode.

        Example:
            >>> from nas.elastic import ElasticLinear
            >>> net = Supernet(ElasticLinear(4, 8, out=Choice("width", [4, 8])), input_shape=(4,))
            >>> net.extract({"width": 4})
            Linear(in_features=4, out_features=4, bias=True)

        Args:
            config: the subnet.
            data: the training data to recalibrate BatchNorm on (as `nas.evaluate` takes it);
                required when the net has BatchNorm, unless ``calibrate=False``.
            calibrate: False keeps the supernet's running statistics (no data needed).
            batch_size, calibration_batches, seed: as for `nas.evaluate`.
        """
        config = self.space.validate(config)
        norms = norm_layers(self) if calibrate else []
        if norms and calibration_batches and data is None:
            raise ValueError(
                f"{type(self).__name__}.extract: this supernet has BatchNorm layers, whose statistics must be "
                "recalibrated for the subnet as evaluation does: pass data=(your training data), "
                "or calibrate=False to keep the supernet's statistics."
            )
        mode = self.training
        if not (norms and calibration_batches):
            return self._extract(config).train(mode)
        inputs = resolve(self, data).calibration_inputs(calibration_batches, batch_size, seed, self.device)
        with preserved(self), self.activate(config):
            recalibrate(self, inputs, norms)
            dense = self._extract(config)
        return dense.train(mode)

    def _extract(self, config: Config) -> nn.Module:
        inputs: dict[int, tuple] = {}
        self._remember(self.space.key(config), _trace_run(self, config, inputs))

        def densify(module: nn.Module) -> nn.Module:
            if isinstance(module, ElasticModule):
                if module.leaf and id(module) not in inputs:
                    raise RuntimeError(f"elastic layer {type(module).__name__} never ran under {config}; cannot size it")
                return module.to_dense(inputs.get(id(module), ()), densify)
            memo: dict[int, Any] = {}
            _replace_elastic(module, densify, memo)
            return copy.deepcopy(module, memo)

        param = next(self.parameters())
        with self.activate(config):
            dense = densify(self.body).to(device=param.device, dtype=param.dtype)
        return dense


class _Activation:
    """The context `Supernet.activate` returns: `config`'s subnet inside, the previous one restored on exit."""

    __slots__ = ("net", "config", "previous")

    def __init__(self, net: Supernet, config: Config):
        self.net, self.config, self.previous = net, config, None

    def __enter__(self) -> Supernet:
        net = self.net
        self.previous = net._config
        net._configure(self.config)
        return net

    def __exit__(self, *exc) -> None:
        self.net._configure(self.previous)


class _Switching:
    """The context `Supernet.switching` returns (a small object, not a generator: one per training step)."""

    __slots__ = ("net", "previous")

    def __init__(self, net: Supernet):
        self.net, self.previous = net, None

    def __enter__(self) -> Callable[[Mapping[str, Any]], Config]:
        self.previous = self.net._config
        return self.switch

    def switch(self, config: Mapping[str, Any]) -> Config:
        """Run `config`'s subnet from now on; returns it checked (validated and canonical)."""
        net = self.net
        config = net._checked(config)
        net._configure(config)
        return config

    def __exit__(self, *exc) -> None:
        self.net._configure(self.previous)


def _replace_elastic(module: nn.Module, densify, memo: dict[int, Any]) -> None:
    """Fill a deepcopy memo mapping each outermost elastic descendant to its dense version."""
    for child in module.children():
        if isinstance(child, ElasticModule):
            memo[id(child)] = densify(child)
        else:
            _replace_elastic(child, densify, memo)


def _derive_dimensions(body: nn.Module) -> list[Choice]:
    """The space's dimensions from the elastic layers, with conditions from depth and op choices."""
    found: dict[str, list] = {}

    def record(choice: Choice, when: tuple | None) -> None:
        entry = found.setdefault(choice.name, [choice, []])
        if entry[0].values != choice.values:
            raise ValueError(
                f"dimension {choice.name!r} is declared with different values: "
                f"{list(entry[0].values)} and {list(choice.values)}"
            )
        entry[1].append(when)

    def walk(module: nn.Module, when: tuple | None) -> None:
        if isinstance(module, ElasticModule):
            for choice in module.dimensions():
                record(choice, when)
        if isinstance(module, ElasticSequential):
            for i, block in enumerate(module.blocks):
                walk(block, module.block_condition(i) or when)
            return
        if isinstance(module, DepthGate):
            walk(module.block, module.block_condition() or when)
            return
        if isinstance(module, OpChoice):
            for name, op in module.ops.items():
                walk(op, (module.choice.name, (name,)))
            return
        for child in module.children():
            walk(child, when)

    walk(body, None)
    dims = []
    for choice, whens in found.values():
        parents = {w[0] if w else None for w in whens}
        when = None
        if len(parents) == 1 and None not in parents:
            allowed = {v for w in whens for v in w[1]}
            parent_values = found[next(iter(parents))][0].values
            when = (next(iter(parents)), tuple(v for v in parent_values if v in allowed))
        dims.append(Choice(choice.name, choice.values, when))
    return dims


def _trace_run(net: Supernet, config: Config, inputs: dict[int, tuple]) -> _Trace:
    """Run `config` once on a 1-sample input, recording cost, the op graph and layer inputs."""
    graph = nx.DiGraph()
    graph.add_node(0, op="input", shape=list(net.input_shape))
    state = {"last": 0, "params": 0, "macs": 0, "seen": set(), "starts": [], "tensors": set(), "model_bits": 0, "bitops": 0, "quantized": False}
    inside_leaf: set[int] = set()
    for module in net.body.modules():
        if isinstance(module, ElasticModule) and module.leaf:
            inside_leaf.update(id(m) for m in module.modules() if m is not module)

    def add_node(attrs: dict) -> None:
        node = graph.number_of_nodes()
        graph.add_node(node, **attrs)
        graph.add_edge(state["last"], node)
        state["last"] = node

    def pre_hook(module, args):
        if getattr(module, "merges", False):
            state["starts"].append(state["last"])

    def hook(module, args, output):
        if id(module) in inside_leaf:
            return
        first = id(module) not in state["seen"]
        state["seen"].add(id(module))
        if isinstance(module, ElasticModule):
            if not module.leaf:
                return
            inputs[id(module)] = args
            params, macs, attrs = module._cost(args, output)
        else:
            if getattr(module, "merges", False):
                start = state["starts"].pop()
                if isinstance(output, torch.Tensor) and output.shape == args[0].shape:
                    add_node({"op": "add"})
                    graph.add_edge(start, state["last"])
                return
            own = [p for p in module._parameters.values() if p is not None]
            if next(module.children(), None) is not None and not own:
                return
            params = sum(p.numel() for p in own if id(p) not in state["tensors"])  # tied weights count once
            state["tensors"].update(id(p) for p in own)
            macs = dense_macs(module, args, output)
            attrs = {"op": type(module).__name__.lower()}
            if isinstance(output, torch.Tensor):
                attrs["out"] = list(output.shape[1:])
        if first:
            state["params"] += params
            state["model_bits"] += attrs.get("weight_bits", 32 * params)
        state["macs"] += macs
        state["bitops"] += attrs.get("bitops", 32 * macs)
        state["quantized"] |= "weight_bits" in attrs
        add_node(attrs)

    handles = []
    for module in net.body.modules():
        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(hook))
    modes = {m: m.training for m in net.modules()}
    try:
        net.eval()
        with torch.no_grad(), net.activate(config):
            net(net.example_input(1))
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode
    add_node({"op": "output"})
    bits = {"model_bits": int(state["model_bits"]), "bitops": int(state["bitops"])} if state["quantized"] else None
    return _Trace(int(state["params"]), int(state["macs"]), graph, bits)


def dense_macs(module: nn.Module, args: tuple, output: Any) -> int:
    """Per-sample MACs of a plain linear or conv layer (0 for other layers)."""
    if isinstance(module, nn.Linear):
        return output[0].numel() * module.in_features
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return conv_macs(module, output)
    return 0
