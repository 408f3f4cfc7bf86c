"""Fault-injection sweep: run the ``nas`` command over bad inputs and check each ends in one clear line.

Every case runs the command line in its own process (``python -m nas.cli``; with
``--fork``, a process forked from one that imported nas already, which is many times
faster and runs the same `nas.cli.main`) over a bad input: specs with bad keys and
values, corrupt or truncated run files, bad database rows, a read-only run directory, a
full disk (``RLIMIT_FSIZE``), another writer holding the run, unsafe run names, a bad
``--out``, an ``arch.json`` asking for a huge model. Each case passes when the process
exits with code 2, writes exactly one line on stderr (``nas: error: ...``), prints no
``Traceback``, and leaves every file of the run directory byte-identical.

    python bench/faults.py            # fresh interpreters (about 5 s a case)
    python bench/faults.py --fork     # forked from one interpreter (tests/test_faults.py)
    python bench/faults.py --fork --jobs 2 --only "disk full"

It ends with ``N cases: X clear line, Y traceback`` (and how many broke another rule);
the target is zero tracebacks and every case clear.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXIT = 2
TIMEOUT = 240

TINY = """
name = "base"
seed = 0
[space]
family = "mlp"
[space.args]
depths = [1]
widths = [16, 32]
ranks = [4, 8]
[train]
epochs = 1
batch_size = 64
[search]
searcher = "random"
budget = 3
"""

SOURCES = '''
import torch
from torch.utils.data import TensorDataset
import nas


def empty():
    nothing = TensorDataset(torch.zeros(0, 64), torch.zeros(0, dtype=torch.long))
    return nas.data.Data(nothing, nothing)


def raising():
    raise RuntimeError("the data server is down")


def labels():
    d = TensorDataset(torch.zeros(32, 64), torch.arange(32) % 13)
    return nas.data.Data(d, d)
'''

LOCK_HOLDER = r"""
import fcntl, json, os, socket, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": "now"}).encode())
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""

LOAD_MODEL = """
import sys
import nas
try:
    nas.load_model(sys.argv[1])
except nas.NASError as err:
    print("nas: error:", " ".join(str(err).split()), file=sys.stderr)
    sys.exit(2)
"""


@dataclasses.dataclass
class Case:
    """One bad input: the command, how to set it up, what the process may do."""

    name: str
    argv: list[str]
    setup: Callable[[Path], Any] | None = None  # (case directory) -> None, before the snapshot
    watch: str | None = "run"  # the directory whose files must not change (None: nothing to compare)
    limit_bytes: int | None = None  # RLIMIT_FSIZE of the process (a full disk); SQLite may leave its -wal/-shm journal
    read_only: bool = False  # the run directory and its files cannot be written (chattr +i for root, else modes)
    python: str | None = None  # run this Python snippet instead of the nas command
    hold_lock: bool = False  # another live process holds the run's writer lock


@dataclasses.dataclass
class Outcome:
    case: str
    rc: int
    stderr: str
    traceback: bool
    lines: int
    changed: list[str]
    seconds: float

    @property
    def clear(self) -> bool:
        return self.rc == EXIT and not self.traceback and self.lines == 1 and not self.changed


# -- setups --------------------------------------------------------------------------------
def _spec(text: str, name: str = "bad.toml") -> Callable[[Path], None]:
    def setup(where: Path) -> None:
        (where / name).write_text(text)

    return setup


def _bytes(name: str, data: bytes) -> Callable[[Path], None]:
    def setup(where: Path) -> None:
        (where / name).write_bytes(data)

    return setup


def _truncate(name: str, keep: float = 0.5) -> Callable[[Path], None]:
    def setup(where: Path) -> None:
        path = where / "run" / name
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
        for extra in ("-wal", "-shm"):
            Path(f"{path}{extra}").unlink(missing_ok=True)

    return setup


def _sql(*statements: str) -> Callable[[Path], None]:
    def setup(where: Path) -> None:
        db = sqlite3.connect(where / "run" / "evaluations.sqlite")
        for statement in statements:
            db.execute(statement)
        db.commit()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        for extra in ("-wal", "-shm"):
            Path(f"{where / 'run' / 'evaluations.sqlite'}{extra}").unlink(missing_ok=True)

    return setup


