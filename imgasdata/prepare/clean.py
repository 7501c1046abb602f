"""Cleaning a collection: one row per file with the reasons to drop it.

The book dropped files under 5 kB (thumbnails, icons, broken downloads) after
deduplication: a rule for JPEG tweets of 2019. Today a 320-px WebP photo weighs
3-5 kB, so the size rule is off by default (``min_kb=5`` restores it) and a
minimum side of 64 pixels catches thumbnails instead. A real collection also holds unreadable or truncated files,
pictures too small to say anything, banners and strips with an extreme aspect
ratio, and blank or almost one-colour images. :func:`clean_images` reports all
of these without deleting anything; :func:`keep_images` copies or links the
keepers into a new folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, SettingsError
from ..images import ImageLoadError, expand_inputs, load_image
from ..paths import path_text, real_path
from ..progress import progress as progress_bar

#: Default limits: each only catches clear cases. The book's ``min_kb=5`` is off (0) by default.
DEFAULTS = {"min_kb": 0.0, "min_side": 64, "max_aspect": 5.0, "min_std": 3.0}


def clean_images(paths, min_kb=0.0, min_side=64, max_aspect=5.0, min_std=3.0, progress=True):
    """Check each image file; return one row per file with the reasons to drop it.

    Reasons (joined by ``;`` in ``reasons``): ``small file`` (under ``min_kb``
    kilobytes; off by default, the book used 5 kB), ``small image`` (shorter side
    under ``min_side`` pixels, 64 by default), ``extreme aspect ratio`` (longer side over
    ``max_aspect`` times the shorter), ``near-uniform`` (standard deviation of
    the grey levels under ``min_std`` of 255: blank or almost one colour; a
    transparent image counts as laid on white) and ``unreadable`` (the reason is
    in ``error``; truncated files are unreadable). Columns: ``path, kb, width,
    height, aspect, grey_std, keep, reasons, error``. Set a limit to 0 to turn
    it off.
    """
    for name, value in (("min_kb", min_kb), ("min_side", min_side), ("max_aspect", max_aspect), ("min_std", min_std)):
        if value is None or float(value) < 0:
            raise SettingsError(f"{name} must be a number >= 0, got {value}")
    files = expand_inputs(paths)
    if not files:
        raise DataError(f"No image files found in {paths}")
    rows = []
    for p in progress_bar(files, desc="checking images", unit="img", enabled=progress):
        row = {"path": path_text(p), "kb": np.nan, "width": pd.NA, "height": pd.NA, "aspect": np.nan,
               "grey_std": np.nan, "reasons": [], "error": ""}
        try:
            row["kb"] = os.stat(p).st_size / 1000
        except OSError:
            pass
        try:
            img = load_image(p)
            w, h = img.size
            grey = np.asarray(img.convert("L").resize((min(w, 128), min(h, 128))), dtype=np.float32)
            row.update(width=w, height=h, aspect=max(w, h) / max(min(w, h), 1), grey_std=float(grey.std()))
        except ImageLoadError as exc:
            row["error"] = path_text(str(exc))  # a name that is not UTF-8 is in the message too
            row["reasons"].append("unreadable")
        if min_kb and row["kb"] == row["kb"] and row["kb"] < min_kb:
            row["reasons"].append("small file")
        if not row["error"]:
            if min_side and min(row["width"], row["height"]) < min_side:
                row["reasons"].append("small image")
            if max_aspect and row["aspect"] > max_aspect:
                row["reasons"].append("extreme aspect ratio")
            if min_std and row["grey_std"] < min_std:
                row["reasons"].append("near-uniform")
        row["keep"] = not row["reasons"]
        row["reasons"] = "; ".join(row["reasons"])
        rows.append(row)
    df = pd.DataFrame(rows, columns=["path", "kb", "width", "height", "aspect", "grey_std", "keep", "reasons", "error"])
    return df.astype({"width": "Int64", "height": "Int64"})


def reason_counts(report):
    """How many files each reason flags (a file can have several), plus the files kept."""
    reasons = report["reasons"].str.split("; ").explode()
    counts = reasons[reasons != ""].value_counts().rename_axis("reason").rename("files")
    return pd.concat([counts, pd.Series({"kept": int(report["keep"].sum())}, name="files")])


def keep_images(report, out_dir, link="copy", base=None, overwrite=False, inputs=()):
    """Copy (or link) the files with ``keep`` into ``out_dir``; returns the list of new paths.

    Paths below ``base`` (default: their common folder) keep their sub-folders, so
    ``train/positive/x.png`` stays in ``train/positive``. The originals are never
    touched: ``out_dir`` may not be, or be inside, a folder of ``inputs`` or of
    the reported files; a destination that already is the file is left alone;
    another file of that name is replaced only with ``overwrite``.
    """
    from ..outputs import refuse_inside
    from .place import place_file

    files = {p: real_path(p) for p in report["path"]}  # a non-UTF-8 name is written as \xNN text
    refuse_inside(out_dir, [*inputs, *{f.parent for f in files.values()}], "--keep-to",
                  files_stand_for_folders=True)
    keep = [files[p] for p in report.loc[report["keep"].astype(bool), "path"]]
    if not keep:
        return []
    base = Path(base) if base else Path(os.path.commonpath([str(p.resolve().parent) for p in keep]))
    return [place_file(p, Path(out_dir) / p.resolve().relative_to(base), link, overwrite) for p in keep]
