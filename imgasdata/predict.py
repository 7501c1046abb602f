"""Labelling images with a saved run, and scoring a run on labelled images it has not seen.

:func:`predict` writes one CSV row per input file — ``path``, ``label``, one
``prob_<class>`` column per class and ``error`` — streaming in batches, so a
job over a hundred thousand images shows progress, keeps memory flat, and can
be resumed after an interruption with ``resume=True``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd

from .errors import DataError, SettingsError
from .jobs import Job, run_job
from .outputs import refuse_inside
from .runs import OTHER_WEIGHTS, WEIGHTS, load_model, read_manifest, run_files


def _weights_sha256(run):
    """SHA-256 of a run's weights: of its weights file, or of the tensors of a ``(model, manifest)`` pair."""
    digest = hashlib.sha256()
    if isinstance(run, tuple):
        for name, tensor in sorted(run[0].state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()
    run = Path(run)
    weights = next((run / n for n in (WEIGHTS, *OTHER_WEIGHTS) if (run / n).is_file()), None)
    if weights is None:
        return None  # load_model says so in one sentence
    with open(weights, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class PredictJob(Job):
    """Labelling with a saved run, as a job of :func:`imgasdata.jobs.run_job`.

    Rows: ``[path, label, prob_<class>..., error]``, one per image; an unreadable file has an
    empty label and the reason in ``error``. The identity is the weights' SHA-256 and the
    classes, so a resumed CSV never mixes two models' labels.
    """

    name = "predict"
    owner = "this model's"

    def __init__(self, run, device="auto", batch_size=32):
        if int(batch_size) < 1:
            raise SettingsError(f"batch_size must be at least 1, got {batch_size}")
        self.run = run if isinstance(run, tuple) else str(run)
        manifest = run[1] if isinstance(run, tuple) else read_manifest(Path(run))
        self.classes = list(manifest["classes"])
        self.columns = ["path", "label"] + [f"prob_{c}" for c in self.classes] + ["error"]
        self.device = device
        self.batch_size = self.chunk_size = int(batch_size)
        self.sha256 = _weights_sha256(run)

    def identity(self):
        return {"weights_sha256": self.sha256, "classes": self.classes}

    def worker(self, threads=None):
        from .classify import ImageModel

        model, manifest = load_model(self.run, device="cpu") if isinstance(self.run, str) else self.run
        return _Labeller(ImageModel(model, manifest["preprocessing"], self.device, self.batch_size, threads),
                         self.classes)


class _Labeller:
    def __init__(self, model, classes):
        self.model = model
        self.classes = classes

    def batches(self, paths):
        empty = [None] * len(self.classes)
        for batch in self.model.outputs(paths, softmax=True):
            yield [[str(path), self.classes[int(p.argmax())], *(round(float(v), 6) for v in p), None]
                   if p is not None else [str(path), None, *empty, error] for path, p, error in batch]


def predict(run, inputs, out_csv=None, batch_size=32, resume=False, device="auto",
            workers=None, progress=True, engine="local", address=None, retry_errors=False):
    """Label images with a saved run and return the rows as a DataFrame.

    ``run`` is a run folder (or a ``(model, manifest)`` pair); ``inputs`` are
    image files and/or folders. With ``out_csv``, rows are appended to the CSV
    batch by batch as they are computed; with ``resume=True`` paths already in
    ``out_csv`` are skipped, so an interrupted job carries on where it stopped
    (refused, in one sentence, if another run's weights wrote the file;
    ``retry_errors=True`` redoes the unreadable files). Without ``resume`` an existing
    ``out_csv`` is replaced only once the new table is complete.
    Unreadable files get a row with an empty label and the reason in ``error``.

    ``engine="local"`` (the default; ``"torch"`` is the same) runs here, ``engine="ray"``
    on the Ray cluster at ``address`` (default: a local one, or the one ``ray.init``
    already connected to); rows are written here as they arrive, in the same order and
    format, so the CSV and ``resume`` are the same. ``workers``: worker processes, each
    loading the run once (local default: this process, decoding in half the CPU cores'
    threads; Ray default: one per CPU). See :func:`imgasdata.jobs.run_job`.
    """
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if out_csv is not None:  # before the run is read: not among the images, nor over the run's own files
        refuse_inside(out_csv, [*inputs, *([] if isinstance(run, tuple) else run_files(run))])
    job = PredictJob(run, device, batch_size)
    table = run_job(job, inputs, out_csv, resume=resume, retry_errors=retry_errors, engine=engine,
                    address=address, workers=workers, progress=progress, desc="labelling images")
    for c in job.classes:
        table[f"prob_{c}"] = pd.to_numeric(table[f"prob_{c}"], errors="coerce")
    return table


def labelled_images(data):
    """The labelled images ``evaluate`` scores, as a table of ``path, label, split``.

    ``data`` is a folder with one sub-folder per class (e.g. ``DATA/test``; all
    its images), or a dataset folder/CSV (its ``test`` split).
    """
    from .datasets import SPLITS, load_dataset, read_class_folders

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
