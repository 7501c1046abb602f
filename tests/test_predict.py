"""imgasdata.predict and predict.evaluate: labelling new images into a CSV, resuming, re-scoring a run."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pandas as pd
import pytest

import imgasdata.batches as ibatches
from conftest import PAIR, make_image_file
from imgasdata.autotag.local import imagenet_labels
from imgasdata.images import expand_inputs
from imgasdata.predict import evaluate, predict
from imgasdata.runs import load_model

PROB_COLUMNS = [f"prob_{c}" for c in PAIR]
COLUMNS = ["path", "label", *PROB_COLUMNS, "error"]


@pytest.fixture(scope="module")
def loaded(trained_run):
    """The shared run, loaded once: ``(model, manifest)``."""
    return load_model(trained_run[0])


@pytest.fixture
def mixed_folder(tmp_path, sample_data):
    """Good PNGs from new_images plus a broken file and a zero-byte file."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    goods = sorted(sample_data["new_images"].glob("img_*.png"))[:4]
    for f in goods:
        shutil.copyfile(f, folder / f.name)
    shutil.copyfile(sample_data["new_images"] / "broken_download.jpg", folder / "broken_download.jpg")
    make_image_file("zero", folder, name="empty.png")
    return folder


@pytest.fixture
def many_images(tmp_path, pair_dir):
    """Ten real images, in order, for the interruption tests."""
    folder = tmp_path / "many"
    folder.mkdir()
    files = sorted((pair_dir / "test").rglob("*.png"))[:10]
    for i, f in enumerate(files):
        shutil.copyfile(f, folder / f"{i:02d}_{f.name}")
    return sorted(folder.iterdir())


def check_rows(df, n_good):
    assert list(df.columns) == COLUMNS
    good = df[df["error"] == ""]
    bad = df[df["error"] != ""]
    assert len(good) == n_good
    assert set(good["label"]) <= set(PAIR)
    probs = good[PROB_COLUMNS].to_numpy(dtype=float)
    assert np.abs(probs.sum(axis=1) - 1).max() < 1e-4
    assert (good["label"].to_numpy() == np.array(PAIR)[probs.argmax(axis=1)]).all()
    assert (bad["label"] == "").all()
    assert bad[PROB_COLUMNS].isna().all().all()
    assert all(str(p) in e for p, e in zip(bad["path"], bad["error"]))
    return good, bad


def test_predict_broken_zero_byte_and_missing(trained_run, mixed_folder):
    run_dir, _ = trained_run
    missing = mixed_folder.parent / "not_there.png"
    df = predict(run_dir, [mixed_folder, missing], progress=False, device="cpu", batch_size=3)
    assert len(df) == 4 + 3  # one row per input file, in order: folder listing, then the missing path
    assert df["path"].tolist() == [str(p) for p in sorted(mixed_folder.iterdir())] + [str(missing)]
    good, bad = check_rows(df, n_good=4)
    reasons = dict(zip(bad["path"].map(lambda p: p.rsplit("/", 1)[-1]), bad["error"]))
    assert set(reasons) == {"broken_download.jpg", "empty.png", "not_there.png"}
    assert "empty file" in reasons["empty.png"]
    assert "not found" in reasons["not_there.png"]


def test_predict_agrees_with_training_predictions(trained_run, loaded):
    run_dir, run = trained_run
    test_rows = run.predictions[run.predictions["split"] == "test"]
    df = predict(loaded, list(test_rows["path"]), progress=False, device="cpu")
    assert df["label"].tolist() == test_rows["pred"].tolist()
    assert df[PROB_COLUMNS].to_numpy() == pytest.approx(test_rows[PROB_COLUMNS].to_numpy(), abs=1e-4)


def test_predict_writes_csv(trained_run, loaded, mixed_folder, tmp_path):
    out = tmp_path / "labels" / "new.csv"
    df = predict(loaded, mixed_folder, out_csv=out, progress=False, device="cpu")
    assert out.is_file()
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == COLUMNS and len(rows) == 1 + 6
    pd.testing.assert_frame_equal(df, pd.read_csv(out, keep_default_na=False,
                                                  na_values={c: [""] for c in PROB_COLUMNS}))
    check_rows(df, n_good=4)
    # running again without resume starts the CSV afresh (no duplicates)
    again = predict(loaded, mixed_folder, out_csv=out, progress=False, device="cpu")
    assert len(again) == 6 and again["path"].is_unique


def test_csv_is_written_batch_by_batch_and_resume_after_interruption(loaded, many_images, tmp_path, monkeypatch):
    out = tmp_path / "labels.csv"
    calls = []
    real_load = ibatches.load_image

    def interrupted_load(path, *args, **kwargs):
        calls.append(str(path))
        if len(calls) == 7:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the third batch
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(ibatches, "load_image", interrupted_load)
    with pytest.raises(KeyboardInterrupt):
        predict(loaded, many_images, out_csv=out, batch_size=3, workers=1, progress=False, device="cpu")
    partial = pd.read_csv(out)
    assert 0 < len(partial) < len(many_images)  # finished batches were already on disk
    assert len(partial) % 3 == 0
    assert partial["path"].tolist() == [str(p) for p in many_images[: len(partial)]]

    # resume on the full list: only the missing paths are decoded, nothing is duplicated
    calls.clear()
    monkeypatch.setattr(ibatches, "load_image", real_load)
    counted = []
    monkeypatch.setattr(ibatches, "load_image", lambda p, *a, **k: counted.append(str(p)) or real_load(p, *a, **k))
    df = predict(loaded, many_images, out_csv=out, batch_size=3, workers=1, resume=True, progress=False,
                 device="cpu")
    assert sorted(counted) == sorted(str(p) for p in many_images[len(partial):])
    assert len(df) == len(many_images) and df["path"].is_unique
    assert set(df["path"]) == {str(p) for p in many_images}
    check_rows(df, n_good=len(many_images))
    with open(out) as fh:
        assert sum(line.startswith("path,") for line in fh) == 1  # one header line


