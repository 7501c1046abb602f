"""Autotagging (the book's chapter 6): off-the-shelf taggers, and checking them against gold labels.

* :mod:`~imgasdata.autotag.rekognition` — AWS Rekognition with preflight, retries, a dry run and a
  result store that never pays twice (:mod:`~imgasdata.autotag.store`);
* :mod:`~imgasdata.autotag.tidy` — Rekognition answers as tidy tables (``tidy_labels``, ``tidy_celebrities``, ...);
* :mod:`~imgasdata.autotag.local` — offline taggers: ImageNet classes, faces (dlib), text (RapidOCR);
* :mod:`~imgasdata.autotag.validate` — confusion matrix and metrics against gold labels, threshold sweeps,
  label frequencies.
"""

from .tidy import tidy_celebrities, tidy_faces, tidy_labels, tidy_moderation, tidy_text

# The function validate.validate is not re-exported here: it would hide the module of the same name.
__all__ = ["tidy_celebrities", "tidy_faces", "tidy_labels", "tidy_moderation", "tidy_text"]
