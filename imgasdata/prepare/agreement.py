"""How far annotators agree, per label, with maintained implementations.

Krippendorff's alpha (package ``krippendorff``) handles any number of
annotators and missing ratings, at the level of measurement that fits. Next to
it the kappa that applies: Cohen's kappa (scikit-learn) for two annotators,
quadratic-weighted for scores; Fleiss' kappa (statsmodels) for three or more on
categories, on the images every annotator rated. Each figure comes with the
number of images, annotators and ratings behind it. Rough reading
(Krippendorff): alpha >= 0.8 is reliable, 0.667-0.8 allows tentative
conclusions, below that the label needs a clearer codebook.

The level, unless given: text categories and 0/1 answers are *nominal*; whole
numbers with at most :data:`MAX_CODES` distinct values are category codes
(``0``-``4`` for five kinds of picture), also nominal; other numbers (0-10
scores) are *interval*. The table says which level it used and why. Long and
wide sheets are read by :func:`imgasdata.prepare.labels.read_sheet`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError, SettingsError
from .labels import read_sheet

LEVELS = ("auto", "nominal", "ordinal", "interval")

#: Whole numbers with at most this many distinct values are read as category codes (nominal).
#: A coding scheme rarely has more kinds; a 0-10 score scale in use shows more values.
MAX_CODES = 5


def auto_level(values):
    """``(level, why)`` for the ratings ``values`` (a Series, missing ratings dropped)."""
    nums = pd.to_numeric(values, errors="coerce")
    if nums.isna().any():
        return "nominal", "text categories"
    distinct = set(nums.unique())
    if distinct <= {0, 1}:
        return "nominal", "yes/no (0/1)"
    if all(float(v).is_integer() for v in distinct) and len(distinct) <= MAX_CODES:
        return "nominal", f"{len(distinct)} whole-number codes (<= {MAX_CODES}: categories)"
    return "interval", f"numbers ({len(distinct)} distinct values)"


def agreement(sheet, columns=None, level="auto", coders=None):
    """One row per label: ``label, level, level_rule, krippendorff_alpha, kappa, kappa_type,
    percent_agreement, n_images, n_annotators, n_ratings``.

    ``sheet``: a long or wide annotator sheet (CSV path or DataFrame; see
    :func:`~imgasdata.prepare.labels.read_sheet`; ``columns`` and ``coders`` as
    there). ``level`` ``auto`` picks it from the data (module doc); ``level_rule``
    says why (or ``as asked``). ``percent_agreement`` is the share of images on
    which every annotator who rated it gave the same value. ``n_images`` counts
    the images with two ratings or more. Labels where no image has two ratings
    get NaN figures.
    """
    if level not in LEVELS:
        raise SettingsError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    import krippendorff
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    sheet, columns = read_sheet(sheet, columns, coders)
    rows = []
    for c in columns:
        given = sheet.loc[sheet[c].notna(), ["image", "annotator", c]]
        if given.empty:
            raise DataError(f"Column {c!r} holds no ratings")
        lev, why = auto_level(given[c]) if level == "auto" else (level, "as asked")
        is_text = pd.to_numeric(given[c], errors="coerce").isna().any()
        if is_text and lev != "nominal":
            raise SettingsError(f"Column {c!r} holds text categories; only --level nominal fits them")
        if lev == "nominal":
            # category codes: numbers for krippendorff, whole numbers for Fleiss' table
            given = given.assign(**{c: pd.factorize(given[c].astype(str), sort=True)[0]})
        wide = given.pivot(index="annotator", columns="image", values=c).astype(float)  # annotators x images
        paired = wide.loc[:, wide.notna().sum() >= 2]
        row = {"label": c, "level": lev, "level_rule": why, "krippendorff_alpha": np.nan, "kappa": np.nan,
               "kappa_type": "", "percent_agreement": np.nan, "n_images": int(paired.shape[1]),
               "n_annotators": int(wide.shape[0]), "n_ratings": int(wide.notna().sum().sum())}
        if paired.shape[1] == 0:
            rows.append(row)
            continue
        data = paired.to_numpy(dtype=float)
        if len(np.unique(data[~np.isnan(data)])) > 1:
            row["krippendorff_alpha"] = float(krippendorff.alpha(reliability_data=data, level_of_measurement=lev))
        row["percent_agreement"] = float(np.mean([len(set(col[~np.isnan(col)])) == 1 for col in data.T]))
        complete = data[:, ~np.isnan(data).any(axis=0)]
        if wide.shape[0] == 2 and complete.shape[1]:
            weights = None if lev == "nominal" else "quadratic"
            row["kappa"] = float(cohen_kappa_score(complete[0], complete[1], weights=weights))
            row["kappa_type"] = "cohen" if weights is None else "cohen (quadratic weights)"
        elif wide.shape[0] > 2 and lev == "nominal" and complete.shape[1]:
            table, _ = aggregate_raters(complete.T.astype(int))
            row["kappa"] = float(fleiss_kappa(table, method="fleiss"))
            row["kappa_type"] = f"fleiss ({complete.shape[1]} images rated by all)"
        rows.append(row)
    if not rows:
        raise DataError("No label columns to compare")
    return pd.DataFrame(rows)
