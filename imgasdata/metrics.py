"""Accuracy, precision, recall, F1 and confusion matrices (scikit-learn underneath).

For a binary task with a named positive class (``positive``), precision,
recall and F1 are those of the positive class, as in the book. For multiclass
tasks they are macro averages (every class counts the same), and the
per-class figures are under ``per_class``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from .errors import DataError


def averaging(labels, positive=None):
    """How precision, recall and F1 are averaged: ``(average, keyword arguments for scikit-learn)``.

    Those of the ``positive`` class for a binary task with a named positive class
    (as in the book), otherwise the macro average over ``labels``. The one rule,
    used for the final metrics and for every epoch of the learning curves.
    """
    if positive is not None:
        return "binary", {"pos_label": positive}
    return "macro", {"labels": list(labels)}


def classification_metrics(y_true, y_pred, labels=None, positive=None):
    """Score predicted labels against gold labels.

    Returns a dict with ``accuracy``, ``precision``, ``recall``, ``f1``,
    ``average`` (``"binary"`` or ``"macro"``), ``positive``,
    ``confusion_matrix`` (list of rows; row = true class, column = predicted,
    in the order of ``labels``), ``labels``, ``n`` and ``per_class``
    (``{label: {precision, recall, f1, support}}``). Classes with no predictions
    get precision 0 rather than an error.
    """
    y_true = [str(v) for v in np.asarray(y_true, dtype=object).ravel()]
    y_pred = [str(v) for v in np.asarray(y_pred, dtype=object).ravel()]
    if len(y_true) != len(y_pred):
        raise DataError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}")
    if not y_true:
        raise DataError("classification_metrics needs at least one labelled example")
    labels = [str(v) for v in labels] if labels is not None else sorted(set(y_true) | set(y_pred))
    unknown = (set(y_true) | set(y_pred)) - set(labels)
    if unknown:
        raise DataError(f"labels {sorted(unknown)} are not in labels={labels}")
    if positive is not None and (str(positive) not in labels or len(labels) != 2):
        raise DataError(f"positive={positive!r} needs a binary task with it as one of the two labels; "
                         f"labels are {labels}")

    average, kwargs = averaging(labels, None if positive is None else str(positive))
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        y_true, y_pred, average=average, zero_division=0, **kwargs)
    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "average": average,
        "positive": None if positive is None else str(positive),
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "labels": labels,
        "n": len(y_true),
        "per_class": {lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                            "support": int(s[i])} for i, lab in enumerate(labels)},
    }


def per_class_table(metrics):
    """The per-class precision/recall/F1/support of a metrics dict as a DataFrame, with a macro row."""
    table = pd.DataFrame(metrics["per_class"]).T
    table.loc["macro average"] = table[["precision", "recall", "f1"]].mean()
    table.loc["macro average", "support"] = table["support"].iloc[:-1].sum()
    table["support"] = table["support"].astype(int)
    return table.rename_axis("class")


def summary_table(metrics_by_split, digits=3):
    """One row per split (e.g. ``{"val": {...}, "test": {...}}``) with n, accuracy, precision, recall, F1."""
    rows = {split: {k: m[k] for k in ("n", "accuracy", "precision", "recall", "f1")}
            for split, m in metrics_by_split.items()}
    table = pd.DataFrame(rows).T
    table["n"] = table["n"].astype(int)
    return table.round(digits)
