"""The result store: every paid answer is written to disk the moment it arrives.

One SQLite file (write-ahead log, full sync) holds one committed row per answer,
keyed by the SHA-256 of the bytes sent, the operation, the canonical JSON of its
parameters and the endpoint URL, with the raw response as the service returned
it (and the key of the file the bytes came from, so a resumed run finds the
answer before converting the file again). A run that is
repeated, interrupted or killed outright (SIGKILL, a closed laptop) finds every
answer it already paid for and does not ask again. Error answers are logged in
a separate table and never count as answers, so a re-run retries them.

Every request actually sent is also logged (``calls``), so "how many calls did
this run make, and for which images" is a query, not a guess. A run claims each
key just before sending it (``claims``, with the run's computer and process, and
a lease), so two runs on one store never pay twice for one image, and a crashed
run's claims are taken over.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sqlite3
import threading
import time
from pathlib import Path

from ..errors import DataError

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    source_key TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    operation TEXT NOT NULL,
    params TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    image TEXT NOT NULL,
    response TEXT NOT NULL,
    model_version TEXT,
    preflight TEXT,
    answered_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_source ON answers (source_key);
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
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires REAL NOT NULL
);
PRAGMA user_version = 2;
"""

#: How long a claim holds when its owner cannot be checked (another computer sharing the
#: folder): longer than one request with all of botocore's retries and timeouts.
LEASE_S = 15 * 60

#: Claim owners of runs still going in this process (a notebook may run twice in one process).
_ACTIVE_OWNERS = set()
_HOST = socket.gethostname()


def run_started(owner):
    """Mark ``owner``'s claims as those of a live run in this process."""
    _ACTIVE_OWNERS.add(owner)


def run_ended(owner):
    """Mark ``owner``'s run as finished (its left-over claims may be taken over at once)."""
    _ACTIVE_OWNERS.discard(owner)


