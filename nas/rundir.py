"""`RunDir`: the one owner of a run directory's file names, its atomic writes and its writer lock.

A run directory holds ``spec.toml`` (everything needed to repeat the run), ``supernet.pt``
(the training checkpoint), ``evaluations.sqlite`` (the evaluations database),
``front.json`` (the Pareto front), ``latency.json`` (latency tables), ``report/`` and
``export/<pick>/``, and while a process writes the run, ``lock`` (that process's pid and
host). Every file is written by `atomic_write`: into a temporary file beside it, flushed to
disk, then renamed over it, so a process killed at any moment leaves the previous version
or the new one, never a torn file. Failures of the file system (read-only directory,
permissions, disk full) raise `RunDirError` naming the path and the fix.

Only the standard library is used here, so every part of `nas` can depend on this module.

Example:
    >>> import tempfile
    >>> run = RunDir(tempfile.mkdtemp())
    >>> run.checkpoint.name, run.store.name, run.export_dir("knee").relative_to(run.path).as_posix()
    ('supernet.pt', 'evaluations.sqlite', 'export/knee')
    >>> with run.lock():
    ...     _ = atomic_write(run.front, '{"front": []}')
    >>> run.front.read_text(), run.lock_file.exists()
    ('{"front": []}', False)
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas.errors import NASError

SPEC = "spec.toml"
IDENTITY = "identity.json"
CHECKPOINT = "supernet.pt"
STORE = "evaluations.sqlite"
FRONT = "front.json"
LATENCY = "latency.json"
REPORT = "report"
EXPORT = "export"
LOCK = "lock"


class RunDirError(NASError, RuntimeError):
    """A run-directory file that cannot be read or written; the message names the path and the fix."""

    __module__ = "nas.rundir"


class RunLocked(RunDirError):
    """The run directory is being written by another live process (`holder` says which)."""

    __module__ = "nas.rundir"

    def __init__(self, message: str, holder: dict[str, Any]):
        super().__init__(message)
        self.holder = holder


class CorruptFile(RunDirError):
    """A run file that exists but cannot be read (truncated, or not what its name says)."""

    __module__ = "nas.rundir"


class RunDir:
    """A run directory's file names, and its writer lock.

    Nothing is created on construction: the directory is made by the first write.

    Args:
        path: the run directory.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    @property
    def spec(self) -> Path:
        """``spec.toml``: the run's spec."""
        return self.path / SPEC

    @property
    def identity(self) -> Path:
        """``identity.json``: the run's own copy of its spec (an edited ``spec.toml`` is refused against it)."""
        return self.path / IDENTITY

    @property
    def checkpoint(self) -> Path:
        """``supernet.pt``: the training checkpoint (supernet weights and the state to resume)."""
        return self.path / CHECKPOINT

    @property
    def store(self) -> Path:
        """``evaluations.sqlite``: the evaluations database."""
        return self.path / STORE

    @property
    def front(self) -> Path:
        """``front.json``: the Pareto front."""
        return self.path / FRONT

    @property
    def latency(self) -> Path:
        """``latency.json``: latency tables, one per device and batch size."""
        return self.path / LATENCY

    @property
    def report(self) -> Path:
        """``report/``: pictures, summary and CSV."""
        return self.path / REPORT

    @property
    def lock_file(self) -> Path:
        """``lock``: the pid and host of the process writing the run, while one does."""
        return self.path / LOCK

    def export_dir(self, name: str) -> Path:
        """``export/<name>/``: one exported pick."""
        return self.path / EXPORT / name

    def is_run(self) -> bool:
        """Whether the directory holds a run's files (a spec, a checkpoint, a database or a writer's lock)."""
        return any(p.exists() for p in (self.spec, self.identity, self.checkpoint, self.store, self.lock_file))

    def write_front(self, payload: dict[str, Any]) -> Path:
        """Write ``front.json`` atomically."""
        return atomic_write(self.front, json.dumps(payload, indent=2))

    def write_spec(self, text: str) -> Path:
        """Write ``spec.toml`` atomically."""
        return atomic_write(self.spec, text)

    def lock(self) -> RunLock:
        """The lock of this run directory (a context manager): one writing process at a time.

        Taking it fails at once with `RunLocked` naming the holder when another live
        process holds it; a lock left by a process that died (even by ``kill -9``) is taken
        over. It is re-entrant within a process.
        """
        return RunLock(self.lock_file)


