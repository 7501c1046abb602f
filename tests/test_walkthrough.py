"""The README's "Your own project" walkthrough, run command by command on a flat folder and a wide coder sheet.

The commands are read from the README itself (the first ``bash`` block of that
section), so the test runs exactly what a reader types. The folder is built from
the sample data's real pictures (four classes of Twemoji), with the traps of a
real project planted: an exact copy, a larger re-saved copy, a truncated file, an
empty file and a 40 x 40 thumbnail; the sheet has class names, empty cells, a coder
who sometimes disagrees, two ties and an image nobody rated.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from imgasdata.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
CLASSES = ("flags", "fruit_vegetables", "hearts", "vehicles")
CODERS = ("coder_a", "coder_b", "coder_c")


def walkthrough_commands():
    """The ``imgasdata`` lines of the first bash block under "## Your own project" in the README."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Your own project", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.startswith("imgasdata ")]


def build_project(root, multiclass, new_images):
    """``root/photos/`` (flat, neutral names), ``root/sheet.csv`` (wide) and ``root/new_photos/``."""
    rng = np.random.default_rng(0)
    files = sorted(f for c in CLASSES for f in multiclass.glob(f"*/{c}/*.png"))
    order = rng.permutation(len(files))
    photos = root / "photos"
    photos.mkdir(parents=True)
    truth = {}
    for i, j in enumerate(order):
        name = f"img_{i:03d}.png"
        shutil.copyfile(files[j], photos / name)
        truth[name] = files[j].parent.name
    # the traps of a real folder
    shutil.copyfile(photos / "img_000.png", photos / "img_900.png")  # an exact copy
    big = Image.open(photos / "img_001.png").convert("RGBA").resize((144, 144), Image.LANCZOS)
    big.save(photos / "img_901.png")  # a larger re-saved copy (dedup keeps the largest)
    data = (photos / "img_002.png").read_bytes()
    (photos / "img_902.png").write_bytes(data[: len(data) // 2])  # truncated
    (photos / "img_903.png").write_bytes(b"")  # empty
    Image.open(photos / "img_003.png").convert("RGBA").resize((40, 40)).save(photos / "img_904.png")  # thumbnail
    for copy, source in (("img_900.png", "img_000.png"), ("img_901.png", "img_001.png"),
                         ("img_902.png", "img_002.png"), ("img_903.png", "img_003.png"),
                         ("img_904.png", "img_003.png")):
        truth[copy] = truth[source]

    rows = []
    for k, (name, label) in enumerate(sorted(truth.items())):
        row = {"image": f"photos/{name}", **{c: label for c in CODERS}}
        if k % 9 == 4:  # coder_c sometimes sees another class
            row["coder_c"] = CLASSES[(CLASSES.index(label) + 1) % len(CLASSES)]
        if k % 11 == 5 and k % 9 != 4:  # a rating not given (never with the disagreement: no extra tie)
            row["coder_b"] = ""
        rows.append(row)
    sheet = pd.DataFrame(rows)
    for name, other in (("img_010.png", 1), ("img_020.png", 2)):  # two ties: one vote each, one cell empty
        i = sheet.index[sheet["image"] == f"photos/{name}"][0]
        label = truth[name]
        sheet.loc[i, list(CODERS)] = [label, CLASSES[(CLASSES.index(label) + other) % len(CLASSES)], ""]
    sheet.loc[sheet["image"] == "photos/img_030.png", list(CODERS)] = ""  # nobody rated it
    sheet.to_csv(root / "sheet.csv", index=False)
    shutil.copytree(new_images, root / "new_photos", ignore=shutil.ignore_patterns(".*"))
    return truth


def test_readme_walkthrough_runs_command_after_command(sample_data, tmp_path, monkeypatch, capsys):
    commands = walkthrough_commands()
    assert [c[1] for c in commands] == ["labels", "agreement", "clean", "dedup", "split", "train", "errors",
                                        "predict"]
    truth = build_project(tmp_path, sample_data["multiclass"], sample_data["new_images"])
    monkeypatch.chdir(tmp_path)
    printed = {}
    for command in commands:
        capsys.readouterr()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = main(command[1:])
        out, err = capsys.readouterr()
        assert code == 0, f"{shlex.join(command)}\n{out}\n{err}"
        printed[command[1]] = out

    labels = pd.read_csv("labels.csv", keep_default_na=False)
    assert labels.columns.tolist()[:2] == ["path", "label"]
    assert len(labels) == len(truth)
    ties = pd.read_csv("ties.csv")
    assert {"../photos/img_010.png", "photos/img_010.png"} & set(ties["path"])
    assert len(ties) == 3  # two ties and the image nobody rated
    assert "nominal" in printed["agreement"]
    clean = pd.read_csv("clean.csv")
    not_kept = set(clean.loc[~clean["keep"].astype(bool), "path"].map(lambda p: Path(p).name))
    assert {"img_902.png", "img_903.png", "img_904.png"} <= not_kept
    dups = pd.read_csv("dups.csv", keep_default_na=False)
    duplicate = set(dups.loc[dups["duplicate"].astype(str) == "True", "path"].map(lambda p: Path(p).name))
    assert "img_001.png" in duplicate and "img_901.png" not in duplicate  # the larger copy is kept
    assert duplicate & {"img_000.png", "img_900.png"}

    manifest = pd.read_csv("DATA/manifest.csv")
    assert {"path", "label", "split"} <= set(manifest.columns)
    assert set(manifest["label"]) == set(CLASSES)
    left_out = {"img_902.png", "img_903.png", "img_904.png", "img_001.png", "img_030.png"}
    assert not set(manifest["path"].map(lambda p: Path(p).name)) & left_out

    metrics = json.loads(Path("run/metrics.json").read_text())
    for split in ("val", "test"):
        for k in ("accuracy", "precision", "recall", "f1"):
            low, high = metrics[split]["intervals"][k]
            assert low <= metrics[split][k] <= high and high - low > 0
    assert "macro averages over 4 classes" in printed["train"] and "95 % intervals" in printed["train"]

    errors = pd.read_csv("mistakes/errors.csv", keep_default_na=False)
    assert errors.columns.tolist() == ["path", "true", "predicted", "probability", "error"]
    assert Path("mistakes/gallery.png").is_file()
    predictions = pd.read_csv("predictions.csv", keep_default_na=False)
    assert len(predictions) == len(list(Path("new_photos").iterdir()))
    assert (predictions["error"] != "").sum() == 1  # the broken download gets its row
    assert set(predictions.loc[predictions["error"] == "", "label"]) <= set(CLASSES)
