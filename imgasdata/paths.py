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


def real_path(text) -> Path:
    """The file that a table's path ``text`` (written by :func:`path_text`) names; returns a :class:`~pathlib.Path`.

    For a UTF-8 name that is the text itself. A name that was not UTF-8 is spelled in tables
    with ``\\xNN`` escapes, which name no file; each path component that does not exist as
    written is looked up among its folder's entries by its :func:`path_text`. So a step that
    copies or opens the files of a table (``dedup --copy-unique``, ``clean --keep-to``,
    ``split``) reaches ``b"Bj\\xf6rk.png"`` from the row ``Bj\\xf6rk.png``. When nothing matches
    (a file that really is missing) the text is returned as a path, for the caller's error.
    A name that exists as written wins over an escaped one spelled the same way.
    """
    path = Path(text)
    if os.path.lexists(path) or "\\x" not in os.fspath(path):
        return path
    found = Path(path.anchor) if path.anchor else Path()
    for part in path.parts[1:] if path.anchor else path.parts:
        step = found / part
        if not os.path.lexists(step):
            try:
                names = sorted(n for n in os.listdir(found) if path_text(n) == part)
            except OSError:  # not a folder, or not readable: the caller reports the missing file
                names = []
            if not names:
                return path
            step = found / names[0]
        found = step
    return found


def relative_to_csv(paths, csv):
    """``paths`` (relative ones read from the working directory) rewritten relative to the folder
    of the table ``csv`` that will hold them; returns a list of texts.

    Every report keeps the convention "relative paths are relative to the CSV's folder", so it
    can be read from anywhere (``--exclude``, a labels table); absolute and empty paths stay as
    they are.
    """
    folder = Path(csv).resolve().parent
    return [p if not p or os.path.isabs(p) else path_text(os.path.relpath(os.path.abspath(p), folder))
            for p in map(str, paths)]
