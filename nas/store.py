"""The evaluations database of a run: SQLite in WAL mode, one transaction per batch."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from nas.evaluation import Evaluation

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
)
"""


class EvaluationStore:
    """Stored evaluations of one run; a killed run loses at most the batch in flight.

    Example:
        >>> import tempfile, os
        >>> store = EvaluationStore(os.path.join(tempfile.mkdtemp(), "evaluations.sqlite"))
        >>> store.append([Evaluation({"w": 8}, {"accuracy": 0.5})], keys=['[["w",8]]'])
        >>> len(store.load())
        1

    Args:
        path: the SQLite file (created with its folder when missing).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._batches = self._db.execute("SELECT COALESCE(MAX(batch), -1) + 1 FROM evaluations").fetchone()[0]

    def append(self, evaluations: Sequence[Evaluation], keys: Sequence[str]) -> None:
        """Store a batch atomically (all or nothing); configs already stored are kept as they were."""
        rows = [
            (key, json.dumps(e.config), json.dumps(e.metrics), e.status, e.error, float(e.seconds), self._batches)
            for e, key in zip(evaluations, keys, strict=True)
        ]
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR IGNORE INTO evaluations (key, config, metrics, status, error, seconds, batch) VALUES (?,?,?,?,?,?,?)",
                rows,
            )
        self._batches += 1

    def load(self) -> list[Evaluation]:
        """Every stored evaluation, in the order stored."""
        rows = self._db.execute("SELECT config, metrics, status, error, seconds FROM evaluations ORDER BY id").fetchall()
        return [Evaluation(json.loads(c), json.loads(m), s, e, t) for c, m, s, e, t in rows]

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]

    def close(self) -> None:
        """Close the database."""
        self._db.close()
