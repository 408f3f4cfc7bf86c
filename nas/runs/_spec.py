"""The validated spec: `RunSpec` (its keys, how each was given, its TOML) and `load_spec`."""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nas._toml import dumps_toml
from nas.errors import RunError, SpecError
from nas.methods import Method, for_searcher
from nas.rundir import IDENTITY
from nas.runs._identity import check_identity, damaged_spec, read_identity
from nas.runs._resolve import Resolving
from nas.runs._schema import _ARGS_OF, _BY_FLAG, _BY_KEY, FIELDS, SECTIONS
from nas.schema import check, from_text, normal

SPEC = "spec.toml"

DEMO: dict[str, Any] = {
    "name": "demo",
    "seed": 0,
    "space": {"family": "mlp"},
    "data": {"source": "digits"},
    "train": {"strategy": "sandwich", "epochs": 100, "lr": 0.01},
    "search": {"searcher": "evolution", "objectives": ["accuracy:max", "params:min"], "budget": 200, "args": {"population_size": 24}},
    "backend": {"name": "local"},
}
"""The built-in demo (`nas search` with no spec): an MLP supernet on digits, trained and searched in under a minute."""


class RunSpec(Resolving):
    """A validated run spec: every key of `FIELDS`, defaults filled in.

    Build it with `load_spec` (from a file, a dict, flags or keywords). `resolve` checks
    the names against the registries, builds the supernet and the searcher once to check
    their arguments, and fills in every default they use, so the spec written to the run
    directory repeats the run even if library defaults change.

    Example:
        >>> spec = RunSpec.from_dict({"search": {"budget": 8}})
        >>> spec["search.budget"], spec["train.optimizer"]
        (8, 'adamw')

    Args:
        values: the nested spec, already checked by `from_dict`.
        labels: how each key was given (for error messages), e.g. ``{"search.budget": "--budget"}``.
    """

    def __init__(self, values: dict[str, Any], labels: Mapping[str, str] | None = None, *, trusted: bool = True, where: str | None = None):
        self._values = values
        self._labels = dict(labels or {})
        self._resolved = False
        self._trusted = trusted  # whether its sources (user code) may be imported: see nas.runs._trust
        self._where = where  # the run directory it was read from, if any

    # -- construction --------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> RunSpec:
        """A spec from a nested dict (a parsed TOML file); unknown keys and bad values raise `SpecError`."""
        if not isinstance(data, Mapping):
            raise SpecError(f"a spec must be a table of keys, got {type(data).__name__}")
        where = f" in {source}" if source else ""
        values: dict[str, Any] = {s: {} for s in SECTIONS}
        labels: dict[str, str] = {}
        top = [f.name for f in FIELDS if not f.section]
        for key, value in data.items():
            if key in SECTIONS:
                if not isinstance(value, Mapping):
                    raise SpecError(f"spec key {key!r}{where} must be a table ([{key}]), got {value!r}")
                allowed = [f.name for f in FIELDS if f.section == key]
                for sub, v in value.items():
                    dotted = f"{key}.{sub}"
                    if dotted not in _BY_KEY:
                        raise SpecError(f"unknown spec key {dotted!r}{where}; the keys of [{key}] are: {', '.join(allowed)}")
                    labels[dotted] = f"{dotted}{where}"
                    values[key][sub] = check(_BY_KEY[dotted], v, labels[dotted])
            elif key in top:
                labels[key] = f"{key}{where}"
                values[key] = check(_BY_KEY[key], value, labels[key])
            else:
                raise SpecError(
                    f"unknown spec key {key!r}{where}; the top-level keys are: {', '.join(top)}, "
                    f"and the sections: {', '.join(f'[{s}]' for s in SECTIONS)}"
                )
        for f in FIELDS:
            box = values[f.section] if f.section else values
            if f.name not in box and f.default is not None:
                box[f.name] = copy.deepcopy(f.default)
        return cls(values, labels)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RunSpec:
        """A spec from a TOML file."""
        path = Path(path)
        run = path if path.is_dir() else path.parent if path.name == SPEC and (path.parent / IDENTITY).is_file() else None
        if path.is_dir():
            if not (path / SPEC).is_file():
                copy_ = read_identity(path)
                if copy_ is None:
                    raise RunError(f"no run at {path}: it has no {SPEC}")
                return cls.from_dict(tomllib.loads(copy_["spec"]), str(path / IDENTITY))  # spec.toml deleted: the run's own copy
            path = path / SPEC
        try:
            text = path.read_bytes().decode()
        except FileNotFoundError:
            raise RunError(f"spec file {path} does not exist") from None
        except IsADirectoryError:
            raise RunError(f"spec file {path} is a directory; name a TOML file") from None
        except OSError as err:
            raise RunError(f"cannot read spec file {path}: {err.strerror or err}") from None
        except UnicodeDecodeError as err:
            if run is not None:
                raise damaged_spec(run, path, f"not UTF-8 text: byte {err.start}") from None
            raise SpecError(f"{path} is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
        if run is not None and not text.strip():
            raise damaged_spec(run, path, "empty")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            if run is not None:
                raise damaged_spec(run, path, f"not valid TOML: {err}") from None
            raise SpecError(f"{path} is not valid TOML: {err}") from None
        if "name" not in data and path.name != SPEC:
            data["name"] = path.stem  # runs/cnn.toml runs in runs/cnn/
        spec = cls.from_dict(data, str(path))
        if run is not None:
            check_identity(run, spec, path)  # an edited, emptied or truncated spec.toml is refused
        return spec

    def override(self, how: str = "keyword", **values: Any) -> RunSpec:
        """A copy with the flag-named keys set (`how`: ``"flag"`` for CLI text, ``"keyword"`` for Python values).

        A different ``space`` drops the old family's ``space.args``, and a different
        ``searcher`` the old searcher's ``search.args`` (and, to one whose method trains the
        supernet itself, the ``[train]`` section).
        """
        out = RunSpec(copy.deepcopy(self._values), self._labels, trusted=self._trusted, where=self._where)
        for name, value in sorted(values.items(), key=lambda item: item[0] not in ("space", "searcher")):
            if value is None:
                continue
            f = _BY_FLAG.get(name)
            if f is None:
                raise SpecError(f"unknown argument {name!r}; the arguments are: {', '.join(_BY_FLAG)}")
            flag = "constraint" if name == "constraints" else name  # the command line's repeatable --constraint
            label = f"--{flag.replace('_', '-')}" if how == "flag" else f"the '{name}' argument"
            if how == "flag":
                value = from_text(f, value, label)
            value = check(f, value, label)
            if f.key in _ARGS_OF and value != out[f.key]:  # another family or searcher: its own arguments
                section, _ = f.key.split(".")
                out._values[section]["args"] = {}
                if f.key == "space.family":  # a built-in family instead of a model of one's own
                    out._values["space"].pop("source", None)
                    out._values["space"]["convert"] = {}
                if f.key == "search.searcher" and not for_searcher(value).trains:  # the old training recipe goes too
                    out._reset("train")
            if f.key == "space.source" and value != out[f.key]:  # another model: its own arguments, family 'custom'
                out._values["space"]["args"], out._values["space"]["convert"] = {}, {}
                out._values["space"]["family"] = "custom"
                out._labels.pop("space.family", None)
            out._set(f.key, value)
            out._labels[f.key] = label
        return out

    # -- access --------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in _BY_KEY:
            raise KeyError(key)
        section, _, name = key.rpartition(".")
        box = self._values[section] if section else self._values
        return box.get(name)

    def _set(self, key: str, value: Any) -> None:
        section, _, name = key.rpartition(".")
        box = self._values[section] if section else self._values
        box[name] = value

    def _reset(self, section: str) -> None:
        """Set every key of `section` back to its default, as if never given."""
        self._values[section] = {f.name: copy.deepcopy(f.default) for f in FIELDS if f.section == section and f.default is not None}
        self._labels = {k: v for k, v in self._labels.items() if not k.startswith(f"{section}.")}

    @property
    def method(self) -> Method:
        """The `nas.methods.Method` the searcher chooses (whether there is a ``[train]`` phase, how it searches)."""
        return for_searcher(self["search.searcher"])

    def given(self, section: str) -> list[str]:
        """The keys of `section` given explicitly (in the file, a dict, flags or keywords), not left to their defaults."""
        return [k for k in self._labels if k.startswith(f"{section}.")]

    def label(self, key: str) -> str:
        """How `key` was given, for messages (``"search.budget in runs/x.toml"``, ``"--budget"``)."""
        return self._labels.get(key, key)

    @property
    def name(self) -> str:
        return self["name"]

    def to_dict(self) -> dict[str, Any]:
        """The spec as a nested dict (unset keys left out)."""
        out: dict[str, Any] = {}
        for key, value in self._values.items():
            if key == "train" and not self.method.trains:
                continue  # the search trains the supernet with its own recipe (search.args)
            if isinstance(value, dict) and key in SECTIONS:
                section = {k: copy.deepcopy(v) for k, v in value.items() if v is not None}
                if section:
                    out[key] = section
            elif value is not None:
                out[key] = value
        return out

    def to_toml(self) -> str:
        """The spec as TOML text (what ``spec.toml`` holds)."""
        head = "# nas run spec: `nas search --run DIR` repeats (or resumes) the run it describes\n"
        return head + dumps_toml(self.to_dict())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunSpec) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"RunSpec(name={self.name!r}, family={self['space.family']!r}, searcher={self['search.searcher']!r}, budget={self['search.budget']})"

    def differences(self, other: RunSpec) -> list[tuple[str, Any, Any]]:
        """``(key, mine, other's)`` for each identity key (see `Field.identity`) that differs."""
        out = []
        for f in FIELDS:
            if f.identity and normal(self[f.key]) != normal(other[f.key]):
                out.append((f.key, self[f.key], other[f.key]))
        return out


