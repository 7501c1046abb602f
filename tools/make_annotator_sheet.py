"""Write data/annotator_sheet.csv: a small, seeded, simulated annotator sheet for notebook 01.

The images are 80 files of the sample ``binary/`` dataset (``imgasdata sample-data``),
40 per class, drawn with ``random.Random(0)`` from its ``labels.csv``. Three
annotators (``ann1``-``ann3``) "rate" every image; ``ann3`` skips two images.

* ``symbol`` (0/1, the dataset's own label: flag or religious symbol). ``ann1`` and
  ``ann2`` flip the true answer with probability 0.08; ``ann3`` misses a true symbol
  with probability 0.30 and never adds one, so the book's "any annotator" rule and
  the majority rule differ on a few images.
* ``joy``, ``fear``, ``anger``, ``sadness`` (0-10 scores of the emotion each image
  evokes, simulated: the pictures are emoji, not protest photos). Each image gets a
  latent profile: 45 % neutral (every annotator gives 0), 35 % one dominant emotion
  (true level 5-9, others 0-1), 20 % mixed (two emotions at 3-6). Each annotator adds
  noise of -1, 0 or +1 (clipped to 0-10) to non-zero levels.

Run from the repository root after building the sample data:
``python tools/make_annotator_sheet.py`` (same output on every machine).
"""

import csv
import random
from pathlib import Path

EMOTIONS = ("joy", "fear", "anger", "sadness")
ANNOTATORS = ("ann1", "ann2", "ann3")


def main(data=Path("data"), out=Path("data/annotator_sheet.csv"), n_per_class=40, seed=0):
    rng = random.Random(seed)
    with open(data / "binary" / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    images = []
    for label in ("negative", "positive"):
        pool = sorted(r["path"] for r in rows if r["label"] == label)
        images += [(p, label) for p in sorted(rng.sample(pool, n_per_class))]
    rng.shuffle(images)
    skipped = set(p for p, _ in rng.sample(images, 2))
    lines = []
    for path, label in images:
        truth = int(label == "positive")
        kind = rng.random()
        level = dict.fromkeys(EMOTIONS, 0)
        if kind >= 0.45:
            picks = rng.sample(EMOTIONS, 1 if kind < 0.80 else 2)
            for k, e in enumerate(picks):
                level[e] = rng.randint(5, 9) if len(picks) == 1 else rng.randint(3, 6)
            for e in EMOTIONS:
                if e not in picks and len(picks) == 1:
                    level[e] = rng.randint(0, 1)
        for ann in ANNOTATORS:
            if ann == "ann3" and path in skipped:
                continue
            if ann == "ann3":
                symbol = 0 if truth and rng.random() < 0.30 else truth
            else:
                symbol = 1 - truth if rng.random() < 0.08 else truth
            scores = {e: min(10, max(0, v + rng.choice((-1, 0, 1)))) if v else 0 for e, v in level.items()}
            lines.append({"image": "binary/" + path, "annotator": ann, "symbol": symbol, **scores})
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["image", "annotator", "symbol", *EMOTIONS])
        w.writeheader()
        w.writerows(lines)
    print(f"{len(lines)} rows for {len(images)} images written to {out}")


if __name__ == "__main__":
    main()
