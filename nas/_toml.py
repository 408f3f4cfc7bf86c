"""TOML text from nested dicts: the writer of run specs (Python reads TOML with `tomllib`)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def dumps_toml(data: Mapping[str, Any]) -> str:
    """TOML text for a nested dict of strings, numbers, booleans, lists and tables.

    Example:
        >>> print(dumps_toml({"seed": 0, "search": {"objectives": ["accuracy:max"], "args": {"n": 2}}}))
        seed = 0
        <BLANKLINE>
        [search]
        objectives = ["accuracy:max"]
        <BLANKLINE>
        [search.args]
        n = 2
        <BLANKLINE>
    """
    lines: list[str] = []

    def table(prefix: list[str], values: Mapping[str, Any]) -> None:
        plain = {k: v for k, v in values.items() if not isinstance(v, Mapping)}
        subs = {k: v for k, v in values.items() if isinstance(v, Mapping)}
        if not plain and not subs:
            return  # an empty table reads back as its default
        if prefix and plain:
            if lines:
                lines.append("")
            lines.append(f"[{'.'.join(_toml_key(p) for p in prefix)}]")
        for k, v in plain.items():
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in subs.items():
            table([*prefix, k], v)

    table([], data)
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return key if _BARE.match(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"TOML cannot hold {type(value).__name__} values: {value!r}")
