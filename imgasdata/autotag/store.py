"""The result store: every paid answer is written to disk the moment it arrives.

One SQLite file (write-ahead log, full sync) holds one committed row per answer,
keyed by the image's SHA-256, the operation and the canonical JSON of its
parameters, with the raw response as the service returned it. A run that is
repeated, interrupted or killed outright (SIGKILL, a closed laptop) finds every
answer it already paid for and does not ask again. Error answers are logged in
a separate table and never count as answers, so a re-run retries them.

Every request actually sent is also logged (``calls``), so "how many calls did
this run make, and for which images" is a query, not a guess.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    operation TEXT NOT NULL,
    params TEXT NOT NULL,
    image TEXT NOT NULL,
    response TEXT NOT NULL,
    model_version TEXT,
    preflight TEXT,
    answered_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS errors (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    operation TEXT NOT NULL,
    image TEXT NOT NULL,
    error TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT,
    operation TEXT NOT NULL,
    run_id TEXT,
    at REAL NOT NULL
);
"""


def canonical_json(obj):
    """JSON with sorted keys and no spaces: equal parameters always give equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def answer_key(sha256, operation, params):
    """The store key of one answer: image hash, operation and canonical parameters."""
    return hashlib.sha256(f"{sha256}|{operation}|{canonical_json(params or {})}".encode()).hexdigest()


class ResultStore:
    """A SQLite file of answers, errors and sent calls; safe to share between threads.

    Each :meth:`put` is its own committed transaction, so at most the answer in
    flight at the moment of a crash is lost (and it was never stored as answered,
    so it is asked again; nothing already stored is).
    """

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self):
        with self._lock:
            self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def has(self, key):
        with self._lock:
            return self._db.execute("SELECT 1 FROM answers WHERE key = ?", (key,)).fetchone() is not None

    def answered(self, keys):
        """The subset of ``keys`` already answered."""
        keys = list(keys)
        found = set()
        with self._lock:
            for i in range(0, len(keys), 500):
                part = keys[i:i + 500]
                q = f"SELECT key FROM answers WHERE key IN ({','.join('?' * len(part))})"
                found.update(r[0] for r in self._db.execute(q, part))
        return found

    def get(self, key):
        """The stored raw response (a dict) for ``key``, or ``None``."""
        with self._lock:
            row = self._db.execute("SELECT response FROM answers WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key, sha256, operation, params, image, response, model_version=None, preflight=None):
        """Store one answer and commit it at once. Only successful answers belong here."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, sha256, operation, canonical_json(params or {}), str(image),
                 json.dumps(response, default=str), model_version, preflight or "", time.time()))

    def log_error(self, key, operation, image, error):
        with self._lock:
            self._db.execute("INSERT INTO errors (key, operation, image, error, at) VALUES (?, ?, ?, ?, ?)",
                             (key, operation, str(image), str(error), time.time()))

    def log_call(self, key, operation, run_id=None):
        """Record one request sent over the network (each retry counts)."""
        with self._lock:
            self._db.execute("INSERT INTO calls (key, operation, run_id, at) VALUES (?, ?, ?, ?)",
                             (key, operation, run_id, time.time()))

    def calls(self, run_id=None):
        """The logged calls as a list of ``(key, operation, run_id)``, optionally of one run."""
        q, args = "SELECT key, operation, run_id FROM calls", ()
        if run_id is not None:
            q, args = q + " WHERE run_id = ?", (run_id,)
        with self._lock:
            return [tuple(r) for r in self._db.execute(q + " ORDER BY id", args)]

    def count(self, table="answers"):
        if table not in ("answers", "errors", "calls"):
            raise ValueError(table)
        with self._lock:
            return self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
