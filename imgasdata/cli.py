"""The ``imgasdata`` command line: train, grid, evaluate, predict, check, sample-data, notebooks.

Mistakes a user can make (a missing folder, one class only, an unknown
backbone, a refused weights file) end with one clear sentence on stderr and
exit status 2; ``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import UserError


def _train_options(p, grid=False):
    """Options shared by ``train`` and ``grid``; in ``grid`` the searchable ones take lists."""
    many = {"nargs": "+"} if grid else {}
    p.add_argument("data", help="dataset folder (train/val/test or one folder per class) or CSV of path,label")
    p.add_argument("--out", required=True, help="folder to write the run (or the grid's runs) into")
    p.add_argument("--backbone", default="efficientnet_lite0",
                   help="efficientnet_lite0/1/2 (weights ship with pip) or a torchvision model, e.g. resnet18")
    p.add_argument("--weights", default="imagenet", help="imagenet, none, or a path to a local weights file")
    p.add_argument("--mode", default="auto", choices=["auto", "head", "full"],
                   help="head: train the new last layer on cached features (fast, CPU); full: train every layer")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--lr", type=float, default=[0.001] if grid else 0.001, **many)
    p.add_argument("--momentum", type=float, default=[0.9] if grid else 0.9, **many)
    p.add_argument("--batch-size", type=int, default=[4] if grid else 4, **many)
    p.add_argument("--step-size", type=int, default=7, help="epochs between learning-rate drops (StepLR)")
    p.add_argument("--gamma", type=float, default=0.1, help="factor of each learning-rate drop")
    p.add_argument("--dropout", type=float, default=[0.0] if grid else 0.0, **many)
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--resize", default=None, choices=["squish", "crop", "pad", "rescale-crop"],
                   help="resizing strategy (default: the backbone's own, rescale-crop)")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--normalize", default="backbone", choices=["backbone", "dataset"])
    p.add_argument("--augment", nargs="+", default=["crop", "flip"], choices=["crop", "flip"],
                   help="augmentations of training images in full mode (default: crop flip)")
    p.add_argument("--no-augment", action="store_true", help="no random crops or flips in full mode")
    p.add_argument("--select", default="loss", choices=["loss", "accuracy"],
                   help="validation figure that picks the best epoch")
    p.add_argument("--patience", type=int, default=None, help="stop after this many epochs without improvement")
    p.add_argument("--positive", default=None,
                   help="the positive class of a binary task (default: 'positive' when the classes are negative/positive)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 or mps")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader processes in full mode")
    p.add_argument("--split", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"),
                   help="fractions for a dataset that is not split into folders yet")


def _train_kwargs(a):
    return dict(backbone=a.backbone, weights=a.weights, mode=a.mode, epochs=a.epochs,
                step_size=a.step_size, gamma=a.gamma, optimizer=a.optimizer, weight_decay=a.weight_decay,
                resize=a.resize, image_size=a.image_size, normalize=a.normalize, augment=[] if a.no_augment else a.augment,
                select=a.select, patience=a.patience, seed=a.seed, device=a.device,
                num_workers=a.num_workers, split=tuple(a.split), positive=a.positive)


def cmd_train(a):
    from .metrics import summary_table
    from .train import train

    run = train(a.data, a.out, lr=a.lr, momentum=a.momentum, batch_size=a.batch_size, dropout=a.dropout,
                **_train_kwargs(a))
    print(f"best epoch {run.manifest['best_epoch']} of {run.manifest['epochs_run']} ({run.manifest['mode']} mode)")
    print(summary_table({k: v for k, v in run.metrics.items() if v}).to_string())
    print(f"run saved to {run.run_dir}")


def cmd_grid(a):
    import pandas as pd

    from .train import grid

    param_grid = {"lr": a.lr, "momentum": a.momentum, "batch_size": a.batch_size, "dropout": a.dropout}
    results = grid(a.data, a.out, param_grid, resume=not a.no_resume, **_train_kwargs(a))
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(results.drop(columns=["run"]).to_string(index=False))
    print(f"table saved to {Path(a.out) / 'results.csv'}")


def cmd_evaluate(a):
    from .train import evaluate

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
                 workers=a.workers)
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

    p = sub.add_parser("predict", help="label new images with a saved run into a CSV")
    p.add_argument("run")
    p.add_argument("paths", nargs="+", help="image files and/or folders")
    p.add_argument("--out", required=True, help="CSV to write: path, label, prob_<class>..., error")
    p.add_argument("--resume", action="store_true", help="skip paths already in --out")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="threads decoding images")
    p.add_argument("--device", default="auto")
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
    except (UserError, ValueError, FileNotFoundError, NotADirectoryError) as exc:
        if args.debug:
            raise
        print(f"imgasdata {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
