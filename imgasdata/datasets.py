"""Turning a folder or a spreadsheet of labelled images into one table.

Every loader returns a DataFrame with one row per image and the columns
``path`` (absolute), ``label`` and ``split`` (``train``, ``val`` or ``test``).
Three layouts are understood:

* the book's layout, ``DATA/train/<class>/...`` with ``DATA/val/<class>/...``
  and/or ``DATA/test/<class>/...``;
* a flat folder ``DATA/<class>/...``, split with a seed;
* a CSV file with columns ``path,label`` (and optionally ``split``), paths
  relative to the CSV's own folder.

The held-out images are never used to pick a model. When a dataset has only
one held-out folder (``val/`` or ``test/``), that folder becomes the test set
and a validation set is carved out of ``train/`` for model selection.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import pandas as pd

from .errors import DataError, MissingFileError
from .images import list_images, list_other_files
from .paths import path_key

SPLITS = ("train", "val", "test")


def _class_folders(folder):
    return sorted(p for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith("."))


def read_class_folders(folder, split=None):
    """Rows for ``folder/<class>/*``; raises when a class folder is empty."""
    folder = Path(folder)
    classes = _class_folders(folder)
    if not classes:
        raise DataError(
            f"{folder} has no class sub-folders; expected one folder per label, "
            f"e.g. {folder}/positive and {folder}/negative"
        )
    rows = []
    for class_dir in classes:
        files = list_images(class_dir)
        if not files:
            raise DataError(f"Class folder {class_dir} holds no image files")
        others = list_other_files(class_dir)
        if others:
            warnings.warn(
                f"{len(others)} non-image file(s) in {class_dir} are ignored, e.g. {others[0].name}",
                stacklevel=3,
            )
        rows += [{"path": str(f.resolve()), "label": class_dir.name, "split": split} for f in files]
    return pd.DataFrame(rows, columns=["path", "label", "split"])


def stratified_split(labels, fractions, seed):
    """Assign ``train``/``val``/``test`` to labels in the given fractions, stratified by label.

    Every class gets at least one image in every split whose fraction is not 0; the
    assignment is fixed by ``seed``. Returns a Series of split names with ``labels``'s
    index. The one stratified split of the package (``load_dataset`` and ``prepare.split``).
    """
    from sklearn.model_selection import (
        train_test_split,  # here, not at the top: predict reads datasets
    )

    labels = pd.Series(labels)
    train_f, val_f, test_f = fractions
    if abs(train_f + val_f + test_f - 1.0) > 1e-6 or min(fractions) < 0:
        raise DataError(f"split fractions must be >= 0 and add up to 1, got {fractions}")
    counts = labels.value_counts()
    n_classes = len(counts)
    needed = sum(1 for f in fractions if f > 0)
    if counts.min() < needed:
        raise DataError(
            f"Class '{counts.idxmin()}' has only {counts.min()} image(s); at least {needed} "
            f"are needed to put one in each of the train/val/test splits"
        )
    split = pd.Series("train", index=labels.index)
    rest_f = val_f + test_f
    if rest_f == 0:
        return split

    def _size(fraction, n):
        # at least one image per class in every non-empty split
        return max(int(round(fraction * n)), n_classes)

    try:
        _, rest_idx = train_test_split(labels.index, test_size=_size(rest_f, len(labels)), stratify=labels,
                                       random_state=seed)
        if val_f and test_f:
            rest = labels.loc[rest_idx]
            val_idx, test_idx = train_test_split(rest.index, test_size=_size(test_f / rest_f, len(rest)),
                                                 stratify=rest, random_state=seed)
            split[val_idx] = "val"
            split[test_idx] = "test"
        else:
            split[rest_idx] = "val" if val_f else "test"
    except ValueError as exc:
        raise DataError(f"Could not split the images by class ({exc}); add more images per class") from None
    return split


def _stratified_split(df, fractions, seed):
    """``df`` with a ``split`` column from :func:`stratified_split` of its labels."""
    return df.assign(split=stratified_split(df["label"], fractions, seed))


def load_dataset(source, split=(0.8, 0.1, 0.1), val_fraction=0.15, seed=0, exclude=None):
    """Read a labelled image collection into a table of ``path, label, split``.

    ``source`` is a folder (the book's ``train/val/test`` layout, or one
    sub-folder per class) or a CSV file of ``path,label[,split]``. ``split``
    gives the train/val/test fractions for a collection that is not split yet;
    ``val_fraction`` is the share of ``train/`` held back for model selection
    when the folder has only one held-out split. Splits are stratified by label
    and fixed by ``seed``. ``exclude``: reports of ``check``, ``clean`` or
    ``dedup`` (see :func:`imgasdata.prepare.exclude.read_exclusions`) whose
    unreadable, not-kept or duplicate files are left out before any split; the
    number left out is in ``attrs["excluded"]``. Returns the rows sorted by split,
    label and path; how they were split is in ``df.attrs["split"]`` (see
    :func:`split_record`).
    """
    from .prepare.exclude import read_exclusions

    source = Path(source)
    if not source.exists():
        raise MissingFileError(f"Data folder or file not found: {source}")
    excluded = read_exclusions(exclude)
    dropped = []

    def drop(rows):
        gone = rows["path"].map(path_key).isin(excluded) if excluded else pd.Series(False, index=rows.index)
        dropped.append(int(gone.sum()))
        return rows[~gone].reset_index(drop=True)

    seeded = {"method": "seeded", "fractions": [float(f) for f in split], "seed": int(seed)}
    if source.is_file():
        df = _read_csv(source, split, seed, drop)
        how = {"method": "csv column"} if "split" in pd.read_csv(source, nrows=0).columns else seeded
    elif (source / "train").is_dir():
        df, how = _read_split_folders(source, val_fraction, seed, drop)
    else:
        df, how = _stratified_split(drop(read_class_folders(source)), split, seed), seeded
    _check_classes(df, source)
    order = {s: i for i, s in enumerate(SPLITS)}
    df = df.sort_values(["split", "label", "path"], key=lambda c: c.map(order) if c.name == "split" else c)
    df = df.reset_index(drop=True)
    df.attrs["excluded"] = sum(dropped)
    df.attrs["split"] = how
    return df


def split_record(df):
    """How a dataset table was split, as the run manifest records it (a dict with ``method``).

    ``folders`` (the book's train/val/test folders), ``folders + seeded`` (a validation set
    carved from ``train/`` with ``val_fraction`` and ``seed``), ``seeded`` (stratified
    ``fractions`` with ``seed``), ``csv column`` (the CSV's own ``split`` column), or
    ``given table`` for a table not made by :func:`load_dataset`.
    """
    return dict(df.attrs.get("split") or {"method": "given table"})


def _read_split_folders(source, val_fraction, seed, drop=lambda rows: rows):
    parts = {s: drop(read_class_folders(source / s, s)) for s in SPLITS if (source / s).is_dir()}
    if "val" in parts and "test" in parts:
        return pd.concat(parts.values(), ignore_index=True), {"method": "folders"}
    held_out = parts.get("test", parts.get("val"))
    train = parts["train"]
    if held_out is None:
        # only train/: carve validation and test sets out of it
        fractions = (1 - 2 * val_fraction, val_fraction, val_fraction)
        return _stratified_split(train, fractions, seed), {"method": "seeded", "from": "train/",
                                                           "fractions": list(fractions), "seed": int(seed)}
    folder = "test" if "test" in parts else "val"
    held_out = held_out.assign(split="test")
    train = _stratified_split(train, (1 - val_fraction, val_fraction, 0.0), seed)
    how = {"method": "folders + seeded", "test": f"{folder}/", "val_fraction": float(val_fraction),
           "seed": int(seed)}
    return pd.concat([train, held_out], ignore_index=True), how


def _read_csv(csv_path, split, seed, drop=lambda rows: rows):
    df = pd.read_csv(csv_path)
    missing = {"path", "label"} - set(df.columns)
    if missing:
        raise DataError(f"{csv_path} needs the columns 'path' and 'label'; missing {sorted(missing)}")
    if df["label"].isna().any():
        rows = [i + 2 for i in df.index[df["label"].isna()][:5]]
        raise DataError(f"{int(df['label'].isna().sum())} row(s) of {csv_path} have no label (lines {rows}); "
                        f"label them or leave them out")
    base = csv_path.parent
    df["path"] = [str((base / p).resolve()) if not Path(p).is_absolute() else str(p) for p in df["path"]]
    df["label"] = df["label"].astype(str)
    absent = [p for p in df["path"] if not Path(p).is_file()]
    if absent:
        raise MissingFileError(f"{len(absent)} file(s) listed in {csv_path} do not exist, e.g. {absent[0]}")
    df = drop(df)
    if "split" in df.columns:
        bad = set(df["split"]) - set(SPLITS)
        if bad:
            raise DataError(f"Column 'split' in {csv_path} may only hold {SPLITS}; found {sorted(bad)}")
        return df[["path", "label", "split"]]
    return _stratified_split(df[["path", "label"]], split, seed)


def _check_classes(df, source):
    train_classes = sorted(df.loc[df["split"] == "train", "label"].unique())
    if len(train_classes) < 2:
        found = f"only the class '{train_classes[0]}'" if train_classes else "no classes"
        raise DataError(f"{source}: found {found} in the training images; a classifier needs at least two")
    for split in ("val", "test"):
        extra = set(df.loc[df["split"] == split, "label"]) - set(train_classes)
        if extra:
            raise DataError(f"{source}: class(es) {sorted(extra)} appear in {split} but not in train")
    if (df["split"] == "val").sum() == 0:
        raise DataError(f"{source}: no validation images; model selection needs some")


def classes_of(df):
    """The sorted class names of a dataset table."""
    return sorted(df["label"].unique())


def positive_class(classes):
    """The yes class of a binary task: ``positive`` of ``negative``/``positive``, ``X`` of ``X``/``not X``; else ``None``."""
    if len(classes) == 2 and "positive" in classes:
        return "positive"
    if len(classes) == 2:
        a, b = sorted(classes, key=len)
        if b == f"not {a}":
            return a
    return None


def dataset_table(df):
    """Count images per class and split, with totals (the book's Table 5)."""
    table = pd.crosstab(df["label"], df["split"], margins=True, margins_name="total")
    cols = [s for s in SPLITS if s in table.columns] + ["total"]
    return table[cols].rename_axis(index="class", columns=None)


def file_sha256(path, chunk=1 << 20):
    """SHA-256 of a file's bytes, so a run records exactly which images it saw."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(df):
    """Add a ``sha256`` column per file and return ``(table, combined_sha256)``.

    A table that already has the column is not hashed again (a grid hashes once for all runs).
    """
    df = df.copy()
    if "sha256" not in df.columns:
        df["sha256"] = [file_sha256(p) for p in df["path"]]
    combined = hashlib.sha256()
    for row in df.sort_values("path").itertuples():
        combined.update(f"{row.sha256} {row.label} {row.split}\n".encode())
    return df, combined.hexdigest()
