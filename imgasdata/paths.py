"""How a file path is written into a table (CSV, SQLite) and how it is keyed for resuming.

File names come from other people's machines: a zip made on Windows can hold a Latin-1
name such as ``b"Bj\\xf6rk.png"``, which is not valid UTF-8 and cannot be written to a
UTF-8 CSV or stored in SQLite as text. Every job writes paths through :func:`path_text`,
so such a file gets its row (``Bj\\xf6rk.png``, the undecodable byte spelled as an
escape) instead of crashing the job, and every table spells it the same way.
"""

from __future__ import annotations

import os
from pathlib import Path


def path_text(path) -> str:
    """The path as text that any UTF-8 writer accepts.

    Valid UTF-8 names are returned unchanged; each byte that is not UTF-8 is written as
    ``\\xNN``. Returns a ``str``.
    """
    return os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")


def path_key(path) -> str:
    """The key a resumed job uses for ``path``: its absolute, normalised form as :func:`path_text`.

    ``photos/a.jpg`` typed in one run and ``/home/me/photos/a.jpg`` in the next are the
    same image, so both give one key. Symbolic links are not followed: a link and its
    target are two inputs, each with its own row.
    """
    return path_text(os.path.normpath(os.path.abspath(os.fspath(Path(path)))))
