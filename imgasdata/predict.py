"""Labelling images with a saved run, and scoring a run on labelled images it has not seen.

:func:`predict` writes one CSV row per input file — ``path``, ``label``, one
``prob_<class>`` column per class and ``error`` — streaming in batches, so a
job over a hundred thousand images shows progress, keeps memory flat, and can
be resumed after an interruption with ``resume=True``.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import torch

from .backbones import DEFAULT_BACKBONE, default_preprocessing, imagenet_classes
from .batches import decode_threads, for_inference, forward, load_batches
from .csv_rows import CsvRows
from .datasets import SPLITS, load_dataset, read_class_folders
from .errors import DataError, SettingsError
from .images import expand_inputs
from .models import imagenet_model, pick_device
from .progress import progress as progress_bar
from .runs import load_model
from .transforms import build_transform, decode_size

ENGINES = ("torch", "ray")


class Labeller:
    """A loaded run as a function from image paths to CSV rows: what :func:`predict` runs, on one machine or many.

    Calling it on a list of paths returns one row per path, in order —
    ``[path, label, prob_<class>..., error]`` — with an empty label and the reason in
    ``error`` for a file that cannot be read. :meth:`batches` yields the rows batch by
    batch, decoding the next batch while the model works on this one.
    """

    def __init__(self, run, device="auto", batch_size=32, workers=None):
        model, manifest = load_model(run, device="cpu") if not isinstance(run, tuple) else run
        self.device = pick_device(device)
        self.model = for_inference(model, self.device)
        self.classes = list(manifest["classes"])
        self.pre = manifest["preprocessing"]
        self.columns = ["path", "label"] + [f"prob_{c}" for c in self.classes] + ["error"]
        self.batch_size = int(batch_size)
        self.workers = decode_threads() if workers is None else int(workers)
        self.transform = build_transform(self.pre, train=False)

    @torch.no_grad()
    def batches(self, paths):
        """Yield the rows of ``paths`` one batch at a time, in input order."""
        paths = list(paths)
        empty = [""] * len(self.classes)
        for positions, batch, errors in load_batches(paths, self.transform, self.batch_size,
                                                     decode_size(self.pre), self.workers):
            rows = {j: [str(paths[j]), ""] + empty + [msg] for j, msg in errors.items()}
            if batch is not None:
                probs = torch.softmax(forward(self.model, batch, self.device).float(), dim=1).cpu()
                for j, p in zip(positions, probs):
                    rows[j] = [str(paths[j]), self.classes[int(p.argmax())]] + [round(float(v), 6) for v in p] + [""]
            yield [rows[j] for j in sorted(rows)]

    def __call__(self, paths):
        return [row for rows in self.batches(paths) for row in rows]


def _ray_labeller(run, device, batch_size):
    """Built once in each Ray worker: the run loaded there, decoding in one thread beside the model."""
    return Labeller(run, device=device, batch_size=batch_size, workers=1)


def predict(run, inputs, out_csv=None, batch_size=32, resume=False, device="auto",
            workers=None, progress=True, engine="torch", address=None):
    """Label images with a saved run and return the rows as a DataFrame.

    ``run`` is a run folder (or a ``(model, manifest)`` pair); ``inputs`` are
    image files and/or folders. With ``out_csv``, rows are appended to the CSV
    batch by batch as they are computed; with ``resume=True`` paths already in
    ``out_csv`` are skipped, so an interrupted job carries on where it stopped.
    Unreadable files get a row with an empty label and the reason in ``error``.

    ``engine="torch"`` (the default) runs here, decoding in ``workers`` threads
    (default: half the CPU cores, at least 2) beside the model. ``engine="ray"`` runs on the Ray
    cluster at ``address`` (default: a local one, or the one ``ray.init`` already
    connected to) in ``workers`` worker processes (default: one per CPU), each loading
    the run once; rows are written here as they arrive, in the same order and format,
    so the CSV and ``resume`` are the same. Needs ``pip install "imgasdata[ray]"``, and the
    run folder and images under the same paths on every node.
    """
    if engine not in ENGINES:
        raise SettingsError(f"engine must be one of {ENGINES}, got {engine!r}")
    if workers is not None and int(workers) < 1:
        raise SettingsError(f"workers must be at least 1, got {workers}")
    if int(batch_size) < 1:
        raise SettingsError(f"batch_size must be at least 1, got {batch_size}")
    if engine == "ray":
        from .ray_engine import start_ray

        start_ray(address)  # says in one sentence if Ray is missing, before any work
        manifest = load_model(run, device="cpu")[1] if not isinstance(run, tuple) else run[1]
        classes = list(manifest["classes"])
        columns = ["path", "label"] + [f"prob_{c}" for c in classes] + ["error"]
    else:
        labeller = Labeller(run, device=device, batch_size=batch_size, workers=workers)
        classes, columns = labeller.classes, labeller.columns
    paths = expand_inputs(inputs)

    out = CsvRows(out_csv, columns, "path", resume, "this model's") if out_csv is not None else None
    todo = [p for p in paths if out is None or str(p) not in out.done]

    if engine == "ray":
        from functools import partial

        from .ray_engine import map_paths

        work = partial(_ray_labeller, str(run) if not isinstance(run, tuple) else run, device, batch_size)
        row_batches = (df.values.tolist() for df in map_paths(todo, work, columns, address=address,
                                                               workers=workers, chunk_size=batch_size))
    else:
        row_batches = labeller.batches(todo)

    rows = []
    with out or nullcontext():
        bar = progress_bar(total=len(todo), desc="labelling images", unit="img", enabled=progress)
        for ordered in row_batches:
            if out is not None:
                out.write(ordered)
            else:
                rows += ordered  # kept in memory only when there is no CSV to read back
            bar.update(len(ordered))
        bar.close()
    if out_csv is not None:
        return pd.read_csv(out_csv, keep_default_na=False, na_values={f"prob_{c}": [""] for c in classes})
    return _as_frame(rows, columns, classes)


def _as_frame(rows, columns, classes):
    df = pd.DataFrame(rows, columns=columns)
    for c in classes:
        df[f"prob_{c}"] = pd.to_numeric(df[f"prob_{c}"], errors="coerce")
    return df


class ImagenetLabeller:
    """An ImageNet-pretrained CNN as a function from image paths to its top-``k`` classes (the model loaded once).

    :meth:`batches` yields, batch by batch and in input order, ``k`` dicts per readable
    image (``path``, ``rank``, ``label``, ``prob``, ``error``) and one dict with ``rank`` 0
    and the reason in ``error`` per unreadable file. Shared by :func:`imagenet_labels` and
    the ImageNet autotagger, on one machine or in each Ray worker.
    """

    def __init__(self, backbone=DEFAULT_BACKBONE, weights="imagenet", k=5, batch_size=16, device="auto",
                 workers=None):
        self.names = imagenet_classes(backbone)
        self.device = pick_device(device)
        self.model = for_inference(imagenet_model(backbone, weights), self.device)
        self.pre = default_preprocessing(backbone)
        self.transform = build_transform(self.pre)
        self.k = int(k)
        self.batch_size = int(batch_size)
        self.workers = decode_threads() if workers is None else int(workers)

    @torch.no_grad()
    def batches(self, paths):
        """Yield the rows of ``paths`` one batch at a time, in input order."""
        paths = list(paths)
        for positions, batch, errors in load_batches(paths, self.transform, self.batch_size,
                                                     decode_size(self.pre), self.workers):
            found = {j: [] for j in positions}
            if batch is not None:
                probs = torch.softmax(forward(self.model, batch, self.device).float(), dim=1).cpu()
                top = probs.topk(self.k, dim=1)
                for j, values, indices in zip(positions, top.values, top.indices):
                    found[j] = [{"path": str(paths[j]), "rank": r + 1, "label": self.names[int(i)],
                                 "prob": round(float(v), 4), "error": ""}
                                for r, (v, i) in enumerate(zip(values, indices))]
            for j, msg in errors.items():
                found[j] = [{"path": str(paths[j]), "rank": 0, "label": "", "prob": float("nan"), "error": msg}]
            yield [row for j in sorted(found) for row in found[j]]


def imagenet_labels(inputs, backbone=DEFAULT_BACKBONE, weights="imagenet", k=5, batch_size=16,
                    device="auto", progress=False):
    """What an ImageNet-pretrained CNN "sees": its top-``k`` ImageNet classes per image.

    Returns a long DataFrame with columns ``path``, ``rank`` (1 = most likely),
    ``label`` and ``prob``; unreadable files get one row with ``rank`` 0 and the
    reason in ``error``. Useful as an off-the-shelf autotagger before any fine-tuning.
    """
    labeller = ImagenetLabeller(backbone, weights, k, batch_size, device)
    paths = expand_inputs(inputs)
    rows = []
    bar = progress_bar(total=len(paths), desc="ImageNet labels", unit="img", enabled=progress)
    for batch in labeller.batches(paths):
        rows += batch
        bar.update(sum(r["rank"] <= 1 for r in batch))  # one rank-1 (or rank-0 error) row per image
    bar.close()
    return pd.DataFrame(rows, columns=["path", "rank", "label", "prob", "error"])


def labelled_images(data):
    """The labelled images ``evaluate`` scores, as a table of ``path, label, split``.

    ``data`` is a folder with one sub-folder per class (e.g. ``DATA/test``; all
    its images), or a dataset folder/CSV (its ``test`` split).
    """
    from .datasets import SPLITS, load_dataset, read_class_folders
    from .metrics import classification_metrics  # scikit-learn: only evaluate needs it

    data = Path(data)
    if data.is_dir() and not any((data / s).is_dir() for s in SPLITS):
        return read_class_folders(data, "test")
    df = load_dataset(data)
    return df[df["split"] == "test"].reset_index(drop=True)


def evaluate(run, data, device="auto", batch_size=32, progress=True):
    """Score a saved run on labelled images it has not seen.

    ``run`` is a run folder (or a ``(model, manifest)`` pair). ``data`` is a folder
    with one sub-folder per class (e.g. ``DATA/test``), a dataset folder/CSV (its
    ``test`` split is used), or a table from :func:`labelled_images`. Returns
    ``(metrics, predictions)``; unreadable files are reported in the predictions'
    ``error`` column and left out of the metrics.
    """
    from .metrics import classification_metrics

    df = data if isinstance(data, pd.DataFrame) else labelled_images(data)
    model, manifest = run if isinstance(run, tuple) else load_model(run, device="cpu")
    classes = manifest["classes"]
    extra = sorted(set(df["label"]) - set(classes))
    if extra:
        where = "the images" if isinstance(data, pd.DataFrame) else data
        which = "this model" if isinstance(run, tuple) else f"the model in {run}"
        raise DataError(f"{where} have classes {extra} that {which} was not trained on ({classes})")
    preds = predict((model, manifest), list(df["path"]), batch_size=batch_size, device=device, progress=progress)
    preds.insert(1, "true", df["label"].to_numpy())
    ok = preds["error"] == ""
    metrics = classification_metrics(preds.loc[ok, "true"], preds.loc[ok, "label"], labels=classes,
                                     positive=manifest.get("positive"))
    return metrics, preds
