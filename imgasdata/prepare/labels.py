"""From annotator sheets to one label per image, with the book's rules.

A sheet is a long table: one row per image and annotator, ``image,annotator``
and one column per label (0/1 for yes/no questions, 0-10 for scores). The rules:

``any``
    positive if *any* annotator said yes (the book's rule for its binary labels:
    a picture one coder saw a symbol in is kept as positive);
``majority``
    positive if more than half of the annotators said yes (a tie is negative);
``mean``
    the mean score across annotators;
``emotion``
    the evoked-emotion rule of the book's chapter 7.3: for each emotion, the
    positives are the images whose mean score is at least 3 *and* whose
    highest-scoring emotion is this one, beating the second-highest by at least
    3; the negatives are images with a mean of 0 on every emotion, of which as
    many as there are positives are drawn at random (seeded).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, MissingFileError, SettingsError

RULES = ("any", "majority", "mean", "emotion")


def read_sheet(sheet, columns=None):
    """Read and check an annotator sheet; return ``(table, label_columns)``.

    ``sheet`` is a CSV path or DataFrame with ``image`` and ``annotator`` columns.
    ``columns`` picks the label columns (default: every other numeric column).
    Raises :class:`~imgasdata.errors.DataError` naming the problem (missing
    columns, text in a label column, an image rated twice by one annotator).
    """
    if isinstance(sheet, (str, os.PathLike)):
        if not Path(sheet).is_file():
            raise MissingFileError(f"Annotator sheet not found: {sheet}")
        sheet = pd.read_csv(sheet)
    missing = {"image", "annotator"} - set(sheet.columns)
    if missing:
        raise DataError(f"An annotator sheet needs the columns image and annotator (one row per image and "
                        f"annotator); missing {sorted(missing)}")
    if columns:
        unknown = [c for c in columns if c not in sheet.columns]
        if unknown:
            raise DataError(f"Column(s) {unknown} not in the sheet; it has {list(sheet.columns)}")
    else:
        columns = [c for c in sheet.columns if c not in ("image", "annotator")
                   and pd.api.types.is_numeric_dtype(sheet[c])]
        if not columns:
            raise DataError("The sheet has no numeric label columns besides image and annotator")
    for c in columns:
        if not pd.api.types.is_numeric_dtype(sheet[c]):
            bad = pd.to_numeric(sheet[c], errors="coerce").isna() & sheet[c].notna()
            raise DataError(f"Column {c!r} must hold numbers; found {sheet.loc[bad, c].iloc[0]!r}")
    twice = sheet.duplicated(["image", "annotator"])
    if twice.any():
        r = sheet[twice].iloc[0]
        raise DataError(f"Annotator {r['annotator']!r} rated image {r['image']!r} more than once")
    return sheet[["image", "annotator", *columns]].copy(), list(columns)


def _check_binary(sheet, columns):
    for c in columns:
        values = set(sheet[c].dropna().unique())
        if not values <= {0, 1}:
            raise DataError(f"Column {c!r} is not yes/no (0/1): it holds {[v.item() if hasattr(v, 'item') else v for v in sorted(values)[:5]]}; "
                            f"use --rule mean for scores")


def make_labels(sheet, rule="any", columns=None, min_score=3.0, min_margin=3.0, seed=0):
    """One label per image from an annotator sheet (see the module doc for the rules).

    Returns for ``any``/``majority``: ``image`` plus one 0/1 column per label and
    ``n_annotators``; for ``mean``: ``image`` plus one mean column per label and
    ``n_annotators``; for ``emotion``: one row per selected image and emotion with
    ``image, emotion, label`` (``positive``/``negative``), the positives of each
    emotion followed by as many negatives drawn with ``seed``. Missing ratings
    (empty cells) are left out of the counts and means.
    """
    if rule not in RULES:
        raise SettingsError(f"Unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    sheet, columns = read_sheet(sheet, columns)
    grouped = sheet.groupby("image", sort=True)
    n = grouped["annotator"].nunique().rename("n_annotators")
    if rule in ("any", "majority"):
        _check_binary(sheet, columns)
        if rule == "any":
            out = grouped[columns].max()
        else:
            out = (grouped[columns].mean() > 0.5).where(grouped[columns].count() > 0)
        return out.astype("Int64").join(n).reset_index()
    means = grouped[columns].mean()
    if rule == "mean":
        return means.join(n).reset_index()
    return emotion_labels(means, min_score, min_margin, seed)


def emotion_steps(means, min_score=3.0, min_margin=3.0):
    """Per emotion, how many images pass each step of the chapter 7.3 rule (as in the book's Figure 24).

    ``means``: one row per image, one mean-score column per emotion (``make_labels(..., rule="mean")``
    indexed by image). Columns: ``mean_at_least`` (mean >= min_score), ``top_emotion`` (and it is the
    image's highest), ``positive`` (and it beats the second-highest by min_margin), ``negatives_available``
    (images with a mean of 0 on every emotion, the same pool for each emotion).
    """
    means, emotions = _means(means)
    values = means[emotions].to_numpy(dtype=float)
    top = np.argmax(values, axis=1)
    second = np.sort(values, axis=1)[:, -2] if len(emotions) > 1 else np.zeros(len(values))
    margin_ok = values.max(axis=1) - second >= min_margin
    neutral = int((values == 0).all(axis=1).sum())
    rows = []
    for k, e in enumerate(emotions):
        high = values[:, k] >= min_score
        is_top = high & (top == k)
        rows.append({"emotion": e, "mean_at_least": int(high.sum()), "top_emotion": int(is_top.sum()),
                     "positive": int((is_top & margin_ok).sum()), "negatives_available": neutral})
    return pd.DataFrame(rows)


def _means(means):
    if "image" in means.columns:
        means = means.set_index("image")
    emotions = [c for c in means.columns if c != "n_annotators"]
    if len(emotions) < 2:
        raise DataError("The emotion rule compares emotions with each other: give at least two score columns")
    if means[emotions].isna().any().any():
        raise DataError("Some images have no rating at all for an emotion; the emotion rule needs a mean for each")
    return means, emotions


def emotion_labels(means, min_score=3.0, min_margin=3.0, seed=0):
    """Positives and a seeded equal-size draw of neutral negatives per emotion (chapter 7.3).

    ``means`` as in :func:`emotion_steps`. Returns ``image, emotion, label``. When
    an emotion has more positives than there are neutral images, every neutral
    image is used (fewer negatives than positives).
    """
    means, emotions = _means(means)
    values = means[emotions].to_numpy(dtype=float)
    images = means.index.astype(str).to_numpy()
    top = np.argmax(values, axis=1)
    second = np.sort(values, axis=1)[:, -2]
    margin_ok = values.max(axis=1) - second >= min_margin
    neutral = sorted(images[(values == 0).all(axis=1)])
    rng = random.Random(seed)
    rows = []
    for k, e in enumerate(emotions):
        pos = sorted(images[(values[:, k] >= min_score) & (top == k) & margin_ok])
        neg = sorted(rng.sample(neutral, min(len(pos), len(neutral))))
        rows += [(p, e, "positive") for p in pos] + [(q, e, "negative") for q in neg]
    return pd.DataFrame(rows, columns=["image", "emotion", "label"])


def rebase_paths(images, sheet_dir, out_dir):
    """Image paths relative to the sheet's folder, rewritten relative to ``out_dir`` (where a labels CSV goes)."""
    sheet_dir, out_dir = Path(sheet_dir).resolve(), Path(out_dir).resolve()
    return [p if Path(p).is_absolute() else os.path.relpath(sheet_dir / p, out_dir) for p in images]
