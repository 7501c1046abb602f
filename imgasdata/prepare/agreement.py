"""How far annotators agree, per label, with maintained implementations.

Krippendorff's alpha (package ``krippendorff``) handles any number of
annotators and missing ratings, at the level of measurement that fits:
*nominal* for yes/no labels, *interval* for 0-10 scores. Next to it the kappa
that applies: Cohen's kappa (scikit-learn) for two annotators, quadratic-weighted
for scores; Fleiss' kappa (statsmodels) for three or more on yes/no labels, on
the images every annotator rated. Each figure comes with the number of images,
annotators and ratings behind it. Rough reading (Krippendorff): alpha >= 0.8 is
reliable, 0.667-0.8 allows tentative conclusions, below that the label needs a
clearer codebook.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError, SettingsError
from .labels import read_sheet

LEVELS = ("auto", "nominal", "ordinal", "interval")


def agreement(sheet, columns=None, level="auto"):
    """One row per label: ``label, level, krippendorff_alpha, kappa, kappa_type, percent_agreement,
    n_images, n_annotators, n_ratings``.

    ``level`` ``auto`` uses nominal for columns holding only 0/1 and interval
    otherwise. ``percent_agreement`` is the share of images on which every
    annotator who rated it gave the same value. Labels where no image has two
    ratings get NaN figures.
    """
    if level not in LEVELS:
        raise SettingsError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    import krippendorff
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    sheet, columns = read_sheet(sheet, columns)
    rows = []
    for c in columns:
        wide = sheet.pivot(index="annotator", columns="image", values=c)  # annotators x images
        wide = wide.loc[:, wide.notna().sum() >= 1]
        binary = set(np.unique(wide.to_numpy()[~np.isnan(wide.to_numpy())])) <= {0, 1}
        lev = ("nominal" if binary else "interval") if level == "auto" else level
        paired = wide.loc[:, wide.notna().sum() >= 2]
        row = {"label": c, "level": lev, "krippendorff_alpha": np.nan, "kappa": np.nan, "kappa_type": "",
               "percent_agreement": np.nan, "n_images": int(paired.shape[1]),
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
