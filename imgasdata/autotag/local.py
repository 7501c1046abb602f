"""Offline autotaggers: nothing leaves the computer, and the answers come in the same tidy shape.

For researchers who cannot or will not upload images to a company:

* :func:`tag_imagenet` — the top-``k`` ImageNet classes of a pretrained CNN, one row per
  image and class (:func:`imagenet_labels`: the same as a plain ``path, rank, label, prob`` table);
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
that loads its model once and turns a list of paths into rows, run as a job of
:func:`imgasdata.jobs.run_job` (here, ``engine="local"``, or in a pool of Ray workers,
``engine="ray"``), so both engines run the same per-file code and return the same table in
the same order, and resuming refuses a file written with other options. :data:`TAGGERS`
is the one table of taggers, from which the command line builds its choices.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import lazy_loader as lazy
import numpy as np

from ..backbones import DEFAULT_BACKBONE
from ..errors import DataError, MissingFileError, SettingsError, UserError, require
from ..images import list_images, load_image
from ..jobs import Job, check_engine, run_job

# pandas loads on first use: building the command line's parser must not wait ~1 s for it.
pd = lazy.load("pandas")

IMAGENET_COLUMNS = ["image", "label", "confidence", "rank", "model_version", "error"]
FACE_COLUMNS = ["image", "label", "confidence", "face", "person", "distance", "detector_score", "box_left",
                "box_top", "box_width", "box_height", "model_version", "error"]
TEXT_COLUMNS = ["image", "label", "confidence", "line", "box_left", "box_top", "box_width", "box_height",
                "model_version", "error"]


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
    batch by batch from :meth:`dict_batches`, every path's rows together and in input order.
    """

    name = ""
    columns: tuple = ()
    numeric: tuple = ()
    #: paths a Ray worker is sent at a time
    chunk_size = 8
    #: the options that do not change the rows (left out of the identity that resume checks)
    run_options = ("batch_size", "device", "threads")

    def dict_batches(self, paths):
        raise NotImplementedError

    def batches(self, paths):
        """The rows of :meth:`dict_batches` as lists in ``columns`` order (a missing cell, NaN included, is ``None``)."""
        for batch in self.dict_batches(paths):
            yield [[_cell(row.get(c)) for c in self.columns] for row in batch]


class TaggerJob(Job):
    """A tagger class and its options as a job of :func:`imgasdata.jobs.run_job`.

    Each worker process builds its own tagger once; ``loaded`` are objects already loaded
    here (e.g. dlib's models) that a worker in this process reuses, never sent to Ray.
    """

    def __init__(self, tagger_class, options, loaded=None, chunk_size=None):
        self.tagger_class = tagger_class
        self.name = tagger_class.name
        self.columns = list(tagger_class.columns)
        self.owner = f"the {tagger_class.name} tagger's"
        self.options = dict(options)
        self.loaded = loaded or {}
        self.chunk_size = int(chunk_size or tagger_class.chunk_size)

    def __getstate__(self):
        return {**self.__dict__, "loaded": {}}

    def identity(self):
        return {k: _identity_value(v) for k, v in sorted(self.options.items())
                if k not in self.tagger_class.run_options}

    def worker(self, threads=None):
        options = dict(self.options, **self.loaded)
        if "threads" in self.tagger_class.run_options and threads is not None:
            options["threads"] = threads
        return self.tagger_class(**options)


