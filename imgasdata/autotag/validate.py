"""Check an autotagger against hand-coded gold labels, the way the book's chapter 6 does.

A tagger rarely has the researcher's concept ("protest"); one or more of its
labels ("Crowd") stand in for it at some confidence. :func:`validate` maps the
labels to the concept, joins the result with a gold CSV (``image,<concept>``
with 0/1), and reports the confusion matrix ``[[TN, FP], [FN, TP]]``, accuracy,
precision, recall and F1 (scikit-learn) with the intervals every metric in
this package gets (:func:`imgasdata.metrics.confusion_intervals`: Wilson for
accuracy, precision and recall, a stratified Bayesian bootstrap for F1, none of
them collapsing at 0 % or 100 %). Gold images the tagger never mentions count as
"not tagged", and so do images whose tagging failed (an error row is never a
tag); tagged images missing from the gold file are reported, never silently dropped.

:func:`threshold_sweep` and :func:`plot_sweep` show how precision and recall
trade off as the confidence threshold moves; :func:`compare_taggers` puts
several taggers side by side on one gold set; :func:`label_frequencies` and
:func:`plot_label_frequencies` give the most frequent labels (the book's Figure 21).

Confidences are on Rekognition's 0-100 scale throughout (the offline taggers
write the same scale).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, MissingFileError, SettingsError
from ..metrics import LEVEL, METRICS, N_BOOT, confusion_intervals


def read_tags(tags):
    """A tags table (DataFrame or CSV path) checked to have ``image``, ``label`` and ``confidence``."""
    if not isinstance(tags, pd.DataFrame):
        path = Path(tags)
        if not path.is_file():
            raise MissingFileError(f"tags file not found: {path}")
        tags = pd.read_csv(path, keep_default_na=False, na_values=[""])
    missing = {"image", "label", "confidence"} - set(tags.columns)
    if missing:
        raise DataError(f"the tags table needs the columns image, label and confidence; missing: "
                        f"{', '.join(sorted(missing))} (the tidy outputs of 'imgasdata autotag' have them)")
    tags = tags.copy()
    tags["image"] = tags["image"].astype(str)
    tags["label"] = tags["label"].fillna("").astype(str)
    tags["confidence"] = pd.to_numeric(tags["confidence"], errors="coerce")
    return tags


def read_gold(gold, concept):
    """A gold table (DataFrame or CSV path) with ``image`` and a 0/1 column named ``concept``."""
    if not isinstance(gold, pd.DataFrame):
        path = Path(gold)
        if not path.is_file():
            raise MissingFileError(f"gold file not found: {path}")
        gold = pd.read_csv(path)
    if "image" not in gold.columns or concept not in gold.columns:
        raise DataError(f"the gold table needs the columns image and {concept!r}; it has: "
                        f"{', '.join(map(str, gold.columns))}")
    gold = gold[["image", concept]].copy()
    gold["image"] = gold["image"].astype(str)
    values = pd.to_numeric(gold[concept], errors="coerce")
    bad = gold.loc[~values.isin([0, 1]), "image"]
    if len(bad):
        raise DataError(f"the gold column {concept!r} must hold 0 or 1 in every row; {len(bad)} row(s) do not, "
                        f"e.g. image {bad.iloc[0]!r}")
    dups = gold["image"][gold["image"].duplicated()]
    if len(dups):
        raise DataError(f"the gold file lists {len(dups)} image(s) twice, e.g. {dups.iloc[0]!r}")
    gold[concept] = values.astype(int)
    return gold


def concept_scores(tags, labels, min_confidence=0.0):
    """Per image: ``score`` (highest confidence of any of ``labels``, 0 if none), ``tagged`` (0/1),
    ``tag_error`` (a row of the image has an error) and ``answered`` (a row of the image has none).

    Labels match case-insensitively; rows with an error never count. An image is
    tagged when its score is at least ``min_confidence`` and above zero.
    """
    tags = read_tags(tags)
    if isinstance(labels, str):
        labels = [labels]
    wanted = {str(lab).strip().lower() for lab in labels}
    if not wanted:
        raise SettingsError("name at least one tagger label that stands for the concept")
    failed = (tags["error"].fillna("").astype(str).ne("") if "error" in tags.columns
              else pd.Series(False, index=tags.index))
    hit = tags["label"].str.strip().str.lower().isin(wanted) & ~failed
    score = tags["confidence"].where(hit).fillna(0.0).groupby(tags["image"]).max()
    out = score.rename("score").reset_index()
    out["tagged"] = ((out["score"] >= float(min_confidence)) & (out["score"] > 0)).astype(int)
    out["tag_error"] = out["image"].map(failed.groupby(tags["image"]).any()).astype(bool)
    out["answered"] = out["image"].map((~failed).groupby(tags["image"]).any()).astype(bool)
    return out


def _match_key(images, how):
    return images if how == "path" else images.map(lambda s: Path(s.replace("\\", "/")).name)


def join_gold(tags, gold, concept, labels, min_confidence=0.0, match="auto"):
    """One row per gold image: ``image``, ``gold``, ``predicted``, ``score``, ``in_tags``, ``tag_error``.

    ``match`` is ``"path"`` (image names must be equal), ``"name"`` (file names
    only, which must be unique) or ``"auto"`` (whichever matches more images).
    The returned frame's ``attrs`` hold ``not_in_gold`` (images the tagger answered
    for that are absent from the gold file; failed images are not counted) and ``matched_on``.
    """
    scores = concept_scores(tags, labels, min_confidence)
    gold = read_gold(gold, concept)
    if match not in ("auto", "path", "name"):
        raise SettingsError(f"match must be 'auto', 'path' or 'name', not {match!r}")
    hows = ["path", "name"] if match == "auto" else [match]
    best = None
    for how in hows:
        gk, tk = _match_key(gold["image"], how), _match_key(scores["image"], how)
        if how == "name" and (gk.duplicated().any() or tk.duplicated().any()):
            if match == "name":
                raise DataError("matching on file names needs unique names, but some file names repeat; "
                                "use full paths in both files")
            continue
        overlap = gk.isin(set(tk)).sum()
        if best is None or overlap > best[1]:
            best = (how, overlap, gk, tk)
    how, _, gk, tk = best
    by_key = scores.assign(key=tk.values).set_index("key")
    joined = pd.DataFrame({"image": gold["image"].values, "gold": gold[concept].values})
    keys = gk.values
    joined["in_tags"] = pd.Series(keys).isin(by_key.index).values
    joined["score"] = pd.Series(keys).map(by_key["score"]).fillna(0.0).values
    joined["predicted"] = pd.Series(keys).map(by_key["tagged"]).fillna(0).astype(int).values
    joined["tag_error"] = pd.Series(keys).map(by_key["tag_error"]).fillna(False).astype(bool).values
    joined.attrs["not_in_gold"] = sorted(scores.loc[~tk.isin(set(gk)) & scores["answered"], "image"])
    joined.attrs["matched_on"] = how
    return joined


def scores_from_counts(y_true, y_pred):
    """Accuracy, precision, recall, F1 of the 1s (0 where undefined) and the confusion matrix ``[[TN, FP], [FN, TP]]``.

    The package's one scoring rule, :func:`imgasdata.metrics.classification_metrics`, on 0/1 labels.
    """
    from ..metrics import (
        classification_metrics,  # scikit-learn: imported when a tagger is scored
    )

    scores = classification_metrics(np.asarray(y_true, int), np.asarray(y_pred, int), labels=[0, 1], positive=1)
    return {k: scores[k] for k in ("accuracy", "precision", "recall", "f1", "confusion_matrix")}


def validate(tags, gold, concept, labels, min_confidence=0.0, n_boot=N_BOOT, level=LEVEL, seed=0, match="auto"):
    """The book's Table 3 for any tagger: metrics of ``labels`` as a proxy for ``concept``.

    Returns a dict with ``accuracy``, ``precision``, ``recall``, ``f1``,
    ``confusion_matrix`` (``[[TN, FP], [FN, TP]]``), ``n``, the intervals of
    :func:`imgasdata.metrics.confusion_intervals` (``intervals``: ``{metric: [lo, hi]}``
    at ``interval_level``; ``interval_methods``; ``n_boot``), and what the join found:
    ``positives`` (gold 1s), ``not_in_tags`` (gold images the tagger never
    mentions, counted as not tagged), ``tag_errors`` (gold images whose tagging
    failed, also counted as not tagged), ``not_in_gold`` (count) and
    ``not_in_gold_examples``.
    """
    joined = join_gold(tags, gold, concept, labels, min_confidence, match)
    if joined.empty:
        raise DataError("the gold file has no rows")
    report = scores_from_counts(joined["gold"], joined["predicted"])
    report.update({"n": len(joined), "positives": int(joined["gold"].sum()),
                   **confusion_intervals(report["confusion_matrix"], positive_index=1, level=level,
                                         n_boot=n_boot, seed=seed),
                   "concept": concept,
                   "labels": [labels] if isinstance(labels, str) else list(labels),
                   "min_confidence": float(min_confidence), "matched_on": joined.attrs["matched_on"],
                   "not_in_tags": int((~joined["in_tags"]).sum()), "tag_errors": int(joined["tag_error"].sum()),
                   "not_in_gold": len(joined.attrs["not_in_gold"]),
                   "not_in_gold_examples": joined.attrs["not_in_gold"][:10]})
    return report


def report_table(report):
    """The metrics of a :func:`validate` report as a small table with interval columns and each interval's method."""
    rows = [{"metric": m, "value": report[m], "low": report["intervals"][m][0], "high": report["intervals"][m][1],
             "method": report["interval_methods"][m]} for m in METRICS]
    return pd.DataFrame(rows)


