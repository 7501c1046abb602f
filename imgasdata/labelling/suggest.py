"""Which images to hand-label next: rank an unlabelled pool by what a label there would teach.

From the images labelled so far, a logistic regression on frozen backbone features (head mode,
:mod:`.features`) scores every unlabelled image of the pool; a *strategy* turns the scores and
the embeddings into an order (one record per strategy in :data:`STRATEGIES`):

``uncertainty``
    the images the model is least sure about first (smallest margin between its two most
    likely classes);
``diverse``
    a spread-out sample of the embeddings: k-means++ seeding (each next image drawn with
    probability proportional to its squared distance from the images already labelled or
    picked), so every kind of picture is seen early;
``hybrid``
    k-means++ seeding with each image's chance also weighted by the model's uncertainty:
    uncertain images, but not fifty near-copies of the same one;
``random``
    a simple random sample (the baseline, and what a prevalence estimate's gold sample must be).

A *cold start* (fewer than two labels in some class, or one class only) cannot fit a model, so
the strategies that need one fall back to ``diverse``. Binary and multiclass labels alike.

Which to choose (benchmarks/bench_labelling.py, mean test F1 over 10-20 simulated projects):
on the sample data's half-positive binary pool, random choice reached F1 0.845 with 60 labels,
``hybrid`` and ``diverse`` with 40 and ``uncertainty`` with 48; on a pool where the positive
class is rare (14 %), random reached 0.72 with 150 labels, ``uncertainty`` with 40 and
``hybrid`` with 70. ``hybrid`` is the default; for a rare class, ``uncertainty``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import lazy_loader as lazy
import numpy as np

from ..backbones import DEFAULT_BACKBONE
from ..errors import DataError, MissingFileError, SettingsError
from ..paths import path_key, path_text, real_path

# pandas loads on first use: building the command line's parser must not wait ~1 s for it.
pd = lazy.load("pandas")

COLUMNS = ["path", "rank", "strategy", "predicted", "probability", "score", "error"]


def margin_uncertainty(probs):
    """1 minus the gap between the two most likely classes: 0 for a sure model, 1 for a coin toss."""
    top = np.sort(probs, axis=1)
    return 1.0 - (top[:, -1] - top[:, -2])


def _reduce(pool, labelled, seed, dims=64):
    """Unit-length embeddings projected on their first ``dims`` principal axes (for fast distances)."""
    from sklearn.decomposition import PCA

    both = np.vstack([pool, labelled]) if len(labelled) else pool
    both = both / np.maximum(np.linalg.norm(both, axis=1, keepdims=True), 1e-12)
    if both.shape[1] > dims and len(both) > dims:
        both = PCA(dims, svd_solver="randomized", random_state=seed).fit_transform(both)
    return both[:len(pool)], both[len(pool):]


def _seeding(n, pool, labelled, weight, rng):
    """k-means++ seeding that starts from the labelled images: returns ``(order, scores)``.

    Each next image is drawn with probability proportional to ``weight`` times its squared
    distance to the nearest labelled or already picked image; its score is that product
    (the first pick of a cold start scores 1). scikit-learn's ``kmeans_plusplus`` cannot
    start from existing centres, hence these few lines.
    """
    nearest = np.full(len(pool), np.inf)
    for start in range(0, len(labelled), 2048):
        block = labelled[start:start + 2048]
        d = (pool ** 2).sum(1)[:, None] - 2 * pool @ block.T + (block ** 2).sum(1)[None, :]
        nearest = np.minimum(nearest, np.maximum(d, 0).min(1))
    taken = np.zeros(len(pool), dtype=bool)
    order, scores = [], []
    for _ in range(n):
        mass = np.where(taken, 0.0, weight * (nearest if np.isfinite(nearest).any() else 1.0))
        total = mass.sum()
        if total <= 0:  # only exact copies of picked images are left: take them in random order
            i = int(rng.choice(np.flatnonzero(~taken)))
        else:
            i = int(np.searchsorted(np.cumsum(mass), rng.random() * total, side="right"))
            i = min(i, len(pool) - 1)
            while taken[i]:  # float rounding at the end of the cumulative sum
                i -= 1
        order.append(i)
        scores.append(float(mass[i]) if total > 0 else 0.0)
        taken[i] = True
        nearest = np.minimum(nearest, ((pool - pool[i]) ** 2).sum(1))
    return np.array(order, dtype=int), np.array(scores)


def _by_uncertainty(n, pool, labelled, probs, rng):
    score = margin_uncertainty(probs)
    order = np.lexsort((rng.random(len(score)), -score))[:n]  # ties in random order
    return order, score[order]


def _diverse(n, pool, labelled, probs, rng):
    return _seeding(n, pool, labelled, np.ones(len(pool)), rng)


def _hybrid(n, pool, labelled, probs, rng):
    # a floor keeps sure-looking images of an unexplored region reachable
    return _seeding(n, pool, labelled, margin_uncertainty(probs) + 0.05, rng)


def _random(n, pool, labelled, probs, rng):
    score = rng.random(len(pool))
    order = np.argsort(-score)[:n]
    return order, score[order]


@dataclass(frozen=True)
class Strategy:
    """One way of choosing the next images to label."""

    name: str
    help: str
    uses_model: bool        # needs a fitted model (two labels per class); falls back to diverse otherwise
    uses_embeddings: bool   # needs the reduced embeddings
    pick: Callable          # (n, pool, labelled, probs, rng) -> (positions in pool, scores)


STRATEGIES = {s.name: s for s in (
    Strategy("uncertainty", "the images the model is least sure about (saves most when a class is rare)", True,
             False, _by_uncertainty),
    Strategy("diverse", "a spread-out sample of the embeddings (k-means++ seeding)", False, True, _diverse),
    Strategy("hybrid", "k-means++ seeding weighted by the model's uncertainty (default)", True, True, _hybrid),
    Strategy("random", "a simple random sample", False, False, _random),
)}


def cold_start(labels):
    """Why no model can be fitted on ``labels`` (a sequence of class names), or ``None`` if one can."""
    counts = pd.Series(list(labels), dtype=object).value_counts()
    if len(counts) < 2:
        return f"only {len(counts)} class(es) labelled so far"
    if counts.min() < 2:
        return f"class {counts.idxmin()!r} has {counts.min()} label(s)"
    return None


def rank(pool, labelled=None, labels=(), n=None, strategy="hybrid", seed=0):
    """Rank the rows of the feature matrix ``pool`` for labelling. Returns a DataFrame.

    ``labelled`` holds the features of the images labelled so far and ``labels`` their classes.
    One row per chosen image, in order: ``position`` (row of ``pool``), ``rank`` (1 first),
    ``strategy`` (the one used, ``diverse`` on a cold start), ``predicted`` and ``probability``
    (the model's most likely class and its probability; empty without a model) and ``score``
    (what the strategy ranked by: uncertainty, a k-means++ weight, or a random draw).
    """
    if strategy not in STRATEGIES:
        raise SettingsError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    pool = np.asarray(pool, dtype=np.float64)
    labelled = np.zeros((0, pool.shape[1])) if labelled is None else np.asarray(labelled, dtype=np.float64)
    labels = [str(v) for v in labels]
    if len(labels) != len(labelled):
        raise DataError(f"{len(labels)} labels for {len(labelled)} labelled feature rows")
    n = len(pool) if n is None else min(int(n), len(pool))
    if n < 1:
        raise SettingsError("n must be at least 1")
    from .features import head, one_thread

    rng = np.random.default_rng(seed)
    chosen = STRATEGIES[strategy]
    probs, classes = None, []
    with one_thread():
        if cold_start(labels) is None:
            model = head(seed).fit(labelled, labels)
            probs, classes = model.predict_proba(pool), list(model.classes_)
        elif chosen.uses_model:
            chosen = STRATEGIES["diverse"]
        z_pool, z_lab = _reduce(pool, labelled, seed) if chosen.uses_embeddings else (pool, labelled)
        order, score = chosen.pick(n, z_pool, z_lab, probs, rng)
    out = pd.DataFrame({"position": order, "rank": np.arange(1, len(order) + 1), "strategy": chosen.name})
    if probs is not None:
        out["predicted"] = [classes[i] for i in probs[order].argmax(1)]
        out["probability"] = probs[order].max(1).round(6)
    else:
        out["predicted"], out["probability"] = "", np.nan
    out["score"] = np.round(score, 6)
    return out


def suggest(pool, labels=None, n=20, strategy="hybrid", label_column="label", seed=0,
            backbone=DEFAULT_BACKBONE, weights="imagenet", device="auto", progress=True, cache=None):
    """The next ``n`` images of ``pool`` to hand-label. Returns a DataFrame of :data:`COLUMNS`.

    ``pool`` is image files and/or folders; ``labels`` a CSV (or table) of the images labelled
    so far (``path`` or ``image``, and ``label_column``; paths relative to the CSV's folder),
    or ``None`` for a cold start. Labelled images are left out of the ranking. ``n`` may be as
    large as the pool (a full ranking). Unreadable pool images come last, with no rank and the
    reason in ``error``. ``cache``: SQLite file of image features reused between runs (and with
    ``dedup --method cnn``), see :func:`~imgasdata.labelling.features.embed`.
    """
    from ..images import expand_inputs
    from .features import embed
    from .tables import read_labels

    known = read_labels(labels, label_column) if labels is not None else pd.DataFrame(columns=["path", "label"])
    missing = [p for p in known["path"] if not real_path(p).is_file()]
    if missing:
        raise MissingFileError(f"{len(missing)} labelled image(s) do not exist, e.g. {missing[0]}")
    done = {path_key(p) for p in known["path"]}
    paths = [p for p in expand_inputs(pool) if path_key(p) not in done]
    if not paths:
        raise DataError("Every image of the pool is labelled already (or the pool is empty)")
    feats, errors = embed(paths + list(known["path"]), backbone, weights, device, progress, cache)
    bad_labelled = [known["path"].iloc[i - len(paths)] for i in errors if i >= len(paths)]
    if bad_labelled:
        warnings.warn(f"{len(bad_labelled)} labelled image(s) could not be read and were left out, "
                      f"e.g. {bad_labelled[0]}", stacklevel=2)
    ok_lab = [i for i in range(len(known)) if i + len(paths) not in errors]
    readable = [i for i in range(len(paths)) if i not in errors]
    if not readable:
        raise DataError(f"None of the {len(paths)} unlabelled pool images could be read")
    ranked = rank(feats[readable], feats[[len(paths) + i for i in ok_lab]], known["label"].iloc[ok_lab],
                  n=n, strategy=strategy, seed=seed)
    ranked["path"] = [path_text(paths[readable[i]]) for i in ranked.pop("position")]
    ranked["error"] = ""
    failed = pd.DataFrame({"path": [path_text(paths[i]) for i in sorted(errors) if i < len(paths)],
                           "strategy": ranked["strategy"].iloc[0], "predicted": ""})
    failed["error"] = [errors[i] for i in sorted(errors) if i < len(paths)]
    out = pd.concat([ranked, failed], ignore_index=True) if len(failed) else ranked
    out["rank"] = out["rank"].astype("Int64")
    return out[COLUMNS]


def annotator_sheet(paths, sheet_path, coders=3):
    """An empty annotator sheet for ``paths``: ``image`` (relative to the sheet's folder) and one
    column per coder (``coder1``, ``coder2``, ...), to be filled with class names. Returns the table."""
    from .tables import relative_to

    if int(coders) < 1:
        raise SettingsError(f"coders must be at least 1, got {coders}")
    sheet = pd.DataFrame({"image": relative_to(paths, Path(sheet_path).parent)})
    for k in range(1, int(coders) + 1):
        sheet[f"coder{k}"] = ""
    return sheet


def sheet_path(out):
    """Where ``suggest`` writes the annotator sheet for its output ``out``: ``NAME_sheet.csv`` beside it."""
    out = Path(out)
    return out.with_name(f"{out.stem}_sheet.csv")