# -- atomic writes -------------------------------------------------------------------------
def temp_path(path: str | os.PathLike) -> Path:
    """The temporary file `atomic_write` writes before renaming it to `path`: hidden, beside
    it, with this process's id, and ending in `path`'s suffix (writers that pick the format
    from the name, such as matplotlib, still see it).

    Example:
        >>> temp_path("runs/demo/report/front.png").name == f".front.{os.getpid()}.tmp.png"
        True
    """
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def atomic_write(path: str | os.PathLike, content: str | bytes | Callable[[Path], Any]) -> Path:
    """Replace the file at `path` with `content` in one step: a kill leaves the old file or the new one.

    `content` is text (UTF-8), bytes, or a function that writes the file at the path it is
    given (``lambda p: torch.save(state, p)``). The file is written beside `path`
    (`temp_path`), flushed to disk, renamed over `path` and the directory entry flushed.
    The parent directory is created when missing. A file-system error raises `RunDirError`
    naming `path` and the fix; the temporary file is removed.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "a" / "note.txt"
        >>> atomic_write(path, "one").read_text(), atomic_write(path, b"two").read_text()
        ('one', 'two')
        >>> sorted(p.name for p in path.parent.iterdir())
        ['note.txt']
    """
    path = Path(path)
    make_dir(path.parent)
    tmp = temp_path(path)
    try:
        if callable(content):
            content(tmp)
        else:
            tmp.write_bytes(content.encode() if isinstance(content, str) else content)
        _fsync(tmp)
        os.replace(tmp, path)
    except OSError as err:
        _remove(tmp)
        raise RunDirError(_os_message(f"cannot write {path}", err, path.parent)) from err
    except RuntimeError as err:
        _remove(tmp)
        if _cut_short(err):
            raise RunDirError(_CUT_SHORT.format(path=path)) from err
        raise
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_dir(path: str | os.PathLike, fill: Callable[[Path], Any]) -> Path:
    """Replace the directory at `path` with one `fill(tmp_dir)` writes, in one rename.

    A kill before the swap leaves the old directory whole (and a hidden temporary one,
    removed by the next call); the old directory is removed only after the new one is in
    place. The swap is two renames (POSIX cannot rename a directory over a non-empty one): a
    kill between them leaves the old directory hidden beside, as ``.<name>.<pid>.old``,
    and the next call puts it back first. Returns `path`.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "model"
        >>> _ = atomic_dir(out, lambda d: (d / "a.txt").write_text("old"))
        >>> _ = atomic_dir(out, lambda d: (d / "b.txt").write_text("new"))
        >>> sorted(p.name for p in out.iterdir()), sorted(p.name for p in out.parent.iterdir())
        (['b.txt'], ['model'])
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"cannot write the directory {path}: a file has that name; choose another path or remove the file")
    make_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    for stale in path.parent.glob(f".{path.name}.*.old"):  # a kill between the two renames of a swap
        if _dead_owner(stale):
            if path.exists():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                os.replace(stale, path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        if _dead_owner(stale):
            shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        fill(tmp)
        for f in tmp.iterdir():
            if f.is_file():
                _fsync(f)
        if path.exists():
            os.replace(path, old)  # two renames: a directory cannot be renamed over a non-empty one
        os.replace(tmp, path)
    except OSError as err:
        if old.exists() and not path.exists():
            os.replace(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise RunDirError(_os_message(f"cannot write {path}", err, path.parent)) from err
    except RuntimeError as err:
        if old.exists() and not path.exists():
            os.replace(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        if _cut_short(err):
            raise RunDirError(_CUT_SHORT.format(path=path)) from err
        raise
    except BaseException:
        if old.exists() and not path.exists():
            os.replace(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(path.parent)
    return path


_CUT_SHORT = ("cannot write {path}: the write was cut short (a full disk or a file-size limit); "
              "free some space (or choose a directory on another disk) and run the same command again")


def _cut_short(err: RuntimeError) -> bool:
    """Whether torch's file writer failed (it raises RuntimeError, not OSError, when a write is refused)."""
    text = str(err)
    return any(s in text for s in ("PytorchStreamWriter", "inline_container", "unexpected pos", "file write failed"))