def _arch(widths: list[int]) -> Callable[[Path], None]:
    def setup(where: Path) -> None:
        model = where / "model"
        arch = json.loads((model / "arch.json").read_text())
        for key in arch["config"]:
            if key.endswith("width"):
                arch["config"][key] = widths[0]
        arch["family_args"] = {**arch.get("family_args", {}), "widths": widths}
        (model / "arch.json").write_text(json.dumps(arch))

    return setup


def _steps(*setups: Callable[[Path], Any]) -> Callable[[Path], None]:
    def setup(where: Path) -> None:
        for s in setups:
            s(where)

    return setup


def _foreign(where: Path) -> None:
    other = where / "other"
    other.mkdir()
    (other / "notes.txt").write_text("another tool's files\n")


def _file(name: str) -> Callable[[Path], None]:
    return _bytes(name, b"a file, not a directory\n")


def _spec_with(extra: str, name: str = "bad.toml") -> Callable[[Path], None]:
    return _spec(TINY.replace('name = "base"', 'name = "bad"') + extra, name)


def cases() -> list[Case]:
    """The sweep's bad inputs."""
    search = ["search", "--quiet", "--no-report"]
    bad_spec = [*search, "--spec", "bad.toml"]
    run = ["--run", "run"]
    return [
        # bad specs (nothing may be written: the watched directory is the base run, given with --run)
        Case("backend.args unknown key", [*bad_spec, *run], _spec_with("[backend.args]\nbogus = 1\n")),
        Case("backend.args badly typed", [*bad_spec, *run], _spec_with("[backend]\nname = \"ray\"\n[backend.args]\nnum_workers = \"many\"\n")),
        Case("space.args dropout = nan", [*bad_spec, "--run", "new"], _spec(TINY.replace("ranks = [4, 8]", "ranks = [4, 8]\ndropout = nan")), watch=None),
        Case("space.args widths = [10**9]", [*bad_spec, "--run", "new"], _spec(TINY.replace("widths = [16, 32]", f"widths = [{10**9}]")), watch=None),
        Case("seed 10**14", [*bad_spec], _spec(TINY.replace("seed = 0", f"seed = {10**14}")), watch=None),
        Case("seed 10**20", [*bad_spec], _spec(TINY.replace("seed = 0", f"seed = {10**20}")), watch=None),
        Case("--seed 10**20 over a run", [*search, *run, "--seed", str(10**20)]),
        Case("latency_batch_size 10**12", [*bad_spec, "--run", "new"],
             _spec(TINY.replace("[search]", f"[evaluate]\nlatency_batch_size = {10**12}\n[search]\nobjectives = [\"accuracy:max\", \"latency_ms:min\"]")),
             watch=None),
        Case("--budget 10**400", [*search, *run, "--budget", "1" + "0" * 400]),
        Case("--budget 10**400 with the bar", ["search", *run, "--budget", "1" + "0" * 400]),
        Case("non-UTF-8 spec", [*bad_spec], _bytes("bad.toml", b"name = \"x\xff\xfe\"\n"), watch=None),
        Case("spec not a table", [*bad_spec], _spec("space = 3\n"), watch=None),
        Case("empty data source", [*bad_spec, "--run", "new"], _steps(_bytes("faultdata.py", SOURCES.encode()),
             _spec_with('[data]\nsource = "faultdata:empty"\n')), watch=None),
        Case("raising data source", [*bad_spec, "--run", "new"], _steps(_bytes("faultdata.py", SOURCES.encode()),
             _spec_with('[data]\nsource = "faultdata:raising"\n')), watch=None),
        Case("labels outside num_classes", [*bad_spec, "--run", "new"], _steps(_bytes("faultdata.py", SOURCES.encode()),
             _spec_with('[data]\nsource = "faultdata:labels"\n')), watch=None),
        # corrupt run files
        Case("truncated supernet.pt: export", ["export", "run", "--format", "pt"], _truncate("supernet.pt")),
        Case("truncated supernet.pt: search", [*search, *run, "--budget", "4"], _truncate("supernet.pt")),
        Case("empty supernet.pt", ["export", "run", "--format", "pt"], _truncate("supernet.pt", 0.0)),
        Case("truncated evaluations.sqlite: report", ["report", "run"], _truncate("evaluations.sqlite")),
        Case("truncated evaluations.sqlite: search", [*search, *run, "--budget", "4"], _truncate("evaluations.sqlite")),
        Case("garbage evaluations.sqlite", ["report", "run"], _bytes("run/evaluations.sqlite", b"SQLite format 3\x00" + b"\x07" * 3000)),
        Case("bad row: config not JSON", ["report", "run"], _sql("UPDATE evaluations SET config = '{not json' WHERE id = 1")),
        Case("bad row: metrics a list", ["export", "run", "--format", "pt"], _sql("UPDATE evaluations SET metrics = '[1, 2]' WHERE id = 1")),
        Case("bad row: config a list", ["report", "run"], _sql("UPDATE evaluations SET config = '[1, 2]' WHERE id = 1")),
        Case("bad row: status unknown", ["report", "run"], _sql("UPDATE evaluations SET status = 'maybe'")),
        Case("bad row: seconds text", [*search, *run, "--budget", "4"], _sql("UPDATE evaluations SET seconds = 'slow' WHERE id = 1")),
        Case("bad meta row", [*search, *run, "--budget", "4"], _sql("UPDATE meta SET value = '{oops'")),
        Case("no evaluations table", ["report", "run"], _sql("DROP TABLE evaluations")),
        # the file system
        Case("read-only run directory: search", [*search, *run, "--budget", "4"], read_only=True),
        Case("read-only run directory: report", ["report", "run"], read_only=True),
        Case("read-only run directory: export", ["export", "run", "--format", "pt"], read_only=True),
        Case("disk full: search", [*search, *run, "--budget", "4"], limit_bytes=2000),
        Case("disk full: export", ["export", "run", "--format", "pt"], limit_bytes=2000),
        Case("disk full: report", ["report", "run"], limit_bytes=2000),
        Case("--out is a file: export", ["export", "run", "--format", "pt", "--out", "afile"], _file("afile")),
        Case("--out is a file: report", ["report", "run", "--out", "afile"], _file("afile")),
        Case("--out under a file", ["export", "run", "--format", "pt", "--out", "afile/x"], _file("afile")),
        # names and directories
        Case("run name '.'", [*bad_spec], _spec(TINY.replace('name = "base"', 'name = "."')), watch=None),
        Case("run name '..'", [*bad_spec], _spec(TINY.replace('name = "base"', 'name = ".."')), watch=None),
        Case("run name ''", [*bad_spec], _spec(TINY.replace('name = "base"', 'name = ""')), watch=None),
        Case("--run ''", [*search, "--run", ""], watch=None),
        Case("spec file '..toml'", [*search, "--spec", "..toml"], _spec(TINY.replace('name = "base"\n', ""), "..toml"), watch=None),
        Case("non-run directory as --run", [*search, "--run", "other"], _foreign, watch="other"),
        Case("spec.toml as --run", [*search, "--run", "run/spec.toml"]),
        Case("report of no run", ["report", "nowhere"], watch=None),
        # loading an export
        Case("arch.json widths=[10**6]", [], _arch([10**6]), watch="model", python=LOAD_MODEL),
        Case("arch.json widths=[-3]", [], _arch([-3]), watch="model", python=LOAD_MODEL),
        # two writers
        Case("another writer holds the run", [*search, *run, "--budget", "4"], hold_lock=True),
    ]


