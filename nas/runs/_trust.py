"""Which user code a spec may import: sources named ``"package.module:function"``, and the trust they need.

A run directory's ``spec.toml`` can name code to import and call (``data.source``,
``space.source``). Opening a run (``nas report``, ``nas export``, ``nas search --run``,
`nas.load_run`) imports it only when the user trusts it: ``--trust`` / ``trust=True``, or
its top-level package listed in the ``NAS_TRUSTED_SOURCES`` environment variable
(comma-separated, e.g. ``NAS_TRUSTED_SOURCES="mypkg,examples"``). A spec the user passes
to start or resume a run (``--spec``, a file or dict given to `nas.run_spec`) is trusted.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from nas.errors import RunError, SpecError

TRUST_ENV = "NAS_TRUSTED_SOURCES"


class UntrustedSource(RunError):
    """A spec read from a run directory names user code that the user has not said to trust."""

    __module__ = "nas.runs"


def trusted_packages() -> list[str]:
    """The top-level packages listed in ``NAS_TRUSTED_SOURCES`` (comma-separated).

    Example:
        >>> os.environ[TRUST_ENV] = "mypkg, examples"; trusted_packages()
        ['mypkg', 'examples']
        >>> del os.environ[TRUST_ENV]
    """
    return [p.strip() for p in os.environ.get(TRUST_ENV, "").split(",") if p.strip()]


def split_source(source: str, label: str) -> tuple[str, str]:
    """``("package.module", "function")`` of ``"package.module:function"``; `SpecError` naming `label` otherwise."""
    module, _, attr = source.partition(":")
    if not module or not attr or ":" in attr:
        raise SpecError(f"{label} must be 'package.module:function', got {source!r}")
    return module, attr


def import_source(source: str, label: str, *, trusted: bool, where: str | None = None) -> Any:
    """The function a ``"package.module:function"`` source names, imported only when trusted.

    The current directory is importable (as ``python -m`` makes it), so a module beside the
    spec, such as ``examples/custom_model.py``, is found.

    Example:
        >>> import_source("os:system", "data.source", trusted=False, where="runs/x")
        Traceback (most recent call last):
        ...
        nas.runs.UntrustedSource: data.source of the run runs/x is 'os:system', code outside nas that opening the run would import and run; pass --trust (trust=True in Python) or add 'os' to NAS_TRUSTED_SOURCES if you trust it
    """
    module, attr = split_source(source, label)
    top = module.split(".")[0]
    if not trusted and top not in trusted_packages():
        named = label if where is None or where in label else f"{label} of the run {where}"
        raise UntrustedSource(
            f"{named} is {source!r}, code outside nas that opening the run would import and run; "
            f"pass --trust (trust=True in Python) or add {top!r} to {TRUST_ENV} if you trust it"
        )
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, "")  # the current directory, as `python -m` has it
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise SpecError(f"{label}: cannot import {source!r} ({' '.join(str(err).split())})") from None
