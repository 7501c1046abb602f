"""Offline autotaggers: nothing leaves the computer, and the answers come in the same tidy shape.

For researchers who cannot or will not upload images to a company:

* :func:`tag_imagenet` — the top-``k`` ImageNet classes of a pretrained CNN
  (:func:`imgasdata.predict.imagenet_labels`), one row per image and class;
* :func:`tag_faces` — faces found by dlib's HOG detector, and with a folder of
  reference photos "is this person X": each face's 128-number encoding is
  compared with the references' and named after the nearest one within
  ``tolerance`` (Euclidean distance; 0.6 is dlib's documented operating point);
* :func:`tag_text` — text in images, read by RapidOCR (PP-OCR models on ONNX Runtime).

Every table has ``image``, ``label``, ``confidence`` (0-100, like Rekognition),
``model_version`` and ``error``, so :mod:`imgasdata.autotag.validate` reads them
as it reads Rekognition's. An image where nothing is found still gets one row
with an empty label; an unreadable file gets one row with the reason in ``error``.
With ``out_csv`` the rows go to a CSV as each batch is done, and ``resume=True`` carries
an interrupted job on from the images already there (a day of OCR is not lost to a crash).
dlib and RapidOCR are optional extras (``faces``, ``ocr``).

Each tagger is a class (:class:`ImagenetTagger`, :class:`FaceTagger`, :class:`TextTagger`)
that loads its model once and turns a list of paths into rows; the ``tag_*`` functions run
it here (``engine="torch"``) or in a pool of Ray workers (``engine="ray"``, through
:func:`imgasdata.ray_engine.map_paths`), so both engines run the same per-file code and
return the same table in the same order.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from itertools import groupby
from pathlib import Path

import numpy as np
import pandas as pd

from ..csv_rows import CsvRows
from ..errors import DataError, MissingFileError, SettingsError, UserError, require
from ..images import expand_inputs, list_images, load_image
from ..progress import progress as progress_bar

IMAGENET_COLUMNS = ["image", "label", "confidence", "rank", "model_version", "error"]
FACE_COLUMNS = ["image", "label", "confidence", "face", "person", "distance", "detector_score", "box_left",
                "box_top", "box_width", "box_height", "model_version", "error"]
TEXT_COLUMNS = ["image", "label", "confidence", "line", "box_left", "box_top", "box_width", "box_height",
                "model_version", "error"]
ENGINES = ("torch", "ray")


def _pkg_version(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _cell(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def _empty_row(image, model_version, error=""):
    return {"image": str(image), "label": "", "confidence": float("nan"), "model_version": model_version,
            "error": error}


class _Tagger:
    """Common part of the taggers: ``columns``, which of them hold numbers, and rows as lists.

    A subclass loads its model in ``__init__`` and yields dict rows (keys from ``columns``)
    batch by batch from :meth:`batches`, every path's rows together and in input order.
    """

    name = ""
    columns: tuple = ()
    numeric: tuple = ()

    def batches(self, paths):
        raise NotImplementedError

    def row_batches(self, paths):
        """The rows of :meth:`batches` as lists in ``columns`` order (a missing cell, NaN included, is ``None``).

        ``None`` is what the CSV writes as an empty cell, here and from a Ray worker alike.
        """
        for batch in self.batches(paths):
            yield [[_cell(row.get(c)) for c in self.columns] for row in batch]

    def __call__(self, paths):
        """All rows of ``paths`` as lists, each starting with its path: what a Ray worker runs on a chunk."""
        return [row for batch in self.row_batches(paths) for row in batch]


def _table(rows, tagger_class):
    """The tidy DataFrame of list rows, typed the same whether the cells are values (here) or text (from Ray)."""
    df = pd.DataFrame(rows, columns=tagger_class.columns)
    for c in tagger_class.columns:
        if c in tagger_class.numeric:
            df[c] = pd.to_numeric(df[c], errors="coerce")
        else:
            df[c] = df[c].fillna("").astype(str)
    return df


def _run(tagger_class, options, inputs, desc, progress, engine, address, workers, chunk_size, tagger=None,
         out_csv=None, resume=False):
    """Run a tagger over ``inputs`` here or on Ray, with a progress bar; return its tidy table.

    ``options`` are the tagger's keyword arguments (sent to every Ray worker, which builds
    its own tagger once); ``tagger`` is an already built one to use here (``None``: build it
    only if there is work left). With ``out_csv`` the rows are appended to it batch by batch
    (:class:`imgasdata.csv_rows.CsvRows`, as :func:`imgasdata.predict.predict` does); with
    ``resume`` the images already in it are skipped, and the whole file is returned. The
    table's ``attrs["skipped"]`` counts the input images found done.
    """
    paths = expand_inputs(inputs)
    out = CsvRows(out_csv, tagger_class.columns, "image", resume, f"the {tagger_class.name} tagger's") if out_csv else None
    todo = [p for p in paths if out is None or str(p) not in out.done]
    bar = progress_bar(total=len(todo), desc=desc, unit="img", enabled=progress)
    if engine == "ray":
        from ..ray_engine import map_paths

        columns = ["path", *tagger_class.columns[1:]]  # map_paths' rule: rows start with their path
        batches = (df.values.tolist() for df in map_paths(todo, partial(tagger_class, **options), columns,
                                                           address=address, workers=workers, chunk_size=chunk_size))
    else:
        batches = (tagger or tagger_class(**options)).row_batches(todo) if todo else iter(())
    rows = []
    with out or nullcontext():
        for batch in batches:
            if out is not None:
                out.write(batch)
            else:
                rows += batch  # kept in memory only when there is no CSV to read back
            bar.update(len(dict.fromkeys(row[0] for row in batch)))
    bar.close()
    if out is not None:
        rows = pd.read_csv(out_csv, dtype=str, keep_default_na=False).values.tolist()
    table = _table(rows, tagger_class)
    table.attrs["skipped"] = len(paths) - len(todo)
    return table


def _check_engine(engine, address, workers):
    """Refuse a wrong engine or worker count, and start (or join) Ray before any model is loaded."""
    if engine not in ENGINES:
        raise SettingsError(f"engine must be one of {ENGINES}, got {engine!r}")
    if workers is not None and int(workers) < 1:
        raise SettingsError(f"workers must be at least 1, got {workers}")
    if engine == "ray":
        from ..ray_engine import start_ray

        start_ray(address)  # one sentence if Ray is missing


# ------------------------------------------------------------------------- ImageNet


class ImagenetTagger(_Tagger):
    """The ImageNet tagger's model, loaded once: paths to tidy top-``k`` rows (see :func:`tag_imagenet`)."""

    name = "imagenet"
    columns = IMAGENET_COLUMNS
    numeric = ("confidence", "rank")

    def __init__(self, k=5, backbone="efficientnet_lite0", weights="imagenet", min_confidence=0.0, batch_size=16,
                 device="auto", threads=None):
        from ..predict import ImagenetLabeller

        self.labeller = ImagenetLabeller(backbone, weights, int(k), batch_size, device, workers=threads)
        self.min_confidence = float(min_confidence)
        self.model_version = f"{backbone} ({weights} weights, imgasdata {_pkg_version('imgasdata')}, " \
                             f"torchvision {_pkg_version('torchvision')})"

    def batches(self, paths):
        for raw in self.labeller.batches(paths):
            rows = []
            for image, group in groupby(raw, key=lambda r: r["path"]):
                group = list(group)
                if group[0]["error"]:
                    rows.append(_empty_row(image, self.model_version, group[0]["error"]))
                    continue
                kept = [r for r in group if r["prob"] * 100 >= self.min_confidence]
                if not kept:
                    rows.append(_empty_row(image, self.model_version))
                rows += [{"image": image, "label": r["label"], "confidence": round(float(r["prob"]) * 100, 2),
                          "rank": int(r["rank"]), "model_version": self.model_version, "error": ""} for r in kept]
            yield rows