# -- running -------------------------------------------------------------------------------
def snapshot(path: Path) -> dict[str, str]:
    """Every file under `path` (relative name -> SHA-256)."""
    if not path.is_dir():
        return {}
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


def make_base(work: Path) -> Path:
    """Train and search the tiny run once, and export its knee (the files every case starts from)."""
    base = work / "base"
    base.mkdir(parents=True)
    (base / "tiny.toml").write_text(TINY)
    env = _env()
    for argv in (["search", "--spec", "tiny.toml", "--run", "run", "--quiet"],  # the report too: matplotlib's caches are built
                 ["export", "run", "--format", "pt", "--out", "model"]):
        proc = subprocess.run([sys.executable, "-m", "nas.cli", *argv], cwd=base, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"building the base run failed: {proc.stderr[-2000:]}")
    return base


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    env.pop("NAS_TRUSTED_SOURCES", None)
    mpl = Path(tempfile.gettempdir()) / "nas-faults-matplotlib"  # writable by every user the cases run as
    mpl.mkdir(mode=0o777, exist_ok=True)
    os.chmod(mpl, 0o777)
    env["MPLCONFIGDIR"] = str(mpl)
    return env


def _limit(case: Case) -> Callable[[], None]:
    def before() -> None:
        if case.limit_bytes is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
            resource.setrlimit(resource.RLIMIT_FSIZE, (case.limit_bytes, case.limit_bytes))

    return before


