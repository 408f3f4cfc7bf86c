"""The run's own copy of its spec: ``identity.json`` beside ``spec.toml``, so an edited spec is refused, never adopted.

When `nas.runs.prepare` writes ``spec.toml`` it also writes ``identity.json``: the spec's
text and the value of every identity key (`nas.schema.Field.identity`: everything but
the name, budget and backend). Reading the run's ``spec.toml`` again compares its identity
keys with that copy: an edited, emptied or truncated spec raises `SpecChanged` (one line
naming the key, both values and what to do); a deleted one is read from the copy (and
written back by the next command that writes the run). A run made before the copy
existed gets one the next time it is written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nas.errors import RunError
from nas.rundir import IDENTITY, atomic_write
from nas.schema import normal

FORMAT = 1


class SpecChanged(RunError):
    """A run's ``spec.toml`` no longer says what the run was made with (edited, emptied or truncated)."""

    __module__ = "nas.runs"


def identity_of(values: Any) -> dict[str, Any]:
    """The identity keys of a spec (a `RunSpec`), JSON-normal: ``{"seed": 0, "space.family": "mlp", ...}``."""
    from nas.runs._schema import FIELDS

    return {f.key: json.loads(json.dumps(normal(values[f.key]))) for f in FIELDS if f.identity}


def write_identity(run: str | Path, text: str, identity: dict[str, Any]) -> Path:
    """Write ``identity.json`` of `run`: the spec's `text` and its `identity` keys (`identity_of` the spec `text` reads as)."""
    payload = {"format": FORMAT, "spec": text, "identity": identity}
    return atomic_write(Path(run) / IDENTITY, json.dumps(payload, indent=1, sort_keys=True))


def read_identity(run: str | Path) -> dict[str, Any] | None:
    """The run's own copy (``{"spec": text, "identity": {...}}``), or None when it has none."""
    path = Path(run) / IDENTITY
    try:
        payload = json.loads(path.read_bytes().decode())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise RunError(f"{path} is damaged ({type(err).__name__}); restore it from a copy, or remove it to take {path.parent / 'spec.toml'} as the run's spec") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("spec"), str) or not isinstance(payload.get("identity"), dict):
        raise RunError(f"{path} is not a nas identity file; restore it from a copy, or remove it to take {path.parent / 'spec.toml'} as the run's spec")
    return payload


def check_identity(run: str | Path, spec: Any, spec_path: str | Path) -> None:
    """Raise `SpecChanged` when `spec` (read from `spec_path`) differs from the run's own copy in an identity key."""
    stored = read_identity(run)
    if stored is None:
        return
    now = identity_of(spec)
    diffs = [(k, v, now.get(k)) for k, v in stored["identity"].items() if now.get(k) != v]
    if diffs:
        key, before, after, more = first_difference(diffs)
        raise SpecChanged(
            f"{spec_path} was changed after the run was made: it says {key} = {after}, the run was made with "
            f"{before}{more}; delete {spec_path} to have the run's own copy ({Path(run) / IDENTITY}) put back, "
            "or start a new run directory (--run) for the changed spec"
        )


def damaged_spec(run: str | Path, spec_path: str | Path, reason: str) -> RunError:
    """The error for a run's ``spec.toml`` that cannot be read, naming the way back when the run has its copy."""
    if (Path(run) / IDENTITY).is_file():
        return SpecChanged(
            f"{spec_path} is damaged ({reason}); delete it to have the run's own copy ({Path(run) / IDENTITY}) put back, "
            "or restore it from a copy"
        )
    return RunError(f"{spec_path} is {reason}")


def first_difference(diffs: Sequence[tuple[str, Any, Any]]) -> tuple[str, str, str, str]:
    """The first of `diffs` (``(key, before, after)`` each) for one error line: ``(key, before, after, more)``,
    the values shortened and ``more`` saying how many other keys differ.

        >>> first_difference([("seed", 0, 1), ("name", "a", "b")])
        ('seed', '0', '1', ' (and 1 more)')
    """
    key, before, after = diffs[0]
    more = f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""
    return key, _short(before), _short(after), more


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