def confusion_table(report):
    """The confusion matrix of a report with named rows (gold) and columns (tagger)."""
    cm = report["confusion_matrix"]
    c = report.get("concept", "concept")
    return pd.DataFrame(cm, index=[f"gold: not {c}", f"gold: {c}"], columns=["tagged: no", "tagged: yes"])


def threshold_sweep(tags, gold, concept, labels, thresholds=None, match="auto"):
    """Metrics at each confidence threshold (default 0, 5, ..., 100): one row per threshold."""
    joined = join_gold(tags, gold, concept, labels, 0.0, match)
    if thresholds is None:
        thresholds = np.arange(0, 101, 5)
    rows = []
    for t in thresholds:
        pred = ((joined["score"] >= t) & (joined["score"] > 0)).astype(int)
        s = scores_from_counts(joined["gold"], pred)
        rows.append({"threshold": float(t), **{m: s[m] for m in METRICS}, "tagged": int(pred.sum())})
    return pd.DataFrame(rows)


def plot_sweep(sweep, ax=None, title=None):
    """Precision, recall and F1 against the threshold; returns the axes."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    for m, style in (("precision", "-o"), ("recall", "-s"), ("f1", "--")):
        ax.plot(sweep["threshold"], sweep[m], style, label=m, markersize=3)
    ax.set_xlabel("confidence threshold (0-100)")
    ax.set_ylabel("score")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="best", fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def compare_taggers(taggers, gold, concept, min_confidence=0.0, n_boot=N_BOOT, seed=0, match="auto"):
    """Several taggers on one gold set: ``taggers`` maps a name to ``(tags, labels)`` or ``(tags, labels, threshold)``.

    Returns one row per tagger with the metrics, their intervals and the confusion counts.
    """
    rows = []
    for name, spec in taggers.items():
        tags, labels = spec[0], spec[1]
        thr = spec[2] if len(spec) > 2 else min_confidence
        r = validate(tags, gold, concept, labels, thr, n_boot=n_boot, seed=seed, match=match)
        (tn, fp), (fn, tp) = r["confusion_matrix"]
        row = {"tagger": name, "labels": ", ".join(r["labels"]), "threshold": thr}
        for m in METRICS:
            row[m] = r[m]
            row[f"{m}_low"], row[f"{m}_high"] = r["intervals"][m]
        row.update({"TP": tp, "FP": fp, "FN": fn, "TN": tn})
        rows.append(row)
    return pd.DataFrame(rows)


def label_frequencies(tags, min_confidence=0.0, top=20):
    """The most frequent labels: images carrying each label at ``min_confidence`` or more (the book's Figure 21).

    Columns ``label``, ``images`` and ``share`` (of all images in the table).
    """
    tags = read_tags(tags)
    n_images = tags["image"].nunique()
    kept = tags[(tags["label"] != "") & (tags["confidence"] >= float(min_confidence))]
    counts = kept.groupby("label")["image"].nunique().sort_values(ascending=False, kind="stable")
    out = counts.head(int(top)).rename("images").reset_index()
    out["share"] = out["images"] / max(n_images, 1)
    return out


def plot_label_frequencies(freq, ax=None, title=None):
    """Horizontal bar chart of :func:`label_frequencies`; returns the axes."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(5, 0.25 * len(freq) + 1))[1]
    ax.barh(freq["label"][::-1], freq["images"][::-1], color="#4C72B0")
    ax.set_xlabel("images")
    if title:
        ax.set_title(title)
    return ax