def prepare_case(case: Case, base: Path, work: Path, index: int) -> Path:
    where = work / f"{index:02d}-{_slug(case.name)}"
    shutil.copytree(base, where)
    if case.setup is not None:
        case.setup(where)
    if case.read_only:
        _immutable(where / "run", True)
    return where


def _immutable(path: Path, on: bool) -> None:
    """Make `path` and everything under it unwritable (root ignores file modes: ``chattr +i``), or writable again."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-R", "+i" if on else "-i", str(path)], check=True, capture_output=True)
    else:
        for p in [path, *path.rglob("*")]:
            os.chmod(p, (0o555 if p.is_dir() else 0o444) if on else (0o755 if p.is_dir() else 0o644))


def run_case(case: Case, base: Path, work: Path, fork: bool = False, index: int = 0) -> Outcome:
    where = prepare_case(case, base, work, index)
    watched = where / case.watch if case.watch else None
    holder = None
    if case.hold_lock:
        holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(where / "run" / "lock"), str(TIMEOUT)],
                                  stdout=subprocess.PIPE, text=True)
        holder.stdout.readline()  # the lock is held
    before = snapshot(watched) if watched else {}
    began = time.perf_counter()
    try:
        if fork:
            rc, out, err = _forked(case, where)
        else:
            rc, out, err = _spawned(case, where)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        if case.read_only:
            _immutable(where / "run", False)
    seconds = time.perf_counter() - began
    after = snapshot(watched) if watched else {}
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if case.limit_bytes is not None:  # a write refused mid-transaction: SQLite keeps its journal (no commit in it) to recover
        changed = [k for k in changed if not k.endswith(("-wal", "-shm")) or k in before]
    lines = [line for line in err.splitlines() if line.strip()]
    return Outcome(case.name, rc, err, "Traceback" in out + err, len(lines), changed, seconds)


def _argv(case: Case) -> list[str]:
    if case.python is not None:
        return [sys.executable, "-c", case.python, "model"]
    return [sys.executable, "-m", "nas.cli", *case.argv]


def _spawned(case: Case, where: Path) -> tuple[int, str, str]:
    try:
        proc = subprocess.run(_argv(case), cwd=where, env=_env(), capture_output=True, text=True, timeout=TIMEOUT,
                              preexec_fn=_limit(case), check=False)
    except subprocess.TimeoutExpired as err:
        return -9, str(err.stdout or ""), f"timed out after {TIMEOUT} s\n{err.stderr or ''}"
    return proc.returncode, proc.stdout, proc.stderr


def _forked(case: Case, where: Path) -> tuple[int, str, str]:
    """Run the case in a child forked from this process (nas already imported): the same `main`, no import cost."""
    import threading

    pipes = [os.pipe(), os.pipe()]  # pipes, not files: a file-size limit must not silence the child
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.dup2(pipes[0][1], 1)
            os.dup2(pipes[1][1], 2)
            for r, w in pipes:
                os.close(r)
                os.close(w)
            sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (a caller's capture, e.g. pytest's, replaced them)
            sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
            os.chdir(where)
            here = str(Path(__file__).resolve().parent)
            sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != here]  # bench/ray.py is not ray
            sys.path.insert(0, "")
            os.environ.clear()
            os.environ.update(_env())
            _limit(case)()
            import warnings

            warnings.resetwarnings()
            warnings.simplefilter("default")
            if case.python is not None:
                sys.argv = ["-c", "model"]
                try:
                    exec(compile(case.python, "<case>", "exec"), {"__name__": "__main__"})
                    code = 0
                except SystemExit as stop:
                    code = int(stop.code or 0)
            else:
                from nas.cli import main

                code = main(list(case.argv))
        except SystemExit as stop:
            code = int(stop.code or 0) if not isinstance(stop.code, str) else 1
        except BaseException:  # noqa: BLE001 (as the interpreter does with an uncaught exception)
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    chunks: list[list[bytes]] = [[], []]

    def drain(fd: int, into: list[bytes]) -> None:
        while True:
            block = os.read(fd, 65536)
            if not block:
                break
            into.append(block)
        os.close(fd)

    readers = []
    for (r, w), into in zip(pipes, chunks):
        os.close(w)
        t = threading.Thread(target=drain, args=(r, into), daemon=True)
        t.start()
        readers.append(t)
    deadline = time.monotonic() + TIMEOUT
    timed_out = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            timed_out = True
            break
        time.sleep(0.02)
    for t in readers:
        t.join(timeout=10)
    out, err = (b"".join(c).decode(errors="replace") for c in chunks)
    if timed_out:
        return -9, out, f"timed out after {TIMEOUT} s\n{err}"
    return os.waitstatus_to_exitcode(status), out, err


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_") or "case"


def sweep(work: Path, *, fork: bool = False, only: str | None = None, verbose: int = 1, jobs: int = 1) -> list[Outcome]:
    """Run every case (or those whose name contains `only`) under `work`, `jobs` at a time; returns their outcomes."""
    if fork:
        import nas.cli  # noqa: F401 (imported once, before the forks)
    base = make_base(work)
    chosen = [i for i, case in enumerate(cases()) if not only or only in case.name]
    if jobs > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            outcomes = pool.starmap(_run_index, [(i, base, work, fork) for i in chosen])
    else:
        outcomes = [_run_index(i, base, work, fork) for i in chosen]
    if verbose:
        for outcome in outcomes:
            mark = "clear" if outcome.clear else "TRACEBACK" if outcome.traceback else "UNCLEAR"
            detail = outcome.stderr.strip().splitlines()[-1] if outcome.stderr.strip() else "(no stderr)"
            extra = f" rc={outcome.rc} lines={outcome.lines}" + (f" changed={outcome.changed}" if outcome.changed else "")
            print(f"{mark:9} {outcome.case:40} {outcome.seconds:5.1f}s{extra}: {detail[:220]}", flush=True)
            if verbose > 1 and not outcome.clear:
                print("    " + outcome.stderr.strip().replace("\n", "\n    ")[-3000:], flush=True)
    return outcomes


def _run_index(index: int, base: Path, work: Path, fork: bool) -> Outcome:
    return run_case(cases()[index], base, work, fork=fork, index=index)


def summary(outcomes: list[Outcome]) -> str:
    clear = sum(o.clear for o in outcomes)
    tracebacks = sum(o.traceback for o in outcomes)
    other = len(outcomes) - clear - tracebacks
    return f"{len(outcomes)} cases: {clear} clear line, {tracebacks} traceback" + (f", {other} other (exit code, lines or changed files)" if other else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fork", action="store_true", help="fork each case from one interpreter (fast) instead of a fresh one")
    parser.add_argument("--only", help="run only the cases whose name contains this")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--jobs", type=int, default=1, help="cases run at once")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the whole stderr of every case that is not clear")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="nas-faults-"))
    os.chmod(work, 0o755)
    try:
        outcomes = sweep(work, fork=args.fork, only=args.only, verbose=2 if args.verbose else 1, jobs=args.jobs)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")
    print(summary(outcomes))
    return 0 if all(o.clear for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
