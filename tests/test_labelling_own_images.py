"""The labelling chapter's three commands on a researcher's own folder of photos, end to end.

Not the sample data's emoji: real photographs (scikit-image's and scikit-learn's bundled
pictures, cropped at different places and sizes), in JPEG and PNG, colour, grey and with an
alpha channel, in nested folders with spaces and a Latin-1 name, beside a text file and a
broken download. Labels live in a CSV one folder up, with paths relative to it, as a
researcher's spreadsheet would have them.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgasdata.labelling.suggest import COLUMNS
from imgasdata.paths import path_key, path_text
from test_cli import run_cli

#: Two kinds of picture a researcher might code: a living being, or a thing (china and flower,
#: scikit-learn's two photos, are added as things: a temple and a flower bed).
LIVING = ("astronaut", "chelsea", "camera")
THINGS = ("coffee", "rocket", "coins", "brick", "gravel", "clock", "colorwheel")


def _crops(array, k, rng):
    """``k`` crops of ``array`` covering 60-90 % of each side, at random places."""
    h, w = array.shape[:2]
    for _ in range(k):
        ch, cw = int(h * rng.uniform(0.6, 0.9)), int(w * rng.uniform(0.6, 0.9))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        yield array[y:y + ch, x:x + cw]


@pytest.fixture()
def own_photos(tmp_path):
    """``(folder, truth)``: about 40 photos in nested folders, and the class of each (path key -> class)."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    folder = tmp_path / "project" / "my photos"
    rng = np.random.default_rng(0)
    truth = {}
    sources = {name: getattr(skimage.data, name)() for name in LIVING + THINGS}
    china, flower = load_sample_images().images
    sources.update(china=china, flower=flower)
    kind = {name: "living" if name in LIVING else "thing" for name in sources}
    for name, array in sources.items():
        for j, crop in enumerate(_crops(array, 3, rng)):
            sub = folder / ("2024 march" if j % 2 else "april")
            sub.mkdir(parents=True, exist_ok=True)
            if j == 0:  # a JPEG, as most photos come
                path = sub / f"{name} {j}.jpg"
                Image.fromarray(crop).convert("RGB").save(path, quality=85)
            elif j == 1 and crop.ndim == 3 and crop.shape[2] == 3:  # a PNG with an alpha channel
                path = sub / f"{name}_{j}.png"
                Image.fromarray(crop).convert("RGBA").save(path)
            else:  # grey pictures stay grey
                path = sub / f"{name}_{j}.png"
                Image.fromarray(crop).save(path)
            truth[path_key(path)] = kind[name]
    # a Latin-1 file name (bytes that are not UTF-8), where the file system allows one
    latin = os.path.join(os.fsencode(folder / "april"), b"Bj\xf6rk.png")
    try:
        with open(latin, "wb") as fh:
            Image.fromarray(skimage.data.chelsea()[40:260, 60:300]).save(fh, format="PNG")
        truth[path_key(os.fsdecode(latin))] = "living"
    except OSError:
        pass
    (folder / "notes.txt").write_text("not a picture")
    (folder / "april" / "broken download.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut off")
    return folder, truth


def _labels_csv(path, items):
    """A labels CSV at ``path`` with paths relative to its folder: ``items`` is (path key, label).

    Path keys are text, a Latin-1 byte spelled ``\\xf6``, as suggest's sheet writes it and a
    researcher's spreadsheet keeps it."""
    pd.DataFrame({"path": [os.path.relpath(k, path.parent) for k, _ in items],
                  "label": [label for _, label in items]}).to_csv(path, index=False)
    return path


