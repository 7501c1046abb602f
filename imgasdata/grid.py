"""Grid search over hyperparameters (the book's Table 6), resumable, with every run's curves.

:func:`grid` trains one model per combination of settings into its own run
folder, collects one row per combination into ``results.csv``, and draws the
loss and accuracy curves of every combination. An interrupted grid resumes: a
combination is read back instead of retrained only when its run folder is
complete, was made on the same files (dataset SHA-256) and with the same
resolved settings.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd

from .datasets import fingerprint, load_dataset
from .errors import SettingsError
from .models import pick_device
from .progress import progress as progress_bar
from .runs import is_complete, load_run, read_manifest
from .settings import TrainSettings

#: The book's grid: learning rate x momentum x batch size.
BOOK_GRID = {"lr": [0.0005, 0.001, 0.005], "momentum": [0.7, 0.9], "batch_size": [1, 4]}

RESULTS = "results.csv"


def grid(data, out=None, param_grid=None, resume=True, progress=True, **settings):
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
    epoch, validation metrics, seconds, and ``chosen``: True for the one run
    that validation chose (:func:`mark_chosen`), the only row whose test
    metrics (``test_*``) are filled in, so that nobody picks by test score.
    """
    from .train import train

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
            run = train(df, run_dir, progress=False, **{**settings, **params})
        rows.append(_row(params, run, run_dir))
    selects = {w.select for w in wanted}
    results = mark_chosen(pd.DataFrame(rows), selects.pop() if len(selects) == 1 else "loss")
    if out is not None:
        results.to_csv(Path(out) / RESULTS, index=False)
        save_grid_curves(results, Path(out))
    return results


def mark_chosen(results, select="loss"):
    """Mark the run that validation chooses and keep test metrics for it alone; returns a new table.

    The choice follows each run's own rule for its epochs: the lowest
    ``val_loss`` (ties: higher ``val_f1``), or with ``select="accuracy"`` the
    highest ``val_accuracy`` (ties: lower ``val_loss``); remaining ties go to the
    first row in grid order. The ``chosen`` column is placed before ``run``.
    """
    results = results.copy()
    if select == "accuracy":
        order = results.sort_values(["val_accuracy", "val_loss"], ascending=[False, True], kind="stable",
                                    na_position="last")
    else:
        order = results.sort_values(["val_loss", "val_f1"], ascending=[True, False], kind="stable",
                                    na_position="last")
    chosen = results.index == order.index[0] if len(results) else []
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
            and manifest.get("settings") == resolved.recorded())


def _row(params, run, run_dir):
    history, manifest, metrics = run.history, run.manifest, run.metrics
    best_val = history[(history["phase"] == "val") & (history["epoch"] == manifest["best_epoch"])].iloc[0]
    row = dict(params)
    row.update(best_epoch=manifest["best_epoch"], epochs_run=manifest["epochs_run"],
               val_loss=round(float(best_val["loss"]), 4))
    for split in ("val", "test"):
        for k in ("accuracy", "precision", "recall", "f1"):
            row[f"{split}_{k}"] = None if metrics.get(split) is None else round(metrics[split][k], 4)
    row.update(seconds=manifest["seconds"], run=None if run_dir is None else str(Path(run_dir).resolve()))
    return row


def grid_parameters(results):
    """The searched settings' columns of a grid's results table (they come first, before ``best_epoch``)."""
    return list(results.columns[:results.columns.get_loc("best_epoch")])


def save_grid_curves(results, out):
    """Loss and accuracy curves of every combination, as ``curves_loss.png`` and ``curves_accuracy.png``."""
    import matplotlib.pyplot as plt

    from .plots import plot_grid_curves

    for metric in ("loss", "accuracy"):
        fig = plot_grid_curves(results, metric)
        fig.savefig(Path(out) / f"curves_{metric}.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
