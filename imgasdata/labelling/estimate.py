"""The share of each class among many images, with intervals that stay valid when the classifier errs.

A study labels N images with a classifier and hand-labels a *random sample* of n of them
(the gold sample). Three estimates of each class's share, side by side:

``classify_and_count``
    the share of images the classifier gave the class. Its interval (normal approximation
    over the N images) only says how the count would vary if the classifier's labels were
    the truth; it is biased whenever the classifier errs unevenly (more false positives than
    false negatives), and its interval does not include that bias.
``corrected``
    the misclassification-corrected share: the confusion matrix measured on the gold sample,
    ``P(predicted j | true k)``, is inverted (for two classes this is the Rogan-Gladen
    estimator, ``(share + specificity - 1) / (sensitivity + specificity - 1)``). Its interval
    is a percentile bootstrap over the gold sample (and the predicted shares), clipped to [0, 1].
``ppi``
    prediction-powered inference for a mean (Angelopoulos et al. 2023, *Science*): the
    classify-and-count share minus the classifier's mean error on the gold sample,
    ``theta = mean_N(f) - mean_n(f - y)``, with the published variance
    ``var_N(f) / N + var_n(f - y) / n`` and a normal interval, clipped to [0, 1].

Both corrections assume the gold images are a random sample of the same images the shares
are about (the same population, the same period, the same kinds of pictures). With ``by``,
each group (a date, an account) gets its own three estimates from its own predictions and
its own gold images, so error rates may differ between groups.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, SettingsError
from ..paths import path_key, real_path

METHODS = ("classify_and_count", "corrected", "ppi")
COLUMNS = ["group", "class", "method", "estimate", "lower", "upper", "n_predicted", "n_gold"]
RANDOM_SAMPLE = ("The corrected and ppi intervals assume the gold images are a random sample of the "
                 "same images as the predictions.")


def _z(level):
    from scipy.stats import norm

    if not 0 < float(level) < 1:
        raise SettingsError(f"level must be between 0 and 1, e.g. 0.95; got {level}")
    return float(norm.ppf(0.5 + float(level) / 2))


def _clip(v):
    return float(np.clip(v, 0.0, 1.0)) if np.isfinite(v) else np.nan


def classify_and_count(pred, k, level=0.95):
    """Share of ``pred`` (class codes) equal to ``k``, with its naive normal interval: ``(est, lo, hi)``."""
    pred = np.asarray(pred)
    share = float(np.mean(pred == k))
    half = _z(level) * np.sqrt(share * (1 - share) / len(pred))
    return share, _clip(share - half), _clip(share + half)


def ppi_mean(f_all, f_gold, y_gold, level=0.95):
    """Prediction-powered estimate of the mean of ``y`` (Angelopoulos et al. 2023): ``(est, lo, hi)``.

    ``f_all`` are the predictions on all N images, ``f_gold`` and ``y_gold`` the predictions
    and true values on the n gold images. Estimate ``mean(f_all) - mean(f_gold - y_gold)``,
    standard error ``sqrt(var(f_all) / N + var(f_gold - y_gold) / n)``.
    """
    f_all, f_gold, y_gold = (np.asarray(a, dtype=float) for a in (f_all, f_gold, y_gold))
    rect = f_gold - y_gold
    est = f_all.mean() - rect.mean()
    se = np.sqrt(f_all.var(ddof=1) / len(f_all) + (rect.var(ddof=1) if len(rect) > 1 else np.nan) / len(rect))
    half = _z(level) * se
    return _clip(est), _clip(est - half), _clip(est + half)


def _solve(confusion, shares):
    """True shares from predicted ``shares`` and ``confusion[..., j, k] = P(pred j | true k)``; NaN where singular."""
    finite = np.isfinite(confusion).all(axis=(-2, -1))  # a class absent from a (bootstrap) gold sample
    det = np.zeros(finite.shape)
    det[finite] = np.linalg.det(confusion[finite])
    ok = finite & (np.abs(det) > 1e-9)
    out = np.full(shares.shape, np.nan)
    if ok.any():
        out[ok] = np.linalg.solve(confusion[ok], shares[ok][..., None])[..., 0]
    return out


def _confusions(true, pred, K):
    """``P(pred j | true k)`` for each row of index arrays ``true``/``pred`` (shape B x n): B x K x K."""
    B = true.shape[0]
    flat = (np.arange(B)[:, None] * K * K + pred * K + true).ravel()
    counts = np.bincount(flat, minlength=B * K * K).reshape(B, K, K).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts / counts.sum(axis=1, keepdims=True)


def corrected(pred, gold_true, gold_pred, K, level=0.95, n_boot=1000, seed=0):
    """Misclassification-corrected shares of all ``K`` classes: ``(est, lo, hi)`` arrays of length K.

    The confusion matrix of the gold sample is inverted (Rogan-Gladen for two classes); the
    interval is the percentile bootstrap over the gold sample, with the predicted shares drawn
    again from their multinomial, each draw clipped to [0, 1]. A class missing from the gold
    sample makes the matrix singular: NaN.
    """
    pred, gold_true, gold_pred = (np.asarray(a, dtype=int) for a in (pred, gold_true, gold_pred))
    shares = np.bincount(pred, minlength=K) / len(pred)
    est = _solve(_confusions(gold_true[None], gold_pred[None], K), shares[None])[0]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(gold_true), size=(int(n_boot), len(gold_true)))
    boot_shares = rng.multinomial(len(pred), shares, size=int(n_boot)) / len(pred)
    boot = np.clip(_solve(_confusions(gold_true[idx], gold_pred[idx], K), boot_shares), 0, 1)
    boot = boot[np.isfinite(boot).all(axis=1)]
    alpha = (1 - float(level)) / 2
    if len(boot) < 0.5 * int(n_boot) or not np.isfinite(est).all():
        nan = np.full(K, np.nan)
        return nan, nan, nan
    lo, hi = np.quantile(boot, [alpha, 1 - alpha], axis=0)
    return np.clip(est, 0, 1), lo, hi


def prevalence(pred, gold_true, gold_pred, classes, level=0.95, n_boot=1000, seed=0):
    """The three estimates for each class, from class codes. Returns rows ``class, method, estimate, lower, upper``.

    ``pred`` are the predicted class codes (indices into ``classes``) of all N images,
    ``gold_true`` and ``gold_pred`` the true and predicted codes of the n gold images.
    """
    K = len(classes)
    rows = []
    c_est, c_lo, c_hi = (corrected(pred, gold_true, gold_pred, K, level, n_boot, seed) if len(gold_true)
                         else (np.full(K, np.nan),) * 3)
    for k, name in enumerate(classes):
        rows.append((name, "classify_and_count", *classify_and_count(pred, k, level)))
        rows.append((name, "corrected", c_est[k], c_lo[k], c_hi[k]))
        ppi = (ppi_mean(np.asarray(pred) == k, np.asarray(gold_pred) == k, np.asarray(gold_true) == k, level)
               if len(gold_true) else (np.nan,) * 3)
        rows.append((name, "ppi", *ppi))
    return pd.DataFrame(rows, columns=["class", "method", "estimate", "lower", "upper"])


def _located(paths, base):
    """Keys of table paths: a relative path is taken from ``base`` (the CSV's folder) when the file
    is there, else from the current folder (``predict`` writes paths as they were typed). A name
    that is not UTF-8, spelled ``\\xNN`` in the table, is looked for as its real file."""
    keys = []
    for p in paths:
        p = str(p)
        if not os.path.isabs(p) and base is not None and real_path(Path(base) / p).exists():
            p = str(Path(base) / p)
        keys.append(path_key(p))
    return keys


def _table(source, what):
    from .tables import read_csv

    if isinstance(source, pd.DataFrame):
        return source.astype({c: str for c in source.columns if c == "path"}), None
    return read_csv(source, what), Path(source).parent


def estimate(predictions, gold, positive=None, by=None, level=0.95, label_column="label",
             prediction_column="label", n_boot=1000, seed=0):
    """Each class's share among the predicted images, three ways, overall and per group. Returns a DataFrame.

    ``predictions`` is the CSV ``imgasdata predict`` writes (or its table): ``path``, the
    predicted class in ``prediction_column`` and ``error`` (rows with an error are left out).
    ``gold`` is a CSV (or table) of hand labels: ``path`` and ``label_column``, drawn at
    random from the same images; it is joined with the predictions on the resolved path.
    ``positive`` reports that class only; ``by`` names a column of the predictions to group by.
    Columns: :data:`COLUMNS`; ``method`` is one of :data:`METHODS`.
    Warns (one sentence) when gold images are not among the predictions.
    """
    preds, pbase = _table(predictions, "Predictions CSV")
    golds, gbase = _table(gold, "Gold CSV")
    for df, name, cols in ((preds, "The predictions", ["path", prediction_column]),
                           (golds, "The gold table", ["path", label_column])):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise DataError(f"{name} need(s) the column(s) {missing}; found {list(df.columns)}")
    if by is not None and by not in preds.columns:
        raise DataError(f"The predictions have no column {by!r} to group by; found {list(preds.columns)}")
    preds = preds.copy()
    if "error" in preds.columns:
        preds = preds[preds["error"].fillna("").astype(str) == ""]
    preds[prediction_column] = preds[prediction_column].astype(str)
    preds = preds[preds[prediction_column].str.strip() != ""]
    if not len(preds):
        raise DataError("The predictions hold no labelled image")
    preds["_key"] = _located(preds["path"], pbase)
    preds = preds.drop_duplicates("_key", keep="last")
    golds = golds.copy()
    golds[label_column] = golds[label_column].astype(str).str.strip()
    golds = golds[golds[label_column] != ""]
    golds["_key"] = _located(golds["path"], gbase)
    golds = golds.drop_duplicates("_key", keep="last")
    outside = ~golds["_key"].isin(set(preds["_key"]))
    if outside.any():
        warnings.warn(f"{int(outside.sum())} of {len(golds)} gold image(s) are not among the predictions "
                      f"(e.g. {golds.loc[outside, 'path'].iloc[0]}) and were left out; the gold sample "
                      f"must be a random sample of the predicted images.", stacklevel=2)
    joined = golds.loc[~outside, ["_key", label_column]].rename(columns={label_column: "_true"}).merge(
        preds, on="_key")
    classes = sorted(set(preds[prediction_column]) | set(joined["_true"]))
    if positive is not None and str(positive) not in classes:
        raise SettingsError(f"--positive {positive!r} is not one of the classes {classes}")
    code = {c: i for i, c in enumerate(classes)}
    groups = [("all", preds, joined)]
    if by is not None:
        groups += [(str(g), part, joined[joined[by].astype(str) == str(g)])
                   for g, part in preds.groupby(preds[by].astype(str), sort=True)]
    frames = []
    for name, part, gpart in groups:
        table = prevalence(part[prediction_column].map(code).to_numpy(), gpart["_true"].map(code).to_numpy(),
                           gpart[prediction_column].map(code).to_numpy(), classes, level, n_boot, seed)
        table.insert(0, "group", name)
        table["n_predicted"], table["n_gold"] = len(part), len(gpart)
        frames.append(table)
    out = pd.concat(frames, ignore_index=True)
    if positive is not None:
        out = out[out["class"] == str(positive)].reset_index(drop=True)
    for c in ("estimate", "lower", "upper"):
        out[c] = out[c].astype(float).round(6)
    return out[COLUMNS]
