"""Command-line subcommands of this chapter, added to the ``imgasdata`` parser by :mod:`imgasdata.cli`."""

from __future__ import annotations

from pathlib import Path

from ..errors import SettingsError


def _write(df, out):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)


def cmd_dedup(a):
    from .dedup import METHODS, copy_unique, find_cross_duplicates, find_duplicates

    record = METHODS[a.method]
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
        _write(df, a.out)
        leaks = int((df["match"] != "").sum())
        print(f"{leaks} of {len(df)} images in {a.across[1]} have a near-duplicate in {a.across[0]} "
              f"({a.method}, threshold {threshold}); {int((df['error'] != '').sum())} unreadable")
        print(f"table saved to {a.out}")
        return
    if not a.paths:
        raise SettingsError("Name at least one image file or folder, or use --across A B")
    df = find_duplicates(a.paths, a.method, threshold, cache=cache, backbone=a.backbone, workers=a.workers,
                         engine=a.engine, address=a.address)
    _write(df, a.out)
    groups = df[(df["group_size"] > 1) & (df["error"] == "")]["group"].nunique()
    print(f"{len(df)} files: {int(df['duplicate'].sum())} duplicate(s) in {groups} group(s), "
          f"{int((df['error'] != '').sum())} unreadable ({a.method}, threshold {threshold})")
    if a.copy_unique:
        written = copy_unique(df, a.copy_unique, a.link)
        print(f"{len(written)} unique images written to {a.copy_unique}")
    print(f"table saved to {a.out}")


def cmd_clean(a):
    from .clean import clean_images, keep_images, reason_counts

    df = clean_images(a.paths, min_kb=a.min_kb, min_side=a.min_side, max_aspect=a.max_aspect, min_std=a.min_std)
    _write(df, a.out)
    print(reason_counts(df).to_string())
    if a.keep_to:
        written = keep_images(df, a.keep_to, a.link)
        print(f"{len(written)} images written to {a.keep_to}")
    print(f"report saved to {a.out}")


def cmd_labels(a):
    from .labels import make_labels, rebase_paths

    df = make_labels(a.sheet, a.rule, a.columns, min_score=a.min_score, min_margin=a.min_margin, seed=a.seed)
    # paths in the sheet are relative to its folder; in the output, relative to the output's folder
    df["image"] = rebase_paths(df["image"], Path(a.sheet).parent, Path(a.out).parent)
    _write(df, a.out)
    if a.rule == "emotion":
        print(df.groupby(["emotion", "label"]).size().unstack(fill_value=0).to_string())
    elif a.rule == "mean":
        print(f"{len(df)} images; mean scores:")
        print(df.drop(columns=["image", "n_annotators"]).describe().loc[["mean", "min", "max"]].round(2).to_string())
    else:
        cols = [c for c in df.columns if c not in ("image", "n_annotators")]
        print(f"{len(df)} images; positives per label ({a.rule} rule):")
        print(df[cols].sum().to_string())
    print(f"labels saved to {a.out}")


def cmd_agreement(a):
    import pandas as pd

    from .agreement import agreement

    df = agreement(a.sheet, a.columns, level=a.level)
    if a.out:
        _write(df, a.out)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.round(3).to_string(index=False))


def cmd_split(a):
    from .split import split_dataset

    manifest, report = split_dataset(a.labels, a.out, label_column=a.label_column, image_column=a.image_column,
                                     val=a.val, test=a.test, groups=a.groups, link=a.link, balance=a.balance,
                                     seed=a.seed)
    print(report["table"].to_string())
    if a.groups:
        print(f"{report['moved']} image(s) moved so that no duplicate group spans two splits "
              f"({report['groups_across_splits']} groups across splits now)")
    if a.balance:
        print(f"{report['dropped_by_balance']} image(s) left out to balance the classes")
    print(f"dataset written to {a.out} (manifest: {Path(a.out) / 'manifest.csv'})")


