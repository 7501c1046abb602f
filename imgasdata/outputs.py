"""Writing a command's output files without ever harming the researcher's inputs.

Each file is written under a temporary name beside its destination and moved into
place with :func:`os.replace`, so an interrupted job leaves either the old file or
the new one, never half of one; and an output folder that is, or lies inside, one
of the inputs is refused before any work starts.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import SettingsError


def write_atomically(path, data):
    """Write ``data`` (``str`` as UTF-8, or ``bytes``) to ``path`` by temporary file and rename; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_figure(fig, path, **kwargs):
    """Save a matplotlib figure to ``path`` (format from its suffix) by temporary file and rename; returns the path."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **{"bbox_inches": "tight", **kwargs})
    return write_atomically(path, buf.getvalue())


def refuse_inside(out, inputs, what="--out"):
    """Raise :class:`~imgasdata.errors.SettingsError` when ``out`` is, or lies inside, one of ``inputs``.

    Inputs that are files count through their folder only when ``out`` is the file itself.
    """
    out_resolved = Path(out).resolve()
    for item in inputs:
        src = Path(item).resolve()
        if out_resolved == src or (src.is_dir() and out_resolved.is_relative_to(src)):
            raise SettingsError(f"{what} {out} is inside the input {item}; choose a folder outside your images, "
                                f"so that nothing is written among them")
