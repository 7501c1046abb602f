"""Command-line subcommands of this chapter, added to the ``imgasdata`` parser by :mod:`imgasdata.cli`.

* ``imgasdata autotag rekognition labels|celebrities|faces|text|moderation PATH... --out DIR``
* ``imgasdata autotag local imagenet|faces|ocr PATH... --out DIR [--engine ray --address ADDR --workers N]``
* ``imgasdata validate-tags TAGS.csv GOLD.csv --concept NAME --labels LABEL...``
"""

from __future__ import annotations

import json
from pathlib import Path


def cmd_rekognition(a):
    import pandas as pd

    from .rekognition import check_prices, dry_run, read_prices, tag_images

    prices = None
    if a.prices:
        prices = read_prices(a.prices)
        check_prices(prices, a.operation, source=f"the price file {a.prices}")
    if a.dry_run:
        summary = dry_run(a.operation, a.paths, a.out, a.min_confidence, a.max_labels, a.max_calls, prices,
                          region=a.region, endpoint_url=a.endpoint_url)
        for k, v in summary.items():
            print(f"{k:>20}: {v}")
        return
    table = tag_images(a.operation, a.paths, a.out, region=a.region, min_confidence=a.min_confidence,
                       max_labels=a.max_labels, max_calls=a.max_calls, concurrency=a.concurrency, rate=a.rate,
                       retry_mode=a.retry_mode, max_attempts=a.max_attempts, book=a.book,
                       endpoint_url=a.endpoint_url, stop_after_errors=a.stop_after_errors,
                       excel_safe=a.excel_safe)
    errors = table.loc[table["error"] != "", "image"].nunique()
    images = table["image"].nunique()
    print(f"{images} images, {table.attrs['calls']} sent in this run, {errors} without an answer "
          f"(see {Path(a.out) / 'errors.csv'})")
    ok = table[(table["error"] == "") & (table["label"] != "")]
    if len(ok):
        with pd.option_context("display.width", 120):
            print(ok["label"].value_counts().head(15).to_string())
    print(f"tidy table: {Path(a.out) / (a.operation + '.csv')}")


def cmd_local(a):
    from ..outputs import refuse_inside
    from .local import TAGGERS

    refuse_inside(a.out, [*a.paths, *([a.reference_faces] if a.reference_faces else [])])
    out = Path(a.out)
    csv_path = out / f"{a.tagger}.csv"
    tagger = TAGGERS[a.tagger]
    table = tagger.tag(a.paths, **tagger.arguments(a), engine=a.engine, address=a.address, workers=a.workers,
                       out_csv=csv_path, resume=not a.no_resume, retry_errors=a.retry_errors)
    if table.attrs["skipped"]:
        print(f"resumed: {table.attrs['skipped']} image(s) already in {csv_path} were not tagged again")
    failed = table.loc[table["error"] != "", "image"].nunique()
    print(f"{table['image'].nunique()} images, {len(table)} rows, {failed} unreadable; written to {csv_path}")
    found = table.loc[table["label"] != "", "label"]
    if len(found):
        print(found.value_counts().head(15).to_string())


def cmd_validate(a):
    from ..outputs import refuse_inside, write_atomically
    from .validate import confusion_table, report_table, validate

    if a.out:
        refuse_inside(a.out, [a.tags, a.gold])
    report = validate(a.tags, a.gold, a.concept, a.labels, a.min_confidence, n_boot=a.n_boot, level=a.level,
                      seed=a.seed, match=a.match)
    print(f"{report['n']} gold images ({report['positives']} {a.concept}); tagged means any of "
          f"{', '.join(report['labels'])} at confidence >= {report['min_confidence']:g}")
    print(confusion_table(report).to_string())
    table = report_table(report)
    pct = round(report["interval_level"] * 100)
    print(f"\n{'metric':>10}  value   {pct}% interval")
    for r in table.itertuples():
        draws = f", {report['n_boot']} draws" if r.method != "Wilson score" else ""
        print(f"{r.metric:>10}  {r.value:6.1%}  [{r.low:.1%}, {r.high:.1%}]  ({r.method}{draws})")
    if report["not_in_tags"]:
        print(f"{report['not_in_tags']} gold image(s) are not in the tags file and count as not tagged")
    if report["tag_errors"]:
        print(f"{report['tag_errors']} gold image(s) have a tagging error and count as not tagged")
    if report["not_in_gold"]:
        print(f"{report['not_in_gold']} tagged image(s) are not in the gold file (left out), e.g. "
              f"{', '.join(report['not_in_gold_examples'][:3])}")
    if a.out:
        write_atomically(a.out, json.dumps(report, indent=2) + "\n")
        print(f"report written to {a.out}")


