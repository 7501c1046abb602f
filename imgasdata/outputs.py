"""Writing a command's output files without ever harming the researcher's inputs.

Each file is written under a temporary name beside its destination and moved into
place with :func:`os.replace`, so an interrupted job leaves either the old file or
the new one, never half of one; and an output that is, or lies inside, one of the
inputs is refused before any work starts.

Text in our tables can come from image content (OCR, Rekognition's DetectText) or from
file names other people chose, so an image can decide what a cell holds. A cell that
starts with ``=``, ``+``, ``-`` or ``@`` is a formula to Excel, LibreOffice and Google
Sheets when the CSV is opened there ("CSV injection"): it can compute, fetch a URL or,
in old setups, run a program. :func:`excel_safe` defuses such cells for spreadsheet use;
by default the package writes every value exactly as found, which is what pandas and R
need.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import SettingsError

#: Characters that make a spreadsheet read a cell as a formula (OWASP's list: tab and
#: carriage return too, because some programs strip them and then read what follows).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def write_through(path, write, binary=False):
    """Create ``path`` by calling ``write(handle)`` on a temporary file beside it, then renaming it; returns the path.

    The rename is atomic: readers see the old file or the whole new one, and an error
    (or Ctrl-C) in ``write`` leaves the old file as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="")) as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_atomically(path, data):
    """Write ``data`` (``str`` as UTF-8, or ``bytes``) to ``path`` by temporary file and rename; returns the path."""
    if isinstance(data, str):
        return write_through(path, lambda fh: fh.write(data))
    return write_through(path, lambda fh: fh.write(data), binary=True)


def write_csv(frame, path, excel=False):
    """Write the table ``frame`` (without its index) to the CSV ``path`` by temporary file and rename.

    With ``excel``, cells that a spreadsheet would run as formulas are defused first
    (:func:`excel_safe`). Returns the path.
    """
    frame = excel_safe(frame) if excel else frame
    return write_through(path, lambda fh: frame.to_csv(fh, index=False))


def excel_safe(frame):
    """A copy of ``frame`` whose text cells cannot become spreadsheet formulas.

    Every string cell (and column name) starting with one of :data:`FORMULA_STARTS`
    gets a leading ``'``, which spreadsheets show as text and do not evaluate. Numbers
    are left as numbers (a negative confidence stays a number). Returns a new
    :class:`pandas.DataFrame`; ``frame`` is not changed.
    """
    def defuse(value):
        if isinstance(value, str) and value.startswith(FORMULA_STARTS):
            return "'" + value
        return value

    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or str(out[column].dtype) in ("string", "str"):
            out[column] = out[column].map(defuse)
    out.columns = [defuse(c) for c in out.columns]
    return out


def save_figure(fig, path, **kwargs):
    """Save a matplotlib figure to ``path`` (format from its suffix) by temporary file and rename; returns the path."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **{"bbox_inches": "tight", **kwargs})
    return write_atomically(path, buf.getvalue())


def refuse_inside(out, inputs, what="--out", files_stand_for_folders=False):
    """Raise :class:`~imgasdata.errors.SettingsError` when ``out`` is, or lies inside, one of ``inputs``.

    An input file counts only when ``out`` is that file, unless ``files_stand_for_folders``:
    then it stands for the folder holding it (for commands that place files into ``out``,
    where copies beside the originals would be read as new images next time).
    Paths are resolved, so links and ``..`` do not get round it.
    """
    target = Path(out).resolve()
    for item in inputs:
        src = Path(item).resolve()
        folder = src if src.is_dir() else (src.parent if files_stand_for_folders else None)
        if target == src and folder is None:
            raise SettingsError(f"{what} {out} is the input {item}; choose another file, so that the input "
                                f"stays as it is")
        if folder is not None and (target == folder or folder in target.parents):
            raise SettingsError(f"{what} {out} is, or is inside, the input folder {folder}; choose a place "
                                f"outside your inputs, so that nothing is written among them")
