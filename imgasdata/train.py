"""Fine-tuning a pretrained CNN on labelled images (the book's chapters 4.4 and 7).

:func:`train` reads the data, builds the model with a new last layer, runs the
training loop (:mod:`imgasdata.fit`), scores the held-out images once, and
writes the run folder (:mod:`imgasdata.runs`). The model is chosen on the
*validation* images; the *test* images play no part in choosing.

Two modes:

* ``head`` — the backbone stays frozen, so each image's features are computed
  once and cached (:mod:`imgasdata.batches`); an epoch then costs milliseconds.
  The right choice on a CPU.
* ``full`` — every layer is trained, with augmentation, as in the book. Wants a GPU.

``mode="auto"`` picks ``full`` on a GPU and ``head`` otherwise. Every setting,
its default and what it may be is declared once in :mod:`imgasdata.settings`.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from . import __version__
from .batches import ImageDataset, feature_cache
from .datasets import SPLITS, classes_of, load_dataset, positive_class, split_record
from .errors import DataError, SettingsError, UserError
from .fit import fit, make_optimizer, run_epoch, set_seed
from .images import check_images
from .metrics import classification_metrics
from .models import build_model, pick_device
from .plots import plot_history
from .progress import progress as progress_bar
from .runs import CURVES, MANIFEST_FORMAT, Run, package_versions, run_files, save_run
from .settings import TrainSettings, settings_table
from .transforms import build_transform, compute_normalization, decode_size


def train(data, out=None, *, settings=None, progress=True, overwrite=False, allow_pt=False, **kwargs):
    """Fine-tune a pretrained backbone on labelled images and report held-out metrics.

    ``data`` is a dataset folder, a CSV, or a table from
    :func:`imgasdata.datasets.load_dataset`. Settings are a
    :class:`~imgasdata.settings.TrainSettings` (``settings=``) and/or keyword
    arguments (``epochs=25, lr=0.001, …``; the table below; keywords override
    ``settings``), checked before any work starts. The defaults follow the book
    (SGD, lr 0.001, momentum 0.9, batch size 4, StepLR every 7 epochs by 0.1).
    The epoch with the best validation loss (or accuracy, ``select``) is kept;
    ``patience`` stops early. ``positive`` names the class whose
    precision/recall/F1 are reported for a binary task (default: ``positive``
    when the classes are ``negative``/``positive``; otherwise macro averages).
    ``allow_pt=True`` lets ``weights`` be a ``.pt``/``.pth`` file (a pickle; see
    :mod:`imgasdata.weights`).

    With ``out``, writes the run folder (see :mod:`imgasdata.runs`) and draws its
    learning curves. A folder that already holds a run's files is refused unless
    ``overwrite=True``, which removes only those files (other files in it stay).
    Returns a :class:`~imgasdata.runs.Run`.
    """
    s = _settings(settings, kwargs)
    if out is not None:
        _check_out(out, data, overwrite)
    started = time.perf_counter()
    df = data.copy() if isinstance(data, pd.DataFrame) else load_dataset(data, split=s.split, seed=s.seed)
    classes = classes_of(df)
    positive = _positive(s.positive, classes)
    dev = pick_device(s.device)
    s = s.resolve(dev)
    pre = s.preprocessing()
    if s.normalize == "dataset":
        pre["mean"], pre["std"] = compute_normalization(df.loc[df["split"] == "train", "path"], pre)

    set_seed(s.seed)
    model = build_model(s.backbone, len(classes), s.weights, s.dropout, allow_pt=allow_pt).to(dev)
    df["target"] = df["label"].map({c: i for i, c in enumerate(classes)})

    if s.mode == "head":
        feats, errors = feature_cache.features(model.backbone, s.backbone, s.weights, list(df["path"]), pre, dev,
                                               progress)
    else:
        errors = {i: e for i, e in enumerate(check_images(df["path"], progress=progress)["error"]) if e}
    skipped = pd.DataFrame({"path": [df["path"].iloc[i] for i in errors], "error": list(errors.values())})
    if len(skipped):
        warnings.warn(f"{len(skipped)} unreadable image(s) left out of training and evaluation, "
                      f"e.g. {skipped['error'].iloc[0]}", stacklevel=2)
    keep = np.ones(len(df), dtype=bool)
    keep[list(errors)] = False
    parts = {split: np.flatnonzero(keep & (df["split"] == split).to_numpy()) for split in SPLITS}
    for split in ("train", "val"):
        if len(parts[split]) == 0:
            raise DataError(f"No readable {split} images left")

    if s.mode == "head":
        model.backbone.requires_grad_(False)
        module = model.head
        train_batches, eval_batches = _feature_batches(feats.to(dev), df, parts, s, dev)
    else:
        module = model
        train_batches, eval_batches = _image_batches(df, parts, pre, s, dev)

    criterion = nn.CrossEntropyLoss()
    optimizer = make_optimizer([p for p in module.parameters() if p.requires_grad], s)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=s.step_size, gamma=s.gamma)
    scaler = torch.amp.GradScaler("cuda") if dev.type == "cuda" else None
    epochs = progress_bar(range(1, s.epochs + 1), desc=f"training ({s.mode})", unit="epoch", enabled=progress)
    # The head's matrices are tiny: extra CPU threads only add hand-over costs, which
    # grow many-fold on a busy laptop, and one thread gives the same sums on every run.
    threads = torch.get_num_threads()
    if s.mode == "head" and dev.type == "cpu":
        torch.set_num_threads(1)
    try:
        history, best = fit(module, train_batches, eval_batches, criterion, optimizer, scheduler, scaler, dev,
                            epochs, s.select, s.patience, classes, positive)
        metrics, predictions = _held_out(module, eval_batches, criterion, dev, df, parts, classes, positive)
    finally:
        torch.set_num_threads(threads)
    model.eval()

    manifest = {
        "format": MANIFEST_FORMAT,
        "imgasdata_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task": "binary" if len(classes) == 2 else "multiclass",
        "classes": classes,
        "positive": positive,  # the class the figures are about (settings.positive is what was asked)
        "preprocessing": pre,
        "settings": s.recorded(),
        "device": str(dev),
        "best_epoch": int(best["epoch"]),
        "epochs_run": int(history[-1]["epoch"]),
        "selection": f"best validation {s.select}; the test images played no part in choosing",
        "seconds": round(time.perf_counter() - started, 2),
        "dataset": {"source": None if isinstance(data, pd.DataFrame) else str(data), "split": split_record(df),
                    "n": {split: int(len(parts[split])) for split in parts}, "skipped": int(len(skipped))},
        "versions": package_versions(),
    }
    run = Run(model=model, manifest=manifest, history=pd.DataFrame(history), metrics=metrics,
              predictions=predictions, skipped=skipped)
    if out is not None:
        if overwrite:
            for old in run_files(out):
                old.unlink()
        run.run_dir = save_run(run, out, df)
        save_curves(run, run.run_dir / CURVES)
    return run


train.__doc__ += "\n    Settings:\n\n" + "\n".join(
    f"    * ``{r.setting}`` (default ``{r.default!r}``; {r.allowed}): {r.meaning}"
    for r in settings_table().itertuples()) + "\n"


def _settings(settings, kwargs):
    """The :class:`TrainSettings` of a call: ``settings`` with any keyword arguments applied on top."""
    if settings is None:
        return TrainSettings.from_kwargs(**kwargs)
    if not isinstance(settings, TrainSettings):
        raise SettingsError(f"settings must be a TrainSettings, got {type(settings).__name__}; "
                            f"pass single settings as keyword arguments instead")
    if not kwargs:
        return settings
    return TrainSettings.from_kwargs(**{**{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)},
                                        **kwargs})


def _inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_out(out, data, overwrite):
    """Refuse an output folder inside the data, or one holding another run (unless ``overwrite``)."""
    if not isinstance(data, pd.DataFrame) and Path(data).is_dir() and _inside(out, data):
        raise UserError(f"--out {out} is inside the data folder {data}; its files would be read as images. "
                        f"Write the run somewhere else.")
    existing = run_files(out) if Path(out).is_dir() else []
    if existing and not overwrite:
        raise UserError(f"{out} already holds a run ({', '.join(p.name for p in existing[:3])}, ...); choose "
                        f"another --out, or pass --overwrite (overwrite=True) to replace that run's files")


def save_curves(run, path):
    """Draw the run's learning curves (loss and accuracy per epoch) into ``path`` (a PNG)."""
    fig = plot_history(run.history, select=run.settings.select)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _positive(positive, classes):
    """The positive class of a binary task: the one asked for, or ``positive`` by convention."""
    if positive is None:
        return positive_class(classes)
    if positive not in classes or len(classes) != 2:
        raise SettingsError(f"positive={positive!r} must be one of the two classes of a binary task; "
                            f"found {classes}")
    return positive


