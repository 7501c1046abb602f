"""Train/validation/test sets in the book's folder layout, with no duplicate group across splits.

The book's recipe: labelled images go into ``train/``, ``val/`` and ``test/``,
each with one folder per class, and its Table 5 counts them. Near-duplicates
(the same photo re-posted, resized or watermarked) that land in both ``train/``
and ``test/`` let a model "recall" answers it has seen and inflate the reported
accuracy. Given the duplicates table of
:func:`imgasdata.prepare.dedup.find_duplicates`, :func:`split_dataset` deals
whole groups of linked images to the splits, largest first, each to the split
and class that most lack images, so every split stays close to the fractions
asked; it reports how close.

The labels table is the package's one convention: ``path,label`` (``image`` is
accepted for ``path``), paths relative to the CSV's folder. The manifest it
writes, ``OUT/manifest.csv``, follows it too (``path,label,split,group,source``
with ``path`` the placed file), so ``imgasdata train OUT/manifest.csv`` reads it.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pandas as pd

from ..datasets import SPLITS, dataset_table, stratified_split
from ..errors import DataError, MissingFileError, SettingsError, UserError
from ..outputs import refuse_inside
from ..paths import path_key, path_text, real_path
from .place import LINKS, folder_name, place_file

MANIFEST = "manifest.csv"


def class_name(value):
    """A label value as text: ``1.0`` (a column pandas read as floats) is ``1``; text is stripped."""
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return str(int(value)) if float(value).is_integer() else str(value)
    return str(value).strip()


def _empty(value):
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == ""


def read_labels_table(labels, label_column="label", image_column=None, base=None):
    """Read a labels table; return ``(table, base)`` with the columns ``path`` and ``label`` (and ``row``).

    ``labels``: a CSV path or DataFrame. ``image_column`` defaults to ``path``, or
    ``image`` when there is no ``path``. Paths are relative to the CSV's folder (a
    DataFrame: to ``base``, default the working directory). ``label`` keeps empty
    cells as ``None``; ``row`` is the line of the CSV (header = line 1) or the
    DataFrame's index, for messages.
    """
    name = "the labels table"
    if isinstance(labels, (str, os.PathLike)):
        if not Path(labels).is_file():
            raise MissingFileError(f"Labels file not found: {labels}")
        base = Path(labels).parent if base is None else base
        name = str(labels)
        labels = pd.read_csv(labels, keep_default_na=False, na_values=[""])
        rows = [i + 2 for i in range(len(labels))]
    else:
        rows = list(labels.index)
    if image_column is None:
        image_column = "path" if "path" in labels.columns else "image"
    for col in (image_column, label_column):
        if col not in labels.columns:
            raise DataError(f"{name} has no column {col!r}; its columns are {list(labels.columns)} "
                            f"(a labels table is path,label)")
    out = pd.DataFrame({"path": labels[image_column].astype(str).to_numpy(),
                        "label": [None if _empty(v) else class_name(v) for v in labels[label_column]],
                        "row": rows})
    return out, Path(base or ".")


def read_groups(groups, base=None, column=None):
    """``path_key -> group`` from a duplicates CSV/DataFrame of :func:`~imgasdata.prepare.dedup.find_duplicates`.

    The group is the table's ``cluster`` (every image linked to another by a chain
    of near-duplicate pairs: none of them may sit in another split) or, in a table
    without it, ``group``. Relative paths are read relative to the CSV's folder (a
    DataFrame: to ``base``, default the working directory).
    """
    if isinstance(groups, (str, os.PathLike)):
        if not Path(groups).is_file():
            raise MissingFileError(f"Duplicates table not found: {groups}")
        base = Path(groups).parent if base is None else base
        groups = pd.read_csv(groups, keep_default_na=False)
    column = column or ("cluster" if "cluster" in groups.columns else "group")
    missing = {"path", column} - set(groups.columns)
    if missing:
        raise DataError(f"The duplicates table needs the columns path and group; missing {sorted(missing)}")
    base = Path(base or ".")
    return {path_key(base / p): str(g) for p, g in zip(groups["path"], groups[column])}


def assign_groups(df, fractions, seed=0):
    """Deal whole groups to the splits so that each split and class gets close to its share.

    ``df`` has ``label`` and ``group``; ``fractions`` are the train/val/test
    shares. Groups are taken largest first (ties in an order drawn with ``seed``),
    and each goes to the split where it most reduces the squared gap between the
    images per class and their targets (``fraction x class size``), and between the
    split's total and its share: a greedy
    stratified group assignment, which lands within a point or two of the shares
    unless one group is larger than a split's share. Returns the split per row.
    """
    classes = sorted(df["label"].unique())
    counts = pd.crosstab(df["group"], df["label"]).reindex(columns=classes, fill_value=0)
    totals = counts.sum().to_numpy(dtype=float)
    target = np.outer(np.asarray(fractions, float), totals)          # splits x classes
    have = np.zeros_like(target)
    rng = np.random.default_rng(seed)
    names = counts.index.to_numpy()
    shuffled = rng.permutation(len(names))
    sizes = counts.to_numpy().sum(axis=1)
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]
    usable = [s for s, f in enumerate(fractions) if f > 0]
    where = {}
    size = target.sum(axis=1)

    def gap(s, v):  # squared gaps of split s's classes and of its total, after adding v
        return ((have[s] + v - target[s]) ** 2).sum() + (have[s].sum() + v.sum() - size[s]) ** 2

    for g in order:
        v = counts.iloc[g].to_numpy(dtype=float)
        cost = [gap(s, v) - gap(s, 0 * v) for s in usable]
        s = usable[int(np.argmin(cost))]
        have[s] += v
        where[names[g]] = SPLITS[s]
    return df["group"].map(where)


def _clear_previous(out):
    """Remove what an earlier split wrote into ``out`` (the files its manifest lists); refuse anything else."""
    manifest = out / MANIFEST
    if manifest.is_file():
        old = pd.read_csv(manifest, keep_default_na=False, dtype=str)
        root = out.resolve()
        for p in old.get("path", []):
            f = real_path(out / p)
            # only files inside OUT, reached without following a link out of it
            if root in Path(os.path.realpath(f.parent)).parents or Path(os.path.realpath(f.parent)) == root:
                if f.is_symlink() or f.is_file():
                    f.unlink()
        manifest.unlink()
        for split in SPLITS:  # class folders left empty
            for d in sorted((out / split).glob("*"), reverse=True) if (out / split).is_dir() else []:
                if d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
            if (out / split).is_dir() and not any((out / split).iterdir()):
                (out / split).rmdir()
    left = [p for p in out.rglob("*") if not p.is_dir()]
    if left:
        raise UserError(f"{out} holds {len(left)} file(s) that no earlier split listed in its manifest "
                        f"(e.g. {left[0]}); move them away or choose another --out")


def split_dataset(labels, out, label_column="label", image_column=None, val=0.1, test=0.1, groups=None,
                  link="copy", balance=False, seed=0, base=None, overwrite=False, exclude=None,
                  drop_unlabelled=False):
    """Write the book's ``train/val/test/<class>/`` folders; return ``(manifest, report)``.

    ``labels``: a CSV path or DataFrame of ``path,label`` (``image`` is read as
    ``path``; ``image_column`` and ``label_column`` name other columns), paths
    relative to the CSV's folder (a DataFrame: to ``base``). Label values are
    the class folder names as they are (``1.0`` is written ``1``); a value that
    is not a safe folder name is refused. Rows without a label are refused,
    naming them, unless ``drop_unlabelled``. ``val`` and ``test`` are fractions;
    without ``groups`` the split is stratified by class and fixed by ``seed``.
    ``balance`` draws (with ``seed``) as many images of each class as the smallest
    class has. ``groups``: the duplicates table of
    :func:`~imgasdata.prepare.dedup.find_duplicates` (CSV path or DataFrame);
    linked images never span two splits, and groups are dealt so each split keeps
    close to its fraction (:func:`assign_groups`). ``exclude``: reports (or a set
    of :func:`~imgasdata.paths.path_key` keys) of files to leave out. ``link``:
    copy, hardlink or symlink.

    ``out`` must be empty or new; with ``overwrite``, what an earlier split put
    there (the files its manifest lists) is removed first. The manifest
    (``out/manifest.csv``, written before any file is placed) has one row per
    image: ``path`` (the placed file, relative to ``out``), ``label``, ``split``,
    ``group`` (empty for an image without duplicates) and ``source``. ``report``
    holds ``table`` (the book's Table 5), ``fractions`` (share of images per
    split), ``off_by`` (largest gap to the fractions asked, in points),
    ``grouped_images`` (images in a group of two or more), ``groups_across_splits``
    (0), ``dropped_by_balance``, ``excluded`` and ``unlabelled``.
    """
    from .exclude import read_exclusions

    if link not in LINKS:
        raise SettingsError(f"link must be one of {', '.join(LINKS)}, got {link!r}")
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise SettingsError(f"val and test are fractions that leave some training images; got {val} and {test}")
    src_name = str(labels) if isinstance(labels, (str, os.PathLike)) else "the labels table"
    df, base = read_labels_table(labels, label_column, image_column, base)
    unlabelled = df[df["label"].isna()]
    if len(unlabelled) and not drop_unlabelled:
        shown = ", ".join(f"{r} ({p})" for r, p in zip(unlabelled["row"][:5], unlabelled["path"][:5]))
        more = f" and {len(unlabelled) - 5} more" if len(unlabelled) > 5 else ""
        raise DataError(f"{len(unlabelled)} row(s) of {src_name} have no label: row {shown}{more}; give them "
                        f"a label (labels --ties lists ties to adjudicate) or pass --drop-unlabelled")
    df = df[df["label"].notna()].reset_index(drop=True)
    for name in sorted(df["label"].unique()):
        folder_name(name)
    df["source"] = [real_path(base / p) for p in df["path"]]  # a non-UTF-8 name is written as \xNN text
    df["key"] = [path_key(s) for s in df["source"]]
    excluded = exclude if isinstance(exclude, set) else read_exclusions(exclude)
    gone = df["key"].isin(excluded)
    df = df[~gone].reset_index(drop=True)
    if df["path"].duplicated().any():
        dup = df.loc[df["path"].duplicated(), "path"].iloc[0]
        raise DataError(f"Image {dup} appears more than once in the labels; one label per image is needed")
    absent = [p for p, s in zip(df["path"], df["source"]) if not s.is_file()]
    if absent:
        raise MissingFileError(f"{len(absent)} labelled image(s) not found, e.g. {absent[0]} (relative to {base})")
    if df["label"].nunique() < 2:
        found = repr(df["label"].iloc[0]) if len(df) else "none"
        raise DataError(f"Only one class ({found}) in column {label_column!r}; a split needs two")
    out = Path(out)
    refuse_inside(out, {s.parent for s in df["source"]}, files_stand_for_folders=True)
    inside = [s for s in df["source"] if out.resolve() in s.resolve().parents]
    if inside:
        raise UserError(f"The labelled image {inside[0]} is inside --out {out}; split into another folder")
    reports = exclude if isinstance(exclude, (list, tuple)) else [exclude]
    tables = [t for t in (labels, groups, *reports) if isinstance(t, (str, os.PathLike))]
    inside = [t for t in tables if out.resolve() in Path(t).resolve().parents]
    if inside:  # --overwrite would remove or rewrite it (a split made from OUT/manifest.csv)
        raise UserError(f"The table {inside[0]} is inside --out {out}; split into another folder, or copy the "
                        f"table out of it first")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"{out} is not empty; choose a new folder, or pass --overwrite to replace the "
                            f"split written there before")
        _clear_previous(out)

    dropped = 0
    if balance:
        smallest = df["label"].value_counts().min()
        rng = random.Random(seed)
        keep = [i for _, g in df.groupby("label") for i in sorted(rng.sample(list(g.index), smallest))]
        dropped = len(df) - len(keep)
        df = df.loc[sorted(keep)].reset_index(drop=True)
    gmap = read_groups(groups) if groups is not None else {}
    if groups is not None and not df["key"].isin(gmap).any():
        raise DataError("None of the labelled images is in the duplicates table; run dedup on the same "
                        "images (its paths are read relative to the table's folder)")
    df["group"] = [gmap.get(k, "own:" + k) for k in df["key"]]
    fractions = (1 - val - test, val, test)
    if groups is None:
        df["split"] = stratified_split(df["label"], fractions, seed)
    else:
        df["split"] = assign_groups(df, fractions, seed)
    sizes = df["group"].map(df["group"].value_counts())
    across = int((df.groupby("group")["split"].nunique() > 1).sum())

    used, dests = set(), []
    for row in df.itertuples():
        folder = out / row.split / row.label
        name, k = row.source.name, 1
        while (folder / name) in used:  # same file name from two folders
            name, k = f"{row.source.stem}_{k}{row.source.suffix}", k + 1
        used.add(folder / name)
        dests.append(folder / name)
    df["dest"] = dests
    df["group"] = df["group"].where(sizes >= 2, "")
    manifest = pd.DataFrame({"path": [path_text(d.relative_to(out)) for d in dests], "label": df["label"],
                             "split": df["split"], "group": df["group"],
                             "source": [path_text(os.path.abspath(s)) for s in df["source"]]})
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{MANIFEST}.part"
    manifest.to_csv(tmp, index=False)
    os.replace(tmp, out / MANIFEST)  # first, so an interrupted split can still be cleared by --overwrite
    for src, dest in zip(df["source"], dests):
        place_file(src, dest, link)
    share = df["split"].value_counts(normalize=True).reindex(list(SPLITS), fill_value=0.0)
    off = float(max(abs(share[s] - f) for s, f in zip(SPLITS, fractions)) * 100)
    report = {"table": dataset_table(df), "fractions": share.to_dict(),
              "asked": dict(zip(SPLITS, fractions)), "off_by": off,
              "largest_group": int(sizes.max()) if len(sizes) else 0,
              "grouped_images": int((sizes >= 2).sum()), "groups_across_splits": across,
              "dropped_by_balance": dropped, "excluded": int(gone.sum()), "unlabelled": len(unlabelled)}
    return manifest, report