def tag_imagenet(inputs, k=5, backbone="efficientnet_lite0", weights="imagenet", min_confidence=0.0,
                 batch_size=16, device="auto", progress=True, engine="torch", address=None, workers=None,
                 out_csv=None, resume=False):
    """Top-``k`` ImageNet classes per image as tidy rows (``confidence`` = probability x 100).

    Classes under ``min_confidence`` are dropped; an image left with none keeps
    one row with an empty label. ``engine="ray"`` runs on the Ray cluster at ``address``
    (default: a local one) in ``workers`` processes (default: one per CPU), each loading
    the model once, in chunks of ``batch_size`` images; the table is the same as here.
    On one machine ``workers`` is the number of decoding threads.

    With ``out_csv`` the rows are appended to that CSV as each batch is done, and the whole
    CSV is returned; ``resume=True`` skips the images already in it, so an interrupted job
    carries on where it stopped (without ``resume`` the file is started afresh). The same
    holds for :func:`tag_faces` and :func:`tag_text`, on both engines.
    """
    if int(k) < 1:
        raise SettingsError(f"k must be at least 1, not {k}")
    _check_engine(engine, address, workers)
    options = {"k": int(k), "backbone": backbone, "weights": weights, "min_confidence": min_confidence,
               "batch_size": batch_size, "device": device}
    # a Ray worker decodes in one thread beside its model: the cluster's parallelism is the workers
    options["threads"] = 1 if engine == "ray" else workers
    return _run(ImagenetTagger, options, inputs, "ImageNet tags", progress, engine, address, workers,
                chunk_size=int(batch_size), out_csv=out_csv, resume=resume)


