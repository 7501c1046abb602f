"""From annotator sheets to one label per image, with the book's rules.

Two layouts of sheet are read as they come:

*long*: one row per image and annotator, ``image,annotator`` (``path`` may stand
for ``image``) and one column per question: 0/1 for yes/no questions, 0-10
for scores, or text categories (``cat``, ``dog``);

*wide*: one row per image, ``image`` (or ``path``) and one column per coder
(``image,coder_a,coder_b,coder_c``), holding categories or numbers; empty cells
are ratings not given. The coder columns are ``coders`` or every other column.

The rules:

``majority``
    the most common answer among the ratings given (for yes/no: more than half);
    a tie for the top leaves the label empty and sets ``tie``; any number of
    classes;
``any``
    positive if *any* annotator said yes (the book's rule for its binary labels:
    a picture one coder saw a symbol in is kept as positive);
``mean``
    the mean score across annotators;
``emotion``
    the evoked-emotion rule of the book's chapter 7.3: for each emotion, the
    positives are the images whose mean score is at least 3 *and* whose
    highest-scoring emotion is this one, beating the second-highest by at least
    3; the negatives are images with a mean of 0 on every emotion, of which as
    many as there are positives are drawn at random (seeded).

Labels are written as the package's labels table, ``path,label,n_ratings,tie``.
A yes/no question keeps its name: a 0/1 column ``symbol`` gives the classes
``symbol`` and ``not symbol``; ``positive="monument"`` turns the category
``monument`` (or the 1s) into ``monument`` / ``not monument``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, MissingFileError, SettingsError
from ..paths import path_key
from .split import class_name

RULES = ("majority", "any", "mean", "emotion")

#: Column names that say "the answer" but not what the question was: a 0/1 column so
#: named needs ``positive`` to give the yes class its name.
GENERIC = ("label", "value", "rating", "answer", "code")


def _numeric(values):
    """``values`` as numbers when every non-empty cell is one, else ``None``."""
    nums = pd.to_numeric(values, errors="coerce")
    return nums if (nums.notna() == values.notna()).all() else None


def read_sheet(sheet, columns=None, coders=None):
    """Read a long or wide annotator sheet into a long table; return ``(table, label_columns)``.

    ``sheet`` is a CSV path or DataFrame. A sheet with an ``annotator`` column is
    long (``image`` or ``path``, ``annotator``, one column per question;
    ``columns`` picks them, default every other column). Any other sheet is wide:
    ``image`` (or ``path``) and one column per coder (``coders``, default every
    other column), read as one question named ``label``. The table has
    ``image, annotator`` and the label columns, one row per rating; empty cells
    are missing ratings. A column whose every cell is a number holds numbers,
    any other holds text (stripped). Raises
    :class:`~imgasdata.errors.DataError` naming the problem (no image column, an
    unknown column, an image rated twice by one annotator).
    """
    if isinstance(sheet, (str, os.PathLike)):
        if not Path(sheet).is_file():
            raise MissingFileError(f"Annotator sheet not found: {sheet}")
        sheet = pd.read_csv(sheet, keep_default_na=False, na_values=[""], skipinitialspace=True)
    sheet = sheet.copy()
    if "image" not in sheet.columns:
        if "path" not in sheet.columns:
            raise DataError(f"An annotator sheet needs an image (or path) column; it has {list(sheet.columns)}")
        sheet = sheet.rename(columns={"path": "image"})
    if "annotator" in sheet.columns:
        if coders:
            raise SettingsError("--coders is for wide sheets (one column per coder); this sheet is long "
                                "(it has an annotator column): use --columns")
        if columns:
            unknown = [c for c in columns if c not in sheet.columns]
            if unknown:
                raise DataError(f"Column(s) {unknown} not in the sheet; it has {list(sheet.columns)}")
        else:
            columns = [c for c in sheet.columns if c not in ("image", "annotator")]
            if not columns:
                raise DataError("The sheet has no label columns besides image and annotator")
        long = sheet[["image", "annotator", *columns]]
    else:
        if columns:
            raise SettingsError("--columns is for long sheets (image, annotator, labels); this sheet is wide "
                                "(one column per coder): use --coders")
        coders = list(coders) if coders else [c for c in sheet.columns if c != "image"]
        unknown = [c for c in coders if c not in sheet.columns]
        if unknown:
            raise DataError(f"Coder column(s) {unknown} not in the sheet; it has {list(sheet.columns)}")
        if not coders:
            raise DataError("The wide sheet has no coder columns besides image")
        if sheet["image"].duplicated().any():
            raise DataError(f"Image {sheet.loc[sheet['image'].duplicated(), 'image'].iloc[0]!r} has two rows in "
                            f"a wide sheet (one row per image, one column per coder)")
        long = sheet.melt(id_vars="image", value_vars=coders, var_name="annotator", value_name="label")
        columns = ["label"]
    long = long.copy()
    for c in columns:
        values = long[c].where(~long[c].astype(str).str.strip().isin(["", "nan"]))
        nums = _numeric(values)
        long[c] = nums if nums is not None else values.map(lambda v: v if pd.isna(v) else str(v).strip())
    twice = long.duplicated(["image", "annotator"])
    if twice.any():
        r = long[twice].iloc[0]
        raise DataError(f"Annotator {r['annotator']!r} rated image {r['image']!r} more than once")
    long["image"] = long["image"].astype(str)
    return long.reset_index(drop=True), list(columns)


def _answer(value):
    return "" if pd.isna(value) else class_name(value)


def _classes(values, column, rule, positive):
    """The answers as class names: ``(answers, yes)``; ``yes`` is the positive class of a binary question."""
    given = values.dropna()
    nums = _numeric(given)
    if nums is not None and set(nums.unique()) <= {0, 1}:
        yes = positive or (None if column in GENERIC else str(column))
        if yes is None:
            raise DataError("The answers are 0/1 without the name of what 1 means; give it with --positive NAME "
                            "(e.g. --positive protest), so the classes are NAME and not NAME")
        return values.map(lambda v: "" if pd.isna(v) else (yes if float(v) == 1 else f"not {yes}")), yes
    answers = values.map(_answer)
    if positive is not None:
        found = sorted(set(answers) - {""})
        if positive not in found:
            raise DataError(f"--positive {positive!r} is not one of the answers in column {column!r}: "
                            f"{', '.join(found[:10])}")
        return answers.map(lambda a: "" if a == "" else (positive if a == positive else f"not {positive}")), positive
    if rule == "any":
        raise DataError(f"The any rule needs yes/no answers (0/1); column {column!r} holds categories: "
                        f"name the yes category with --positive NAME, or use --rule majority")
    return answers, None


def make_labels(sheet, rule="majority", columns=None, coders=None, positive=None, min_ratings=1, votes=False,
                answers=False, min_score=3.0, min_margin=3.0, seed=0, exclude=None, base=None):
    """One label per image from an annotator sheet (see the module doc for the sheets and rules).

    ``any``/``majority`` label one question (one of ``columns`` of a long sheet,
    or the coders' answers of a wide one) and return the labels table
    ``path, label, n_ratings, tie``: ``n_ratings`` counts the ratings actually
    given; an image with fewer than ``min_ratings`` of them, or a tie for the most
    common answer, gets an empty ``label`` (``tie`` True for ties). With ``votes``,
    one ``votes_<class>`` column per class; with ``answers``, an ``answers`` column
    (``coder: answer; ...``) for adjudicating. ``positive`` names the yes class
    (see the module doc). ``mean``: ``path`` plus one mean column per question
    and ``n_ratings`` (annotators who rated the image); ``emotion``: one row per
    selected image and emotion, ``path, emotion, label`` (``<emotion>`` or
    ``not <emotion>``). Missing ratings (empty cells) are left out of counts and
    means. ``exclude``: reports (or :func:`~imgasdata.paths.path_key` keys) of
    files to leave out, the sheet's paths read relative to its folder (a
    DataFrame: to ``base``); the number left out is in ``attrs["excluded"]``.
    """
    from .exclude import read_exclusions

    if rule not in RULES:
        raise SettingsError(f"Unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    if int(min_ratings) != min_ratings or min_ratings < 1:
        raise SettingsError(f"min_ratings is a whole number >= 1, got {min_ratings}")
    if isinstance(sheet, (str, os.PathLike)):
        base = Path(sheet).parent if base is None else base
    table, columns = read_sheet(sheet, columns, coders)
    excluded = exclude if isinstance(exclude, set) else read_exclusions(exclude)
    n_excluded = 0
    if excluded:
        gone = table["image"].map(lambda p: path_key(Path(base or ".") / p) in excluded)
        n_excluded = table.loc[gone, "image"].nunique()
        table = table[~gone]
    if rule in ("any", "majority"):
        out = _vote(table, columns, rule, positive, min_ratings, votes, answers)
    elif rule == "mean":
        out = _mean(table, columns)
    else:
        out = emotion_labels(_mean(table, columns), min_score, min_margin, seed)
    out.attrs["excluded"] = n_excluded
    return out


def _vote(table, columns, rule, positive, min_ratings, votes, answers):
    if len(columns) != 1:
        raise DataError(f"The {rule} rule labels one question at a time; choose one of {columns} with --columns")
    column = columns[0]
    classes, yes = _classes(table[column], column, rule, positive)
    table = table.assign(answer=classes.to_numpy())
    given = table[table["answer"] != ""]
    images = sorted(table["image"].unique())
    counts = pd.crosstab(given["image"], given["answer"]).reindex(images, fill_value=0)
    if yes is not None:
        counts = counts.reindex(columns=[yes, f"not {yes}"], fill_value=0)
    n = counts.sum(axis=1)
    if rule == "any":
        label = np.where(counts[yes] > 0, yes, f"not {yes}")
        tie = np.zeros(len(counts), bool)
    else:
        top = counts.max(axis=1)
        tie = (counts.eq(top, axis=0).sum(axis=1) > 1).to_numpy() & (n > 0).to_numpy()
        label = counts.idxmax(axis=1).to_numpy() if counts.shape[1] else np.full(len(counts), "")
    few = (n < min_ratings).to_numpy()
    label = np.where(tie | few, "", label)
    out = pd.DataFrame({"path": images, "label": label, "n_ratings": n.to_numpy(), "tie": tie & ~few})
    if votes:
        for c in counts.columns:
            out[f"votes_{c}"] = counts[c].to_numpy()
    if answers:
        text = given.groupby("image").apply(
            lambda g: "; ".join(f"{a}: {v}" for a, v in zip(g["annotator"], g["answer"])), include_groups=False)
        out["answers"] = [text.get(i, "") for i in images]
    return out


def _mean(table, columns):
    for c in columns:
        if not pd.api.types.is_numeric_dtype(table[c]):
            bad = table[c].dropna()
            raise DataError(f"Column {c!r} must hold numbers for a mean; found {bad.iloc[0]!r}")
    grouped = table.groupby("image", sort=True)
    rated = table[table[columns].notna().any(axis=1)].groupby("image")["annotator"].nunique()
    means = grouped[columns].mean()
    means["n_ratings"] = rated.reindex(means.index, fill_value=0).astype(int)
    return means.rename_axis("path").reset_index()


def adjudication_list(labels):
    """The images ``labels`` (from ``make_labels(..., answers=True)``) left without a label, to decide by hand.

    Columns ``path, n_ratings, tie, answers, label``, ``label`` empty for the
    decision; ties first. Returns a DataFrame.
    """
    todo = labels[labels["label"] == ""]
    cols = ["path", "n_ratings", "tie", *(["answers"] if "answers" in labels.columns else [])]
    return todo[cols].assign(label="").sort_values(["tie", "path"], ascending=[False, True]).reset_index(drop=True)


def emotion_steps(means, min_score=3.0, min_margin=3.0):
    """Per emotion, how many images pass each step of the chapter 7.3 rule (as in the book's Figure 24).

    ``means``: one row per image, one mean-score column per emotion (``make_labels(..., rule="mean")``,
    or that table indexed by path). Columns: ``mean_at_least`` (mean >= min_score), ``top_emotion`` (and it is the
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
    if "path" in means.columns:
        means = means.set_index("path")
    emotions = [c for c in means.columns if c != "n_ratings"]
    if len(emotions) < 2:
        raise DataError("The emotion rule compares emotions with each other: give at least two score columns")
    if means[emotions].isna().any().any():
        raise DataError("Some images have no rating at all for an emotion; the emotion rule needs a mean for each")
    return means, emotions


def emotion_labels(means, min_score=3.0, min_margin=3.0, seed=0):
    """Positives and a seeded equal-size draw of neutral negatives per emotion (chapter 7.3).

    ``means`` as in :func:`emotion_steps`. Returns ``path, emotion, label`` with the
    labels ``<emotion>`` and ``not <emotion>``. When
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
        rows += [(p, e, e) for p in pos] + [(q, e, f"not {e}") for q in neg]
    return pd.DataFrame(rows, columns=["path", "emotion", "label"])


def rebase_paths(images, sheet_dir, out_dir):
    """Image paths relative to the sheet's folder, rewritten relative to ``out_dir`` (where a labels CSV goes)."""
    sheet_dir, out_dir = Path(sheet_dir).resolve(), Path(out_dir).resolve()
    return [p if Path(p).is_absolute() else os.path.relpath(sheet_dir / p, out_dir) for p in images]
