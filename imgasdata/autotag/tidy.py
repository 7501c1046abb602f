"""Turn Rekognition answers into tidy tables: one row per image and label (or face, or line of text).

Every function takes one image name and the response dict exactly as boto3
returns it, and returns a :class:`pandas.DataFrame`. An image where nothing was
found still gets one row with an empty ``label`` and a missing ``confidence``,
so "not tagged" stays visible instead of the image vanishing from the table.

Every table has the generic columns ``image``, ``label``, ``confidence`` (0-100,
Rekognition's scale) and ``model_version`` — what :mod:`imgasdata.autotag.validate`
reads — plus the columns particular to the operation. Lists (parents, aliases,
URLs) are joined with ``"; "``; boxes are the service's fractions of the width
and height. Services that do not report a model version (celebrities, faces)
get ``"unreported"``, so the gap is recorded rather than blank.

:func:`book_labels` and :func:`book_celebrities` rewrite answers in the columns of
the book authors' scripts (``image_id``, ``label_str``, ``label_conf``, ...). Which
tidier and book writer belong to which operation is recorded once, in
:data:`imgasdata.autotag.rekognition.OPERATIONS`.
"""

from __future__ import annotations

import json

import lazy_loader as lazy

from ..errors import DataError

# pandas loads on first use: building the command line's parser must not wait ~1 s for it.
pd = lazy.load("pandas")

UNREPORTED = "unreported"

LABEL_COLUMNS = ["image", "label", "confidence", "parents", "aliases", "categories", "instances", "model_version"]
CELEBRITY_COLUMNS = ["image", "label", "confidence", "name", "id", "match_confidence", "known_gender", "urls",
                     "face_confidence", "box_left", "box_top", "box_width", "box_height", "model_version"]
FACE_COLUMNS = ["image", "label", "confidence", "face", "age_low", "age_high", "gender", "gender_confidence",
                "smile", "eyeglasses", "sunglasses", "top_emotion", "box_left", "box_top", "box_width",
                "box_height", "model_version"]
TEXT_COLUMNS = ["image", "label", "confidence", "type", "id", "parent_id", "box_left", "box_top", "box_width",
                "box_height", "model_version"]
MODERATION_COLUMNS = ["image", "label", "confidence", "parent", "taxonomy_level", "model_version"]


def _names(items):
    return "; ".join(str(i.get("Name", "")) for i in (items or []))


def _box(box):
    box = box or {}
    return {"box_left": box.get("Left"), "box_top": box.get("Top"),
            "box_width": box.get("Width"), "box_height": box.get("Height")}


def _frame(rows, columns, image, version):
    if not rows:  # nothing found: one row, so the image is still counted
        rows = [{"image": str(image), "label": "", "confidence": float("nan"), "model_version": version}]
    return pd.DataFrame(rows, columns=columns)


def _check(response, key, what):
    if not isinstance(response, dict) or key not in response:
        raise DataError(f"not a {what} response: expected a dict with the key {key!r}")


def tidy_labels(image, response):
    """One row per image and label of a DetectLabels response.

    Columns: ``image``, ``label``, ``confidence``, ``parents``, ``aliases``,
    ``categories``, ``instances`` (the number of boxes found for the label) and
    ``model_version``.
    """
    _check(response, "Labels", "DetectLabels")
    version = response.get("LabelModelVersion") or UNREPORTED
    rows = [{"image": str(image), "label": lab.get("Name", ""), "confidence": lab.get("Confidence"),
             "parents": _names(lab.get("Parents")), "aliases": _names(lab.get("Aliases")),
             "categories": _names(lab.get("Categories")), "instances": len(lab.get("Instances") or []),
             "model_version": version} for lab in response["Labels"]]
    return _frame(rows, LABEL_COLUMNS, image, version)


def tidy_celebrities(image, response):
    """One row per image and recognised face of a RecognizeCelebrities response.

    Columns: ``image``, ``name``, ``id``, ``match_confidence``, ``known_gender``,
    ``urls``, the face's box and detection confidence, and ``model_version``
    (``"unreported"``: the service does not return one). ``label``/``confidence``
    repeat name and match confidence for validation. Faces the service saw but
    did not recognise are not rows; their number is in the raw response.
    """
    _check(response, "CelebrityFaces", "RecognizeCelebrities")
    rows = []
    for face in response["CelebrityFaces"]:
        info = face.get("Face") or {}
        rows.append({"image": str(image), "label": face.get("Name", ""), "confidence": face.get("MatchConfidence"),
                     "name": face.get("Name", ""), "id": face.get("Id", ""),
                     "match_confidence": face.get("MatchConfidence"),
                     "known_gender": (face.get("KnownGender") or {}).get("Type", ""),
                     "urls": "; ".join(face.get("Urls") or []), "face_confidence": info.get("Confidence"),
                     **_box(info.get("BoundingBox")), "model_version": UNREPORTED})
    return _frame(rows, CELEBRITY_COLUMNS, image, UNREPORTED)