def _identity_value(value):
    """An option as resume compares it: reference faces by a digest of names and encodings (to 4 decimals)."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], np.ndarray):
        digest = hashlib.sha256(json.dumps(list(value[0])).encode())
        digest.update(np.round(value[1].astype(float), 4).tobytes())
        return f"sha256:{digest.hexdigest()}"
    return value


def _table(rows, tagger_class):
    """The tidy DataFrame of text rows, typed: numbers as numbers, text as text (empty: ``""``)."""
    df = pd.DataFrame(rows, columns=tagger_class.columns)
    for c in tagger_class.columns:
        if c in tagger_class.numeric:
            df[c] = pd.to_numeric(df[c], errors="coerce")
        else:
            df[c] = df[c].fillna("").astype(str)
    return df


def _run(job, inputs, desc, progress, engine, address, workers, out_csv=None, resume=False, retry_errors=False):
    """Run a tagger job over ``inputs`` (:func:`imgasdata.jobs.run_job`); return its tidy table.

    The table's ``attrs["skipped"]`` counts the input images found done in ``out_csv``.
    """
    text = run_job(job, inputs, out_csv, resume=resume, retry_errors=retry_errors, engine=engine,
                   address=address, workers=workers, progress=progress, desc=desc)
    table = _table(text, job.tagger_class)
    table.attrs["skipped"] = text.attrs["skipped"]
    return table


# ------------------------------------------------------------------------- ImageNet


class ImagenetTagger(_Tagger):
    """The ImageNet tagger's model, loaded once: paths to tidy top-``k`` rows (see :func:`tag_imagenet`)."""

    name = "imagenet"
    columns = IMAGENET_COLUMNS
    numeric = ("confidence", "rank")

    def __init__(self, k=5, backbone=DEFAULT_BACKBONE, weights="imagenet", min_confidence=0.0, batch_size=16,
                 device="auto", threads=None):
        from ..backbones import default_preprocessing, imagenet_classes
        from ..classify import ImageModel
        from ..models import imagenet_model

        self.names = imagenet_classes(backbone)
        self.model = ImageModel(imagenet_model(backbone, weights), default_preprocessing(backbone), device,
                                batch_size, threads)
        self.k = int(k)
        self.min_confidence = float(min_confidence)
        self.model_version = f"{backbone} ({weights} weights, imgasdata {_pkg_version('imgasdata')}, " \
                             f"torchvision {_pkg_version('torchvision')})"

    def dict_batches(self, paths):
        for batch in self.model.outputs(paths, softmax=True):
            rows = []
            for image, probs, error in batch:
                if probs is None:
                    rows.append(_empty_row(image, self.model_version, error))
                    continue
                top = probs.topk(self.k)
                kept = [(r + 1, float(v), self.names[int(i)]) for r, (v, i) in enumerate(zip(top.values, top.indices))
                        if float(v) * 100 >= self.min_confidence]
                if not kept:
                    rows.append(_empty_row(image, self.model_version))
                rows += [{"image": str(image), "label": label, "confidence": round(p * 100, 2), "rank": rank,
                          "model_version": self.model_version, "error": ""} for rank, p, label in kept]
            yield rows


def tag_imagenet(inputs, k=5, backbone=DEFAULT_BACKBONE, weights="imagenet", min_confidence=0.0,
                 batch_size=16, device="auto", progress=True, engine="local", address=None, workers=None,
                 out_csv=None, resume=False, retry_errors=False):
    """Top-``k`` ImageNet classes per image as tidy rows (``confidence`` = probability x 100).

    Classes under ``min_confidence`` are dropped; an image left with none keeps
    one row with an empty label. ``engine="ray"`` runs on the Ray cluster at ``address``
    (default: a local one) in ``workers`` processes (default: one per CPU), each loading
    the model once, in chunks of ``batch_size`` images; the table is the same as here.
    ``workers`` means the same on one machine: worker processes (default: this one).

    With ``out_csv`` the rows are appended to that CSV as each batch is done, and the whole
    CSV is returned; ``resume=True`` skips the images already in it, so an interrupted job
    carries on where it stopped, and refuses a CSV written with another backbone, ``k`` or
    ``min_confidence`` (``retry_errors=True`` redoes the unreadable images). Without
    ``resume`` the file is started afresh, the old one kept until the new one is complete.
    The same holds for :func:`tag_faces` and :func:`tag_text`, on both engines.
    """
    if int(k) < 1:
        raise SettingsError(f"k must be at least 1, not {k}")
    check_engine(engine, workers, address)
    options = {"k": int(k), "backbone": backbone, "weights": weights, "min_confidence": float(min_confidence),
               "batch_size": int(batch_size), "device": device}
    job = TaggerJob(ImagenetTagger, options, chunk_size=int(batch_size))
    return _run(job, inputs, "ImageNet tags", progress, engine, address, workers, out_csv, resume, retry_errors)