def add_commands(sub):
    """Add this chapter's subcommands to ``sub`` (an argparse subparsers object)."""
    from ..jobs import add_engine_options
    from .dedup import METHODS

    p = sub.add_parser("dedup", help="find exact and near-duplicate images (one row per file)")
    p.add_argument("paths", nargs="*", help="image files and/or folders")
    p.add_argument("--out", required=True, help="CSV to write: path, group, kept, duplicate, distance, error ...")
    p.add_argument("--method", default="phash", choices=list(METHODS),
                   help="; ".join(f"{m.name}: {m.summary}" for m in METHODS.values()))
    p.add_argument("--threshold", type=float, default=None,
                   help="largest Hamming distance of 64 bits, or for cnn smallest cosine similarity (defaults: "
                        + ", ".join(f"{m.name} {m.default_threshold}" for m in METHODS.values()
                                    if m.name != "exact") + "; phash pairs confirmed by dHash within it + 4)")
    p.add_argument("--across", nargs=2, metavar=("A", "B"),
                   help="list the images of B (e.g. test) that have a near-duplicate in A (e.g. train)")
    p.add_argument("--copy-unique", metavar="DIR", help="copy the kept image of every group into DIR")
    p.add_argument("--link", default="copy", choices=["copy", "hardlink", "symlink"])
    p.add_argument("--cache", help="SQLite file of hashes reused between runs "
                                   "(default: .imgasdata-hashes.sqlite next to --out)")
    p.add_argument("--no-cache", action="store_true", help="hash every file again and keep no cache")
    p.add_argument("--backbone", default="efficientnet_lite0", help="backbone of --method cnn")
    add_engine_options(p, "the hashing", local_workers="2 for the hashes, whose work is decoding; 1 for cnn")
    p.set_defaults(func=_dedup_threshold(cmd_dedup))

    p = sub.add_parser("clean", help="report small, unreadable, extreme or blank images (one row per file)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--out", required=True, help="CSV report: path, kb, width, height, keep, reasons, error ...")
    p.add_argument("--min-kb", type=float, default=5.0, help="smallest file size in kB (the book's 5; 0: off)")
    p.add_argument("--min-side", type=int, default=0, help="smallest shorter side in pixels (0: off)")
    p.add_argument("--max-aspect", type=float, default=5.0, help="largest ratio of long to short side (0: off)")
    p.add_argument("--min-std", type=float, default=3.0, help="smallest grey-level spread, of 255 (0: off)")
    p.add_argument("--keep-to", metavar="DIR", help="copy the files kept into DIR")
    p.add_argument("--link", default="copy", choices=["copy", "hardlink", "symlink"])
    p.set_defaults(func=cmd_clean)

    p = sub.add_parser("labels", help="turn an annotator sheet (image,annotator,labels...) into one label per image")
    p.add_argument("sheet")
    p.add_argument("--out", required=True)
    p.add_argument("--rule", required=True, choices=["any", "majority", "mean", "emotion"])
    p.add_argument("--columns", nargs="+", help="label columns (default: every numeric column)")
    p.add_argument("--min-score", type=float, default=3.0, help="emotion rule: smallest mean score of a positive")
    p.add_argument("--min-margin", type=float, default=3.0,
                   help="emotion rule: how far the top emotion must beat the second")
    p.add_argument("--seed", type=int, default=0, help="emotion rule: draw of the negatives")
    p.set_defaults(func=cmd_labels)

    p = sub.add_parser("agreement", help="inter-annotator agreement per label (Krippendorff's alpha, kappa)")
    p.add_argument("sheet")
    p.add_argument("--columns", nargs="+")
    p.add_argument("--level", default="auto", choices=["auto", "nominal", "ordinal", "interval"])
    p.add_argument("--out", help="CSV with one row per label")
    p.set_defaults(func=cmd_agreement)

    p = sub.add_parser("split", help="write train/val/test/<class>/ folders from a labels CSV")
    p.add_argument("labels", help="CSV with an image column (paths relative to the CSV) and a label column")
    p.add_argument("--out", required=True, help="dataset folder to create")
    p.add_argument("--label-column", default="label")
    p.add_argument("--image-column", default="image")
    p.add_argument("--val", type=float, default=0.1)
    p.add_argument("--test", type=float, default=0.1)
    p.add_argument("--groups", help="duplicates CSV from 'imgasdata dedup': a group never spans two splits")
    p.add_argument("--link", default="copy", choices=["copy", "hardlink", "symlink"])
    p.add_argument("--balance", action="store_true", help="as many images of each class as the smallest has")
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
