"""One error root: every exception class the project defines derives from `nas.NASError`, and the CLI catches it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import nas
import predictors
import search_spaces
from nas.cli import main


def _exception_classes() -> list[type]:
    found = {}
    for package in (nas, predictors, search_spaces):
        names = [package.__name__] + [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
        for name in names:
            if name == "nas.backends._ray" or name.endswith("__main__"):
                continue  # imports Ray
            module = importlib.import_module(name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                public = not cls.__name__.startswith("_")  # private ones are control flow, never raised to a user
                if public and issubclass(cls, BaseException) and not issubclass(cls, Warning) and cls.__module__.split(".")[0] in ("nas", "predictors", "search_spaces"):
                    found[cls.__qualname__] = cls
    return list(found.values())


def test_every_project_exception_derives_from_nas_error_and_keeps_its_value_error_base():
    classes = _exception_classes()
    names = {c.__name__ for c in classes}
    assert {"RunError", "SpecError", "InvalidConfig", "InvalidObjective", "ExportError", "ReportError", "NotFittedError"} <= names
    assert [c.__name__ for c in classes if not issubclass(c, nas.NASError)] == []
    # bad input stays a ValueError; what goes wrong while working (a file, a lock, training) is a RuntimeError
    working = ("ExportError", "RunDirError", "RunLocked", "CorruptFile", "Diverged", "SearchFailed")
    assert {c.__name__ for c in classes} >= set(working)
    assert all(issubclass(c, ValueError) for c in classes if c.__name__ not in ("NASError", *working))
    assert all(issubclass(c, RuntimeError) for c in classes if c.__name__ in working)


def test_the_cli_reports_any_nas_error_in_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none"), "--format", "gif"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nas: error: --format") and err.count("\n") == 1
