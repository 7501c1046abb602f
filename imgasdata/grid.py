"""Grid search over hyperparameters (the book's Table 6), resumable, with every run's curves.

:func:`grid` trains one model per combination of settings into its own run
folder, collects one row per combination into ``results.csv``, and draws the
loss and accuracy curves of every combination. An interrupted grid resumes: a
combination is read back instead of retrained only when its run folder is
complete, was made on the same files (dataset SHA-256) and with the same
resolved settings. :func:`rank` orders the combinations for choosing one, setting
aside runs whose training diverged or whose validation figures cannot tell them apart.
"""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .datasets import fingerprint, load_dataset
from .errors import SettingsError
from .models import pick_device
from .outputs import refuse_inside
from .plots import plot_grid_curves
from .progress import progress as progress_bar
from .runs import is_complete, load_run, read_manifest, run_settings
from .settings import TrainSettings
from .train import train

#: The book's grid: learning rate x momentum x batch size.
BOOK_GRID = {"lr": [0.0005, 0.001, 0.005], "momentum": [0.7, 0.9], "batch_size": [1, 4]}

RESULTS = "results.csv"


def grid(data, out=None, param_grid=None, resume=True, progress=True, allow_pt=False, **settings):
    """Train one model per combination of settings (the book's Table 6).

    ``param_grid`` maps setting names to lists of values (default: the book's
    grid, :data:`BOOK_GRID`); any setting of :class:`~imgasdata.settings.TrainSettings`
    that shapes the model can be searched. Other keyword arguments are fixed
    settings for every run. In head mode the features are computed once for
    the whole grid.

    With ``out``, each combination gets its own run folder and the table is
    written to ``out/results.csv``; with ``resume=True`` finished runs made with
    the same settings on the same files are read back instead of retrained.
    Returns the table, one row per combination in grid order, with the best
    epoch, whether training diverged, validation metrics, seconds, and ``chosen``:
    True for the one run that validation chose (:func:`mark_chosen`, by :func:`rank`),
    the only row whose test metrics (``test_*``) are filled in, so that nobody picks
    by test score.
    """
    if out is not None and not isinstance(data, pd.DataFrame):
        refuse_inside(out, [data])  # the runs' files would be read as images (as train refuses)
    param_grid = dict(BOOK_GRID if param_grid is None else param_grid)
    searchable = [n for n in TrainSettings.names() if n not in ("device", "num_workers", "split")]
    unknown = sorted(set(param_grid) - set(searchable))
    if unknown:
        raise SettingsError(f"cannot grid over {unknown}; choose from {searchable}")
    for name, values in param_grid.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            param_grid[name] = [values]
    combos = [dict(zip(param_grid, values)) for values in itertools.product(*param_grid.values())]
    # every combination is checked before the first one trains
    wanted = [TrainSettings.from_kwargs(**{**settings, **params}) for params in combos]

    base = wanted[0] if wanted else TrainSettings.from_kwargs(**settings)
    df = data if isinstance(data, pd.DataFrame) else load_dataset(data, split=base.split, seed=base.seed)
    # hashed once: every run records it, and resume only reuses runs made on these exact files
    df, digest = fingerprint(df)
    device = pick_device(base.device)
    rows = []
    for params, s in progress_bar(list(zip(combos, wanted)), desc="grid", unit="run", enabled=progress):
        run_dir = Path(out) / run_name(params) if out is not None else None
        if resume and run_dir is not None and _reusable(run_dir, s.resolve(device), digest):
            run = load_run(run_dir, model=False)
        else:
            # the grid owns its run folders: a combination that is not reusable is retrained in place
            run = train(df, run_dir, settings=s, progress=False, overwrite=True, allow_pt=allow_pt)
        rows.append(_row(params, run, run_dir))
    results = mark_chosen(pd.DataFrame(rows))
    if out is not None:
        results.to_csv(Path(out) / RESULTS, index=False)
        save_grid_curves(results, Path(out))
    return results


def mark_chosen(results):
    """Mark the run that validation chooses and keep test metrics for it alone; returns a new table.

    The chosen run is the first of :func:`rank` (the one rule for choosing a run). The
    ``chosen`` column is placed before ``run``.
    """
    results = results.reset_index(drop=True).copy()
    chosen = [False] * len(results)
    if len(results):
        chosen[int(rank(results.assign(_row=range(len(results))))["_row"].iloc[0])] = True
    test = [c for c in results.columns if c.startswith("test_")]
    results[test] = results[test].astype(float).where(pd.Series(chosen, index=results.index), axis=0)
    results.insert(results.columns.get_loc("run") if "run" in results.columns else len(results.columns),
                   "chosen", chosen)
    return results