# ------------------------------------------------------------------------- faces


class FaceModels:
    """dlib's HOG face detector, 5-point landmark model and ResNet face encoder (loaded once)."""

    def __init__(self):
        dlib = require("dlib", "faces", "face detection")
        models = require("face_recognition_models", "faces", "face encodings")
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        self.encoder = dlib.face_recognition_model_v1(models.face_recognition_model_location())
        self.version = (f"dlib {_pkg_version('dlib-bin') if _pkg_version('dlib-bin') != 'unknown' else _pkg_version('dlib')}"
                        " HOG detector + dlib_face_recognition_resnet_model_v1")

    def faces(self, array, upsample=1):
        """``[(box (l, t, r, b), detector score, 128-d encoding)]`` for an RGB uint8 array."""
        rects, scores, _ = self.detector.run(array, int(upsample), 0.0)
        out = []
        for rect, score in zip(rects, scores):
            shape = self.shape(array, rect)
            enc = np.asarray(self.encoder.compute_face_descriptor(array, shape, 1))
            out.append(((rect.left(), rect.top(), rect.right(), rect.bottom()), float(score), enc))
        return out


def _as_array(path, max_side):
    img = load_image(path)
    if max_side and max(img.size) > max_side:
        s = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))))
    return np.asarray(img)


