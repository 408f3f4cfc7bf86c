"""The errors of `nas.runs`: `RunError`, and `SpecError` for a bad spec key."""


class RunError(ValueError):
    """A run that cannot be used as asked (missing, unfinished, or holding another run)."""

    __module__ = "nas.runs"  # where it is imported from: tracebacks and doctests name it nas.runs.RunError


class SpecError(RunError):
    """A spec key that is unknown or has a value outside what it allows."""

    __module__ = "nas.runs"
