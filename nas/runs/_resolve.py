"""A spec's semantic checks and what it builds: the half of `RunSpec` that uses the registries."""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any

import torch

from nas.data import check_metrics, digits, mnist1d
from nas.data import resolve as resolve_data
from nas.errors import SpecError
from nas.metrics import METRICS
from nas.pareto import parse_objectives
from nas.registry import build_family
from nas.runs._schema import FIELDS
from nas.schema import first_line, normal
from nas.training import get_strategy

if TYPE_CHECKING:
    from nas.runs._spec import RunSpec


class Resolving:
    """`RunSpec`'s checks against the registries, the objects it builds and the keyword arguments it gives.

    Mixed into `RunSpec`, whose values it reads (``self[key]``, `label`, `method`) and fills in.
    """

    def resolve(self) -> RunSpec:
        """Check names and arguments against the registries and fill in the defaults they use.

        Builds the supernet, the data and the searcher once (cheap); raises `SpecError`
        naming the key for anything they refuse. The method (`nas.methods`) checks
        ``search.args`` and whatever else it needs of the spec. Returns self.
        """
        if self._resolved:
            return self
        for f in FIELDS:
            allowed = f.allowed() if f.kind == "str" else None
            value = self[f.key]
            if allowed is not None and value is not None and value not in allowed:
                raise SpecError(f"{self.label(f.key)} must be one of {allowed}, got {value!r}")
        net = self.build_net()
        self._values["space"]["args"] = normal(dict(net.family_args))
        data = self._resolve_data(net)
        method = self.method
        if method.trains:
            self._resolve_train()
        objectives = self._resolve_objectives()
        try:
            check_metrics(data, objectives)
        except ValueError as err:
            raise SpecError(f"{self.label('search.objectives')}: {first_line(err)}") from None
        self._values["search"]["args"] = method.resolve(self, net, objectives)
        self._resolve_backend()
        self._resolved = True
        return self

    def build_net(self) -> Any:
        """A new supernet of the spec's family, its initial weights drawn from the spec's seed."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self["seed"])
            try:
                return build_family(self["space.family"], **self["space.args"])
            except ValueError as err:
                raise SpecError(f"{self.label('space.args')} does not suit family {self['space.family']!r}: {first_line(err)}") from None
            except Exception as err:  # a family that rejects its arguments in its own words
                raise SpecError(f"{self.label('space.args')} does not suit family {self['space.family']!r}: {type(err).__name__}: {first_line(err)}") from None

    def data(self, net: Any) -> Any:
        """The training and validation data (a `nas.data.Data`)."""
        source, args = self["data.source"], dict(self["data.args"])
        label = self.label("data.args")
        if source in ("digits", "mnist1d"):
            kind, make = getattr(net, "data_kind", None), digits if source == "digits" else mnist1d
            if kind is None:
                raise SpecError(f"family {self['space.family']!r} has no {source} data (no data_kind); set data.source")
            try:
                return resolve_data(net, make(kind, **args))
            except TypeError:
                allowed = [p for p in inspect.signature(make).parameters if p != "kind"]
                bad = next((k for k in args if k not in allowed), "?")
                raise SpecError(f"unknown key {bad!r} in {label} for {source}; the keys are: {', '.join(allowed)}") from None
            except ValueError as err:
                raise SpecError(f"{label} ({source}): {first_line(err)}") from None
        module, _, attr = source.partition(":")
        if not module or not attr:
            raise SpecError(f"{self.label('data.source')} must be 'digits', 'mnist1d' or 'package.module:function', got {source!r}")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise SpecError(f"{self.label('data.source')}: cannot import {source!r} ({first_line(err)})") from None
        try:
            made = factory(**args)
            if made is None:
                raise SpecError(f"{self.label('data.source')} = {source!r} returned None; it must return the data (a (train, val) pair or a nas.data.Data)")
            return resolve_data(net, made)
        except SpecError:
            raise
        except (TypeError, ValueError) as err:
            raise SpecError(f"{self.label('data.source')} = {source!r} with {label} {args}: {first_line(err)}") from None

    def strategy(self) -> Any:
        """The training `Strategy`."""
        try:
            return get_strategy(self["train.strategy"], **self["train.strategy_args"])
        except (TypeError, ValueError) as err:
            raise SpecError(f"{self.label('train.strategy_args')} for strategy {self['train.strategy']!r}: {first_line(err)}") from None

    def train_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `nas.training.train_supernet` (besides net, data and run)."""
        distill = {"default": None, "off": False}.get(self["train.distill"], self["train.distill"])
        return {
            "strategy": self.strategy(),
            "epochs": self["train.epochs"],
            "lr": self["train.lr"],
            "batch_size": self["train.batch_size"],
            "distill": distill,
            "optimizer": self["train.optimizer"],
            "weight_decay": self["train.weight_decay"],
            "schedule": self["train.schedule"],
            "grad_clip": self["train.grad_clip"],
            "seed": self["seed"],
        }

    def search_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `nas.search` (besides net, data and run), whatever the method."""
        backend_kwargs = {
            "batch_size": self["evaluate.batch_size"],
            "calibration_batches": self["evaluate.calibration_batches"],
            "latency_batch_size": self["evaluate.latency_batch_size"],
            **self["backend.args"],
        }
        if self["backend.address"] is not None:
            backend_kwargs["address"] = self["backend.address"]
        return {
            "objectives": list(self["search.objectives"]),
            "searcher": self["search.searcher"],
            "budget": self["search.budget"],
            "backend": self["backend.name"],
            "seed": self["seed"],
            "batch_size": self["search.batch_size"],
            "latency": self["evaluate.latency"],
            "searcher_kwargs": dict(self["search.args"]),
            "backend_kwargs": backend_kwargs,
        }

    def _resolve_data(self, net: Any) -> Any:
        data = self.data(net)
        if self["data.source"] in ("digits", "mnist1d"):
            make = digits if self["data.source"] == "digits" else mnist1d
            defaults = {k: p.default for k, p in inspect.signature(make).parameters.items() if k != "kind" and p.kind is p.POSITIONAL_OR_KEYWORD}
            self._values["data"]["args"] = {**defaults, **self["data.args"]}
        return data

    def _resolve_train(self) -> None:
        strategy = self.strategy()
        self._values["train"]["strategy_args"] = normal(strategy.params())

    def _resolve_objectives(self) -> list[Any]:
        try:
            objectives = parse_objectives(self["search.objectives"])
        except ValueError as err:
            raise SpecError(f"{self.label('search.objectives')}: {first_line(err)}") from None
        unknown = [o.name for o in objectives if o.name not in METRICS]
        if unknown:
            raise SpecError(f"{self.label('search.objectives')} names unknown metric {unknown[0]!r}; the metrics are: {', '.join(METRICS)}")
        self._values["search"]["objectives"] = [str(o) for o in objectives]
        return objectives

    def _resolve_backend(self) -> None:
        if self["backend.address"] is not None and self["backend.name"] != "ray":
            raise SpecError(f"{self.label('backend.address')} applies only to the ray backend (backend is {self['backend.name']!r})")
