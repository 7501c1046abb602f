"""Labelling images with a saved run, and scoring a run on labelled images it has not seen.

:func:`predict` writes one CSV row per input file — ``path``, ``label``, one
``prob_<class>`` column per class and ``error`` — streaming in batches, so a
job over a hundred thousand images shows progress, keeps memory flat, and can
be resumed after an interruption with ``resume=True``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import torch

from .batches import forward, load_batches
from .errors import DataError
from .images import expand_inputs
from .models import pick_device
from .progress import progress as progress_bar
from .runs import load_model
from .settings import DEFAULT_BACKBONE
from .transforms import build_transform, decode_size


@torch.no_grad()
def predict(run, inputs, out_csv=None, batch_size=32, resume=False, device="auto",
            workers=2, progress=True):
    """Label images with a saved run and return the rows as a DataFrame.

    ``run`` is a run folder (or a ``(model, manifest)`` pair); ``inputs`` are
    image files and/or folders. With ``out_csv``, rows are appended to the CSV
    batch by batch as they are computed; with ``resume=True`` paths already in
    ``out_csv`` are skipped, so an interrupted job carries on where it stopped.
    Unreadable files get a row with an empty label and the reason in ``error``.
    """
    model, manifest = load_model(run, device="cpu") if not isinstance(run, tuple) else run
    dev = pick_device(device)
    model = model.to(dev).eval()
    classes = list(manifest["classes"])
    pre = manifest["preprocessing"]
    columns = ["path", "label"] + [f"prob_{c}" for c in classes] + ["error"]
    paths = expand_inputs(inputs)

    done = set()
    if out_csv is not None:
        out_csv = Path(out_csv)
        if out_csv.exists() and resume and out_csv.stat().st_size > 0:
            previous = pd.read_csv(out_csv, dtype=str, keep_default_na=False)
            if list(previous.columns) != columns:
                raise DataError(f"Cannot resume {out_csv}: its columns {list(previous.columns)} are not this "
                                 f"model's {columns}; write to a new file instead")
            done = set(previous["path"])
        elif out_csv.exists():
            out_csv.unlink()
        out_csv.parent.mkdir(parents=True, exist_ok=True)
    todo = [p for p in paths if str(p) not in done]
    # the header goes into a new file only: a resumed CSV may hold it without any rows yet
    new_file = out_csv is not None and not out_csv.exists()

    rows = []
    handle = open(out_csv, "a", newline="") if out_csv is not None else None
    try:
        writer = csv.writer(handle) if handle else None
        if writer and new_file:
            writer.writerow(columns)
        transform = build_transform(pre, train=False)
        bar = progress_bar(total=len(todo), desc="labelling images", unit="img", enabled=progress)
        for positions, batch, errors in load_batches(todo, transform, batch_size, decode_size(pre), workers):
            batch_rows = {j: [str(todo[j]), ""] + [""] * len(classes) + [msg] for j, msg in errors.items()}
            if batch is not None:
                probs = torch.softmax(forward(model, batch, dev).float(), dim=1).cpu()
                for j, p in zip(positions, probs):
                    batch_rows[j] = [str(todo[j]), classes[int(p.argmax())]] + \
                        [round(float(v), 6) for v in p] + [""]
            ordered = [batch_rows[j] for j in sorted(batch_rows)]
            if writer:
                writer.writerows(ordered)
                handle.flush()
            else:
                rows += ordered  # kept in memory only when there is no CSV to read back
            bar.update(len(ordered))
        bar.close()
    finally:
        if handle:
            handle.close()
    if out_csv is not None:
        return pd.read_csv(out_csv, keep_default_na=False, na_values={f"prob_{c}": [""] for c in classes})
    return _as_frame(rows, columns, classes)


def _as_frame(rows, columns, classes):
    df = pd.DataFrame(rows, columns=columns)
    for c in classes:
        df[f"prob_{c}"] = pd.to_numeric(df[f"prob_{c}"], errors="coerce")
    return df


@torch.no_grad()
def imagenet_labels(inputs, backbone=DEFAULT_BACKBONE, weights="imagenet", k=5, batch_size=16,
                    device="auto", progress=False):
    """What an ImageNet-pretrained CNN "sees": its top-``k`` ImageNet classes per image.

    Returns a long DataFrame with columns ``path``, ``rank`` (1 = most likely),
    ``label`` and ``prob``; unreadable files get one row with ``rank`` 0 and the
    reason in ``error``. Useful as an off-the-shelf autotagger before any fine-tuning.
    """
    from .models import default_preprocessing, imagenet_classes, imagenet_model

    names = imagenet_classes()
    dev = pick_device(device)
    model = imagenet_model(backbone, weights).to(dev)
    pre = default_preprocessing(backbone)
    paths = expand_inputs(inputs)
    rows = []
    bar = progress_bar(total=len(paths), desc="ImageNet labels", unit="img", enabled=progress)
    for positions, batch, errors in load_batches(paths, build_transform(pre), batch_size, decode_size(pre)):
        found = {j: [] for j in positions}
        if batch is not None:
            probs = torch.softmax(forward(model, batch, dev).float(), dim=1).cpu()
            top = probs.topk(k, dim=1)
            for j, values, indices in zip(positions, top.values, top.indices):
                found[j] = [{"path": str(paths[j]), "rank": r + 1, "label": names[int(i)],
                             "prob": round(float(v), 4), "error": ""}
                            for r, (v, i) in enumerate(zip(values, indices))]
        for j, msg in errors.items():
            found[j] = [{"path": str(paths[j]), "rank": 0, "label": "", "prob": float("nan"), "error": msg}]
        for j in sorted(found):
            rows += found[j]
        bar.update(len(found))
    bar.close()
    return pd.DataFrame(rows, columns=["path", "rank", "label", "prob", "error"])


def evaluate(run, data, device="auto", batch_size=32, progress=True):
    """Score a saved run on labelled images it has not seen.

    ``data`` is a folder with one sub-folder per class (e.g. ``DATA/test``) or
    a dataset folder/CSV (its ``test`` split is used). Returns ``(metrics,
    predictions)``; unreadable files are reported in the predictions' ``error``
    column and left out of the metrics.
    """
    from .datasets import SPLITS, load_dataset, read_class_folders
    from .metrics import classification_metrics

    data = Path(data)
    if data.is_dir() and not any((data / s).is_dir() for s in SPLITS):
        df = read_class_folders(data, "test")
    else:
        df = load_dataset(data)
        df = df[df["split"] == "test"]
    model, manifest = load_model(run, device="cpu")
    classes = manifest["classes"]
    extra = sorted(set(df["label"]) - set(classes))
    if extra:
        raise DataError(f"{data} has classes {extra} that the model in {run} was not trained on ({classes})")
    preds = predict((model, manifest), list(df["path"]), batch_size=batch_size, device=device, progress=progress)
    preds.insert(1, "true", df["label"].to_numpy())
    ok = preds["error"] == ""
    metrics = classification_metrics(preds.loc[ok, "true"], preds.loc[ok, "label"], labels=classes,
                                     positive=manifest.get("positive"))
    return metrics, preds