def _feature_batches(X, df, parts, s, dev):
    """Head mode: batches of cached features; shuffled training batches, fixed by the seed."""
    y = torch.tensor(df["target"].to_numpy(), dtype=torch.long, device=dev)
    gen = torch.Generator().manual_seed(s.seed)

    def train_batches():
        order = torch.from_numpy(parts["train"])[torch.randperm(len(parts["train"]), generator=gen)]
        return ((X[idx], y[idx]) for idx in order.split(s.batch_size))

    def eval_batches(split):
        return ((X[i], y[i]) for i in torch.from_numpy(parts[split]).split(1024))

    return train_batches, eval_batches


def _image_batches(df, parts, pre, s, dev):
    """Full mode: DataLoaders over the image files, augmented for training."""
    transforms = {True: build_transform(pre, train=True, augment=s.augment), False: build_transform(pre, train=False)}
    gen = torch.Generator().manual_seed(s.seed)

    def loader(split, training):
        rows = df.iloc[parts[split]]
        ds = ImageDataset(rows["path"], rows["target"], transforms[training], min_size=decode_size(pre))
        return torch.utils.data.DataLoader(ds, batch_size=s.batch_size, shuffle=training, generator=gen,
                                           num_workers=s.num_workers, pin_memory=dev.type == "cuda")

    return (lambda: loader("train", True)), (lambda split: loader(split, False))


def _held_out(module, eval_batches, criterion, dev, df, parts, classes, positive):
    """Validation (used for choosing) and test (never looked at until now) metrics and predictions."""
    metrics, frames = {}, []
    for split in ("val", "test"):
        if len(parts[split]) == 0:
            metrics[split] = None
            continue
        _, _, scores = run_epoch(module, eval_batches(split), criterion, dev)
        probs = torch.softmax(scores, dim=1)
        rows = df.iloc[parts[split]]
        pred = [classes[i] for i in probs.argmax(1).tolist()]
        metrics[split] = classification_metrics(rows["label"], pred, labels=classes, positive=positive)
        frame = pd.DataFrame({"path": rows["path"].to_numpy(), "split": split,
                              "label": rows["label"].to_numpy(), "pred": pred})
        for i, c in enumerate(classes):
            frame[f"prob_{c}"] = probs[:, i].numpy().round(6)
        frame["correct"] = frame["label"] == frame["pred"]
        frames.append(frame)
    if metrics["test"] is None:
        warnings.warn("This dataset has no test images: only validation metrics are reported, and "
                      "they are optimistic because the same images chose the epoch.", stacklevel=3)
    return metrics, pd.concat(frames, ignore_index=True)