def test_suggest_label_issues_and_estimate_on_own_photos(own_photos, tmp_path, capsys):
    folder, truth = own_photos
    keys = sorted(truth)
    results = tmp_path / "project" / "results"

    # 1. cold start: no labels yet, a diverse first batch
    code, text, err = run_cli(capsys, "suggest", folder, "--n", 8, "--out", results / "first.csv", "--device", "cpu")
    assert code == 0, err
    first = pd.read_csv(results / "first.csv", keep_default_na=False)
    assert list(first.columns) == COLUMNS
    ranked = first[first["rank"] != ""]
    assert len(ranked) == 8 and (ranked["strategy"] == "diverse").all() and "cold start" in text
    assert first.loc[first["rank"] == "", "path"].str.endswith("broken download.jpg").tolist() == [True]
    assert not first["path"].str.endswith("notes.txt").any()  # not an image: not in the pool at all
    assert len(first) == 8 + 1  # the first 8, plus the broken picture's error row
    assert len(pd.read_csv(results / "first_sheet.csv")) == 8

    # 2. the first batch coded: the next round fits a model and leaves the coded images out
    labelled = [k for k in keys if "april" in k][::2] + [k for k in keys if "march" in k][::3]
    labels = _labels_csv(tmp_path / "project" / "labels.csv", [(k, truth[k]) for k in labelled])
    code, text, err = run_cli(capsys, "suggest", folder, "--labels", labels, "--n", 100,
                              "--out", results / "next.csv", "--device", "cpu")
    assert code == 0, err
    nxt = pd.read_csv(results / "next.csv", keep_default_na=False)
    ranked = nxt[nxt["rank"] != ""]
    assert (ranked["strategy"] == "hybrid").all()
    assert {path_key(p) for p in ranked["path"]} == {path_text(k) for k in keys} - {path_text(k) for k in labelled}
    assert set(ranked["predicted"]) <= {"living", "thing"}

    # 3. which labels to doubt: every coded photo gets one row, a flipped label is among the most doubtful
    every = _labels_csv(tmp_path / "project" / "all_labels.csv",
                        [(k, truth[k]) for k in keys])
    flipped = next(k for k in keys if "astronaut" in k)
    table = pd.read_csv(every)
    table.loc[table["path"].str.contains("astronaut") & table["path"].str.endswith(os.path.basename(flipped)),
              "label"] = "thing"
    table.to_csv(every, index=False)
    code, text, err = run_cli(capsys, "label-issues", every, "--folds", 3, "--out", results / "issues.csv",
                              "--device", "cpu")
    assert code == 0, err
    issues = pd.read_csv(results / "issues.csv", keep_default_na=False)
    assert len(issues) == len(truth) and (issues["error"] == "").all()
    assert "agrees with" in text
    worst = issues.sort_values("quality").head(5)["path"].map(path_key).tolist()
    assert path_text(flipped) in worst

    # 4. the share of living beings among predicted photos, from a random gold sample
    rng = np.random.default_rng(1)
    predicted = {k: truth[k] if rng.random() < 0.85 else ("thing" if truth[k] == "living" else "living")
                 for k in keys}
    preds = pd.DataFrame({"path": [path_text(k) for k in keys], "label": [predicted[k] for k in keys],
                          "error": ""})
    preds.loc[len(preds)] = {"path": path_text(folder / "april" / "broken download.jpg"), "label": "",
                             "error": "could not be decoded"}
    preds.to_csv(results / "predictions.csv", index=False)
    gold_keys = list(rng.choice(keys, size=20, replace=False))
    gold = _labels_csv(tmp_path / "project" / "gold.csv", [(k, truth[k]) for k in gold_keys])
    code, text, err = run_cli(capsys, "estimate", results / "predictions.csv", "--gold", gold,
                              "--positive", "living", "--out", results / "estimate.csv")
    assert code == 0, err
    est = pd.read_csv(results / "estimate.csv")
    assert list(est["method"]) == ["classify_and_count", "corrected", "ppi"]
    assert (est["n_predicted"] == len(keys)).all() and (est["n_gold"] == 20).all()
    assert ((est["lower"] <= est["estimate"]) & (est["estimate"] <= est["upper"])).all()
    share = np.mean([predicted[k] == "living" for k in keys])
    assert est.set_index("method").loc["classify_and_count", "estimate"] == pytest.approx(share, abs=1e-3)
