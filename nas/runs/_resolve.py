"""A spec's semantic checks and what it builds: the half of `RunSpec` that uses the registries."""

from __future__ import annotations

import inspect
import math
import os
from typing import TYPE_CHECKING, Any

import torch

from nas.data import KINDS, MNIST1D_KINDS, check_metrics, digits, mnist1d, sample_shape
from nas.data import resolve as resolve_data
from nas.errors import SpecError
from nas.metrics import METRICS, check_constraints, of
from nas.pareto import Constraint, parse_objectives
from nas.registry import build_family
from nas.runs._schema import FIELDS
from nas.runs._trust import import_source
from nas.schema import first_line, normal
from nas.searching import check_reachable
from nas.training import family_recipe, get_strategy

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
        custom = self["space.source"] is not None
        if custom:
            if "space.family" in self._labels and self["space.family"] != "custom":
                raise SpecError(f"give {self.label('space.family')} or {self.label('space.source')}, not both")
            self._values["space"]["family"] = "custom"
        elif self["space.convert"]:
            raise SpecError(f"{self.label('space.convert')} applies only with space.source (a model of your own)")
        for f in FIELDS:
            allowed = f.allowed() if f.kind == "str" else None
            value = self[f.key]
            if custom and f.key == "space.family":
                continue
            if allowed is not None and value is not None and value not in allowed:
                raise SpecError(f"{self.label(f.key)} must be one of {allowed}, got {value!r}")
        if not custom:
            self._check_size()
        net = self.build_net()
        if not custom:
            self._values["space"]["args"] = normal(dict(net.family_args))
        data = self._resolve_data(net)
        method = self.method
        if method.trains:
            self._resolve_train(net, data)
        objectives = self._resolve_objectives()
        self._resolve_constraints(net)
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
            if self["space.source"] is not None:
                return self._build_custom()
            try:
                return build_family(self["space.family"], **self["space.args"])
            except ValueError as err:
                raise SpecError(f"{self.label('space.args')} does not suit family {self['space.family']!r}: {first_line(err)}") from None
            except Exception as err:  # a family that rejects its arguments in its own words
                raise SpecError(f"{self.label('space.args')} does not suit family {self['space.family']!r}: {type(err).__name__}: {first_line(err)}") from None

    def _check_size(self) -> None:
        """Refuse a family whose weights would not fit in half this machine's memory (built on the meta device: no memory)."""
        try:
            with torch.device("meta"):
                net = build_family(self["space.family"], **self["space.args"])
        except Exception:  # noqa: BLE001 (bad arguments are reported by build_net; a family that cannot go to meta is not checked)
            return
        size = sum(t.numel() * t.element_size() for t in [*net.parameters(), *net.buffers()])
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 0
        if memory and size > memory // 2:
            raise SpecError(
                f"{self.label('space.args')} make a {self['space.family']!r} supernet of {size / 2**30:,.1f} GiB of weights, more than "
                f"half this machine's memory ({memory / 2**30:,.1f} GiB); choose smaller sizes (widths, depths, ...)"
            )

    def _build_custom(self) -> Any:
        """`nas.from_model` of the model that ``space.source`` returns (called with ``space.args``)."""
        from nas.from_model import from_model

        source, label = self["space.source"], self.label("space.source")
        made = self._call_source("space")
        model, example = made if isinstance(made, tuple) and len(made) == 2 else (made, None)
        if not isinstance(model, torch.nn.Module):
            raise SpecError(f"{label} = {source!r} must return a torch.nn.Module or (module, example_input), got {type(model).__name__}")
        if example is None:
            example = self._example_input(source)
        if not isinstance(example, torch.Tensor):
            raise SpecError(f"{label} = {source!r} returned an example input of type {type(example).__name__}; a torch.Tensor batch is needed")
        convert = dict(self["space.convert"])
        allowed = [p for p in inspect.signature(from_model).parameters if p not in ("model", "example_input", "data")]
        bad = [k for k in convert if k not in allowed]
        if bad:
            raise SpecError(f"unknown key {bad[0]!r} in {self.label('space.convert')}; the keys are: {', '.join(allowed)}")
        try:
            return from_model(model, example, **convert)
        except (TypeError, ValueError) as err:
            raise SpecError(f"{label} = {source!r} with {self.label('space.convert')} {convert}: {first_line(err)}") from None

    def _example_input(self, source: str) -> torch.Tensor:
        """One training sample of the spec's data source, as a batch of one (for a model returned without its input)."""
        if self["data.source"] in ("digits", "mnist1d"):
            raise SpecError(f"{self.label('space.source')} = {source!r} returned no example input; return (model, example_input) "
                            "or name a data.source 'package.module:function'")
        made = self._call_source("data")
        train = made[0] if isinstance(made, (tuple, list)) and made else getattr(made, "train", None)
        if train is None:
            raise SpecError(f"{self.label('data.source')} = {self['data.source']!r} returned {type(made).__name__}, not the data")
        if isinstance(train, torch.utils.data.DataLoader):
            return torch.as_tensor(next(iter(train))[0][:1])
        return torch.as_tensor(train[0][0]).unsqueeze(0)

    def _call_source(self, section: str) -> Any:
        """What ``<section>.source`` returns when called with ``<section>.args``; its failure as one `SpecError` line."""
        source, label, args = self[f"{section}.source"], self.label(f"{section}.source"), dict(self[f"{section}.args"])
        factory = import_source(source, label, trusted=self._trusted, where=self._where)
        try:
            return factory(**args)
        except (TypeError, ValueError) as err:
            raise SpecError(f"{label} = {source!r} with {self.label(f'{section}.args')} {args}: {first_line(err)}") from None
        except Exception as err:  # noqa: BLE001 (the user's code failed: say where and why, in one line)
            raise SpecError(f"{label} = {source!r} raised {type(err).__name__}: {first_line(err)}") from None

    def data(self, net: Any) -> Any:
        """The training and validation data (a `nas.data.Data`)."""
        source, args = self["data.source"], dict(self["data.args"])
        label = self.label("data.args")
        if source in ("digits", "mnist1d"):
            kind, make = getattr(net, "data_kind", None), digits if source == "digits" else mnist1d
            if kind is None and self["space.source"] is not None:  # a model of one's own: the kind its input fits
                kind = self._kind_for(net, source, make, args)
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
        made = self._call_source("data")
        if made is None:
            raise SpecError(f"{self.label('data.source')} = {source!r} returned None; it must return the data (a (train, val) pair or a nas.data.Data)")
        try:
            return resolve_data(net, made)
        except (TypeError, ValueError) as err:
            raise SpecError(f"{self.label('data.source')} = {source!r} with {label} {args}: {first_line(err)}") from None

    def _kind_for(self, net: Any, source: str, make: Any, args: dict[str, Any]) -> str:
        """The split of the built-in `source` whose samples have the custom model's input shape."""
        kinds = KINDS if source == "digits" else MNIST1D_KINDS
        for kind in kinds:
            try:
                data = make(kind, **args)
            except (TypeError, ValueError):
                break  # bad data.args: reported with the first kind below
            if sample_shape(data) == tuple(net.input_shape):
                return kind
        else:
            raise SpecError(f"{self.label('space.source')}: the model's input {list(net.input_shape)} fits no {source} split "
                            f"({', '.join(kinds)}); set data.source to data of your own")
        return kinds[0]

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
            "precision": self["train.precision"],
            **({"backend": "ray", "workers": self["train.workers"], "device": self["device"], "ray_address": self["backend.address"]}
               if self["train.backend"] == "ray" else {}),
        }

    def search_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `nas.search` (besides net, data and run), whatever the method."""
        backend_kwargs = {
            "batch_size": self["evaluate.batch_size"],
            "calibration_batches": self["evaluate.calibration_batches"],
            "latency_batch_size": self["evaluate.latency_batch_size"],
            **self["backend.args"],
        }
        if self["backend.address"] is not None and self["backend.name"] == "ray":
            backend_kwargs["address"] = self["backend.address"]
        return {
            "objectives": list(self["search.objectives"]),
            "constraints": list(self["search.constraints"]),
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

    def _resolve_train(self, net: Any, data: Any) -> None:
        """The family's recipe (`nas.training.family_recipe`) for each ``[train]`` key the spec does not give."""
        given = lambda key: f"train.{key}" in self._labels  # noqa: E731
        recipe = family_recipe(net, resolve_data(net, data))
        train = self._values["train"]
        if not (given("strategy") or given("strategy_args")):
            strategy = get_strategy(recipe["strategy"])
            train["strategy"] = strategy.name
            train["strategy_args"] = normal(strategy.params())
        for key in ("epochs", "lr", "batch_size", "weight_decay"):
            if not given(key):
                train[key] = recipe[key]
        if not given("distill"):
            train["distill"] = {None: "default", False: "off", True: "kl"}.get(recipe["distill"], recipe["distill"])
        train["strategy_args"] = normal(self.strategy().params())

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

    def _resolve_constraints(self, net: Any) -> None:
        """Each constraint parsed, on a cost metric, and (for analytic ones) met by some subnet."""
        label = self.label("search.constraints")
        out = []
        for text in self["search.constraints"]:
            try:
                constraint = Constraint.parse(text)
                check_constraints([constraint])
                check_reachable(net, [constraint])
            except ValueError as err:
                raise SpecError(f"{label}: {first_line(err)}") from None
            if constraint.metric not in of("analytic") and self["evaluate.latency"] == "measured":
                raise SpecError(f"{label}: {str(constraint)!r} needs latency_ms before evaluation; set evaluate.latency = 'table'")
            out.append(str(constraint))
        self._values["search"]["constraints"] = out

    def _resolve_backend(self) -> None:
        ray_training = self.method.trains and self["train.backend"] == "ray"
        if self["backend.address"] is not None and self["backend.name"] != "ray" and not ray_training:
            raise SpecError(f"{self.label('backend.address')} applies only to the ray backend or train.backend = 'ray' "
                            f"(backend is {self['backend.name']!r}, train.backend {self['train.backend']!r})")
        if self.method.trains and self["train.workers"] is not None and self["train.backend"] != "ray":
            raise SpecError(f"{self.label('train.workers')} applies only to train.backend = 'ray' (train.backend is {self['train.backend']!r})")
        _check_backend_args(self["backend.name"], dict(self["backend.args"]), self.label("backend.args"))

    def device(self, *, training_only: bool = False) -> Any:
        """The `torch.device` the supernet lives on in this process (``device`` resolved here), checked
        with ``train.precision``; None when only Ray workers train (`training_only` with train.backend = 'ray').

        Raises `SpecError` naming the key for CUDA where torch sees none, or bf16 off CUDA.
        """
        from nas.devices import DeviceError, check_precision, resolve_device

        ray_training = self.method.trains and self["train.backend"] == "ray"
        if training_only and ray_training:
            return None  # the workers' devices are the cluster's affair (checked when training starts)
        try:
            device = resolve_device(self["device"], parameter=self.label("device"))
            if self.method.trains and not ray_training:
                check_precision(self["train.precision"], device, parameter=self.label("train.precision"))
        except DeviceError as err:
            raise SpecError(first_line(err)) from None
        return device


