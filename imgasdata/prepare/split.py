"""Train/validation/test sets in the book's folder layout, with no duplicate group across splits.

The book's recipe: labelled images go into ``train/``, ``val/`` and ``test/``,
each with one folder per class (``positive``/``negative`` for a yes/no label),
and its Table 5 counts them. Near-duplicates (the same photo re-posted, resized
or watermarked) that land in both ``train/`` and ``test/`` let a model "recall"
answers it has seen and inflate the reported accuracy. Given the groups from
:func:`imgasdata.prepare.dedup.find_duplicates`, :func:`split_dataset` first
splits as usual (stratified, seeded) and then moves every group that straddles
two splits into the split holding most of its members, and says how many images
it moved.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from ..datasets import SPLITS, dataset_table
from ..errors import DataError, MissingFileError, SettingsError

LINKS = ("copy", "hardlink", "symlink")


def place_file(src, dest, link="copy"):
    """Copy, hard-link or symlink ``src`` to ``dest``; returns ``dest``.

    A hard link across two disks is impossible; the file is then copied.
    Symbolic links are relative, so the dataset folder can be moved together with
    the images.
    """
    if link not in LINKS:
        raise SettingsError(f"link must be one of {', '.join(LINKS)}, got {link!r}")
    src, dest = Path(src), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() or dest.is_symlink():
        dest.unlink()
    if link == "symlink":
        os.symlink(os.path.relpath(src.resolve(), dest.parent.resolve()), dest)
    elif link == "hardlink":
        try:
            os.link(src, dest)
        except OSError:
            shutil.copy2(src, dest)
    else:
        shutil.copy2(src, dest)
    return dest


def _class_names(values):
    """0/1 (or True/False) labels become ``negative``/``positive`` folders; other values are used as they are."""
    vals = set(pd.Series(values).dropna().unique())
    if vals and vals <= {0, 1, True, False, 0.0, 1.0}:
        return pd.Series(values).map(lambda v: "positive" if int(v) == 1 else "negative")
    return pd.Series(values).astype(str)


def _stratified(df, val, test, seed):
    """Split labels ``df['label']`` into train/val/test (each class in each non-empty split)."""
    split = pd.Series("train", index=df.index)
    rest = val + test
    if rest == 0:
        return split
    n_classes = df["label"].nunique()
    try:
        _, held = train_test_split(df.index, test_size=max(round(rest * len(df)), n_classes),
                                   stratify=df["label"], random_state=seed)
        if val and test:
            sub = df.loc[held]
            v, t = train_test_split(sub.index, test_size=max(round(test / rest * len(sub)), n_classes),
                                    stratify=sub["label"], random_state=seed)
            split[v], split[t] = "val", "test"
        else:
            split[held] = "val" if val else "test"
    except ValueError as exc:
        raise DataError(f"Could not split the images by class ({exc}); each class needs an image in every split") from None
    return split


def read_groups(groups, base=None):
    """``resolved path -> group`` from a duplicates CSV/DataFrame (columns ``path``, ``group``).

    Relative paths are read as :func:`~imgasdata.prepare.dedup.find_duplicates`
    wrote them: relative to the working directory (or to ``base``).
    """
    if isinstance(groups, (str, os.PathLike)):
        if not Path(groups).is_file():
            raise MissingFileError(f"Duplicates table not found: {groups}")
        groups = pd.read_csv(groups, keep_default_na=False)
    missing = {"path", "group"} - set(groups.columns)
    if missing:
        raise DataError(f"The duplicates table needs the columns path and group; missing {sorted(missing)}")
    base = Path(base or ".")
    return {str((base / p).resolve()): str(g) for p, g in zip(groups["path"], groups["group"])}


def split_dataset(labels, out, label_column="label", image_column="image", val=0.1, test=0.1, groups=None,
                  link="copy", balance=False, seed=0, base=None):
    """Write the book's ``train/val/test/<class>/`` folders; return ``(manifest, report)``.

    ``labels``: a CSV path or DataFrame with an image column (paths relative to
    the CSV's folder, or to ``base``) and ``label_column`` (0/1 values become
    ``negative``/``positive``). ``val`` and ``test`` are fractions; the split is
    stratified by class and fixed by ``seed``. ``balance`` draws (with ``seed``)
    as many images of each class as the smallest class has. ``groups``: the
    duplicates table of :func:`~imgasdata.prepare.dedup.find_duplicates` (CSV path
    or DataFrame); a group never spans two splits. ``link``: copy, hardlink or
    symlink.

    The manifest (also written to ``out/manifest.csv``) has one row per image:
    ``image, label, split, group, moved, dest``. ``report`` holds ``table`` (the
    book's Table 5), ``moved`` (images moved to keep groups together),
    ``groups_across_splits`` (0 after the move) and ``dropped_by_balance``.
    """
    if isinstance(labels, (str, os.PathLike)):
        if not Path(labels).is_file():
            raise MissingFileError(f"Labels file not found: {labels}")
        base = Path(labels).parent if base is None else base
        labels = pd.read_csv(labels)
    base = Path(base or ".")
    for col in (image_column, label_column):
        if col not in labels.columns:
            raise DataError(f"The labels table has no column {col!r}; its columns are {list(labels.columns)}")
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise SettingsError(f"val and test are fractions that leave some training images; got {val} and {test}")
    df = pd.DataFrame({"image": labels[image_column].astype(str), "label": _class_names(labels[label_column])})
    df = df[labels[label_column].notna().to_numpy()].reset_index(drop=True)
    if df["image"].duplicated().any():
        dup = df.loc[df["image"].duplicated(), "image"].iloc[0]
        raise DataError(f"Image {dup} appears more than once in the labels; one label per image is needed")
    df["source"] = [str((base / p).resolve()) for p in df["image"]]
    absent = [p for p, s in zip(df["image"], df["source"]) if not Path(s).is_file()]
    if absent:
        raise MissingFileError(f"{len(absent)} labelled image(s) not found, e.g. {absent[0]} (relative to {base})")
    if df["label"].nunique() < 2:
        raise DataError(f"Only one class ({df['label'].iloc[0]!r}) in column {label_column!r}; a split needs two")
    dropped = 0
    if balance:
        smallest = df["label"].value_counts().min()
        rng = random.Random(seed)
        keep = [i for _, g in df.groupby("label") for i in sorted(rng.sample(list(g.index), smallest))]
        dropped = len(df) - len(keep)
        df = df.loc[sorted(keep)].reset_index(drop=True)
    gmap = read_groups(groups) if groups is not None else {}
    if groups is not None and not any(s in gmap for s in df["source"]):
        raise DataError("None of the labelled images is in the duplicates table; run dedup on the same "
                        "images (its paths are read relative to the working directory)")
    df["group"] = [gmap.get(s, "own:" + s) for s in df["source"]]
    df["split"] = _stratified(df, val, test, seed)
    # a group that straddles splits goes where most of its members are (ties: train, val, test)
    order = {s: i for i, s in enumerate(SPLITS)}
    target = df.groupby("group")["split"].agg(
        lambda s: sorted(s.value_counts().items(), key=lambda kv: (-kv[1], order[kv[0]]))[0][0])
    new = df["group"].map(target)
    df["moved"] = new != df["split"]
    df["split"] = new
    across = int((df.groupby("group")["split"].nunique() > 1).sum())
    out = Path(out)
    used = set()
    dests = []
    for row in df.itertuples():
        name = Path(row.source).name
        dest = out / row.split / row.label / name
        k = 1
        while str(dest) in used:  # same file name from two folders
            dest = out / row.split / row.label / f"{Path(name).stem}_{k}{Path(name).suffix}"
            k += 1
        used.add(str(dest))
        place_file(row.source, dest, link)
        dests.append(os.path.relpath(dest, out))
    df["dest"] = dests
    df["group"] = df["group"].where(~df["group"].str.startswith("own:"), "")
    manifest = df[["image", "label", "split", "group", "moved", "dest"]]
    manifest.to_csv(out / "manifest.csv", index=False)
    table = dataset_table(df)
    report = {"table": table, "moved": int(df["moved"].sum()), "groups_across_splits": across,
              "dropped_by_balance": dropped}
    return manifest, report
