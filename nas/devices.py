"""Devices: `resolve_device` turns ``auto|cpu|cuda`` into a `torch.device`, `check_precision` and
`autocast` the bf16 training option, `to_device` the copy of a batch (pinned memory on CUDA).

``auto`` is CUDA when torch sees a CUDA device, else the CPU. Asking for ``cuda`` where there
is none raises `DeviceError` (a `ValueError` and `nas.NASError`: the command line prints its
one line and exits with code 2) before any work starts. The supernet is moved to the device
once, by whoever owns it (`nas.train_supernet`, `nas.runs.run_spec`, ``nas export``), never
per config: evaluation, latency and export then run on the device the supernet is on.

Example:
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("auto").type in ("cpu", "cuda")
    True
    >>> resolve_device("tpu")
    Traceback (most recent call last):
    ...
    nas.devices.DeviceError: The 'device' parameter must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import torch

from nas.errors import NASError

DEVICES = ("auto", "cpu", "cuda")
"""The device names a spec (``device``) and the command line (``--device``) take; ``cuda:N`` names one GPU."""
PRECISIONS = ("fp32", "bf16")
"""Training precisions: ``fp32``, or ``bf16`` autocast (CUDA only)."""


class DeviceError(NASError, ValueError):
    """A device that is unknown or not present here (``cuda`` without a CUDA device), or a precision it cannot run."""

    __module__ = "nas.devices"


def resolve_device(device: str | torch.device | None = "auto", *, parameter: str = "device") -> torch.device:
    """The `torch.device` for ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    `DeviceError` names `parameter` for an unknown name, and for CUDA when torch sees no
    CUDA device (or fewer than N+1) on this machine.

    Example:
        >>> resolve_device(None)  == resolve_device("auto")
        True
    """
    if device is None:
        device = "auto"
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise DeviceError(f"The '{parameter}' parameter must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}.")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"The '{parameter}' parameter is {device!r}, but torch sees no CUDA device on this machine "
                f"(torch {torch.__version__}); use 'cpu' or 'auto'."
            )
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"The '{parameter}' parameter is {device!r}, but this machine has {torch.cuda.device_count()} CUDA device(s).")
    return torch.device(device)


def check_precision(precision: str, device: torch.device | str, *, parameter: str = "precision") -> str:
    """`precision` if it can run on `device`: ``fp32`` anywhere, ``bf16`` autocast on CUDA only.

    Example:
        >>> check_precision("bf16", "cpu")
        Traceback (most recent call last):
        ...
        nas.devices.DeviceError: The 'precision' parameter is 'bf16', which trains under CUDA autocast; the device is cpu: use precision='fp32' or a CUDA device.
    """
    if precision not in PRECISIONS:
        raise DeviceError(f"The '{parameter}' parameter must be one of {list(PRECISIONS)}, got {precision!r}.")
    if precision == "bf16" and torch.device(device).type != "cuda":
        raise DeviceError(
            f"The '{parameter}' parameter is 'bf16', which trains under CUDA autocast; the device is {torch.device(device)}: "
            "use precision='fp32' or a CUDA device."
        )
    return precision


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager[Any]:
    """The context a training step runs in: bf16 autocast on CUDA for ``bf16``, else nothing.

    bf16 keeps float32's exponent range, so no gradient scaler is needed; the weights,
    optimizer state and checkpoint stay float32.

    Example:
        >>> with autocast("fp32", "cpu"):
        ...     (torch.ones(2) * 2).dtype
        torch.float32
    """
    if precision == "bf16":
        check_precision(precision, device)
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(tensors: Iterator[torch.Tensor] | tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    """The tensors on `device`; to CUDA through pinned memory, copied without blocking.

    Example:
        >>> x, y = to_device((torch.zeros(2), torch.ones(2)), torch.device("cpu"))
        >>> x.device.type, y.tolist()
        ('cpu', [1.0, 1.0])
    """
    if device.type != "cuda":
        return tuple(t.to(device) for t in tensors)
    return tuple(t.pin_memory().to(device, non_blocking=True) if t.device.type == "cpu" else t.to(device) for t in tensors)


__all__ = ["DEVICES", "PRECISIONS", "DeviceError", "autocast", "check_precision", "resolve_device", "to_device"]
