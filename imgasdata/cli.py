"""imgasdata: images as data for social science research, one command per step of the work.

Commands: train, grid, evaluate, predict, check, sample-data, notebooks, and the
chapter commands (preparing: dedup, clean, labels, agreement, split; autotagging:
autotag, validate-tags), declared next to their code.

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
from pathlib import Path

from .errors import UserError


def _train_options(p, grid=False):
    """Options shared by ``train`` and ``grid``, one per setting of :class:`~imgasdata.settings.TrainSettings`."""
    from .settings import add_arguments

    p.add_argument("data", help="dataset folder (train/val/test or one folder per class) or CSV of path,label")
    p.add_argument("--out", required=True, help="folder to write the run (or the grid's runs) into")
    add_arguments(p, grid=grid)


def cmd_train(a):
    from .metrics import summary_table
    from .settings import from_arguments
    from .train import train

    run = train(a.data, a.out, **from_arguments(a))
    print(f"best epoch {run.manifest['best_epoch']} of {run.manifest['epochs_run']} ({run.manifest['mode']} mode)")
    print(summary_table({k: v for k, v in run.metrics.items() if v}).to_string())
    print(f"run saved to {run.run_dir}")


def cmd_grid(a):
    import pandas as pd

    from .grid import RESULTS, grid
    from .settings import from_arguments, searched

    fixed = from_arguments(a)
    param_grid = {name: fixed.pop(name) for name in searched()}
    results = grid(a.data, a.out, param_grid, resume=not a.no_resume, **fixed)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(results.drop(columns=["run"]).to_string(index=False))
    print(f"table saved to {Path(a.out) / RESULTS}")


def cmd_evaluate(a):
    from .predict import evaluate

    metrics, preds = evaluate(a.run, a.data, device=a.device, batch_size=a.batch_size)
    text = json.dumps(metrics, indent=2)
    if a.out:
        Path(a.out).write_text(text + "\n")
        preds.to_csv(Path(a.out).with_suffix(".predictions.csv"), index=False)
    print(text)
    failed = (preds["error"] != "").sum()
    if failed:
        print(f"{failed} file(s) could not be read and were left out; see the error column", file=sys.stderr)


def cmd_predict(a):
    from .predict import predict

    df = predict(a.run, a.paths, a.out, batch_size=a.batch_size, resume=a.resume, device=a.device,
                 workers=a.workers, engine=a.engine, address=a.address, retry_errors=a.retry_errors)
    failed = int((df["error"] != "").sum())
    print(f"{len(df)} rows in {a.out} ({failed} unreadable file(s))")
    print(df.loc[df["error"] == "", "label"].value_counts().to_string())


def cmd_check(a):
    from .images import check_images, expand_inputs

    df = check_images(expand_inputs(a.paths), progress=True)
    if a.out:
        df.to_csv(a.out, index=False)
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


def build_parser():
    """The argument parser for the ``imgasdata`` command."""
    parser = argparse.ArgumentParser(prog="imgasdata", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="fine-tune a pretrained CNN on labelled images")
    _train_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("grid", help="train one model per combination of hyperparameters")
    _train_options(p, grid=True)
    p.add_argument("--no-resume", action="store_true", help="retrain combinations that are already done")
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("evaluate", help="score a saved run on a folder of labelled images")
    p.add_argument("run")
    p.add_argument("data", help="folder with one sub-folder per class, e.g. DATA/test")
    p.add_argument("--out", help="write the metrics JSON here (and predictions next to it)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_evaluate)

    from .jobs import add_batch_size_option, add_device_option, add_engine_options, add_resume_options

    p = sub.add_parser("predict", help="label new images with a saved run into a CSV")
    p.add_argument("run")
    p.add_argument("paths", nargs="+", help="image files and/or folders")
    p.add_argument("--out", required=True, help="CSV to write: path, label, prob_<class>..., error")
    add_resume_options(p, default_resume=False)
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

    # The chapters with several commands declare them next to their code.
    from .autotag.commands import add_commands as add_autotag_commands
    from .prepare.commands import add_commands as add_prepare_commands

    add_prepare_commands(sub)
    add_autotag_commands(sub)
    return parser


def main(argv=None):
    """Entry point of the ``imgasdata`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        if args.debug:
            raise
        print(f"imgasdata {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