def _check_backend_args(name: str, args: dict[str, Any], label: str) -> None:
    """Each ``backend.args`` key a parameter of the backend (or of `nas.evaluate` it passes on), of its type."""
    from nas.evaluate import evaluate
    from nas.registry import BACKENDS

    taken = {"net", "data", "configs", "self", "batch_size", "calibration_batches", "latency_batch_size", "latency", "metrics", "loss"}
    params: dict[str, inspect.Parameter] = {}
    for fn in (BACKENDS.lookup(name), evaluate):
        for p in inspect.signature(fn).parameters.values():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in taken:
                params.setdefault(p.name, p)
    for key, value in args.items():
        if key not in params:
            raise SpecError(f"unknown key {key!r} in {label} for backend {name!r}; the keys are: {', '.join(sorted(params)) or 'none'}")
        if not _fits(value, params[key].annotation):
            raise SpecError(f"{label}: {key} = {value!r} is not what backend {name!r} takes ({params[key].annotation})")


def _fits(value: Any, annotation: Any) -> bool:
    """Whether a TOML value suits a parameter's annotation (its text: ``"int | None"``, ``"float"``, ...)."""
    hint = str(annotation)
    if annotation is inspect.Parameter.empty or "Any" in hint:
        return True
    if isinstance(value, bool):
        return "bool" in hint
    if isinstance(value, (int, float)):
        return math.isfinite(value) and ("float" in hint or ("int" in hint and isinstance(value, int)))
    if isinstance(value, str):
        return "str" in hint
    return False