def test_resume_on_half_then_all(loaded, many_images, tmp_path):
    out = tmp_path / "labels.csv"
    first = predict(loaded, many_images[:5], out_csv=out, progress=False, device="cpu")
    assert len(first) == 5
    full = predict(loaded, many_images, out_csv=out, resume=True, progress=False, device="cpu")
    assert len(full) == 10 and full["path"].is_unique
    pd.testing.assert_frame_equal(full.iloc[:5].reset_index(drop=True), first)
    fresh = predict(loaded, many_images, progress=False, device="cpu")
    assert fresh["label"].tolist() == full["label"].tolist()
    # resuming when everything is done changes nothing
    done = predict(loaded, many_images, out_csv=out, resume=True, progress=False, device="cpu")
    pd.testing.assert_frame_equal(done, full)


def test_resume_with_header_only_csv(loaded, many_images, tmp_path):
    """Interrupted before the first batch was written: the CSV holds just the header."""
    out = tmp_path / "labels.csv"
    out.write_text(",".join(COLUMNS) + "\n")
    df = predict(loaded, many_images[:4], out_csv=out, resume=True, progress=False, device="cpu")
    assert len(df) == 4
    assert "path" not in set(df["path"])  # no second header line read back as a row
    assert df[PROB_COLUMNS].dtypes.map(lambda d: d.kind == "f").all()


def test_resume_with_empty_csv(loaded, many_images, tmp_path):
    """Killed right after the CSV was created: zero bytes on disk."""
    out = tmp_path / "labels.csv"
    out.write_bytes(b"")
    df = predict(loaded, many_images[:2], out_csv=out, resume=True, progress=False, device="cpu")
    assert len(df) == 2 and list(df.columns) == COLUMNS


def test_expand_inputs_dedupes_and_keeps_missing(tmp_path, write_png):
    a = write_png(tmp_path / "f" / "a.png")
    b = write_png(tmp_path / "f" / "sub" / "b.png")
    got = expand_inputs([tmp_path / "f", a, tmp_path / "nope.jpg"])
    assert got == [a, b, tmp_path / "nope.jpg"]
    assert expand_inputs(str(a)) == [a]


def test_imagenet_labels_autotagger(sample_data):
    df = imagenet_labels([sample_data["photos"] / "coffee.jpg", sample_data["new_images"] / "broken_download.jpg"],
                         k=3, device="cpu")
    coffee = df[df["rank"] > 0]
    assert coffee["rank"].tolist() == [1, 2, 3]
    assert coffee["label"].iloc[0] == "espresso"
    assert coffee["prob"].is_monotonic_decreasing
    broken = df[df["rank"] == 0]
    assert len(broken) == 1 and broken["error"].iloc[0] != ""


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_reproduces_the_runs_test_metrics(trained_run, pair_dir):
    run_dir, _ = trained_run
    saved = json.loads((run_dir / "metrics.json").read_text())["test"]
    metrics, preds = evaluate(run_dir, pair_dir / "test", device="cpu", progress=False)
    for key in ("accuracy", "precision", "recall", "f1"):
        assert metrics[key] == pytest.approx(saved[key])
    assert metrics["confusion_matrix"] == saved["confusion_matrix"]
    assert metrics["n"] == saved["n"] == 28
    assert list(preds.columns[:3]) == ["path", "true", "label"]
    assert (preds["error"] == "").all()
    # a dataset folder works too: its test split is used
    metrics2, _ = evaluate(run_dir, pair_dir, device="cpu", progress=False)
    assert metrics2["confusion_matrix"] == saved["confusion_matrix"]


def test_evaluate_leaves_unreadable_files_out_of_the_metrics(trained_run, pair_dir, tmp_path):
    run_dir, _ = trained_run
    data = tmp_path / "test"
    shutil.copytree(pair_dir / "test", data)
    make_image_file("corrupt", data / PAIR[0], name="zz_broken.png")
    metrics, preds = evaluate(run_dir, data, device="cpu", progress=False)
    assert len(preds) == 29 and (preds["error"] != "").sum() == 1
    assert metrics["n"] == 28


def test_evaluate_unknown_classes_is_an_error(trained_run, sample_data):
    run_dir, _ = trained_run
    with pytest.raises(ValueError, match="was not trained on"):
        evaluate(run_dir, sample_data["multiclass"] / "test", device="cpu", progress=False)


def test_a_bug_in_a_transform_raises_instead_of_costing_rows(tmp_path):
    """Only unreadable files become error rows; an injected TypeError keeps its traceback."""
    import torch
    from PIL import Image

    good = tmp_path / "good.png"
    Image.new("RGB", (20, 20), (200, 10, 10)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")

    def buggy(image):
        raise TypeError("a bug in the transform")

    with pytest.raises(TypeError, match="a bug in the transform"):
        list(ibatches.load_batches([good, bad], buggy, batch_size=2, workers=1))
    tensor, message = ibatches.load_one(bad, buggy, None)
    assert tensor is None and "bad.png" in message  # the unreadable file is still a row, not a crash
    batches = list(ibatches.load_batches([good, bad], lambda image: torch.zeros(3), batch_size=2, workers=1))
    assert [b[0] for b in batches] == [[0]] and list(batches[0][2]) == [1]
