"""Putting copies (or links) of a researcher's files into an output folder without touching the originals.

``clean --keep-to``, ``dedup --copy-unique`` and ``split`` all place files. The
rules, in one place: the output folder is never the input folder or inside it
(:func:`imgasdata.outputs.refuse_inside`); a destination that already *is* the source (the same
file, a hard link or a link to it) is left alone; every file is written under a
temporary name and moved into place with :func:`os.replace`, so nothing is
unlinked first; an existing different file is never replaced unless the caller
passes ``overwrite``. Class names become folder names only when they are safe
(:func:`folder_name`).
"""

from __future__ import annotations

import filecmp
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import DataError, SettingsError, UserError

LINKS = ("copy", "hardlink", "symlink")


def folder_name(label):
    """``label`` as a folder name, or :class:`~imgasdata.errors.DataError` naming it when it is not safe.

    Refused: empty names, ``.`` and ``..``, path separators (``cat/dog`` would
    become a nested folder read later as class ``cat``), absolute paths and
    control characters. Label sheets come from other people; a label must never
    write outside the output folder.
    """
    text = str(label)
    bad = (not text.strip() or text in (".", "..") or "/" in text or "\\" in text
           or (os.altsep and os.altsep in text) or os.path.isabs(text)
           or any(ord(ch) < 32 or ord(ch) == 127 for ch in text))
    if bad:
        raise DataError(f"The label {text!r} cannot be a folder name (empty, '.', '..', a path separator or a "
                        f"control character); rename that class in the labels table")
    return text


def _same(src, dest):
    """Whether ``dest`` already holds ``src``: the same file, or a file with the same bytes."""
    try:
        if os.path.samefile(src, dest):
            return True
    except OSError:  # a dangling link at dest
        return False
    return dest.is_file() and not dest.is_symlink() and filecmp.cmp(src, dest, shallow=False)


def place_file(src, dest, link="copy", overwrite=False):
    """Copy, hard-link or symlink ``src`` to ``dest``; returns ``dest``.

    A destination that is the same file as ``src`` (or a copy with the same bytes)
    is left as it is. Another file at ``dest`` is an error unless ``overwrite``.
    The new file is written under a temporary name in ``dest``'s folder and then
    moved into place, so ``dest`` is replaced in one step and the source is never
    unlinked. A hard link across two disks is impossible; the file is then copied.
    Symbolic links are relative, so the output folder can be moved together with
    the images.
    """
    if link not in LINKS:
        raise SettingsError(f"link must be one of {', '.join(LINKS)}, got {link!r}")
    src, dest = Path(src), Path(dest)
    if dest.exists() or dest.is_symlink():
        if _same(src, dest):
            return dest
        if not overwrite:
            raise UserError(f"{dest} already exists and is another file; choose an empty folder or pass "
                            f"--overwrite to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        if link == "copy":
            shutil.copy2(src, tmp)
        else:
            tmp.unlink()  # os.link and os.symlink need a free name: our own temporary one
            if link == "symlink":
                os.symlink(os.path.relpath(src.resolve(), dest.parent.resolve()), tmp)
            else:
                try:
                    os.link(src, tmp)
                except OSError:
                    shutil.copy2(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()
        raise
    return dest


def unique_names(paths):
    """A file name per path, numbered (``a_1.jpg``) where two paths share one."""
    used, names = set(), []
    for p in paths:
        p = Path(p)
        name, k = p.name, 1
        while name in used:
            name, k = f"{p.stem}_{k}{p.suffix}", k + 1
        used.add(name)
        names.append(name)
    return names
