"""Accuracy, precision, recall, F1, their 95 % intervals, and confusion matrices (scikit-learn underneath).

For a binary task with a named positive class (``positive``), precision,
recall and F1 are those of the positive class, as in the book. For multiclass
tasks they are macro averages (every class counts the same), and the
per-class figures are under ``per_class``.

Every metrics dict carries intervals (:func:`confusion_intervals`) that stay
honest with few images and at 0 % or 100 %, where a percentile bootstrap
collapses to a single point:

* accuracy, and the positive class's precision and recall, are proportions:
  Wilson score intervals (statsmodels' ``proportion_confint``);
* F1, and macro-averaged precision and recall, are not: a stratified Bayesian
  bootstrap redraws each true class's row of the confusion matrix from a
  Dirichlet distribution with 1/K added to each of its K cells (Jeffreys'
  prior for two classes), keeps each class's number of images, and takes the
  central 95 % of the redrawn values, moved so that their median sits on the
  estimate (the added 1/K pulls every draw towards chance). The interval
  always contains the estimate itself (at F1 = 1 its upper end is 1).

In ``metrics.json`` (and in ``validate-tags``' report) they are stored as
``"intervals": {"accuracy": [low, high], "precision": [...], "recall": [...],
"f1": [...]}`` next to ``"interval_level"`` (0.95), ``"interval_methods"``
(metric -> method) and ``"n_boot"`` (draws of the bootstrap).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from .errors import DataError

#: The four headline metrics, in the order tables show them.
METRICS = ("accuracy", "precision", "recall", "f1")
#: Confidence level of the intervals.
LEVEL = 0.95
#: Draws of the stratified Bayesian bootstrap (F1, macro averages).
N_BOOT = 2000

WILSON = "Wilson score"
BOOTSTRAP = "stratified Bayesian bootstrap"


def wilson_interval(successes, n, level=LEVEL):
    """Wilson score interval ``(low, high)`` for ``successes`` out of ``n`` (statsmodels).

    Unlike the normal approximation or a percentile bootstrap it does not shrink
    to a point at 0 or ``n`` successes: 7 out of 7 gives about [0.65, 1]. With
    ``n == 0`` nothing is known and the interval is [0, 1].
    """
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return 0.0, 1.0
    successes, n = int(successes), int(n)
    low, high = proportion_confint(successes, n, alpha=1 - level, method="wilson")
    # exactly 0 and 1 at the edges, where float arithmetic leaves a 1e-17 crumb
    return (0.0 if successes == 0 else float(max(low, 0.0))), (1.0 if successes == n else float(min(high, 1.0)))


def _rates(counts):
    """Per-class precision, recall and F1 of confusion matrices ``counts`` (``... x K x K``), 0 where undefined."""
    diag = np.diagonal(counts, axis1=-2, axis2=-1)
    rows, cols = counts.sum(-1), counts.sum(-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(cols > 0, diag / cols, 0.0)
        recall = np.where(rows > 0, diag / rows, 0.0)
        f1 = np.where(rows + cols > 0, 2 * diag / (rows + cols), 0.0)
    return precision, recall, f1


def _redraw(cm, n_boot, seed):
    """``n_boot`` confusion matrices redrawn row by row: each true class's images keep their number and
    spread over the predictions with Dirichlet(counts + 1/K) probabilities (Jeffreys' prior for K = 2)."""
    rng = np.random.default_rng(seed)
    k = cm.shape[0]
    draws = np.zeros((n_boot, k, k))
    for c in range(k):
        support = cm[c].sum()
        if support:
            draws[:, c, :] = support * rng.dirichlet(cm[c] + 1.0 / k, size=n_boot)
    return draws


def confusion_intervals(cm, positive_index=None, level=LEVEL, n_boot=N_BOOT, seed=0):
    """Intervals for accuracy, precision, recall and F1 from a confusion matrix (rows true, columns predicted).

    With ``positive_index`` (a binary task with a named positive class) precision
    and recall are those of that class; otherwise they are macro averages over
    all classes, as in :func:`classification_metrics`. Proportions (accuracy, and
    a positive class's precision and recall) get Wilson intervals; F1 and macro
    averages a stratified Bayesian bootstrap of ``n_boot`` draws fixed by ``seed``
    (see the module's docstring). Returns ``{"intervals": {metric: [low, high]},
    "interval_level": level, "interval_methods": {metric: method}, "n_boot": n_boot}``.
    """
    cm = np.asarray(cm, dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or not cm.size:
        raise DataError(f"a confusion matrix must be square with at least one class, not of shape {cm.shape}")
    n_boot = int(n_boot)
    if n_boot < 1:
        raise DataError(f"n_boot must be at least 1, got {n_boot}")
    intervals = {"accuracy": wilson_interval(np.trace(cm), cm.sum(), level)}
    methods = {"accuracy": WILSON}
    draws = _rates(_redraw(cm, n_boot, seed))
    estimates = _rates(cm)
    if positive_index is not None:
        tp = cm[positive_index, positive_index]
        intervals["precision"] = wilson_interval(tp, cm[:, positive_index].sum(), level)
        intervals["recall"] = wilson_interval(tp, cm[positive_index].sum(), level)
        methods.update(precision=WILSON, recall=WILSON)
        pick = [("f1", 2)]
    else:
        pick = [("precision", 0), ("recall", 1), ("f1", 2)]
    tail = 100 * (1 - level) / 2
    for name, i in pick:
        if positive_index is not None:
            values, estimate = draws[i][:, positive_index], estimates[i][positive_index]
        else:
            values, estimate = draws[i].mean(-1), estimates[i].mean()
        low, high, middle = np.percentile(values, [tail, 100 - tail, 50])
        # The 1/K added per cell pulls every draw towards chance, and a macro average adds up
        # the pulls of all classes; moving the draws so that their median sits on the estimate
        # removes that pull (95 % coverage in simulations with 2 to 20 images per class, where
        # the unmoved percentiles covered 44-91 %).
        low, high = low + estimate - middle, high + estimate - middle
        intervals[name] = (float(min(max(low, 0.0), estimate)), float(max(min(high, 1.0), estimate)))
        methods[name] = BOOTSTRAP
    return {"intervals": {m: [round(intervals[m][0], 6), round(intervals[m][1], 6)] for m in METRICS},
            "interval_level": level, "interval_methods": {m: methods[m] for m in METRICS}, "n_boot": n_boot}


def averaging(labels, positive=None):
    """How precision, recall and F1 are averaged: ``(average, keyword arguments for scikit-learn)``.

    Those of the ``positive`` class for a binary task with a named positive class
    (as in the book), otherwise the macro average over ``labels``. The one rule,
    used for the final metrics and for every epoch of the learning curves.
    """
    if positive is not None:
        return "binary", {"pos_label": positive}
    return "macro", {"labels": list(labels)}


def classification_metrics(y_true, y_pred, labels=None, positive=None, level=LEVEL, n_boot=N_BOOT, seed=0):
    """Score predicted labels against gold labels.

    Returns a dict with ``accuracy``, ``precision``, ``recall``, ``f1``,
    ``average`` (``"binary"`` or ``"macro"``), ``positive``,
    ``confusion_matrix`` (list of rows; row = true class, column = predicted,
    in the order of ``labels``), ``labels``, ``n``, ``per_class``
    (``{label: {precision, recall, f1, support}}``), and the intervals of
    :func:`confusion_intervals` at ``level`` (``intervals``, ``interval_level``,
    ``interval_methods``, ``n_boot``). Classes with no predictions get
    precision 0 rather than an error.
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
    cm = skm.confusion_matrix(y_true, y_pred, labels=labels)
    pos_index = None if positive is None else labels.index(str(positive))
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "average": average,
        "positive": None if positive is None else str(positive),
        "confusion_matrix": cm.tolist(),
        "labels": labels,
        "n": len(y_true),
        "per_class": {lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                            "support": int(s[i])} for i, lab in enumerate(labels)},
        **confusion_intervals(cm, pos_index, level=level, n_boot=n_boot, seed=seed),
    }


def per_class_table(metrics):
    """The per-class precision/recall/F1/support of a metrics dict as a DataFrame, with a macro row."""
    table = pd.DataFrame(metrics["per_class"]).T
    table.loc["macro average"] = table[["precision", "recall", "f1"]].mean()
    table.loc["macro average", "support"] = table["support"].iloc[:-1].sum()
    table["support"] = table["support"].astype(int)
    return table.rename_axis("class")


def averaging_text(metrics):
    """What precision, recall and F1 of a metrics dict mean, in words.

    ``"binary: precision, recall and F1 of the class 'monument'"`` or
    ``"precision, recall and F1 are macro averages over 5 classes (each class counts the same)"``.
    """
    if metrics.get("average") == "binary":
        return f"binary: precision, recall and F1 of the class {metrics['positive']!r}"
    return (f"precision, recall and F1 are macro averages over {len(metrics['labels'])} classes "
            f"(each class counts the same)")


def summary_table(metrics_by_split, digits=3, intervals=True):
    """One row per split (e.g. ``{"val": {...}, "test": {...}}``) with n, accuracy, precision, recall, F1.

    With ``intervals`` (and metrics that carry them) each metric is followed by
    its ``<metric>_low`` and ``<metric>_high``. The table's ``attrs["averaging"]``
    says how precision, recall and F1 are averaged (:func:`averaging_text`).
    """
    rows = {}
    for split, m in metrics_by_split.items():
        row = {"n": m["n"]}
        for k in METRICS:
            row[k] = m[k]
            if intervals and "intervals" in m:
                row[f"{k}_low"], row[f"{k}_high"] = m["intervals"][k]
        rows[split] = row
    table = pd.DataFrame(rows).T
    table["n"] = table["n"].astype(int)
    table = table.round(digits)
    first = next(iter(metrics_by_split.values()), None)
    if first is not None:
        table.attrs["averaging"] = averaging_text(first)
    return table


def format_summary(metrics_by_split, digits=3):
    """The summary as the command line prints it: each metric with its interval, the averaging and methods named.

    Returns a string of a few lines, e.g.::

        binary: precision, recall and F1 of the class 'monument'
                n  accuracy              precision             recall                f1
        val    28  0.929 [0.774, 0.980]  ...
        95 % intervals: accuracy, precision, recall: Wilson score; f1: stratified Bayesian bootstrap (2000 draws)
    """
    if not metrics_by_split:
        return "no held-out images"
    cells = {}
    for split, m in metrics_by_split.items():
        row = {"n": str(m["n"])}
        for k in METRICS:
            text = f"{m[k]:.{digits}f}"
            if "intervals" in m:
                low, high = m["intervals"][k]
                text += f" [{low:.{digits}f}, {high:.{digits}f}]"
            row[k] = text
        cells[split] = row
    first = next(iter(metrics_by_split.values()))
    lines = [averaging_text(first), pd.DataFrame(cells).T.to_string()]
    if "intervals" in first:
        by_method = {}
        for k, method in first["interval_methods"].items():
            by_method.setdefault(method, []).append(k)
        methods = "; ".join(f"{', '.join(ks)}: {method}" + (f" ({first['n_boot']} draws)" if method == BOOTSTRAP
                                                            else "") for method, ks in by_method.items())
        lines.append(f"{round(100 * first['interval_level'])} % intervals in brackets; {methods}")
    return "\n".join(lines)
