"""The per-file cache of hashes and image features that survives between runs.

One SQLite file (:class:`HashCache`) holds, per image and per method, what took a decoding
to compute: dedup's hashes, and the ImageNet embeddings of a backbone under
:func:`embedding_key`. Those embeddings are the same numbers for ``dedup --method cnn`` and
for the labelling commands (``suggest``, ``label-issues``: the backbone with its last layer
removed, its default preprocessing), so one file given to all three with ``--cache`` lets
each reuse what another computed. A row is used only while the file's stamp
(:func:`file_stamp`) is unchanged, so an edited or replaced image is computed again.
"""

from __future__ import annotations

import base64
import os
import sqlite3
from pathlib import Path

import numpy as np


def file_stamp(path):
    """``(size, mtime_ns, inode, ctime_ns)`` of a file, or ``None`` when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


class HashCache:
    """A small SQLite table of hashes keyed on (method, path) and the file's stamp.

    The stamp is size, modification time, inode and change time: ``cp -p``, ``rsync -a``
    and ``unzip`` restore a replaced file's size and modification time, but not its inode
    or change time, so a replaced file is hashed again. A second process using the same
    cache waits up to 30 s for it (write-ahead log), as the Rekognition result store does.
    Only readable images are stored (an unreadable one is tried again next time). Safe to
    delete at any time.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS file_hashes (method TEXT, path TEXT, size INTEGER, "
                        "mtime_ns INTEGER, inode INTEGER, ctime_ns INTEGER, hash TEXT, PRIMARY KEY (method, path))")
        self.db.commit()

    def get(self, method, stamps):
        """Cached hashes for ``stamps`` (``path key -> stamp``, see :func:`file_stamp`), as ``path key -> hash``."""
        rows = self.db.execute("SELECT path, size, mtime_ns, inode, ctime_ns, hash FROM file_hashes "
                               "WHERE method = ?", (method,))
        return {p: h for p, *stamp, h in rows if stamps.get(p) == tuple(stamp)}

    def put(self, method, rows):
        """Store ``(path key, stamp, hash)`` rows."""
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?, ?, ?, ?)",
                                [(method, p, *stamp, h) for p, stamp, h in rows])

    def close(self):
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def embedding_key(backbone):
    """The method name ImageNet embeddings of ``backbone`` are cached under (dedup's ``cnn`` and labelling)."""
    return f"cnn:{backbone}"


def vector_text(vector):
    """One embedding as cache text: its float32 bytes in base64 (travels from Ray workers like a hash)."""
    return base64.b64encode(np.asarray(vector, dtype=np.float32).tobytes()).decode("ascii")


def text_vectors(texts):
    """Embedding texts (:func:`vector_text`) back to an ``N x D`` float32 array (``0 x 0`` for none)."""
    texts = list(texts)
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.frombuffer(base64.b64decode(t), dtype=np.float32) for t in texts])