def make_dir(path: str | os.PathLike) -> Path:
    """`path` created with its parents when missing; `RunDirError` naming it and the fix when it cannot be."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:
        raise RunDirError(f"cannot create the directory {path}: a file has that name; choose another path or remove the file") from err
    except OSError as err:
        raise RunDirError(_os_message(f"cannot create the directory {path}", err, path)) from err
    return path


def _os_message(what: str, err: OSError, where: Path) -> str:
    reason = err.strerror or str(err)
    if err.errno in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", -1)):
        fix = "free some space (or choose a run directory on another disk) and run the same command again"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"{where} is read-only or not yours: choose a writable directory or fix its permissions"
    elif err.errno == errno.ENOTDIR:
        fix = "a file stands where a directory is needed: choose another path or remove the file"
    else:
        fix = "check the path and the file system"
    return f"{what}: {reason}; {fix}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # not every file system syncs directories
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        pass


def _dead_owner(tmp: Path) -> bool:
    """Whether the temporary directory `.<name>.<pid>.tmp` was left by a process that is gone."""
    try:
        pid = int(tmp.name.rsplit(".", 2)[-2])
    except ValueError:
        return False
    return pid != os.getpid() and not _alive(pid)


# -- the writer lock -----------------------------------------------------------------------
try:
    import fcntl
except ImportError:  # pragma: no cover (not POSIX)
    fcntl = None  # type: ignore[assignment]

_held: dict[str, list] = {}  # resolved lock path -> [open file descriptor, depth]
_held_guard = threading.Lock()


class RunLock:
    """One writing process per run directory: a lock file holding the writer's pid and host.

    The file is locked with ``flock`` while held, so the kernel frees it when its process
    dies, however it dies; the next writer finds the dead pid in it, says so, and takes it
    over. A second live process gets `RunLocked` at once, naming the holder. Taking the
    lock again in the process that holds it nests. The lock file is removed on release.

    Example:
        >>> import tempfile
        >>> lock = RunDir(tempfile.mkdtemp()).lock()
        >>> with lock:
        ...     lock.holder()["pid"] == os.getpid()
        True

    Args:
        path: the lock file (`RunDir.lock_file`).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.took_over: dict[str, Any] | None = None
        """the stale holder (pid, host) found in the lock file when it was taken, if any"""

    def holder(self) -> dict[str, Any] | None:
        """The pid, host and start time recorded in the lock file (None when there is none)."""
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def acquire(self) -> RunLock:
        """Take the lock; `RunLocked` naming the holder when another live process has it."""
        key = os.path.abspath(self.path)
        with _held_guard:
            if key in _held:
                _held[key][1] += 1
                return self
            make_dir(self.path.parent)
            while True:
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                except OSError as err:
                    raise RunDirError(_os_message(f"cannot create the lock file {self.path}", err, self.path.parent)) from err
                if fcntl is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        os.close(fd)
                        raise self._locked() from None
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)  # the holder removed the file as we opened it: take the new one
            previous = self.holder()
            if previous is not None and fcntl is None and previous.get("host") == socket.gethostname() and _alive(int(previous.get("pid", -1))):
                os.close(fd)
                raise self._locked()
            self.took_over = previous
            record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(record).encode())
            os.fsync(fd)
            _held[key] = [fd, 1]
        return self

    def release(self) -> None:
        """Give the lock up (the outermost release removes the lock file)."""
        key = os.path.abspath(self.path)
        with _held_guard:
            entry = _held.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _held[key]
            try:
                self.path.unlink()
            except OSError:
                pass
            os.close(entry[0])  # closing frees the flock

    def held(self) -> bool:
        """Whether this process holds the lock."""
        return os.path.abspath(self.path) in _held

    def _locked(self) -> RunLocked:
        holder = self.holder() or {}
        who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
        since = f" since {holder['since']}" if holder.get("since") else ""
        return RunLocked(
            f"{self.path.parent} is in use by another process ({who}{since}); wait for it to end or stop it, or use another run directory",
            holder,
        )

    def __enter__(self) -> RunLock:  # noqa: PYI034
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = [
    "CHECKPOINT",
    "EXPORT",
    "FRONT",
    "IDENTITY",
    "LATENCY",
    "LOCK",
    "REPORT",
    "SPEC",
    "STORE",
    "CorruptFile",
    "RunDir",
    "RunDirError",
    "RunLock",
    "RunLocked",
    "atomic_dir",
    "atomic_write",
    "make_dir",
    "temp_path",
]
