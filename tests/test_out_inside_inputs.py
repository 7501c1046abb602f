"""Every command refuses an output that is an input file, or is (or lies inside) an input folder.

Each case runs the command line and checks: exit status 2, one sentence on stderr, and not one
byte added or changed under the test's folder (no output file, the inputs as they were). No model
is loaded and no image decoded: the refusal comes first.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgasdata.cli import main
from imgasdata.runs import METRICS, PREDICTIONS, WEIGHTS


def tree(folder):
    return {p: (p.read_bytes() if p.is_file() else None) for p in Path(folder).rglob("*")}


@pytest.fixture
def work(tmp_path, monkeypatch):
    """photos/ (two classes of two images), other/, sheet.csv, tags.csv, gold.csv, a fake run/ and nbs/."""
    monkeypatch.chdir(tmp_path)
    for k, cls in enumerate(["a", "a", "b", "b"]):
        (tmp_path / "photos" / cls).mkdir(parents=True, exist_ok=True)
        arr = np.random.default_rng(k).integers(0, 256, (70, 70, 3), dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / "photos" / cls / f"{k}.png")
    (tmp_path / "other").mkdir()
    Image.new("RGB", (70, 70), "red").save(tmp_path / "other" / "r.png")
    pd.DataFrame({"image": ["photos/a/0.png", "photos/b/2.png"], "coder_a": ["a", "b"],
                  "coder_b": ["a", "b"]}).to_csv(tmp_path / "sheet.csv", index=False)
    pd.DataFrame({"image": ["x.png"], "label": ["Crowd"], "confidence": [90.0]}).to_csv(tmp_path / "tags.csv",
                                                                                      index=False)
    pd.DataFrame({"image": ["x.png"], "protest": [1]}).to_csv(tmp_path / "gold.csv", index=False)
    (tmp_path / "run").mkdir()
    for name in (WEIGHTS, METRICS, PREDICTIONS):
        (tmp_path / "run" / name).write_text("not read: the refusal comes first")
    (tmp_path / "nbs").mkdir()
    (tmp_path / "nbs" / "00_intro.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                                                 "nbformat_minor": 5}))
    return tmp_path


CASES = {
    "check into the folder": ["check", "photos", "--out", "photos/check.csv"],
    "dedup table into the folder": ["dedup", "photos", "--out", "photos/a/dups.csv"],
    "dedup cache into the folder": ["dedup", "photos", "--out", "dups.csv", "--cache", "photos/h.sqlite"],
    "dedup --across table into B": ["dedup", "--across", "photos", "other", "--out", "other/leaks.csv"],
    "clean report into the folder": ["clean", "photos", "--out", "photos/clean.csv"],
    "labels over the sheet": ["labels", "sheet.csv", "--out", "sheet.csv"],
    "labels ties over the sheet": ["labels", "sheet.csv", "--out", "labels.csv", "--ties", "sheet.csv"],
    "agreement over the sheet": ["agreement", "sheet.csv", "--out", "sheet.csv"],
    "validate-tags over the gold": ["validate-tags", "tags.csv", "gold.csv", "--concept", "protest",
                                    "--labels", "Crowd", "--out", "gold.csv"],
    "evaluate into the images": ["evaluate", "run", "photos", "--out", "photos/m.json"],
    "evaluate over the run's metrics": ["evaluate", "run", "photos", "--out", f"run/{METRICS}"],
    "evaluate over the run's weights": ["evaluate", "run", "photos", "--out", f"run/{WEIGHTS}"],
    "predict into the images": ["predict", "run", "photos", "--out", "photos/b/p.csv"],
    "predict over the run's predictions": ["predict", "run", "photos", "--out", f"run/{PREDICTIONS}"],
    "predict over an input image": ["predict", "run", "photos/a/0.png", "--out", "photos/a/0.png"],
    "grid into the data": ["grid", "photos", "--out", "photos/grid"],
    "notebooks over the notebooks": ["notebooks", "--folder", "nbs", "--out", "nbs"],
    "notebooks inside the notebooks": ["notebooks", "--folder", "nbs", "--out", "nbs/out"],
    "capsule results inside the notebooks": ["capsule", "run", "--folder", "nbs", "--results", "nbs/results",
                                             "--data", "data"],
}


@pytest.mark.parametrize("argv", list(CASES.values()), ids=list(CASES))
def test_output_among_the_inputs_is_refused_before_anything_is_written(work, capsys, argv):
    before = tree(work)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "input" in err, err
    assert tree(work) == before


def test_outputs_beside_the_inputs_still_work(work, capsys):
    """Files stand for themselves: a table next to an input file, or a new file in the run folder, is fine."""
    assert main(["check", "photos/a/0.png", "--out", "photos/a/check.csv"]) == 0
    assert pd.read_csv(work / "photos" / "a" / "check.csv")["ok"].all()
    assert main(["agreement", "sheet.csv", "--out", "agreement.csv"]) == 0
    assert (work / "agreement.csv").is_file()


def test_split_with_a_table_inside_out_is_refused_before_clearing(work, capsys):
    """A labels or groups table kept inside OUT is an input: --overwrite must not clear OUT around it."""
    pd.DataFrame({"path": [f"photos/{c}/{k}.png" for k, c in enumerate("aabb")], "label": list("aabb")}).to_csv(
        "labels.csv", index=False)
    assert main(["split", "labels.csv", "--out", "ds", "--val", "0", "--test", "0.5"]) == 0
    pd.DataFrame({"path": [f"../photos/{c}/{k}.png" for k, c in enumerate("aabb")], "label": list("aabb")}).to_csv(
        "ds/labels_copy.csv", index=False)
    before = tree(work)
    for argv in (["ds/labels_copy.csv"], ["labels.csv", "--groups", "ds/labels_copy.csv"]):
        assert main(["split", *argv, "--out", "ds", "--val", "0", "--test", "0.5", "--overwrite"]) == 2
        assert "inside --out" in capsys.readouterr().err
        assert tree(work) == before  # the earlier split is still there, not half cleared