def reference_encodings(folder, models=None, upsample=1, max_side=1600):
    """Encodings of the reference photos in ``folder``: a DataFrame ``person``, ``image``, ``encoding``.

    ``folder`` holds one sub-folder per person (``refs/john_legend/*.jpg``) or
    files named after the person (``refs/john_legend.jpg``). A reference photo
    must show exactly one face; one with none or several raises a
    :class:`DataError` naming it, because a wrong reference silently mislabels
    every match.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"reference-face folder not found: {folder}")
    models = models or FaceModels()
    rows = []
    for path in list_images(folder):
        rel = path.relative_to(folder)
        person = rel.parts[0] if len(rel.parts) > 1 else path.stem
        found = models.faces(_as_array(path, max_side), upsample)
        if len(found) != 1:
            raise DataError(f"reference photo {path} shows {len(found)} faces; each reference photo must show "
                            "exactly one face (crop it to the person)")
        rows.append({"person": person, "image": str(path), "encoding": found[0][2]})
    if not rows:
        raise DataError(f"no reference photos in {folder}")
    return pd.DataFrame(rows)


class FaceTagger(_Tagger):
    """dlib's face models, loaded once: paths to one row per detected face (see :func:`tag_faces`).

    ``references`` is ``(persons, encodings)`` — the names and an ``(n, 128)`` array from
    :func:`reference_encodings` — or ``None`` to find faces without naming them.
    """

    name = "faces"
    columns = FACE_COLUMNS
    numeric = ("confidence", "face", "distance", "detector_score", "box_left", "box_top", "box_width", "box_height")

    def __init__(self, references=None, tolerance=0.6, upsample=1, max_side=1600, models=None):
        self.models = models or FaceModels()
        self.persons, self.matrix = references if references is not None else (None, None)
        self.tolerance = float(tolerance)
        self.upsample = upsample
        self.max_side = max_side

    def batches(self, paths):
        for path in paths:
            yield self.rows(path)

    def rows(self, path):
        """The rows of one image: one per face, or one with an empty label (none found) or an error."""
        version = self.models.version
        try:
            array = _as_array(path, self.max_side)
        except UserError as exc:
            return [_empty_row(path, version, str(exc))]
        h, w = array.shape[:2]
        rows = []
        for k, ((left, top, right, bottom), score, enc) in enumerate(self.models.faces(array, self.upsample), 1):
            row = {"image": str(path), "label": "face", "confidence": 100.0, "face": k, "person": "",
                   "distance": float("nan"), "detector_score": round(score, 4),
                   "box_left": max(left, 0) / w, "box_top": max(top, 0) / h,
                   "box_width": (min(right, w) - max(left, 0)) / w, "box_height": (min(bottom, h) - max(top, 0)) / h,
                   "model_version": version, "error": ""}
            if self.matrix is not None:
                d = np.linalg.norm(self.matrix - enc, axis=1)
                best = int(np.argmin(d))
                row.update(person=self.persons[best], distance=round(float(d[best]), 4),
                           confidence=round(100 * max(0.0, 1 - float(d[best])), 2))
                if d[best] <= self.tolerance:
                    row["label"] = self.persons[best]
            rows.append(row)
        return rows or [_empty_row(path, version)]


def tag_faces(inputs, reference_faces=None, tolerance=0.6, upsample=1, max_side=1600, progress=True,
              engine="torch", address=None, workers=None, out_csv=None, resume=False):
    """One row per image and detected face, named after the nearest reference person within ``tolerance``.

    ``label`` is the person's name for a match, else ``"face"``. With references,
    ``confidence`` is ``100 x (1 - distance)`` to the nearest reference face (so a
    threshold of 40 is a distance of 0.6) and ``person``/``distance`` name the
    nearest one even when it is too far to count; without references every face
    has ``confidence`` 100 (the HOG detector answers yes or no; its margin is in
    ``detector_score``). Boxes are fractions of the width and height, as in
    Rekognition. ``max_side`` shrinks big photos first (faster; faces smaller
    than about 40 px at that scale are missed; ``upsample`` finds smaller ones, slower).

    ``engine="ray"`` runs on the Ray cluster at ``address`` (default: a local one) in
    ``workers`` processes (default: one per CPU); the reference faces are encoded here once
    and sent to the workers. The table is the same as here. ``out_csv`` and ``resume``: as in
    :func:`tag_imagenet`.
    """
    if not 0 < float(tolerance) < 2:
        raise SettingsError(f"tolerance is a face-encoding distance between 0 and 2, not {tolerance}")
    models = FaceModels()
    _check_engine(engine, address, workers)
    refs = reference_encodings(reference_faces, models, upsample, max_side) if reference_faces else None
    references = (refs["person"].tolist(), np.stack(refs["encoding"].values)) if refs is not None else None
    options = {"references": references, "tolerance": tolerance, "upsample": upsample, "max_side": max_side}
    return _run(FaceTagger, options, inputs, "faces", progress, engine, address, workers, chunk_size=8,
                tagger=FaceTagger(**options, models=models) if engine == "torch" else None, out_csv=out_csv,
                resume=resume)


# ------------------------------------------------------------------------- text


def _ocr_engine():
    rapidocr = require("rapidocr", "ocr", "reading text in images")
    require("onnxruntime", "ocr", "reading text in images")
    return rapidocr.RapidOCR(params={"Global.log_level": "error"})


class TextTagger(_Tagger):
    """RapidOCR, loaded once: paths to one row per line of text (see :func:`tag_text`)."""

    name = "ocr"
    columns = TEXT_COLUMNS
    numeric = ("confidence", "line", "box_left", "box_top", "box_width", "box_height")

    def __init__(self, min_confidence=0.0):
        self.engine = _ocr_engine()
        self.min_confidence = float(min_confidence)
        self.model_version = f"rapidocr {_pkg_version('rapidocr')} (default PP-OCR det/cls/rec models), " \
                             f"onnxruntime {_pkg_version('onnxruntime')}"

    def batches(self, paths):
        for path in paths:
            yield self.rows(path)

    def rows(self, path):
        """The rows of one image: one per line read, or one with an empty label (no text) or an error."""
        try:
            img = load_image(path)
        except UserError as exc:
            return [_empty_row(path, self.model_version, str(exc))]
        result = self.engine(img)  # a PIL image: RapidOCR converts RGB to its BGR itself
        w, h = img.size
        found = []
        for k, (text, score, box) in enumerate(zip(result.txts or (), result.scores or (),
                                                   result.boxes if result.boxes is not None else ()), 1):
            if float(score) * 100 < self.min_confidence:
                continue
            box = np.asarray(box, dtype=float)
            x0, y0 = box.min(axis=0)
            x1, y1 = box.max(axis=0)
            found.append({"image": str(path), "label": text, "confidence": round(float(score) * 100, 2),
                          "line": k, "box_left": float(max(x0, 0) / w), "box_top": float(max(y0, 0) / h),
                          "box_width": float((min(x1, w) - max(x0, 0)) / w),
                          "box_height": float((min(y1, h) - max(y0, 0)) / h),
                          "model_version": self.model_version, "error": ""})
        return found or [_empty_row(path, self.model_version)]


def tag_text(inputs, min_confidence=0.0, progress=True, engine="torch", address=None, workers=None, out_csv=None,
             resume=False):
    """One row per image and line of text found by RapidOCR (``confidence`` = score x 100).

    ``engine="ray"`` runs on the Ray cluster at ``address`` (default: a local one) in
    ``workers`` processes (default: one per CPU), each loading RapidOCR once; the table is
    the same as here. ``out_csv`` and ``resume``: as in :func:`tag_imagenet`.
    """
    require("rapidocr", "ocr", "reading text in images")  # here, before any Ray worker tries
    require("onnxruntime", "ocr", "reading text in images")
    _check_engine(engine, address, workers)
    return _run(TextTagger, {"min_confidence": min_confidence}, inputs, "OCR", progress, engine, address,
                workers, chunk_size=8, out_csv=out_csv, resume=resume)


TAGGERS = {"imagenet": tag_imagenet, "faces": tag_faces, "ocr": tag_text}
