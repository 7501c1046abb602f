"""Write data/annotator_sheet.csv: a seeded, simulated annotator sheet for notebooks 01 and 03.

The images are all 200 files of the sample ``binary/`` dataset (``imgasdata sample-data``),
in an order shuffled with ``random.Random(0)``. Three annotators (``ann1``-``ann3``)
"rate" every image; ``ann3`` skips two images.

* ``symbol`` (0/1, the dataset's own label: flag or religious symbol). ``ann1`` and
  ``ann2`` flip the true answer with probability 0.08; ``ann3`` misses a true symbol
  with probability 0.30 and never adds one, so the "any annotator" rule and the
  majority rule differ on a few images.
* ``anger``, ``disgust``, ``enthusiasm``, ``fear``, ``sadness``: the book's five evoked
  emotions (chapter 7.3), each scored 0-10. **Simulated, and built to be unreliable**, as
  evoked emotion is in real codings: nobody felt anything looking at these emoji.
  Each image gets a weak "shared" level per emotion, 0 for most: half of the flags and
  religious symbols get an enthusiasm level of 2-5 (the only link between picture and
  emotion, and a weak one); of the other images, 60 % get one emotion, drawn at random,
  at 2-5, and 40 % none. Each annotator then rates what *she* feels: the shared level
  plus a personal leaning for that emotion (-1 to +2, fixed per annotator) and noise
  (Gaussian, sd 2); and with probability 0.25 per image she reads one random emotion
  into it at 3-7 that the others need not feel. Scores are rounded and clipped to
  0-10, and a score under 2 is recorded as 0.
  The result: Krippendorff's alpha well below the 0.667 line for every emotion,
  and a label that says little about the picture.

Run from the repository root after building the sample data:
``python tools/make_annotator_sheet.py`` (same output on every machine).
"""

import csv
import random
from pathlib import Path

EMOTIONS = ("anger", "disgust", "enthusiasm", "fear", "sadness")
ANNOTATORS = ("ann1", "ann2", "ann3")


def _emotion_scores(rng, label, leaning):
    """One image's scores: {annotator: {emotion: 0-10}}."""
    shared = dict.fromkeys(EMOTIONS, 0.0)
    if label == "positive" and rng.random() < 0.35:
        shared["enthusiasm"] = rng.uniform(2, 5)  # the only link between picture and emotion, and a weak one
    elif rng.random() < 0.6:
        shared[rng.choice(EMOTIONS)] = rng.uniform(2, 5)
    scores = {}
    for ann in ANNOTATORS:
        # reads an emotion into the picture that the others do not feel
        own = rng.choice(EMOTIONS) if rng.random() < 0.25 else None
        row = {}
        for e in EMOTIONS:
            felt = shared[e] + leaning[ann][e] + rng.gauss(0, 2.5) if shared[e] else 0.0
            if e == own:
                felt = max(felt, rng.uniform(3, 7))
            value = min(10, max(0, round(felt)))
            row[e] = value if value >= 2 else 0
        scores[ann] = row
    return scores


def main(data=Path("data"), out=Path("data/annotator_sheet.csv"), seed=0):
    rng = random.Random(seed)
    with open(data / "binary" / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    images = sorted((r["path"], r["label"]) for r in rows)
    rng.shuffle(images)
    skipped = set(p for p, _ in rng.sample(images, 2))
    leaning = {ann: {e: rng.choice((-1, 0, 0, 1, 2)) for e in EMOTIONS} for ann in ANNOTATORS}
    lines = []
    for path, label in images:
        truth = int(label == "positive")
        emotions = _emotion_scores(rng, label, leaning)
        for ann in ANNOTATORS:
            if ann == "ann3" and path in skipped:
                continue
            if ann == "ann3":
                symbol = 0 if truth and rng.random() < 0.30 else truth
            else:
                symbol = 1 - truth if rng.random() < 0.08 else truth
            lines.append({"image": "binary/" + path, "annotator": ann, "symbol": symbol, **emotions[ann]})
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["image", "annotator", "symbol", *EMOTIONS], lineterminator="\n")
        w.writeheader()
        w.writerows(lines)
    print(f"{len(lines)} rows for {len(images)} images written to {out}")


if __name__ == "__main__":
    main()
