"""How a job's results become table rows: the cell encoding and the one rule for error rows.

Shared by every engine of :func:`imgasdata.jobs.run_job` (this process, worker processes,
Ray actors in :mod:`imgasdata.ray_engine`), so a file gets the same row wherever it was
done: an unreadable or invalid input (a :class:`~imgasdata.errors.UserError`) becomes a
row with the reason in ``error``; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import math

from .errors import UserError
from .paths import path_text


def text_cell(value):
    """A cell as the CSV writes it: text through :func:`path_text`, NaN and ``None`` as empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return path_text(value)  # a non-UTF-8 file name inside an error message too
    return value


def error_row(columns, path, message):
    """The row of a file that could not be done: its path, the reason in ``error``, every other cell empty."""
    row = [None] * len(columns)
    row[0] = path_text(path)
    row[list(columns).index("error")] = path_text(message)
    return row


def clean_rows(rows):
    """``rows`` with every cell as the CSV writes it (:func:`text_cell`)."""
    return [[text_cell(v) for v in row] for row in rows]


def keys_in(rows):
    """The key cells of ``rows`` in order, each once (a path's rows are together)."""
    return list(dict.fromkeys(row[0] for row in rows))


def checked_rows(rows, paths, name):
    """``rows`` after checking that they hold every path's rows in order (a job's contract: else a bug)."""
    if keys_in(rows) != [path_text(p) for p in paths]:
        raise RuntimeError(f"the {name} job's worker must return rows for every path, in order, each row "
                           "starting with its path")
    return rows


def rows_or_errors(worker, paths, columns, name="job"):
    """All rows of ``paths`` from ``worker``; the one rule for which exceptions become rows.

    A :class:`UserError` (an unreadable or invalid file the job did not turn into a row
    itself) costs the chunk a retry path by path, and the path that still raises gets a row
    with the reason in ``error``. Any other exception is a bug and propagates. Used by every
    engine, so the rows are the same wherever they were made.
    """
    paths = list(paths)
    try:
        rows = [row for batch in worker.batches(paths) for row in batch]
    except UserError as exc:
        if len(paths) == 1:
            return [error_row(columns, paths[0], str(exc))]
        return [row for p in paths for row in rows_or_errors(worker, [p], columns, name)]
    return checked_rows(clean_rows(rows), paths, name)
