"""Schema fields: one `Field` per option (a spec key, a method's option), and the checks of a value against it."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nas.errors import SpecError


@dataclass(frozen=True)
class Field:
    """One spec key: its type, default, and the flag / keyword that sets it.

    Args:
        key: dotted key (``"search.budget"``).
        kind: ``"int"``, ``"float"``, ``"bool"``, ``"str"``, ``"strs"`` (list of strings) or ``"table"``.
        default: value when absent (None: unset, left to the library's default).
        help: one line for ``--help`` and the docs.
        flag: flag name (``--budget``) and keyword name (``budget``), when it has one.
        minimum: lowest allowed number.
        above: whether the number must be strictly above `minimum`.
        maximum: highest allowed number (seeds, budgets and sizes stay within what can be computed).
        choices: allowed strings, or a function giving them (evaluated lazily).
        identity: whether it must match when a run is resumed (else it may change: budget, backend).
    """

    key: str
    kind: str
    default: Any
    help: str
    flag: str | None = None
    minimum: float | None = None
    above: bool = False
    choices: tuple[str, ...] | Callable[[], list[str]] | None = None
    identity: bool = True
    maximum: float | None = None

    @property
    def section(self) -> str:
        return self.key.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.key.rpartition(".")[2]

    def allowed(self) -> list[str] | None:
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)

    def describe(self) -> str:
        """What values it takes, for error messages."""
        if self.kind == "int":
            return f"an int {'>' if self.above else '>='} {self.minimum:g}" if self.minimum is not None else "an int"
        if self.kind == "float":
            return f"a number {'>' if self.above else '>='} {self.minimum:g}" if self.minimum is not None else "a number"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "strs":
            return "a list of strings"
        if self.kind == "table":
            return "a table (TOML [section] or inline {...})"
        allowed = self.allowed()
        return f"one of {allowed}" if allowed else "a string"


def check(f: Field, value: Any, label: str) -> Any:
    """`value` checked against `f` (ints accepted for floats); raises `SpecError` naming `label`."""
    bad = SpecError(f"{label} must be {f.describe()}, got {value!r}")
    if f.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
    elif f.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        value = float(value)
    elif f.kind == "bool":
        if not isinstance(value, bool):
            raise bad
    elif f.kind == "str":
        if not isinstance(value, str) or not value:
            raise bad
        allowed = f.allowed() if not callable(f.choices) else None  # registries are checked in resolve()
        if allowed is not None and value not in allowed:
            raise bad
        if f.key == "name" and (not re.fullmatch(r"[A-Za-z0-9_.-]+", value) or value in (".", "..")):
            raise SpecError(f"{label} must be a plain name (letters, digits, '_', '-', '.'; not '.' or '..'), got {value!r}")
    elif f.kind == "strs":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or (not value and f.default != []) or not all(isinstance(v, str) for v in value):
            raise bad
        value = list(value)
    elif f.kind == "table":
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise bad
        value = normal(dict(value))
        where = _non_finite(value)
        if where is not None:
            raise SpecError(f"{label}: {where[0]} must be a finite number, got {where[1]!r}")
    if f.minimum is not None and (value < f.minimum or (f.above and value == f.minimum)):
        raise bad
    if f.maximum is not None and value > f.maximum:
        raise SpecError(f"{label} must be {f.describe()} and at most {f.maximum:_.0f}, got {_short_number(value)}")
    return value


def _non_finite(value: Any, path: str = "") -> tuple[str, float] | None:
    """The first NaN or infinity inside a table's values (its dotted place and the value), if any."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    items = value.items() if isinstance(value, Mapping) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        found = _non_finite(v, f"{path}.{k}" if path and isinstance(k, str) else f"{path}[{k}]" if path else str(k))
        if found is not None:
            return found
    return None


def _short_number(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:8]}...({len(text)} digits)"


def from_text(f: Field, text: Any, label: str) -> Any:
    """A flag's text as the field's type."""
    if not isinstance(text, str):
        return text
    try:
        if f.kind == "int":
            return int(text)
        if f.kind == "float":
            return float(text)
    except ValueError:
        raise SpecError(f"{label} must be {f.describe()}, got {text!r}") from None
    return text


def normal(value: Any) -> Any:
    """Tuples as lists, recursively (TOML has only lists)."""
    if isinstance(value, Mapping):
        return {str(k): normal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normal(v) for v in value]
    return value


def plain_value(value: Any) -> bool:
    """Whether TOML can hold `value` (so a default can be written into the spec)."""
    if isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(plain_value(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and plain_value(v) for k, v in value.items())
    return False


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    if isinstance(err, KeyError) and len(err.args) == 1:
        text = str(err.args[0])
    return text.splitlines()[0] if text else type(err).__name__


__all__ = ["Field", "check", "first_line", "from_text", "normal", "plain_value"]
