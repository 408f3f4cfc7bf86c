"""The evaluations database of a run: SQLite in WAL mode, one transaction per batch.

A batch of evaluations and the run facts that go with it (the objectives, the hypervolume
reference point) are written in one transaction, so a process killed at any moment, even
with SIGKILL, leaves every committed batch whole and loses at most the batch in flight.
Each config is stored once (its `SearchSpace.key` is unique), with its latest evaluation:
a config evaluated again (a gradient search records the same architecture in a later
epoch) replaces its row and moves to the end, so the stored order is the order of latest
evaluation. Black-box searches never evaluate a stored config again.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from nas.evaluation import Evaluation
from nas.rundir import STORE, CorruptFile, RunDirError, make_dir

FILENAME = STORE

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL,
    metrics TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    seconds REAL NOT NULL,
    batch INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class EvaluationStore:
    """Stored evaluations of one run; a killed run loses at most the batch in flight.

    Example:
        >>> import tempfile, os
        >>> store = EvaluationStore(os.path.join(tempfile.mkdtemp(), "evaluations.sqlite"))
        >>> store.append([Evaluation({"w": 8}, {"accuracy": 0.5})], keys=['[["w",8]]'], meta={"seed": 0})
        >>> store.append([Evaluation({"w": 8}, {"accuracy": 0.7})], keys=['[["w",8]]'])
        >>> [e.metrics["accuracy"] for e in store.load()], store.meta("seed")
        ([0.7], 0)

    Args:
        path: the SQLite file (created with its folder when missing, unless `create` is False).
        create: False to open an existing database read-only (`FileNotFoundError` when it is
            missing); nothing is created or written then, not even SQLite's ``-wal``/``-shm``
            files. A damaged database raises `nas.rundir.CorruptFile` naming it; a
            read-only directory or a full disk `nas.rundir.RunDirError` naming the fix.
    """

    def __init__(self, path: str | os.PathLike, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise FileNotFoundError(f"no evaluations database at {self.path}")
        self.read_only = not create
        if create:
            make_dir(self.path.parent)
        with self._errors():
            self._db = self._connect()
            if create:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.executescript(_SCHEMA)
                # NORMAL: a commit is durable against a killed process (not against power loss)
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._has_meta = bool(self._db.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone())
            self._batches = self._db.execute("SELECT COALESCE(MAX(batch), -1) + 1 FROM evaluations").fetchone()[0]

    def _connect(self) -> sqlite3.Connection:
        """A connection; read-only ones (``create=False``) create no file: with no write-ahead log
        beside the database (no writer is active) it is opened immutable, else read-only."""
        if not self.read_only:
            return sqlite3.connect(self.path, isolation_level=None)
        wal = self.path.with_name(self.path.name + "-wal")
        mode = "mode=ro" if wal.exists() else "immutable=1"
        uri = f"{self.path.resolve().as_uri()}?{mode}"
        return sqlite3.connect(uri, uri=True, isolation_level=None)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite's errors as one line naming the database and the fix."""
        try:
            yield
        except sqlite3.DatabaseError as err:
            text = str(err)
            if "not a database" in text or "malformed" in text:
                raise CorruptFile(
                    f"{self.path} is damaged ({text}); restore it from a copy, or remove it "
                    "(and front.json) to evaluate again"
                ) from None
            if "readonly" in text or "unable to open" in text or "read-only" in text:
                raise RunDirError(
                    f"cannot write {self.path}: {text}; its directory is read-only or not yours: "
                    "choose a writable run directory or fix its permissions"
                ) from None
            if "full" in text:
                raise RunDirError(f"cannot write {self.path}: {text}; free some space and run the same command again") from None
            if "no such table" in text or "no such column" in text:
                raise CorruptFile(f"{self.path} is not a nas evaluations database ({text}); restore it from a copy, or use another run directory") from None
            raise RunDirError(f"cannot use {self.path}: {text}; check the file and its file system (free space, permissions)") from None

    def append(self, evaluations: Sequence[Evaluation], keys: Sequence[str], meta: Mapping[str, Any] | None = None) -> None:
        """Store a batch, and `meta` facts, atomically; a stored config is replaced by its new evaluation, moved to the end."""
        rows = [(key, *self._row(e), self._batches) for e, key in zip(evaluations, keys, strict=True)]
        self._write(
            "INSERT OR REPLACE INTO evaluations (key, config, metrics, status, error, seconds, batch) VALUES (?,?,?,?,?,?,?)", rows, meta
        )
        self._batches += 1

    def update(self, evaluations: Sequence[Evaluation], keys: Sequence[str], meta: Mapping[str, Any] | None = None) -> None:
        """Replace stored evaluations in place (order and batches kept), and `meta` facts, atomically.

        Raises KeyError naming a key that is not stored; nothing is written then.
        """
        rows = [(*self._row(e)[1:], key) for e, key in zip(evaluations, keys, strict=True)]
        missing = [key for key in keys if not self._db.execute("SELECT 1 FROM evaluations WHERE key = ?", (key,)).fetchone()]
        if missing:
            raise KeyError(f"no stored evaluation has key {missing[0]!r}")
        self._write("UPDATE evaluations SET metrics = ?, status = ?, error = ?, seconds = ? WHERE key = ?", rows, meta)

    @staticmethod
    def _row(e: Evaluation) -> tuple[str, str, str, str | None, float]:
        return json.dumps(e.config), json.dumps(e.metrics), e.status, e.error, float(e.seconds)

    def _write(self, sql: str, rows: list[tuple], meta: Mapping[str, Any] | None) -> None:
        """Run `sql` over `rows` and store `meta` in one transaction."""
        facts = [(k, json.dumps(v)) for k, v in (meta or {}).items()]
        if self.read_only:
            raise RunDirError(f"{self.path} was opened read-only (create=False); open it with create=True to write")
        with self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(sql, rows)
                if facts:
                    self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", facts)
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def load(self) -> list[Evaluation]:
        """Every stored evaluation, in the order stored."""
        return self.load_batches()[0]

    def load_batches(self) -> tuple[list[Evaluation], list[int]]:
        """Every stored evaluation in order, and the number stored after each batch."""
        with self._errors():
            rows = self._db.execute("SELECT config, metrics, status, error, seconds, batch, id FROM evaluations ORDER BY id").fetchall()
        evaluations, ends = [], []
        for i, (c, m, s, e, t, b, row) in enumerate(rows):
            evaluations.append(self._evaluation(row, c, m, s, e, t))
            if i + 1 == len(rows) or rows[i + 1][5] != b:
                ends.append(i + 1)
        return evaluations, ends

    def _evaluation(self, row: int, config: Any, metrics: Any, status: Any, error: Any, seconds: Any) -> Evaluation:
        """A stored row as an `Evaluation`; `CorruptFile` naming the row when it is not one."""
        try:
            config, metrics = json.loads(config), json.loads(metrics)
            if not isinstance(config, dict) or not isinstance(metrics, dict):
                raise ValueError("config and metrics must be JSON objects")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()):
                raise ValueError("metrics must be numbers")
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (error is None or isinstance(error, str)):
                raise ValueError("seconds must be a number and error text")
            return Evaluation(config, metrics, status, error, float(seconds))
        except (TypeError, ValueError) as err:
            raise CorruptFile(
                f"{self.path} has a damaged evaluation (row {row}: {' '.join(str(err).split())[:100]}); "
                "restore the database from a copy, or delete that row to evaluate the config again"
            ) from None

    def check(self) -> None:
        """Read every row and fact once: `nas.rundir.CorruptFile` naming the first damaged one."""
        self.load_batches()
        if self._has_meta:
            with self._errors():
                keys = [k for (k,) in self._db.execute("SELECT key FROM meta")]
            for key in keys:
                self.meta(key)

    def keys(self) -> list[str]:
        """The stored configs' keys, in the order stored."""
        with self._errors():
            return [k for (k,) in self._db.execute("SELECT key FROM evaluations ORDER BY id")]

    def meta(self, key: str, default: Any = None) -> Any:
        """A stored run fact (see `append`), or `default`."""
        if not self._has_meta:
            return default
        with self._errors():
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if not row:
            return default
        try:
            return json.loads(row[0])
        except (TypeError, ValueError):
            raise CorruptFile(f"{self.path} has a damaged run fact ({key!r} is not JSON); restore the database from a copy") from None

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> EvaluationStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
