"""A table written to CSV batch by batch as the work goes, so an interrupted job resumes where it stopped.

The one home of "append rows, resume by key" for the jobs that turn image paths into
rows: :func:`imgasdata.predict.predict` (one row per image) and the offline autotaggers
of :mod:`imgasdata.autotag.local` (one or several rows per image).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from .errors import DataError


class CsvRows:
    """Rows appended to ``path`` batch by batch; with ``resume`` the keys already there are in :attr:`done`.

    Without ``resume`` an existing file is replaced. With ``resume`` its header must be
    ``columns`` (else a :class:`DataError`: mixing two tables in one file would corrupt both),
    and :attr:`done` holds the values of its ``key`` column, which the caller skips.
    Each batch goes to disk in one ``write`` and is flushed, so an exception or Ctrl-C
    between batches leaves whole batches only, each image's rows together. Only a kill
    during that write can cut the file mid-batch: a resume then cuts the torn last line and
    also drops the rows of the last key left (its block may be incomplete), which is re-done.
    Use as a context manager: ``with CsvRows(...) as out: out.write(rows)``.
    """

    def __init__(self, path, columns, key=None, resume=False, what="this job's"):
        self.path = Path(path)
        self.columns = list(columns)
        self.key = self.columns.index(key or self.columns[0])
        self.done = set()
        self.handle = None
        if self.path.exists() and resume and self.path.stat().st_size > 0:
            self.done = self._read_back(what)
        elif self.path.exists():
            self.path.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _read_back(self, what):
        """The keys in the file, after cutting a torn tail (see the class docstring)."""
        data = self.path.read_bytes()
        torn = not data.endswith(b"\n")
        if torn:
            data = data[: data.rfind(b"\n") + 1]  # nothing left when even the header was cut
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
        if not rows:
            self.path.write_bytes(b"")
            return set()
        if rows[0] != self.columns:
            raise DataError(f"Cannot resume {self.path}: its columns {rows[0]} are not {what} {self.columns}; "
                            "write to a new file instead")
        body = rows[1:]
        if torn:
            last = body[-1][self.key] if body else None
            while body and body[-1][self.key] == last:
                body.pop()
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                csv.writer(fh).writerows([rows[0], *body])
            os.replace(tmp, self.path)
        return {row[self.key] for row in body}

    def __enter__(self):
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.handle = open(self.path, "a", newline="", encoding="utf-8")
        if new:  # a resumed file may hold the header without any rows yet
            self.write([self.columns])
        return self

    def write(self, rows):
        """Append ``rows`` (lists in ``columns`` order; ``None`` is an empty cell) in one write, flushed."""
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)
        self.handle.write(buffer.getvalue())
        self.handle.flush()

    def __exit__(self, *exc):
        self.handle.close()
        return False
