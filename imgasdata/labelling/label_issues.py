"""Which gold labels to doubt: images whose given label the rest of the data disagrees with.

Each image's class probabilities come from a model that never saw it: a logistic regression
on frozen backbone features (:mod:`.features`), fitted in ``folds`` stratified folds
(out-of-fold probabilities, scikit-learn's ``cross_val_predict``). cleanlab's
``find_label_issues`` (confident learning, Northcutt et al. 2021) then flags the images whose
given label is unlikely under those probabilities, and ``get_label_quality_scores`` ranks
every image, most doubtful first. A flagged image is a candidate for a second look, not a
verdict: the coders' votes (``sheet``) show whether people disagreed too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..backbones import DEFAULT_BACKBONE
from ..errors import DataError, MissingFileError, SettingsError
from ..paths import path_key, path_text

COLUMNS = ["path", "given", "suggested", "quality", "is_issue", "error"]


def read_data(data, label_column="label"):
    """``path, label`` rows of a dataset folder (the layouts ``train`` accepts, every split) or a labels CSV.

    Folders are read as they are, without splitting: the book's ``train/val/test/<class>/``
    layout (all three splits) or one sub-folder per class.
    """
    from ..datasets import SPLITS, read_class_folders
    from .tables import read_labels

    data_path = Path(data) if not isinstance(data, pd.DataFrame) else None
    if data_path is not None and data_path.is_dir():
        splits = [data_path / s for s in SPLITS if (data_path / s).is_dir()]
        parts = [read_class_folders(folder) for folder in splits or [data_path]]
        return pd.concat(parts, ignore_index=True)[["path", "label"]]
    if data_path is not None and not data_path.exists():
        raise MissingFileError(f"Data folder or labels CSV not found: {data}")
    df = read_labels(data, label_column)
    missing = [p for p in df["path"] if not Path(p).is_file()]
    if missing:
        raise MissingFileError(f"{len(missing)} image(s) listed in {data} do not exist, e.g. {missing[0]}")
    return df


def check_folds(labels, folds):
    """The sorted classes of ``labels``, after checking that ``folds`` stratified folds can be made."""
    counts = pd.Series([str(v) for v in labels]).value_counts()
    if len(counts) < 2:
        raise DataError(f"Label issues need at least two classes; found {len(counts)}")
    if int(folds) < 2:
        raise SettingsError(f"folds must be at least 2, got {folds}")
    if counts.min() < int(folds):
        raise DataError(f"Class {counts.idxmin()!r} has only {counts.min()} image(s); {folds} folds need at "
                        f"least {folds} per class (use a smaller --folds)")
    return sorted(counts.index)


def find_issues(features, labels, folds=5, seed=0):
    """Out-of-fold probabilities and cleanlab's verdict for labelled feature rows. Returns a DataFrame.

    Columns ``given``, ``suggested`` (the most likely class out of fold), ``quality``
    (cleanlab's self-confidence label-quality score, 0 to 1, low = doubtful) and ``is_issue``,
    one row per input row, in input order.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from .features import head, one_thread

    labels = pd.Series([str(v) for v in labels])
    classes = check_folds(labels, folds)
    y = labels.map({c: i for i, c in enumerate(classes)}).to_numpy()
    cv = StratifiedKFold(int(folds), shuffle=True, random_state=seed)
    with one_thread():
        probs = cross_val_predict(head(seed), np.asarray(features, dtype=np.float64), y, cv=cv,
                                  method="predict_proba")
    issue = find_label_issues(y, probs)
    quality = get_label_quality_scores(y, probs, method="self_confidence")
    return pd.DataFrame({"given": labels.to_numpy(), "suggested": [classes[i] for i in probs.argmax(1)],
                         "quality": np.round(quality, 6), "is_issue": issue})


def label_issues(data, folds=5, label_column="label", sheet=None, seed=0, backbone=DEFAULT_BACKBONE,
                 weights="imagenet", device="auto", progress=True):
    """Rank the labelled images of ``data`` by how much their given label is to be doubted.

    ``data`` is a dataset folder or a labels CSV (see :func:`read_data`). Returns a DataFrame of
    :data:`COLUMNS`, flagged images first and lowest quality first; with an annotator
    ``sheet`` (the template ``suggest`` writes, filled in, or a long ``image,annotator,...``
    sheet), a ``votes`` column lists each image's coders' labels. Unreadable images come last
    with the reason in ``error``.
    """
    from .features import embed

    df = read_data(data, label_column).reset_index(drop=True)
    check_folds(df["label"], folds)  # before the features, which take a while
    feats, errors = embed(list(df["path"]), backbone, weights, device, progress)
    ok = np.array([i not in errors for i in range(len(df))])
    found = find_issues(feats[ok], df.loc[ok, "label"], folds, seed)
    found.insert(0, "path", [path_text(p) for p in df.loc[ok, "path"]])
    found["error"] = ""
    found["_key"] = [path_key(p) for p in df.loc[ok, "path"]]
    found = found.sort_values(["is_issue", "quality"], ascending=[False, True], kind="stable")
    bad = sorted(errors)
    failed = pd.DataFrame({"path": [path_text(df["path"].iloc[i]) for i in bad],
                           "given": [df["label"].iloc[i] for i in bad], "suggested": "",
                           "quality": np.nan, "is_issue": False, "error": [errors[i] for i in bad],
                           "_key": [path_key(df["path"].iloc[i]) for i in bad]})
    out = pd.concat([found, failed], ignore_index=True) if len(failed) else found.reset_index(drop=True)
    keys = out.pop("_key")
    if sheet is not None:
        from .tables import read_votes

        votes = read_votes(sheet, label_column)
        out["votes"] = [votes.get(k, "") for k in keys]
    return out
