"""The numbers the course notebooks rely on, with a stated tolerance.

nbval (tests/nbval_sanitize.cfg) masks every decimal number in the committed
notebook outputs, since CPUs differ in the last digits. The values a notebook's
prose builds on are asserted here instead, on the same sample data and settings,
in head mode (a frozen backbone: seconds on a CPU).
"""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imgasdata.grid import diverged
from imgasdata import datasets, sample_data, train
from imgasdata.prepare import agreement, dedup, labels, split


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return sample_data.build_sample_data(tmp_path_factory.mktemp("course_data"), seed=0)


def test_notebook_04_visual_groups_reach_085_test_accuracy_in_head_mode(data):
    # Notebook 04's chosen settings (lr 0.005, momentum 0.9, batch size 4, 15 epochs).
    run = train.train(data["multiclass"], mode="head", epochs=15, lr=0.005, momentum=0.9, batch_size=4,
                      seed=0, progress=False)
    assert run.classes == ["clock_faces", "flags", "fruit_vegetables", "hand_gestures", "hearts", "vehicles"]
    assert run.metrics["test"]["n"] == 30
    # Issue 9's bar: >= 0.85 (at most 4 of 30 test images wrong); we measured 0.967.
    assert run.metrics["test"]["accuracy"] >= 0.85


def test_unicode_categories_are_much_harder_than_visual_groups(tmp_path):
    # Notebook 04's exercise 2: the same model on non-visual Unicode categories.
    folder = sample_data.build_unicode_categories(tmp_path / "uc", seed=0)
    run = train.train(folder, mode="head", epochs=15, lr=0.005, momentum=0.9, batch_size=4, seed=0, progress=False)
    # measured 0.367; chance is 0.167. Anything near the visual groups' 0.97 would mean
    # the exercise no longer makes its point.
    assert 0.17 <= run.metrics["test"]["accuracy"] <= 0.65


def test_notebook_03_book_defaults_and_a_diverging_learning_rate(data):
    defaults = train.train(data["binary"], mode="head", epochs=15, seed=0, progress=False)
    assert defaults.metrics["test"]["accuracy"] >= 0.8  # measured 0.867 (26 of 30)
    too_large = train.train(data["binary"], mode="head", epochs=15, lr=0.5, batch_size=1, seed=0, progress=False)
    val = too_large.history[too_large.history["phase"] == "val"]
    good = defaults.history[defaults.history["phase"] == "val"]
    # Divergence shows in the loss: its validation loss peaks at least ten times above
    # the book's settings' worst epoch (measured: about 150 against under 1).
    assert val["loss"].max() > 10 * good["loss"].max()


# ----------------------------------------------------------------- notebook 01 and 03: issue 15

REPO = Path(__file__).resolve().parents[1]
SHEET = REPO / "data" / "annotator_sheet.csv"
EMOTIONS = ["anger", "disgust", "enthusiasm", "fear", "sadness"]


def _load_tool():
    spec = importlib.util.spec_from_file_location("make_annotator_sheet", REPO / "tools" / "make_annotator_sheet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_annotator_sheet_is_what_the_seeded_tool_writes(data, tmp_path):
    out = tmp_path / "sheet.csv"
    _load_tool().main(data=data["binary"].parent, out=out)
    assert out.read_bytes() == SHEET.read_bytes()


def test_evoked_emotions_are_less_reliable_than_the_symbol():
    # Notebook 01: the book's lesson that evoked emotion is subjective. Measured: symbol 0.66,
    # emotions 0.31 (sadness) to 0.53 (fear).
    sheet = pd.read_csv(SHEET)
    assert list(sheet.columns) == ["image", "annotator", "symbol", *EMOTIONS]
    assert sheet["image"].nunique() == 200
    alpha = agreement.agreement(sheet).set_index("label")["krippendorff_alpha"]
    assert alpha["symbol"] >= 0.55
    for emotion in EMOTIONS:
        assert 0.1 <= alpha[emotion] < 0.6 and alpha[emotion] < alpha["symbol"], (emotion, alpha[emotion])


def test_emotion_label_is_not_learned_where_the_symbol_is(data):
    # Notebook 03, part 7: the same images, split and settings; the emotion model does no better
    # than always answering "negative" (measured: 0.667 = the baseline, recall 0).
    df = datasets.load_dataset(data["binary"], seed=0)
    means = labels.make_labels(pd.read_csv(SHEET), "mean", ["enthusiasm"])
    score = {Path(p).relative_to("binary").as_posix(): v for p, v in zip(means["path"], means["enthusiasm"])}
    rel = df["path"].map(lambda p: Path(p).relative_to(data["binary"]).as_posix())
    emotion_df = df.assign(label=np.where(rel.map(score) >= 2, "positive", "negative"))
    test = emotion_df[emotion_df["split"] == "test"]
    baseline = float((test["label"] == "negative").mean())
    assert 0.55 <= baseline <= 0.8
    emotion = train.train(emotion_df, mode="head", epochs=15, seed=0, positive="positive", progress=False)
    symbol = train.train(df, mode="head", epochs=15, seed=0, progress=False)
    assert emotion.metrics["test"]["accuracy"] <= baseline + 0.1
    assert symbol.metrics["test"]["accuracy"] >= 0.8 >= emotion.metrics["test"]["accuracy"] + 0.1


def test_planted_copies_leak_into_a_plain_split_but_not_a_grouped_one(data, tmp_path):
    # Notebook 01's leakage demo, checked against the planted truth (copies.csv), not the hash.
    root = data["binary"].parent
    binary = pd.read_csv(root / "binary" / "labels.csv")
    copies = pd.read_csv(root / "leak_copies" / "copies.csv")
    task = pd.concat([pd.DataFrame({"path": "binary/" + binary["path"], "label": binary["label"]}),
                      pd.DataFrame({"path": "leak_copies/" + copies["path"], "label": copies["label"]})])
    groups = dedup.find_duplicates([root / "binary", root / "leak_copies"], threshold=10, progress=False)
    across = {}
    for name, kw in (("plain", {}), ("grouped", {"groups": groups})):
        manifest, _ = split.split_dataset(task, tmp_path / name, val=0.15, test=0.15, seed=0, base=root, **kw)
        # the manifest's source is the labelled file (absolute); its split is where it went
        where = {Path(os.path.relpath(s, root)).as_posix(): sp
                 for s, sp in zip(manifest["source"], manifest["split"])}
        across[name] = sum({where["leak_copies/" + c], where["binary/" + o]} == {"train", "test"}
                           for c, o in zip(copies["path"], copies["original"]))
    assert across["plain"] >= 3  # measured 9 of 30
    assert across["grouped"] == 0


def test_notebook_03_failure_rule_flags_the_too_large_learning_rate(data):
    # Notebook 03's rule (grid.diverged): a run failed if its training loss after epoch 1 rose above ln 2.
    def failed(run):
        return diverged(run.history, len(run.classes))

    assert not failed(train.train(data["binary"], mode="head", epochs=15, seed=0, progress=False))
    assert failed(train.train(data["binary"], mode="head", epochs=15, lr=0.5, batch_size=1, seed=0, progress=False))
