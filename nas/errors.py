"""The project's errors: every one derives from `NASError`, so one ``except nas.NASError`` catches them all.

Most also derive from `ValueError` (bad input), as they did before there was a root, so
existing ``except ValueError`` code keeps working.

Example:
    >>> import nas
    >>> issubclass(nas.SpecError, nas.NASError), issubclass(nas.InvalidConfig, ValueError)
    (True, True)
"""

from __future__ import annotations


class NASError(Exception):
    """The root of every error this project raises on purpose (bad input, a run that cannot be used, ...)."""

    __module__ = "nas"


class RunError(NASError, ValueError):
    """A run that cannot be used as asked (missing, unfinished, or holding another run)."""

    __module__ = "nas.runs"  # where it is imported from: tracebacks and doctests name it nas.runs.RunError


class SpecError(RunError):
    """A spec key that is unknown or has a value outside what it allows."""

    __module__ = "nas.runs"


class ReportError(NASError, ValueError):
    """A run that cannot be reported (it has no successful evaluation yet)."""

    __module__ = "nas.report"


class ExportInputError(NASError, ValueError):
    """An export asked of something that cannot be exported or loaded (a pick without a run, no exported model)."""

    __module__ = "nas.export"


class SearchFailed(NASError, RuntimeError):
    """A search in which no evaluation succeeded (the message quotes the first errors)."""

    __module__ = "nas"


__all__ = ["ExportInputError", "NASError", "ReportError", "RunError", "SearchFailed", "SpecError"]