def load_spec(
    spec: str | os.PathLike | Mapping[str, Any] | RunSpec | None = None, *, how: str = "keyword", trust: bool | None = None, **overrides: Any
) -> RunSpec:
    """A validated, resolved spec from a file, a dict, a `RunSpec` or None (the built-in demo), with overrides.

    Example:
        >>> load_spec(None, budget=20)["search.budget"]
        20

    Args:
        spec: a TOML file, a run directory (its ``spec.toml``), a nested dict, a `RunSpec`,
            or None for the built-in demo (`DEMO`).
        how: ``"flag"`` when `overrides` are command-line text, else ``"keyword"``.
        **overrides: keys by flag name (see `flags`): ``space``, ``searcher``, ``budget``,
            ``backend``, ``ray_address``, ``seed``, ``epochs``, ``objectives``, ``model``.
        trust: whether the spec's sources (``data.source``, ``space.source`` naming user code)
            may be imported and called. None: yes, unless `spec` is a run directory, whose
            ``spec.toml`` the user did not write here (then only sources whose package is in
            ``NAS_TRUSTED_SOURCES``); see `nas.runs` on what a run directory may execute.
    """
    if isinstance(spec, RunSpec) and spec._resolved and not any(v is not None for v in overrides.values()):
        return spec
    if spec is None:
        base = RunSpec.from_dict(DEMO, "the built-in demo")
    elif isinstance(spec, RunSpec):
        base = RunSpec(copy.deepcopy(spec._values), spec._labels, trusted=spec._trusted, where=spec._where)
    elif isinstance(spec, Mapping):
        base = RunSpec.from_dict(spec)
    elif isinstance(spec, (str, os.PathLike)):
        base = RunSpec.load(spec)
        if Path(spec).is_dir():  # a run directory: its spec.toml names code the user did not name here
            base._trusted, base._where = bool(trust), str(spec)
    else:
        raise SpecError(f"a spec is a TOML file path, a dict or a RunSpec, got {type(spec).__name__}")
    if trust is not None and not (isinstance(spec, (str, os.PathLike)) and Path(spec).is_dir()):
        base._trusted = bool(trust)
    return base.override(how, **overrides).resolve()
