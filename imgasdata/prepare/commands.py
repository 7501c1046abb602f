"""Command-line subcommands of this chapter, added to the ``imgasdata`` parser by :mod:`imgasdata.cli`."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import SettingsError
from ..outputs import refuse_inside, write_csv
from ..paths import relative_to_csv


def _excluded(reports, n):
    if reports:
        print(f"{n} image(s) left out by --exclude")


def cmd_dedup(a):
    from .dedup import METHODS, copy_unique, find_cross_duplicates, find_duplicates

    record = METHODS[a.method]
    inputs = list(a.across or a.paths)
    refuse_inside(a.out, inputs)  # before the work: an output among the inputs is refused at once
    if a.cache:
        refuse_inside(a.cache, inputs, "--cache")
    if a.cache and not record.takes_cache:
        raise SettingsError(f"The {a.method} method keeps no hash cache; leave out --cache")
    default_cache = Path(a.out).parent / ".imgasdata-hashes.sqlite"
    cache = None if a.no_cache or not record.takes_cache else (a.cache or default_cache)
    threshold = record.check_threshold(a.threshold)
    if a.across:
        if a.paths:
            raise SettingsError("Give either PATH... or --across A B, not both")
        df = find_cross_duplicates(a.across[0], a.across[1], a.method, threshold, cache=cache, backbone=a.backbone,
                                   workers=a.workers, engine=a.engine, address=a.address)
        write_csv(df.assign(path=relative_to_csv(df["path"], a.out), match=relative_to_csv(df["match"], a.out)), a.out)
        leaks = int((df["match"] != "").sum())
        print(f"{leaks} of {len(df)} images in {a.across[1]} have a near-duplicate in {a.across[0]} "
              f"({a.method}, threshold {threshold}); {int((df['error'] != '').sum())} unreadable")
        print(f"table saved to {a.out}")
        return
    if not a.paths:
        raise SettingsError("Name at least one image file or folder, or use --across A B")
    if a.copy_unique:  # before the work: an output inside the input is refused at once
        refuse_inside(a.copy_unique, a.paths, "--copy-unique", files_stand_for_folders=True)
    df = find_duplicates(a.paths, a.method, threshold, cache=cache, backbone=a.backbone, workers=a.workers,
                         engine=a.engine, address=a.address, keep=a.keep)
    write_csv(df.assign(path=relative_to_csv(df["path"], a.out), kept=relative_to_csv(df["kept"], a.out)), a.out)
    groups = df[(df["group_size"] > 1) & (df["error"] == "")]["group"].nunique()
    print(f"{len(df)} files: {int(df['duplicate'].sum())} duplicate(s) in {groups} group(s), "
          f"{int((df['error'] != '').sum())} unreadable ({a.method}, threshold {threshold}, keeping the "
          f"{a.keep} of each group)")
    if a.copy_unique:
        written = copy_unique(df, a.copy_unique, a.link, overwrite=a.overwrite, inputs=a.paths)
        print(f"{len(written)} unique images written to {a.copy_unique}")
    print(f"table saved to {a.out}")


def cmd_clean(a):
    from .clean import clean_images, keep_images, reason_counts

    refuse_inside(a.out, a.paths)
    if a.keep_to:
        refuse_inside(a.keep_to, a.paths, "--keep-to", files_stand_for_folders=True)
    df = clean_images(a.paths, min_kb=a.min_kb, min_side=a.min_side, max_aspect=a.max_aspect, min_std=a.min_std)
    write_csv(df.assign(path=relative_to_csv(df["path"], a.out)), a.out)
    print(reason_counts(df).to_string())
    if a.keep_to:
        written = keep_images(df, a.keep_to, a.link, overwrite=a.overwrite, inputs=a.paths)
        print(f"{len(written)} images written to {a.keep_to}")
    print(f"report saved to {a.out}")


def cmd_labels(a):
    from .labels import adjudication_list, make_labels, rebase_paths

    inputs = [a.sheet, *(a.exclude or [])]
    refuse_inside(a.out, inputs)
    if a.ties:
        refuse_inside(a.ties, inputs, "--ties")
    df = make_labels(a.sheet, a.rule, a.columns, coders=a.coders, positive=a.positive, min_ratings=a.min_ratings,
                     votes=a.votes, answers=bool(a.ties), min_score=a.min_score, min_margin=a.min_margin,
                     seed=a.seed, exclude=a.exclude)
    excluded = df.attrs.get("excluded", 0)
    # paths in the sheet are relative to its folder; in the output, relative to the output's folder
    df["path"] = rebase_paths(df["path"], Path(a.sheet).parent, Path(a.out).parent)
    if a.ties:
        todo = adjudication_list(df)
        todo["path"] = rebase_paths(todo["path"], Path(a.out).parent, Path(a.ties).parent)
        write_csv(todo, a.ties)
    write_csv(df.drop(columns=["answers"], errors="ignore"), a.out)
    _excluded(a.exclude, excluded)
    if a.rule == "emotion":
        print(df.groupby(["emotion", "label"]).size().unstack(fill_value=0).to_string())
    elif a.rule == "mean":
        print(f"{len(df)} images; mean scores:")
        print(df.drop(columns=["path", "n_ratings"]).describe().loc[["mean", "min", "max"]].round(2).to_string())
    else:
        empty = df["label"] == ""
        print(f"{len(df)} images, {a.rule} rule; images per label:")
        print(df.loc[~empty, "label"].value_counts().sort_index().to_string())
        print(f"{int(df['tie'].sum())} tie(s) and {int((empty & ~df['tie']).sum())} image(s) with fewer than "
              f"{a.min_ratings} rating(s) have an empty label"
              + (f"; listed for adjudication in {a.ties}" if a.ties else " (--ties FILE lists them)"))
    print(f"labels saved to {a.out}")


def cmd_agreement(a):
    import pandas as pd

    from .agreement import agreement

    if a.out:
        refuse_inside(a.out, [a.sheet])
    df = agreement(a.sheet, a.columns, level=a.level, coders=a.coders)
    if a.out:
        write_csv(df, a.out)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.round(3).to_string(index=False))
    for row in df.itertuples():
        print(f"{row.label}: {row.level} level ({row.level_rule})")


def cmd_split(a):
    from .split import split_dataset

    manifest, report = split_dataset(a.labels, a.out, label_column=a.label_column, image_column=a.image_column,
                                     val=a.val, test=a.test, groups=a.groups, link=a.link, balance=a.balance,
                                     seed=a.seed, overwrite=a.overwrite, exclude=a.exclude,
                                     drop_unlabelled=a.drop_unlabelled)
    print(report["table"].to_string())
    _excluded(a.exclude, report["excluded"])
    if report["unlabelled"]:
        print(f"{report['unlabelled']} image(s) without a label left out (--drop-unlabelled)")
    share = " / ".join(f"{100 * report['fractions'][s]:.1f}" for s in ("train", "val", "test"))
    asked = " / ".join(f"{100 * report['asked'][s]:.0f}" for s in ("train", "val", "test"))
    print(f"train / val / test: {share} % of the images (asked {asked} %; off by {report['off_by']:.1f} points"
          + (f", the largest group holding {report['largest_group']} images)" if a.groups else ")"))
    if a.groups:
        print(f"{report['grouped_images']} image(s) in duplicate groups, each group in one split "
              f"({report['groups_across_splits']} groups across splits)")
        if report["off_by"] > 5:
            print("the groups are too large to reach the fractions asked more closely")
    if a.balance:
        print(f"{report['dropped_by_balance']} image(s) left out to balance the classes")
    print(f"dataset written to {a.out} (manifest: {Path(a.out) / 'manifest.csv'}, readable by imgasdata train)")


def add_commands(sub):
    """Add this chapter's subcommands to ``sub`` (an argparse subparsers object)."""
    from ..jobs import add_cache_option, add_engine_options
    from .dedup import KEEP_RULES, METHODS
    from .place import LINKS

    exclude_help = ("report(s) of imgasdata check, clean or dedup: leave out the files they mark as unreadable, "
                    "not kept or duplicates")

    p = sub.add_parser("dedup", help="find exact and near-duplicate images (one row per file)")
    p.add_argument("paths", nargs="*", help="image files and/or folders")
    p.add_argument("--out", required=True, help="CSV to write: path, group, kept, duplicate, distance, error ... "
                                                "(paths relative to the CSV's folder)")
    p.add_argument("--method", default="phash", choices=list(METHODS),
                   help="; ".join(f"{m.name}: {m.summary}" for m in METHODS.values()))
    p.add_argument("--threshold", type=float, default=None,
                   help="largest Hamming distance of 64 bits, or for cnn smallest cosine similarity (defaults: "
                        + ", ".join(f"{m.name} {m.default_threshold}" for m in METHODS.values()
                                    if m.name != "exact") + "; phash pairs confirmed by dHash within it + 4)")
    p.add_argument("--keep", default="largest", choices=KEEP_RULES,
                   help="which image of a group to keep: largest (most pixels, then bytes; default), newest "
                        "(modified last) or first (in sorted path order, as the book)")
    p.add_argument("--across", nargs=2, metavar=("A", "B"),
                   help="list the images of B (e.g. test) that have a near-duplicate in A (e.g. train)")
    p.add_argument("--copy-unique", metavar="DIR",
                   help="copy the kept image of every group into DIR (outside the input folders)")
    p.add_argument("--link", default="copy", choices=LINKS)
    p.add_argument("--overwrite", action="store_true", help="replace other files of the same name in DIR")
    add_cache_option(p, default=".imgasdata-hashes.sqlite next to --out")
    p.add_argument("--no-cache", action="store_true", help="hash every file again and keep no cache")
    p.add_argument("--backbone", default="efficientnet_lite0", help="backbone of --method cnn")
    add_engine_options(p, "the hashing", local_workers="2 for the hashes, whose work is decoding; 1 for cnn")
    p.set_defaults(func=_dedup_threshold(cmd_dedup))

    p = sub.add_parser("clean", help="report small, unreadable, extreme or blank images (one row per file)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--out", required=True, help="CSV report: path, kb, width, height, keep, reasons, error ...")
    p.add_argument("--min-kb", type=float, default=0.0,
                   help="smallest file size in kB (default 0: off). The book used 5 for Twitter JPEGs of 2019, "
                        "where smaller files were icons and broken downloads; today a 320-px WebP photo weighs "
                        "3-5 kB, so prefer --min-side")
    p.add_argument("--min-side", type=int, default=64, help="smallest shorter side in pixels (default 64; 0: off)")
    p.add_argument("--max-aspect", type=float, default=5.0, help="largest ratio of long to short side (0: off)")
    p.add_argument("--min-std", type=float, default=3.0, help="smallest grey-level spread, of 255 (0: off)")
    p.add_argument("--keep-to", metavar="DIR",
                   help="copy the files kept into DIR (outside the input folders; --exclude REPORT on "
                        "labels/split/train applies the report without copying)")
    p.add_argument("--link", default="copy", choices=LINKS)
    p.add_argument("--overwrite", action="store_true", help="replace other files of the same name in DIR")
    p.set_defaults(func=cmd_clean)

    p = sub.add_parser("labels", help="turn an annotator sheet (long: image,annotator,labels...; wide: image plus "
                                      "one column per coder) into a labels table path,label,n_ratings,tie")
    p.add_argument("sheet")
    p.add_argument("--out", required=True, help="labels CSV: path, label, n_ratings, tie")
    p.add_argument("--rule", default="majority", choices=["majority", "any", "mean", "emotion"],
                   help="majority (default; the most common answer, ties left empty), any (yes if any coder "
                        "said yes), mean (mean scores), emotion (the book's chapter 7.3)")
    p.add_argument("--columns", nargs="+", help="long sheet: the label column(s) (majority/any: one)")
    p.add_argument("--coders", nargs="+", help="wide sheet: the coder columns (default: every column but image)")
    p.add_argument("--positive", metavar="NAME",
                   help="a yes/no label named NAME: the category NAME (or the 1s) against 'not NAME'")
    p.add_argument("--min-ratings", type=int, default=1, help="fewer ratings than this: an empty label")
    p.add_argument("--votes", action="store_true", help="add one votes_<class> column per class")
    p.add_argument("--ties", metavar="FILE", help="write the images left without a label (ties, too few ratings) "
                                                  "with their answers to FILE, for adjudication")
    p.add_argument("--exclude", nargs="+", metavar="REPORT", help=exclude_help)
    p.add_argument("--min-score", type=float, default=3.0, help="emotion rule: smallest mean score of a positive")
    p.add_argument("--min-margin", type=float, default=3.0,
                   help="emotion rule: how far the top emotion must beat the second")
    p.add_argument("--seed", type=int, default=0, help="emotion rule: draw of the negatives")
    p.set_defaults(func=cmd_labels)

    p = sub.add_parser("agreement", help="inter-annotator agreement per label (Krippendorff's alpha, kappa)")
    p.add_argument("sheet", help="long (image,annotator,labels...) or wide (image plus one column per coder) sheet")
    p.add_argument("--columns", nargs="+", help="long sheet: the label columns (default: all)")
    p.add_argument("--coders", nargs="+", help="wide sheet: the coder columns (default: every column but image)")
    p.add_argument("--level", default="auto", choices=["auto", "nominal", "ordinal", "interval"],
                   help="auto: text, 0/1 and whole-number codes with at most 5 values are nominal, other "
                        "numbers interval")
    p.add_argument("--out", help="CSV with one row per label")
    p.set_defaults(func=cmd_agreement)

    p = sub.add_parser("split", help="write train/val/test/<class>/ folders from a labels CSV (path,label)")
    p.add_argument("labels", help="CSV of path,label (paths relative to the CSV), e.g. the output of labels")
    p.add_argument("--out", required=True, help="dataset folder to create (new or empty)")
    p.add_argument("--label-column", default="label")
    p.add_argument("--image-column", default=None, help="default: path, or image")
    p.add_argument("--val", type=float, default=0.1)
    p.add_argument("--test", type=float, default=0.1)
    p.add_argument("--groups", help="duplicates CSV from 'imgasdata dedup': linked images never span two splits")
    p.add_argument("--exclude", nargs="+", metavar="REPORT", help=exclude_help)
    p.add_argument("--drop-unlabelled", action="store_true",
                   help="leave out rows with an empty label (default: refuse them, naming the rows)")
    p.add_argument("--link", default="copy", choices=LINKS)
    p.add_argument("--balance", action="store_true", help="as many images of each class as the smallest has")
    p.add_argument("--overwrite", action="store_true",
                   help="--out holds an earlier split: remove the files its manifest lists first")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_split)


def _dedup_threshold(func):
    """The method's record checks --threshold (whole bits for a hash; argparse reads floats for cnn's cosine)."""
    def run(a):
        from .dedup import METHODS

        if a.threshold is not None:
            a.threshold = METHODS[a.method].check_threshold(a.threshold)
        return func(a)
    return run
