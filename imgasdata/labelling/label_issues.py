"""Which gold labels to doubt: images whose given label the rest of the data disagrees with.

Each image's class probabilities come from models that never saw it, fitted in ``folds``
stratified folds on frozen backbone features (:mod:`.features`; out-of-fold probabilities,
scikit-learn's ``cross_val_predict``): the average of a strongly regularised logistic
regression and a nearest-neighbour vote (:func:`issue_model`). cleanlab's ``find_label_issues``
(confident learning, Northcutt et al. 2021) then flags the images whose given label is unlikely
under those probabilities, and ``get_label_quality_scores`` ranks every image, most doubtful
first. A flagged image is a candidate for a second look, not a verdict: the coders' votes
(``sheet``) show whether people disagreed too.

The flags are only as good as the model: where it cannot learn the labels from the pictures
(classes defined by something the pictures do not show), most flags are hard images, not wrong
labels. :func:`find_issues` therefore reports how often the out-of-fold model agrees with the
given labels, and warns when that is low.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import lazy_loader as lazy

from ..backbones import DEFAULT_BACKBONE
from ..errors import DataError, MissingFileError, SettingsError
from ..paths import path_key, path_text, real_path

# pandas loads on first use: building the command line's parser reads FILTERS and must not wait ~1 s for it.
pd = lazy.load("pandas")

COLUMNS = ["path", "given", "suggested", "quality", "is_issue", "error"]

#: cleanlab's ways of turning probabilities into flags (its ``filter_by``), ours first. With
#: ``confident_learning`` an image is flagged when the model's probability for another class
#: clears that class's own threshold; ``prune_by_noise_rate`` flags as many images as cleanlab
#: estimates are mislabelled, so it finds a few more errors at the price of more false alarms.
#: On planted flips in the sample data (benchmarks/bench_labelling.py) the first kept precision
#: near 0.9 where the second gave about 0.8, at a recall lower by about 0.1.
FILTERS = ("confident_learning", "prune_by_noise_rate", "both", "prune_by_class", "predicted_neq_given")

#: Inverse L2 strength of the logistic regression inside :func:`issue_model`: ten times stronger
#: than the head ``suggest`` fits on a few dozen labels (``features.C``), because here every
#: class has many images and some of them carry wrong labels, which a weaker penalty learns by
#: heart (binary sample data, 10 % flips, the head alone with cleanlab's default rule:
#: precision 0.62 at C = 0.01, 0.71 at C = 0.001, at the same recall).
ISSUES_C = 0.001

#: Neighbours in the nearest-neighbour half of :func:`issue_model` (cosine distance, closer
#: neighbours weigh more), fewer when a fold's training part is smaller.
NEIGHBOURS = 15

#: Below this out-of-fold agreement with the given labels, :func:`find_issues` warns that its
#: flags are mostly hard images. Wrong labels lower the agreement too (a perfect model agrees
#: with 80 % of labels of which 20 % are wrong), hence a low bar: on the sample data's visual
#: classes with 20 % planted flips the agreement was 0.69-0.76 on average (a few runs near
#: 0.65), on six Unicode emoji categories (which the pictures do not define) 0.43-0.52, where
#: only 10-34 % of the flags were planted flips (benchmarks/bench_labelling.py).
LOW_AGREEMENT = 0.6


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
    missing = [p for p in df["path"] if not real_path(p).is_file()]
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


def issue_model(n_train, seed=0):
    """The classifier whose out-of-fold probabilities judge each label: a soft vote (mean of the
    probabilities) of the logistic-regression head at :data:`ISSUES_C` and a k-nearest-neighbour
    classifier on cosine distance. Returns an unfitted scikit-learn estimator.

    The two err on different images (a linear boundary, a neighbourhood), so an image both find
    out of place is more likely mislabelled than one either finds alone: on the sample data's
    binary task with 5-20 % planted flips, flagged by confident learning, the vote raised
    precision from 0.72-0.82 (the head alone) to 0.88-0.90 at the same recall. ``n_train``
    (the images a fold is fitted on) caps the number of neighbours.
    """
    from sklearn.ensemble import VotingClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    from .features import head

    neighbours = make_pipeline(Normalizer(), KNeighborsClassifier(max(1, min(NEIGHBOURS, int(n_train) - 1)),
                                                                  weights="distance"))
    return VotingClassifier([("head", head(seed, C=ISSUES_C)), ("neighbours", neighbours)], voting="soft")


def find_issues(features, labels, folds=5, seed=0, filter_by=FILTERS[0]):
    """Out-of-fold probabilities and cleanlab's verdict for labelled feature rows. Returns a DataFrame.

    Columns ``given``, ``suggested`` (the most likely class out of fold), ``quality``
    (cleanlab's self-confidence label-quality score, 0 to 1, low = doubtful) and ``is_issue``
    (flagged by cleanlab's ``filter_by``, one of :data:`FILTERS`), one row per input row, in
    input order. ``attrs["agreement"]`` holds the share of images whose out-of-fold most likely
    class is the given one; below :data:`LOW_AGREEMENT` a warning says the flags are mostly hard
    images.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from .features import one_thread

    if filter_by not in FILTERS:
        raise SettingsError(f"filter_by must be one of {', '.join(FILTERS)}, got {filter_by!r}")
    labels = pd.Series([str(v) for v in labels])
    classes = check_folds(labels, folds)
    y = labels.map({c: i for i, c in enumerate(classes)}).to_numpy()
    cv = StratifiedKFold(int(folds), shuffle=True, random_state=seed)
    smallest_training_part = len(y) - math.ceil(len(y) / int(folds))
    model = issue_model(smallest_training_part, seed)
    with one_thread():
        probs = cross_val_predict(model, np.asarray(features, dtype=np.float64), y, cv=cv, method="predict_proba")
    issue = find_label_issues(y, probs, filter_by=filter_by)
    agreement = float(np.mean(probs.argmax(1) == y))
    if agreement < LOW_AGREEMENT:
        warnings.warn(f"the cross-validated model agrees with only {agreement:.0%} of the given labels, so it "
                      "has not learnt them well from these pictures: most flagged images will be hard images "
                      "rather than wrong labels", stacklevel=2)
    quality = get_label_quality_scores(y, probs, method="self_confidence")
    out = pd.DataFrame({"given": labels.to_numpy(), "suggested": [classes[i] for i in probs.argmax(1)],
                        "quality": np.round(quality, 6), "is_issue": issue})
    out.attrs["agreement"] = agreement
    return out


def label_issues(data, folds=5, label_column="label", sheet=None, seed=0, filter_by=FILTERS[0],
                 backbone=DEFAULT_BACKBONE, weights="imagenet", device="auto", progress=True, cache=None):
    """Rank the labelled images of ``data`` by how much their given label is to be doubted.

    ``data`` is a dataset folder or a labels CSV (see :func:`read_data`). Returns a DataFrame of
    :data:`COLUMNS`, flagged images first and lowest quality first; with an annotator
    ``sheet`` (the template ``suggest`` writes, filled in, or a long ``image,annotator,...``
    sheet), a ``votes`` column lists each image's coders' labels. Unreadable images come last
    with the reason in ``error``. ``cache``: SQLite file of image features reused between runs
    (and with ``dedup --method cnn``), see :func:`~imgasdata.labelling.features.embed`.
    """
    from .features import embed

    df = read_data(data, label_column).reset_index(drop=True)
    check_folds(df["label"], folds)  # before the features, which take a while
    feats, errors = embed(list(df["path"]), backbone, weights, device, progress, cache)
    ok = np.array([i not in errors for i in range(len(df))])
    found = find_issues(feats[ok], df.loc[ok, "label"], folds, seed, filter_by)
    agreement = found.attrs["agreement"]
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
    out.attrs["agreement"] = agreement
    return out
