"""Command-line subcommands of this chapter (suggest, label-issues, estimate), added to the
``imgasdata`` parser by :mod:`imgasdata.cli`."""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager

from ..backbones import DEFAULT_BACKBONE


@contextmanager
def _warnings_as_sentences(command):
    """Print the library's warnings as one line each, not with a file name and line number."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"imgasdata {command}: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def cmd_suggest(a):
    from ..outputs import refuse_inside, write_csv
    from .suggest import annotator_sheet, sheet_path, suggest

    sheet_out = sheet_path(a.out)
    inputs = list(a.pool) + ([a.labels] if a.labels else [])
    refuse_inside(a.out, inputs)
    refuse_inside(sheet_out, inputs)
    if a.cache:
        refuse_inside(a.cache, inputs, "--cache")
    with _warnings_as_sentences("suggest"):
        df = suggest(a.pool, a.labels, n=a.n, strategy=a.strategy, label_column=a.label_column, seed=a.seed,
                     backbone=a.backbone, device=a.device, cache=a.cache)
    ranked = df[df["rank"].notna()]
    write_csv(df, a.out)
    write_csv(annotator_sheet(ranked["path"], sheet_out, a.coders), sheet_out)
    used = ranked["strategy"].iloc[0]
    note = " (cold start: too few labels per class to fit a model)" if used != a.strategy else ""
    print(f"{len(ranked)} images to label next, chosen by {used}{note}; "
          f"{int((df['error'] != '').sum())} unreadable")
    print(f"ranking saved to {a.out}; annotator sheet ({a.coders} coder columns) saved to {sheet_out}")


def cmd_label_issues(a):
    from ..outputs import refuse_inside, write_csv
    from .label_issues import label_issues

    inputs = [a.data] + ([a.sheet] if a.sheet else [])
    refuse_inside(a.out, inputs)
    if a.cache:
        refuse_inside(a.cache, inputs, "--cache")
    with _warnings_as_sentences("label-issues"):
        df = label_issues(a.data, folds=a.folds, label_column=a.label_column, sheet=a.sheet, seed=a.seed,
                          filter_by=a.filter_by, backbone=a.backbone, device=a.device, cache=a.cache)
    write_csv(df, a.out)
    flagged = df[df["is_issue"]]
    print(f"{len(flagged)} of {len(df)} labels look doubtful ({a.folds}-fold cross-validation, {a.filter_by}; "
          f"the out-of-fold model agrees with {df.attrs['agreement']:.0%} of the labels); "
          f"{int((df['error'] != '').sum())} unreadable")
    if len(flagged):
        cols = ["path", "given", "suggested", "quality"] + (["votes"] if "votes" in df else [])
        print(flagged[cols].head(10).to_string(index=False))
    print(f"table saved to {a.out}")


def cmd_estimate(a):
    import pandas as pd

    from ..outputs import refuse_inside, write_csv
    from .estimate import RANDOM_SAMPLE, estimate

    refuse_inside(a.out, [a.predictions, a.gold])
    with _warnings_as_sentences("estimate"):
        df = estimate(a.predictions, a.gold, positive=a.positive, by=a.by, level=a.level,
                      label_column=a.label_column, prediction_column=a.prediction_column, seed=a.seed)
    write_csv(df, a.out)
    with pd.option_context("display.width", 200, "display.max_rows", 60):
        print(df.round(3).to_string(index=False))
    print(RANDOM_SAMPLE)
    print(f"table saved to {a.out}")


def add_commands(sub):
    """Add this chapter's subcommands to ``sub`` (an argparse subparsers object)."""
    from ..jobs import add_cache_option
    from .label_issues import FILTERS
    from .suggest import STRATEGIES

    p = sub.add_parser("suggest", help="rank unlabelled images by what labelling them next would teach")
    p.add_argument("pool", nargs="+", help="image files and/or folders to choose from")
    p.add_argument("--labels", help="CSV of the images labelled so far (path or image, and a label column); "
                                    "leave out for a cold start")
    p.add_argument("--n", type=int, default=20, help="how many images to suggest (up to the pool: a full ranking)")
    p.add_argument("--out", required=True, help="CSV to write: path, rank, strategy, predicted, probability, "
                                                "score, error; an annotator sheet NAME_sheet.csv goes beside it")
    p.add_argument("--label-column", default="label")
    p.add_argument("--strategy", default="hybrid", choices=list(STRATEGIES),
                   help="; ".join(f"{s.name}: {s.help}" for s in STRATEGIES.values()))
    p.add_argument("--coders", type=int, default=3, help="coder columns in the annotator sheet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help="pretrained CNN whose features are used")
    p.add_argument("--device", default="auto")
    add_cache_option(p)
    p.set_defaults(func=cmd_suggest)

    p = sub.add_parser("label-issues", help="rank labelled images by how doubtful their label is (cleanlab)")
    p.add_argument("data", help="dataset folder (any layout train accepts) or labels CSV")
    p.add_argument("--out", required=True, help="CSV to write: path, given, suggested, quality, is_issue, error")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds for out-of-fold probabilities")
    p.add_argument("--label-column", default="label", help="label column of a labels CSV or annotator sheet")
    p.add_argument("--sheet", help="annotator sheet: show the coders' votes beside each image")
    p.add_argument("--filter-by", default=FILTERS[0], choices=FILTERS,
                   help="cleanlab's rule for flagging (default: fewest false alarms; prune_by_noise_rate "
                        "finds a few more errors with more false alarms)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help="pretrained CNN whose features are used")
    p.add_argument("--device", default="auto")
    add_cache_option(p)
    p.set_defaults(func=cmd_label_issues)

    p = sub.add_parser("estimate", help="share of each class: classify-and-count, corrected and PPI, "
                                        "with intervals from a random gold sample")
    p.add_argument("predictions", help="CSV from imgasdata predict (path, label, ..., error)")
    p.add_argument("--gold", required=True, help="CSV of hand labels of a random sample: path and a label column")
    p.add_argument("--out", required=True, help="CSV to write: group, class, method, estimate, lower, upper, "
                                                "n_predicted, n_gold")
    p.add_argument("--positive", help="report only this class")
    p.add_argument("--by", help="a column of the predictions CSV to estimate per group (e.g. date, account)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals")
    p.add_argument("--label-column", default="label", help="label column of the gold CSV")
    p.add_argument("--prediction-column", default="label", help="predicted class column of the predictions CSV")
    p.add_argument("--seed", type=int, default=0, help="bootstrap draws of the corrected interval")
    p.set_defaults(func=cmd_estimate)