def tidy_faces(image, response):
    """One row per image and detected face of a DetectFaces response (``label`` is ``"face"``)."""
    _check(response, "FaceDetails", "DetectFaces")
    rows = []
    for k, face in enumerate(response["FaceDetails"], 1):
        emotions = sorted(face.get("Emotions") or [], key=lambda e: -e.get("Confidence", 0))
        rows.append({"image": str(image), "label": "face", "confidence": face.get("Confidence"), "face": k,
                     "age_low": (face.get("AgeRange") or {}).get("Low"),
                     "age_high": (face.get("AgeRange") or {}).get("High"),
                     "gender": (face.get("Gender") or {}).get("Value", ""),
                     "gender_confidence": (face.get("Gender") or {}).get("Confidence"),
                     "smile": (face.get("Smile") or {}).get("Value"),
                     "eyeglasses": (face.get("Eyeglasses") or {}).get("Value"),
                     "sunglasses": (face.get("Sunglasses") or {}).get("Value"),
                     "top_emotion": emotions[0].get("Type", "") if emotions else "",
                     **_box(face.get("BoundingBox")), "model_version": UNREPORTED})
    return _frame(rows, FACE_COLUMNS, image, UNREPORTED)


def tidy_text(image, response):
    """One row per image and detected line or word of a DetectText response (``label`` is the text)."""
    _check(response, "TextDetections", "DetectText")
    version = response.get("TextModelVersion") or UNREPORTED
    rows = [{"image": str(image), "label": t.get("DetectedText", ""), "confidence": t.get("Confidence"),
             "type": t.get("Type", ""), "id": t.get("Id"), "parent_id": t.get("ParentId"),
             **_box((t.get("Geometry") or {}).get("BoundingBox")), "model_version": version}
            for t in response["TextDetections"]]
    return _frame(rows, TEXT_COLUMNS, image, version)


def tidy_moderation(image, response):
    """One row per image and moderation label of a DetectModerationLabels response."""
    _check(response, "ModerationLabels", "DetectModerationLabels")
    version = response.get("ModerationModelVersion") or UNREPORTED
    rows = [{"image": str(image), "label": m.get("Name", ""), "confidence": m.get("Confidence"),
             "parent": m.get("ParentName", ""), "taxonomy_level": m.get("TaxonomyLevel"),
             "model_version": version} for m in response["ModerationLabels"]]
    return _frame(rows, MODERATION_COLUMNS, image, version)


def book_labels(image, response):
    """DetectLabels rows in the columns of the book authors' scripts, for comparing with the book's CSV files.

    Columns: ``image_id``, ``full_detect_labels_response``, ``label_num``,
    ``label_str``, ``label_conf``. Nested values are written as JSON (the scripts
    wrote Python reprs, which no program can read back safely).
    """
    _check(response, "Labels", "DetectLabels")
    name, full = str(image), json.dumps(response, default=str)
    rows = [{"image_id": name, "full_detect_labels_response": full, "label_num": k,
             "label_str": lab.get("Name", ""), "label_conf": lab.get("Confidence")}
            for k, lab in enumerate(response["Labels"], 1)]
    if not rows:
        rows = [{"image_id": name, "full_detect_labels_response": full, "label_num": "", "label_str": "",
                 "label_conf": ""}]
    return pd.DataFrame(rows)


def book_celebrities(image, response):
    """RecognizeCelebrities rows in the columns of the book authors' scripts.

    Columns: ``image_id``, ``celeb_full_response``, ``celeb_num``, ``celeb_urls``,
    ``celeb_name``, ``celeb_id``, ``celeb_face_data``, ``celeb_face_conf``,
    ``celeb_match_conf``, ``celeb_metadata`` (nested values as JSON).
    """
    _check(response, "CelebrityFaces", "RecognizeCelebrities")
    name = str(image)
    meta = json.dumps(response.get("ResponseMetadata", {}), default=str)
    rows = [{"image_id": name, "celeb_full_response": json.dumps(face, default=str), "celeb_num": k,
             "celeb_urls": json.dumps(face.get("Urls", [])), "celeb_name": face.get("Name", ""),
             "celeb_id": face.get("Id", ""), "celeb_face_data": json.dumps(face.get("Face", {})),
             "celeb_face_conf": (face.get("Face") or {}).get("Confidence"),
             "celeb_match_conf": face.get("MatchConfidence"), "celeb_metadata": meta}
            for k, face in enumerate(response["CelebrityFaces"], 1)]
    if not rows:
        rows = [{"image_id": name, "celeb_full_response": "", "celeb_num": "", "celeb_urls": "",
                 "celeb_name": "", "celeb_id": "", "celeb_face_data": "", "celeb_face_conf": "",
                 "celeb_match_conf": "", "celeb_metadata": meta}]
    return pd.DataFrame(rows)