def add_commands(sub):
    """Add this chapter's subcommands to ``sub`` (an argparse subparsers object)."""
    from ..backbones import DEFAULT_BACKBONE
    from ..jobs import add_device_option, add_engine_options, add_resume_options
    from .local import TAGGERS
    from .rekognition import OPERATIONS, PRICES_AS_OF

    p = sub.add_parser("autotag", help="tag images with AWS Rekognition or offline open-source taggers")
    which = p.add_subparsers(dest="service", required=True)

    r = which.add_parser("rekognition", help="AWS Rekognition (credentials from boto3's standard chain only)",
                         description="Send images to AWS Rekognition once: answers are stored as they arrive "
                                     "in OUT/results.sqlite, and re-running the same command resumes without "
                                     "paying again for answered images; Ctrl-C stops sending at once and a re-run "
                                     "continues. Start with --dry-run.")
    r.add_argument("operation", choices=list(OPERATIONS), metavar="OPERATION",
                   help="; ".join(f"{o.name}: {o.help} ({o.api})" for o in OPERATIONS.values()))
    r.add_argument("paths", nargs="+", help="image files and/or folders")
    r.add_argument("--out", required=True, help="folder for <operation>.csv, errors.csv, raw/ and results.sqlite")
    r.add_argument("--dry-run", action="store_true", help="count images, answered ones and the cost; call nothing")
    r.add_argument("--max-calls", type=int, default=None, help="send at most this many images in this run")
    r.add_argument("--region", default=None, help="AWS region (default: your profile's or AWS_DEFAULT_REGION)")
    r.add_argument("--min-confidence", type=float, default=None, help="0-100; labels, moderation and text")
    r.add_argument("--max-labels", type=int, default=None, help="labels only: at most this many per image")
    r.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    r.add_argument("--rate", type=float, default=None, help="at most this many calls per second (your TPS quota)")
    r.add_argument("--retry-mode", default="standard", choices=["standard", "adaptive"],
                   help="botocore retry mode for throttling and transient errors")
    r.add_argument("--max-attempts", type=int, default=5, help="attempts per image, the first included")
    r.add_argument("--prices", default=None,
                   help='JSON price table in US$ per 1,000 images, e.g. {"labels": [[1000000, 1.0], [null, 0.8]]} '
                        f"(default: the published US East table as of {PRICES_AS_OF}; check it)")
    r.add_argument("--endpoint-url", default=None,
                   help="another endpoint (a local test server); default: AWS's, or AWS_ENDPOINT_URL")
    r.add_argument("--stop-after-errors", type=int, default=10,
                   help="stop after this many identical errors in a row that are not about an image")
    r.add_argument("--excel-safe", action="store_true",
                   help="prefix text cells starting with = + - @ with ' so spreadsheets do not run them as "
                        "formulas (default: values exactly as found, for pandas and R)")
    r.add_argument("--book", action="store_true",
                   help="also write <operation>_book.csv in the book scripts' columns ("
                        + ", ".join(o.name for o in OPERATIONS.values() if o.book) + ")")
    r.set_defaults(func=cmd_rekognition)

    loc = which.add_parser("local", help="offline taggers: " + "; ".join(f"{t.name}: {t.summary}"
                                                                       for t in TAGGERS.values()),
                           description="Tag images on this computer (or a Ray cluster): rows are appended to "
                                       "OUT/<tagger>.csv as each batch is done, and re-running the same command "
                                       "resumes, skipping the images already there - as autotag rekognition and "
                                       "grid do, because a long job (OCR: about an image a second) must not be "
                                       "lost to an interruption. Resuming a file written with other options "
                                       "is refused: after changing them, use --no-resume or another --out.")
    loc.add_argument("tagger", choices=list(TAGGERS),
                     help="; ".join(f"{t.name}: {t.summary}" for t in TAGGERS.values()))
    loc.add_argument("paths", nargs="+", help="image files and/or folders")
    loc.add_argument("--out", required=True, help="folder for <tagger>.csv (resumed if it is there)")
    add_resume_options(loc, default_resume=True)
    loc.add_argument("--reference-faces", default=None,
                     help="faces: folder of reference photos, one sub-folder (or file) per person")
    loc.add_argument("--tolerance", type=float, default=0.6, help="faces: largest encoding distance for a match")
    loc.add_argument("--k", type=int, default=5, help="imagenet: classes per image")
    loc.add_argument("--backbone", default=DEFAULT_BACKBONE, help="imagenet: the pretrained CNN")
    loc.add_argument("--min-confidence", type=float, default=None, help="0-100: drop weaker labels")
    add_device_option(loc)
    add_engine_options(loc, "the tagger")
    loc.set_defaults(func=cmd_local)

    v = sub.add_parser("validate-tags", help="compare a tagger's labels with gold labels (confusion matrix, "
                                             "accuracy, precision, recall, F1 with 95 %% intervals)")
    v.add_argument("tags", help="CSV with at least image,label,confidence (the tidy output of autotag)")
    v.add_argument("gold", help="CSV with image,<concept> holding 0/1")
    v.add_argument("--concept", required=True, help="the gold column, e.g. protest")
    v.add_argument("--labels", nargs="+", required=True, help="tagger label(s) that stand for the concept")
    v.add_argument("--min-confidence", type=float, default=0.0, help="0-100: weaker labels do not count")
    v.add_argument("--out", default=None, help="write the report as JSON here")
    v.add_argument("--n-boot", type=int, default=2000, help="draws of the bootstrap behind F1's interval")
    v.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--match", default="auto", choices=["auto", "path", "name"],
                   help="match images by full path or by file name (auto: whichever matches more)")
    v.set_defaults(func=cmd_validate)
