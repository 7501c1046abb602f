"""Leaving files out by report: the files a ``check``, ``clean`` or ``dedup`` report says to drop.

A report is a CSV with a ``path`` column and the verdict of its command:
``check`` writes ``ok`` (False: unreadable), ``clean`` writes ``keep`` (False:
a reason to drop it), ``dedup`` writes ``duplicate`` (True: another image of
its group is kept). ``--exclude REPORT.csv`` on ``labels``, ``split``,
``train`` and ``predict`` reads them with :func:`read_exclusions`, so the
report is applied where the files are used instead of copying the keepers
elsewhere (which breaks the paths of a label sheet).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..errors import DataError, MissingFileError
from ..paths import path_key


def _flag(values):
    """A report's True/False column, whether pandas read it as booleans or as text."""
    return values.map(lambda v: str(v).strip().lower() in ("true", "1"))


def read_exclusions(reports):
    """The files to leave out, as a set of :func:`imgasdata.paths.path_key` keys.

    ``reports`` is one CSV path (or DataFrame) or a list of them. Relative paths in
    a report are read relative to the report's folder (a DataFrame: the working
    directory). Raises :class:`~imgasdata.errors.DataError` for a table that is
    none of the three reports, or whose paths exist nowhere (written relative to
    another folder).
    """
    if reports is None:
        return set()
    if isinstance(reports, (str, os.PathLike, pd.DataFrame)):
        reports = [reports]
    keys = set()
    for report in reports:
        base, name = Path("."), "the report"
        if not isinstance(report, pd.DataFrame):
            if not Path(report).is_file():
                raise MissingFileError(f"Report not found: {report}")
            base, name = Path(report).parent, str(report)
            report = pd.read_csv(report, keep_default_na=False, dtype=str)
        if "path" not in report.columns:
            raise DataError(f"{name} has no path column; give a report of imgasdata check, clean or dedup")
        if "duplicate" in report.columns:
            drop = _flag(report["duplicate"])
        elif "keep" in report.columns:
            drop = ~_flag(report["keep"])
        elif "ok" in report.columns:
            drop = ~_flag(report["ok"])
        else:
            raise DataError(f"{name} has none of the columns duplicate (dedup), keep (clean) or ok (check); "
                            f"give a report of one of these commands")
        paths = [base / p for p in report["path"].astype(str)]
        if len(paths) and not any(p.exists() for p in paths):
            raise DataError(f"None of the files listed in {name} exists when read relative to its folder "
                            f"({base}); write the report again with this version of imgasdata")
        keys |= {path_key(p) for p, d in zip(paths, drop) if d}
    return keys
