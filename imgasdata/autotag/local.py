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
dlib and RapidOCR are optional extras (``faces``, ``ocr``).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, MissingFileError, SettingsError, UserError, require
from ..images import expand_inputs, list_images, load_image
from ..progress import progress as progress_bar

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


def _empty_row(image, model_version, error=""):
    return {"image": str(image), "label": "", "confidence": float("nan"), "model_version": model_version,
            "error": error}


# ------------------------------------------------------------------------- ImageNet


def tag_imagenet(inputs, k=5, backbone="efficientnet_lite0", weights="imagenet", min_confidence=0.0,
                 batch_size=16, device="auto", progress=True):
    """Top-``k`` ImageNet classes per image as tidy rows (``confidence`` = probability x 100).

    Classes under ``min_confidence`` are dropped; an image left with none keeps
    one row with an empty label.
    """
    from ..predict import imagenet_labels

    if int(k) < 1:
        raise SettingsError(f"k must be at least 1, not {k}")
    model_version = f"{backbone} ({weights} weights, imgasdata {_pkg_version('imgasdata')}, " \
                    f"torchvision {_pkg_version('torchvision')})"
    raw = imagenet_labels(inputs, backbone=backbone, weights=weights, k=int(k), batch_size=batch_size,
                          device=device, progress=progress)
    rows = []
    for image, group in raw.groupby("path", sort=False):
        err = group["error"].iloc[0]
        if err:
            rows.append(_empty_row(image, model_version, err))
            continue
        kept = group[group["prob"] * 100 >= float(min_confidence)]
        if kept.empty:
            rows.append(_empty_row(image, model_version))
        for r in kept.itertuples():
            rows.append({"image": str(image), "label": r.label, "confidence": round(float(r.prob) * 100, 2),
                         "rank": int(r.rank), "model_version": model_version, "error": ""})
    return pd.DataFrame(rows, columns=IMAGENET_COLUMNS)


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


def tag_faces(inputs, reference_faces=None, tolerance=0.6, upsample=1, max_side=1600, progress=True):
    """One row per image and detected face, named after the nearest reference person within ``tolerance``.

    ``label`` is the person's name for a match, else ``"face"``. With references,
    ``confidence`` is ``100 x (1 - distance)`` to the nearest reference face (so a
    threshold of 40 is a distance of 0.6) and ``person``/``distance`` name the
    nearest one even when it is too far to count; without references every face
    has ``confidence`` 100 (the HOG detector answers yes or no; its margin is in
    ``detector_score``). Boxes are fractions of the width and height, as in
    Rekognition. ``max_side`` shrinks big photos first (faster; faces smaller
    than about 40 px at that scale are missed; ``upsample`` finds smaller ones, slower).
    """
    if not 0 < float(tolerance) < 2:
        raise SettingsError(f"tolerance is a face-encoding distance between 0 and 2, not {tolerance}")
    models = FaceModels()
    refs = reference_encodings(reference_faces, models, upsample, max_side) if reference_faces else None
    ref_matrix = np.stack(refs["encoding"].values) if refs is not None else None
    rows = []
    for path in progress_bar(expand_inputs(inputs), desc="faces", unit="img", enabled=progress):
        try:
            array = _as_array(path, max_side)
        except UserError as exc:
            rows.append(_empty_row(path, models.version, str(exc)))
            continue
        h, w = array.shape[:2]
        found = models.faces(array, upsample)
        if not found:
            rows.append(_empty_row(path, models.version))
        for k, ((left, top, right, bottom), score, enc) in enumerate(found, 1):
            row = {"image": str(path), "label": "face", "confidence": 100.0, "face": k, "person": "",
                   "distance": float("nan"), "detector_score": round(score, 4),
                   "box_left": max(left, 0) / w, "box_top": max(top, 0) / h,
                   "box_width": (min(right, w) - max(left, 0)) / w, "box_height": (min(bottom, h) - max(top, 0)) / h,
                   "model_version": models.version, "error": ""}
            if ref_matrix is not None:
                d = np.linalg.norm(ref_matrix - enc, axis=1)
                best = int(np.argmin(d))
                row.update(person=refs["person"].iloc[best], distance=round(float(d[best]), 4),
                           confidence=round(100 * max(0.0, 1 - float(d[best])), 2))
                if d[best] <= tolerance:
                    row["label"] = refs["person"].iloc[best]
            rows.append(row)
    return pd.DataFrame(rows, columns=FACE_COLUMNS)


# ------------------------------------------------------------------------- text


def _ocr_engine():
    rapidocr = require("rapidocr", "ocr", "reading text in images")
    require("onnxruntime", "ocr", "reading text in images")
    return rapidocr.RapidOCR(params={"Global.log_level": "error"})


def tag_text(inputs, min_confidence=0.0, progress=True):
    """One row per image and line of text found by RapidOCR (``confidence`` = score x 100)."""
    engine = _ocr_engine()
    model_version = f"rapidocr {_pkg_version('rapidocr')} (default PP-OCR det/cls/rec models), " \
                    f"onnxruntime {_pkg_version('onnxruntime')}"
    rows = []
    for path in progress_bar(expand_inputs(inputs), desc="OCR", unit="img", enabled=progress):
        try:
            img = load_image(path)
        except UserError as exc:
            rows.append(_empty_row(path, model_version, str(exc)))
            continue
        result = engine(img)  # a PIL image: RapidOCR converts RGB to its BGR itself
        w, h = img.size
        found = []
        for k, (text, score, box) in enumerate(zip(result.txts or (), result.scores or (),
                                                   result.boxes if result.boxes is not None else ()), 1):
            if float(score) * 100 < float(min_confidence):
                continue
            box = np.asarray(box, dtype=float)
            x0, y0 = box.min(axis=0)
            x1, y1 = box.max(axis=0)
            found.append({"image": str(path), "label": text, "confidence": round(float(score) * 100, 2),
                          "line": k, "box_left": max(x0, 0) / w, "box_top": max(y0, 0) / h,
                          "box_width": (min(x1, w) - max(x0, 0)) / w, "box_height": (min(y1, h) - max(y0, 0)) / h,
                          "model_version": model_version, "error": ""})
        rows += found or [_empty_row(path, model_version)]
    return pd.DataFrame(rows, columns=TEXT_COLUMNS)


TAGGERS = {"imagenet": tag_imagenet, "faces": tag_faces, "ocr": tag_text}
