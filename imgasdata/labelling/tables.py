"""The researcher's tables this chapter reads (labels, annotator sheets) and how it writes its own.

A labels CSV has a path column (``path``, or ``image`` as ``imgasdata labels`` writes it) and a
label column; relative paths are relative to the CSV's own folder, as everywhere in the package.
Outputs are written to a temporary file and renamed into place, and an output that is one of the
inputs, or inside an input folder, is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..errors import DataError, MissingFileError
from ..paths import path_key, path_text

PATH_COLUMNS = ("path", "image")


def read_csv(path, what):
    """A user's CSV as text columns; a missing file or an empty one is one clear sentence."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{what} {path} is empty; it needs a header line") from None


def path_column(df, source):
    """The name of ``df``'s path column (``path`` or ``image``)."""
    for c in PATH_COLUMNS:
        if c in df.columns:
            return c
    raise DataError(f"{source} needs a column 'path' (or 'image') naming each image; it has {list(df.columns)}")


def resolve(paths, base):
    """Relative paths taken from ``base`` (a CSV's folder), as absolute path strings."""
    base = Path(base)
    return [str(p) if Path(p).is_absolute() else os.path.abspath(base / p) for p in paths]


def read_labels(labels, label_column="label"):
    """``path, label`` rows of a labels CSV (or DataFrame), absolute paths, labels as text.

    Rows with an empty label (images not labelled yet) are dropped; an image labelled twice
    with different labels is an error naming it.
    """
    if isinstance(labels, pd.DataFrame):
        df, base, source = labels.astype(str), Path.cwd(), "the labels table"
    else:
        df, base, source = read_csv(labels, "Labels CSV"), Path(labels).parent, str(labels)
    col = path_column(df, source)
    if label_column not in df.columns:
        raise DataError(f"{source} has no label column {label_column!r} (use --label-column); "
                        f"its columns are {list(df.columns)}")
    out = pd.DataFrame({"path": resolve(df[col].astype(str), base), "label": df[label_column].astype(str).str.strip()})
    out = out[(out["label"] != "") & (out["label"].str.lower() != "nan")]
    out = out.drop_duplicates()
    twice = out["path"].map(path_key).duplicated(keep=False)
    if twice.any():
        raise DataError(f"{source} gives the image {out.loc[twice, 'path'].iloc[0]} two different labels")
    return out.reset_index(drop=True)


def read_votes(sheet, label_column="label"):
    """The coders' votes per image from an annotator sheet, as ``{path_key: "a, b, c"}``.

    Two layouts are read: the template ``suggest`` writes (``image`` and one column per coder,
    each cell a class name) and the long sheet of ``imgasdata labels`` (``image, annotator`` and
    a label column, ``label_column``). Paths are relative to the sheet's folder.
    """
    df = read_csv(sheet, "Annotator sheet")
    col = path_column(df, sheet)
    base = Path(sheet).parent
    if "annotator" in df.columns:
        if label_column not in df.columns:
            raise DataError(f"The annotator sheet {sheet} has no column {label_column!r} "
                            f"(use --label-column); its columns are {list(df.columns)}")
        df = df[df[label_column] != ""]
        keys = [path_key(p) for p in resolve(df[col], base)]
        grouped = pd.Series(df[label_column].to_numpy(), index=keys).groupby(level=0)
        return grouped.agg(lambda v: ", ".join(v)).to_dict()
    coders = [c for c in df.columns if c != col]
    if not coders:
        raise DataError(f"The annotator sheet {sheet} has no coder columns beside {col!r}")
    keys = [path_key(p) for p in resolve(df[col], base)]
    return {k: ", ".join(v for v in row if v) for k, row in zip(keys, df[coders].itertuples(index=False))}


def relative_to(paths, folder):
    """Paths below ``folder`` written relative to it (as annotator sheets hold them), others absolute."""
    folder = Path(path_key(folder))
    out = []
    for p in paths:
        key = Path(path_key(p))
        out.append(path_text(key.relative_to(folder) if folder in key.parents else key))
    return out