def run_name(params):
    """The run folder's name for one combination, e.g. ``lr=0.001_momentum=0.9_batch_size=4``."""
    return "_".join(f"{k}={v}" for k, v in params.items())


def _reusable(run_dir, resolved, dataset_sha256):
    """True when ``run_dir`` holds a finished run made with these resolved settings on these files."""
    if not is_complete(run_dir):
        return False
    manifest = read_manifest(run_dir)
    return (manifest.get("dataset", {}).get("sha256") == dataset_sha256
            and run_settings(manifest).recorded() == resolved.recorded())


def diverged(history, n_classes=2):
    """True when training failed: a loss that is not finite, or a training loss after the
    first epoch above the loss of guessing (ln ``n_classes``) or, at the end, above the first's.

    A model that learns never does worse than a coin flip on the images it trains on, so a
    training loss above ln K after the first epoch means the updates overshoot (a learning
    rate far too large), however its kept epoch happened to score on validation.
    """
    if not len(history):
        return False
    if not all(math.isfinite(v) for v in history["loss"]):
        return True
    train_loss = history.loc[history["phase"] == "train", "loss"].to_list()
    above_guessing = any(v > math.log(max(n_classes, 2)) for v in train_loss[1:])
    return len(train_loss) > 1 and (above_guessing or train_loss[-1] > train_loss[0])


def _row(params, run, run_dir):
    history, manifest, metrics = run.history, run.manifest, run.metrics
    best_val = history[(history["phase"] == "val") & (history["epoch"] == run.best_epoch)].iloc[0]
    row = dict(params)
    row.update(best_epoch=run.best_epoch, epochs_run=run.epochs_run, diverged=diverged(history, len(run.classes)),
               val_loss=round(float(best_val["loss"]), 4))
    for split in ("val", "test"):
        for k in ("accuracy", "precision", "recall", "f1"):
            row[f"{split}_{k}"] = None if metrics.get(split) is None else round(metrics[split][k], 4)
    row.update(seconds=manifest["seconds"], run=None if run_dir is None else str(Path(run_dir).resolve()))
    return row


def rank(results):
    """The grid's results ordered for choosing a run: the first row is the one to pick.

    The rule: a run is *set aside* (ranked after every other run, column
    ``set_aside`` says why) when

    * its training diverged (:func:`diverged`: a loss that is not finite, or a last
      training loss above the first epoch's), or
    * its kept validation loss is exactly 0 (as rounded in the table) with validation
      accuracy 1.0 while another run also reaches accuracy 1.0: on a handful of
      validation images that zero is saturated probabilities, not a better model,
      and it would win every tie by that alone.

    The other runs are ordered by validation loss (lower first), then validation F1
    (higher first), then grid order. When every run is set aside, the same order is
    applied to all of them and a warning says none could be trusted. Returns a new table.
    """
    ranked = results.reset_index(drop=True).copy()
    perfect = ranked["val_accuracy"] == 1.0
    zero = (ranked["val_loss"] == 0) & perfect & (perfect.sum() > 1)
    broken = ranked["diverged"].astype(bool) if "diverged" in ranked else pd.Series(False, index=ranked.index)
    ranked["set_aside"] = ""
    ranked.loc[zero, "set_aside"] = "validation loss 0 tied at accuracy 1.0"
    ranked.loc[broken, "set_aside"] = "training diverged"
    ranked["_order"] = range(len(ranked))
    loss = ranked["val_loss"].where(ranked["val_loss"].map(lambda v: math.isfinite(float(v))), math.inf)
    ranked = ranked.assign(_aside=ranked["set_aside"] != "", _loss=loss, _f1=-ranked["val_f1"].fillna(-1))
    if ranked["_aside"].all() and len(ranked):
        warnings.warn("every run of the grid diverged or has a validation loss of 0 tied with others: "
                      "none of them can be trusted; try a smaller learning rate", stacklevel=2)
    ranked = ranked.sort_values(["_aside", "_loss", "_f1", "_order"])
    return ranked.drop(columns=["_order", "_aside", "_loss", "_f1"]).reset_index(drop=True)


def choose(results):
    """The row of the run to pick from a grid's results: the first of :func:`rank` (see its rule)."""
    return rank(results).iloc[0]


def save_grid_curves(results, out):
    """Loss and accuracy curves of every combination, as ``curves_loss.png`` and ``curves_accuracy.png``."""
    for metric in ("loss", "accuracy"):
        fig = plot_grid_curves(results, metric)
        fig.savefig(Path(out) / f"curves_{metric}.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