def canonical_json(obj):
    """JSON with sorted keys and no spaces: equal parameters always give equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def answer_key(sha256, operation, params, endpoint):
    """The store key of one answer: SHA-256 of the bytes, operation, canonical parameters and endpoint URL.

    The endpoint is part of the key so that answers from a local test endpoint in the same
    folder are never served as the service's.
    """
    text = f"{sha256}|{operation}|{canonical_json(params or {})}|{endpoint or ''}"
    return hashlib.sha256(text.encode()).hexdigest()


def scrub(text, keep=""):
    """``text`` without account ARNs and 12-digit account IDs (messages end up in shared notebooks).

    ``keep`` (an image's name) is left as it is wherever it occurs: a photo called
    ``201901011230.jpg`` is not an account.
    """
    parts = str(text).split(keep) if keep else [str(text)]
    return keep.join(_ACCOUNT.sub("<account-id>", _ARN.sub("<arn>", part)) for part in parts)


_ARN = re.compile(r"arn:aws[a-zA-Z-]*:[^\s\"',;)]*")
_ACCOUNT = re.compile(r"(?<!\d)\d{12}(?!\d)")


def _alive(host, pid, owner):
    """Whether the run that made a claim may still be sending (only checkable on this computer)."""
    if host != _HOST:
        return True
    if pid == os.getpid():
        return owner in _ACTIVE_OWNERS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user: alive
        return True
    return True


class ResultStore:
    """A SQLite file of answers, errors, sent calls and claims; safe to share between threads and processes.

    Each :meth:`put` is its own committed transaction, so at most the answer in
    flight at the moment of a crash is lost (and it was never stored as answered,
    so it is asked again; nothing already stored is). Before sending, a run
    :meth:`claim` claims the key, so two runs on one store never send the same image.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(answers)")}
        if columns and "source_key" not in columns:
            self._db.close()
            raise DataError(f"{self.path} was written by an older imgasdata whose keys do not record the "
                            "bytes sent and the endpoint; use a new --out folder (the old file stays as it is)")
        self._db.executescript(SCHEMA)

    def close(self):
        with self._lock:
            self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def has(self, key):
        """Whether ``key`` is answered, as the key of the bytes sent or of the file they came from."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM answers WHERE key = ? OR source_key = ? LIMIT 1",
                                    (key, key)).fetchone() is not None

    def answered(self, keys):
        """The subset of ``keys`` already answered (as sent keys or as source keys)."""
        keys = list(keys)
        found = set()
        with self._lock:
            for i in range(0, len(keys), 400):
                part = keys[i:i + 400]
                marks = ",".join("?" * len(part))
                q = f"SELECT key, source_key FROM answers WHERE key IN ({marks}) OR source_key IN ({marks})"
                for key, source in self._db.execute(q, part + part):
                    found.update({key, source})
        return found & set(keys)

    def answered_anywhere(self, shas, operation, params):
        """The file hashes in ``shas`` answered for ``operation``/``params`` at any endpoint (dry runs)."""
        shas = list(shas)
        found = set()
        with self._lock:
            for i in range(0, len(shas), 400):
                part = shas[i:i + 400]
                q = (f"SELECT sha256 FROM answers WHERE operation = ? AND params = ? "
                     f"AND sha256 IN ({','.join('?' * len(part))})")
                found.update(r[0] for r in self._db.execute(q, [operation, canonical_json(params or {})] + part))
        return found

    def get(self, key):
        """The stored raw response (a dict) for ``key`` (sent or source key), or ``None``."""
        found = self.find(key)
        return found[0] if found else None

    def find(self, key):
        """``(response, preflight note)`` stored for ``key`` (sent or source key), or ``None``."""
        with self._lock:
            row = self._db.execute("SELECT response, preflight FROM answers WHERE key = ? OR source_key = ? "
                                   "ORDER BY answered_at LIMIT 1", (key, key)).fetchone()
        return (json.loads(row[0]), row[1] or "") if row else None

    def claim(self, key, source_key, owner, lease_s=LEASE_S):
        """Reserve ``key`` for sending by ``owner``: ``"mine"``, ``"answered"`` or ``"busy"`` (another live run).

        Checked and written in one transaction, so of two runs asking at once exactly
        one gets ``"mine"``. A claim whose run has died (same computer) or whose lease
        has run out is taken over.
        """
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._db.execute("SELECT 1 FROM answers WHERE key IN (?, ?) OR source_key IN (?, ?) LIMIT 1",
                                    (key, source_key, key, source_key)).fetchone():
                    return "answered"
                row = self._db.execute("SELECT owner, host, pid, expires FROM claims WHERE key = ?",
                                       (key,)).fetchone()
                if row and row[0] != owner and row[3] > now and _alive(row[1], row[2], row[0]):
                    return "busy"
                self._db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?)",
                                 (key, owner, _HOST, os.getpid(), now + lease_s))
                return "mine"
            finally:
                self._db.execute("COMMIT")

    def release(self, key, owner):
        """Give up ``owner``'s claim on ``key`` (after an error, or when the run stops before sending)."""
        with self._lock:
            self._db.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, owner))

    def release_all(self, owner):
        with self._lock:
            self._db.execute("DELETE FROM claims WHERE owner = ?", (owner,))

    def put(self, key, source_key, sha256, operation, params, endpoint, image, response, model_version=None,
            preflight=None):
        """Store one answer and commit it at once (its claim goes with it). Only successful answers belong here."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, source_key, sha256, operation, canonical_json(params or {}), endpoint or "", str(image),
                     json.dumps(response, default=str), model_version, preflight or "", time.time()))
                self._db.execute("DELETE FROM claims WHERE key = ?", (key,))
            finally:
                self._db.execute("COMMIT")

    def log_error(self, key, operation, image, error):
        """Record an error answer (account ARNs and IDs removed); errors never count as answers."""
        with self._lock:
            self._db.execute("INSERT INTO errors (key, operation, image, error, at) VALUES (?, ?, ?, ?, ?)",
                             (key or "", operation, str(image), scrub(error, keep=str(image)), time.time()))

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