def imagenet_labels(inputs, backbone=DEFAULT_BACKBONE, weights="imagenet", k=5, batch_size=16, device="auto",
                    progress=False):
    """What an ImageNet-pretrained CNN "sees": its top-``k`` ImageNet classes per image.

    Returns a long DataFrame with columns ``path``, ``rank`` (1 = most likely),
    ``label`` and ``prob``; unreadable files get one row with ``rank`` 0 and the
    reason in ``error``. :func:`tag_imagenet`'s table in the plain columns of a first look.
    """
    tags = tag_imagenet(inputs, k=k, backbone=backbone, weights=weights, batch_size=batch_size, device=device,
                        progress=progress)
    return pd.DataFrame({"path": tags["image"], "rank": tags["rank"].fillna(0).astype(int), "label": tags["label"],
                         "prob": tags["confidence"] / 100, "error": tags["error"]})


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
    run_options = ("models",)

    def __init__(self, references=None, tolerance=0.6, upsample=1, max_side=1600, models=None):
        self.models = models or FaceModels()
        self.persons, self.matrix = references if references is not None else (None, None)
        self.tolerance = float(tolerance)
        self.upsample = upsample
        self.max_side = max_side

    def dict_batches(self, paths):
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
              engine="local", address=None, workers=None, out_csv=None, resume=False, retry_errors=False):
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
    check_engine(engine, workers, address)
    refs = reference_encodings(reference_faces, models, upsample, max_side) if reference_faces else None
    references = (refs["person"].tolist(), np.stack(refs["encoding"].values)) if refs is not None else None
    options = {"references": references, "tolerance": float(tolerance), "upsample": upsample, "max_side": max_side}
    job = TaggerJob(FaceTagger, options, loaded={"models": models})
    return _run(job, inputs, "faces", progress, engine, address, workers, out_csv, resume, retry_errors)


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
    run_options = ()

    def __init__(self, min_confidence=0.0):
        self.engine = _ocr_engine()
        self.min_confidence = float(min_confidence)
        self.model_version = f"rapidocr {_pkg_version('rapidocr')} (default PP-OCR det/cls/rec models), " \
                             f"onnxruntime {_pkg_version('onnxruntime')}"

    def dict_batches(self, paths):
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


def tag_text(inputs, min_confidence=0.0, progress=True, engine="local", address=None, workers=None, out_csv=None,
             resume=False, retry_errors=False):
    """One row per image and line of text found by RapidOCR (``confidence`` = score x 100).

    ``engine="ray"`` runs on the Ray cluster at ``address`` (default: a local one) in
    ``workers`` processes (default: one per CPU), each loading RapidOCR once; the table is
    the same as here. ``out_csv`` and ``resume``: as in :func:`tag_imagenet`.
    """
    require("rapidocr", "ocr", "reading text in images")  # here, before any Ray worker tries
    require("onnxruntime", "ocr", "reading text in images")
    check_engine(engine, workers, address)
    job = TaggerJob(TextTagger, {"min_confidence": float(min_confidence)})
    return _run(job, inputs, "OCR", progress, engine, address, workers, out_csv, resume, retry_errors)


# ------------------------------------------------------------------------- the table of taggers


@dataclass(frozen=True)
class TaggerRecord:
    """One offline tagger as the command line sees it: its name, what it finds, how to run it."""

    name: str
    summary: str
    tag: object
    #: the command-line arguments (an argparse namespace) as the keyword arguments of ``tag``
    arguments: object


TAGGERS = {r.name: r for r in (
    TaggerRecord("imagenet", "top-k ImageNet classes of a pretrained CNN", tag_imagenet,
                 lambda a: {"k": a.k, "backbone": a.backbone, "min_confidence": a.min_confidence or 0.0,
                            "device": a.device}),
    TaggerRecord("faces", "faces found by dlib, named after reference photos (pip install \"imgasdata[faces]\")",
                 tag_faces, lambda a: {"reference_faces": a.reference_faces, "tolerance": a.tolerance}),
    TaggerRecord("ocr", "lines of text read by RapidOCR (pip install \"imgasdata[ocr]\")", tag_text,
                 lambda a: {"min_confidence": a.min_confidence or 0.0}),
)}
"""The offline taggers, by name: the command line's choices, help and dispatch come from here."""
