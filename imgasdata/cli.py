"""imgasdata: images as data for social science research, one command per step of the work.

Commands: train, grid, evaluate, errors, predict, check, sample-data, notebooks, and the
chapter commands (preparing: dedup, clean, labels, agreement, split; autotagging:
autotag, validate-tags; labelling well: suggest, label-issues, estimate), declared
next to their code.

Mistakes a user can make (a missing folder, one class only, an unknown
backbone, a refused weights file) raise :class:`~imgasdata.errors.UserError` and
end with one clear sentence on stderr and exit status 2; ``--debug`` shows the
full traceback instead. Anything else is a bug or a resource problem (out of
memory, a crashed library) and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from .errors import UserError


def _train_options(p, grid=False):
    """Options shared by ``train`` and ``grid``, one per setting of :class:`~imgasdata.settings.TrainSettings`."""
    from .settings import add_arguments

    p.add_argument("data", help="dataset folder (train/val/test or one folder per class) or CSV of path,label")
    p.add_argument("--out", required=True, help="folder to write the run (or the grid's runs) into")
    p.add_argument("--allow-pickle-weights", action="store_true",
                   help="let --weights be a .pt/.pth file (a pickle: only for files you trust; "
                        "safetensors needs no permission)")
    add_arguments(p, grid=grid)


def cmd_train(a):
    from .metrics import format_summary
    from .settings import from_arguments
    from .train import train

    settings = from_arguments(a)
    data = a.data
    if a.exclude:  # leave out what a check/clean/dedup report marks
        from .datasets import load_dataset

        data = load_dataset(a.data, split=settings["split"], seed=settings["seed"], exclude=a.exclude)
        print(f"{data.attrs['excluded']} image(s) left out by --exclude")
    run = train(data, a.out, overwrite=a.overwrite, allow_pt=a.allow_pickle_weights, **settings)
    print(f"best epoch {run.best_epoch} of {run.epochs_run} ({run.settings.mode} mode)")
    print(format_summary({k: v for k, v in run.metrics.items() if v}))
    print(f"run saved to {run.run_dir}")


def cmd_grid(a):
    import pandas as pd

    from .grid import RESULTS, grid
    from .settings import from_arguments, searched

    fixed = from_arguments(a)
    param_grid = {name: fixed.pop(name) for name in searched()}
    results = grid(a.data, a.out, param_grid, resume=not a.no_resume, allow_pt=a.allow_pickle_weights, **fixed)
    shown = results.drop(columns=["run"]).assign(chosen=results["chosen"].map({True: "<- chosen", False: ""}))
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print(shown.to_string(index=False, na_rep=""))
    print("chosen on the validation images; test metrics are shown for that run only")
    print(f"table saved to {Path(a.out) / RESULTS}")


def cmd_evaluate(a):
    from .metrics import format_summary
    from .outputs import refuse_inside, write_atomically
    from .predict import evaluate
    from .runs import run_files

    if a.out:  # beside the run's files is fine (README: runs/x/test_again.json), over one of them is not
        refuse_inside(a.out, [a.data, *run_files(a.run)])
    metrics, preds = evaluate(a.run, a.data, device=a.device, batch_size=a.batch_size)
    print(format_summary({Path(a.data).name or "images": metrics}))
    if a.out:
        write_atomically(a.out, json.dumps(metrics, indent=2) + "\n")
        write_atomically(Path(a.out).with_suffix(".predictions.csv"), preds.to_csv(index=False))
        print(f"metrics written to {a.out}, predictions to {Path(a.out).with_suffix('.predictions.csv')}")
    failed = (preds["error"] != "").sum()
    if failed:
        print(f"{failed} file(s) could not be read and were left out; see the error column", file=sys.stderr)


def cmd_errors(a):
    from .metrics import format_summary
    from .mistakes import GALLERY, GRADCAM, write_mistakes

    metrics, table, written = write_mistakes(a.run, a.images, a.out, n=a.n, device=a.device,
                                             batch_size=a.batch_size)
    print(format_summary({Path(a.images).name or "images": metrics}))
    wrong = int((table["error"] == "").sum())
    print(f"{wrong} mistake(s) among {metrics['n']} images, most confident first in {Path(a.out) / 'errors.csv'}")
    print(f"gallery: {Path(a.out) / GALLERY}; Grad-CAM of the {min(a.n, wrong)} most confident mistake(s) in "
          f"{Path(a.out) / GRADCAM}")
    failed = len(table) - wrong
    if failed:
        print(f"{failed} file(s) could not be read and were left out; see the error column", file=sys.stderr)


def cmd_predict(a):
    from .predict import predict

    paths = a.paths
    if a.exclude:  # leave out what a check/clean/dedup report marks
        from .images import expand_inputs
        from .paths import path_key
        from .prepare.exclude import read_exclusions

        excluded, files = read_exclusions(a.exclude), expand_inputs(a.paths)
        paths = [f for f in files if path_key(f) not in excluded]
        print(f"{len(files) - len(paths)} image(s) left out by --exclude")
    df = predict(a.run, paths, a.out, batch_size=a.batch_size, resume=a.resume, device=a.device,
                 workers=a.workers, engine=a.engine, address=a.address, retry_errors=a.retry_errors)
    failed = int((df["error"] != "").sum())
    print(f"{len(df)} rows in {a.out} ({failed} unreadable file(s))")
    print(df.loc[df["error"] == "", "label"].value_counts().to_string())


def cmd_check(a):
    from .images import check_images, expand_inputs
    from .outputs import refuse_inside, write_csv

    if a.out:
        refuse_inside(a.out, a.paths)
    from .paths import relative_to_csv

    df = check_images(expand_inputs(a.paths), progress=True)
    if a.out:  # paths relative to the report's folder, as --exclude reads them
        write_csv(df.assign(path=relative_to_csv(df["path"], a.out)), a.out)
    bad = df[~df["ok"]]
    print(f"{len(df)} files checked, {len(bad)} unreadable")
    for msg in bad["error"]:
        print("  " + msg)


def cmd_sample_data(a):
    from .sample_data import build_sample_data, summary

    paths = build_sample_data(a.out, seed=a.seed, overwrite=a.overwrite)
    print(summary(a.out).to_string(index=False))
    for name, path in paths.items():
        print(f"{name}: {path}")


def cmd_notebooks(a):
    from .course import parse_parameters, run_notebooks

    params = parse_parameters(a.parameters or [], a.parameters_file)
    run_notebooks(a.notebooks, out=a.out, parameters=params, folder=a.folder, kernel=a.kernel)


def cmd_capsule_run(a):
    from .capsule import run, write_summary

    params = None
    if a.parameters or a.parameters_file:
        from .course import parse_parameters

        params = parse_parameters(a.parameters or [], a.parameters_file)
    results = run(a.results, data=a.data, seed=a.seed, notebooks=a.notebooks, folder=a.folder,
                  parameters=params, overwrite=a.overwrite)
    table = write_summary(results)
    missing = table["value"].isna().sum()
    print(table.drop(columns=["source"]).to_string(index=False))
    print(f"results in {results}" + (f"; {missing} number(s) were not written by the notebooks" if missing else ""))


def cmd_capsule_check(a):
    import pandas as pd

    from .capsule import check

    table = check(a.results, a.reference)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))
    bad = table[~table["ok"]]
    if len(bad):
        names = ", ".join(f"{r.notebook}/{r.quantity}" for r in bad.itertuples())
        print(f"{len(bad)} of {len(table)} number(s) differ from the reference: {names}", file=sys.stderr)
        return 1
    print(f"all {len(table)} numbers match the reference within their tolerances")
    return 0


def build_parser():
    """The argument parser for the ``imgasdata`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="imgasdata", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("--version", action="version", version=f"imgasdata {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="fine-tune a pretrained CNN on labelled images")
    _train_options(p)
    p.add_argument("--exclude", nargs="+", metavar="REPORT",
                   help="report(s) of imgasdata check, clean or dedup: leave out the files they mark")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (only its own files are removed)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("grid", help="train one model per combination of hyperparameters")
    _train_options(p, grid=True)
    p.add_argument("--no-resume", action="store_true", help="retrain combinations that are already done")
    p.set_defaults(func=cmd_grid)

    from .jobs import (
        add_batch_size_option,
        add_device_option,
        add_engine_options,
        add_resume_options,
    )

    p = sub.add_parser("evaluate", help="score a saved run on a folder of labelled images")
    p.add_argument("run")
    p.add_argument("data", help="folder with one sub-folder per class, e.g. DATA/test")
    p.add_argument("--out", help="write the metrics JSON here (and predictions next to it)")
    add_batch_size_option(p)
    add_device_option(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("errors", help="the mistakes of a saved run on labelled images: list, gallery, Grad-CAM")
    p.add_argument("run")
    p.add_argument("images", help="labelled images, as evaluate takes them (DATA/test, a dataset folder, a CSV)")
    p.add_argument("--out", required=True,
                   help="folder for errors.csv, gallery.png and gradcam/ (not among the images)")
    p.add_argument("--n", type=int, default=12, help="Grad-CAM pictures for this many most confident mistakes")
    add_batch_size_option(p)
    add_device_option(p)
    p.set_defaults(func=cmd_errors)

    p = sub.add_parser("predict", help="label new images with a saved run into a CSV")
    p.add_argument("run")
    p.add_argument("paths", nargs="+", help="image files and/or folders")
    p.add_argument("--out", required=True, help="CSV to write: path, label, prob_<class>..., error")
    add_resume_options(p, default_resume=False)
    p.add_argument("--exclude", nargs="+", metavar="REPORT",
                   help="report(s) of imgasdata check, clean or dedup: leave out the files they mark")
    add_batch_size_option(p)
    add_device_option(p)
    add_engine_options(p, "the run")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("check", help="try to open every image and report the unreadable ones")
    p.add_argument("paths", nargs="+")
    p.add_argument("--out", help="CSV with one row per file")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("sample-data", help="build the example datasets from pip-installed images")
    p.add_argument("--out", default="data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_sample_data)

    p = sub.add_parser("notebooks", help="run the numbered notebooks headless with papermill")
    p.add_argument("notebooks", nargs="*", help="notebook files or numbers (default: all)")
    p.add_argument("--folder", default="notebooks", help="where the numbered notebooks are")
    p.add_argument("--out", default="outputs")
    p.add_argument("-p", "--parameters", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="a notebook parameter (repeatable); values are read as YAML (1, 0.5, true, [1, 4])")
    p.add_argument("-f", "--parameters-file", help="YAML file of parameters")
    p.add_argument("--kernel", default=None, help="Jupyter kernel name (default: this Python)")
    p.set_defaults(func=cmd_notebooks)

    p = sub.add_parser("capsule", help="replication capsule: run everything into a results folder, or check one")
    capsule = p.add_subparsers(dest="capsule_command", required=True)
    q = capsule.add_parser("run", help="build the sample data, run every notebook, write results/ with "
                                       "environment.json and summary.csv")
    q.add_argument("--results", default="results", help="the results folder (default: results)")
    q.add_argument("--data", default=None, help="where the sample data is built (default: data/ beside the notebooks)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--folder", default=None, help="where the numbered notebooks are (default: the repository's)")
    q.add_argument("notebooks", nargs="*", help="notebook files or numbers (default: all)")
    q.add_argument("-p", "--parameters", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="a notebook parameter, e.g. -p mode full (repeatable)")
    q.add_argument("-f", "--parameters-file", help="YAML file of parameters")
    q.add_argument("--overwrite", action="store_true", help="replace an earlier capsule run in --results")
    q.set_defaults(func=cmd_capsule_run)
    q = capsule.add_parser("check", help="compare a results folder's summary.csv with the committed reference")
    q.add_argument("results", help="a results folder (or its summary.csv)")
    q.add_argument("--reference", default=None, help="reference summary.csv (default: capsule/reference/summary.csv)")
    q.set_defaults(func=cmd_capsule_check)

    # The chapters with several commands declare them next to their code.
    from .autotag.commands import add_commands as add_autotag_commands
    from .labelling.commands import add_commands as add_labelling_commands
    from .prepare.commands import add_commands as add_prepare_commands

    add_prepare_commands(sub)
    add_autotag_commands(sub)
    add_labelling_commands(sub)
    return parser


def _plain_warning(command):
    """A ``warnings.showwarning`` that prints one sentence, ``imgasdata CMD: warning: ...``, with no source line."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"imgasdata {command}: warning: {message}", file=sys.stderr if file is None else file)

    return show


def main(argv=None):
    """Entry point of the ``imgasdata`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            if not args.debug:
                warnings.showwarning = _plain_warning(args.command)
            status = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        if args.debug:
            raise
        print(f"imgasdata {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
