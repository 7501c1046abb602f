"""imgasdata.train: the real-data acceptance test, run folders, best-epoch copy, schedules, grid, modes."""

from __future__ import annotations

import json
import math
import re
import shutil
import warnings

import pandas as pd
import pytest
import torch
from torch import nn

from conftest import PAIR, TRAIN_SETTINGS, make_image_file
from imgasdata import backbones, runs
from imgasdata import models as imodels
from imgasdata import train as itrain
from imgasdata.datasets import fingerprint, load_dataset
from imgasdata.errors import SettingsError, UserError
from imgasdata.grid import choose, diverged, grid, rank
from imgasdata.settings import TrainSettings
from imgasdata.train import train

#: Quick head-mode settings for the mechanics tests: the pair dataset's features are cached in-process.
QUICK = {"mode": "head", "device": "cpu", "progress": False}
QUICK_KW = {k: v for k, v in QUICK.items() if k != "progress"}


@pytest.fixture(scope="module")
def pair_df(pair_dir):
    return load_dataset(pair_dir)


def quiet_train(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(*args, **kwargs)


# ----------------------------------------------------------------------------- acceptance


def test_head_mode_on_real_pictures_reaches_90_percent_test_accuracy(trained_run, record_property):
    """Real Twemoji pictures from a pip package, ImageNet weights from a pip package, no network."""
    run_dir, run = trained_run
    test = run.metrics["test"]
    record_property("test_accuracy", test["accuracy"])
    print(f"\nreal-data test accuracy ({' vs '.join(PAIR)}): {test['accuracy']:.3f} "
          f"(n={test['n']}, val {run.metrics['val']['accuracy']:.3f}, best epoch {run.best_epoch})")
    assert run.manifest["dataset"]["n"] == {"train": 84, "val": 28, "test": 28}
    assert test["n"] == 28 and test["labels"] == list(PAIR)
    assert test["accuracy"] >= 0.9
    assert run.metrics["val"]["accuracy"] >= 0.85
    # a model that learned nothing would sit near 0.5 on this balanced task
    assert sum(sum(r) for r in test["confusion_matrix"]) == 28


def test_run_folder_contents(trained_run, pair_dir):
    run_dir, run = trained_run
    for name in ("model.safetensors", "manifest.json", "history.csv", "metrics.json", "predictions.csv",
                 "dataset.csv", "curves.png"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "model.pt").exists() and not (run_dir / "skipped.csv").exists()
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert run.run_dir == run_dir

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["classes"] == list(PAIR) and run.classes == list(PAIR)
    # one settings block: nothing repeated at the top level or in a second block
    assert manifest["format"] == runs.MANIFEST_FORMAT
    assert not {"backbone", "weights", "mode", "seed", "hyperparameters"} & set(manifest)
    settings = manifest["settings"]
    assert set(settings) == set(TrainSettings().recorded())
    assert settings["backbone"] == "efficientnet_lite0" and settings["weights"] == "imagenet"
    assert settings["mode"] == "head" and manifest["task"] == "binary" and manifest["positive"] is None
    pre = manifest["preprocessing"]
    assert pre["image_size"] == 224 and pre["resize"] == "rescale-crop" and pre["normalize"] == "backbone"
    assert pre["mean"] == pytest.approx(backbones.default_preprocessing("efficientnet_lite0")["mean"])
    assert settings["batch_size"] == 4  # the book's default, recorded as used
    assert settings["lr"] == TRAIN_SETTINGS["lr"] and settings["epochs"] == TRAIN_SETTINGS["epochs"]
    assert settings["seed"] == 0
    # read through the Run
    loaded = runs.load_run(run_dir, model=False)
    assert loaded.settings == TrainSettings.from_kwargs(**settings) and loaded.settings.mode == "head"
    assert loaded.settings.image_size == 224 and loaded.preprocessing == pre
    assert 1 <= loaded.best_epoch == manifest["best_epoch"] <= loaded.epochs_run == TRAIN_SETTINGS["epochs"]
    # how the data was split: the book's train/val/test folders, not a seeded 80/10/10
    assert manifest["dataset"]["split"] == {"method": "folders"}
    # the dataset fingerprint is that of the files used
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["dataset"]["sha256"])
    assert manifest["dataset"]["sha256"] == fingerprint(load_dataset(pair_dir))[1]
    assert manifest["dataset"]["source"] == str(pair_dir)
    versions = manifest["versions"]
    assert versions["torch"] == torch.__version__.split("+")[0] or versions["torch"] == torch.__version__
    assert {"python", "torchvision", "timm", "numpy", "pillow", "scikit-learn", "pandas"} <= set(versions)

    dataset = pd.read_csv(run_dir / "dataset.csv")
    assert len(dataset) == 140 and dataset["sha256"].str.fullmatch(r"[0-9a-f]{64}").all()


def test_history_csv(trained_run):
    run_dir, run = trained_run
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history.columns) == ["epoch", "phase", "loss", "accuracy", "precision", "recall", "f1", "lr"]
    epochs = TRAIN_SETTINGS["epochs"]
    assert len(history) == 2 * epochs
    assert list(history["phase"]) == ["train", "val"] * epochs
    assert list(history["epoch"]) == [e for e in range(1, epochs + 1) for _ in range(2)]
    # StepLR with the defaults step_size=7, gamma=0.1
    lr0 = TRAIN_SETTINGS["lr"]
    expected = [lr0 * 0.1 ** ((e - 1) // 7) for e in history["epoch"]]
    assert history["lr"].tolist() == pytest.approx(expected)
    # training loss goes down on real data
    train_loss = history.loc[history["phase"] == "train", "loss"].to_numpy()
    assert train_loss[-1] < train_loss[0]
    assert history[["accuracy", "precision", "recall", "f1"]].apply(lambda c: c.between(0, 1).all()).all()
    pd.testing.assert_frame_equal(history, run.history.reset_index(drop=True), check_dtype=False)


def test_metrics_json_and_predictions(trained_run):
    run_dir, run = trained_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"val", "test"}
    assert metrics["val"]["n"] == 28 and metrics["test"]["n"] == 28
    preds = pd.read_csv(run_dir / "predictions.csv")
    assert set(preds["split"]) == {"val", "test"} and len(preds) == 56
    assert list(preds.columns) == ["path", "split", "label", "pred", f"prob_{PAIR[0]}", f"prob_{PAIR[1]}",
                                   "correct"]
    for split in ("val", "test"):
        part = preds[preds["split"] == split]
        assert part["correct"].mean() == pytest.approx(metrics[split]["accuracy"])
    probs = preds[[f"prob_{c}" for c in PAIR]].to_numpy()
    assert abs(probs.sum(axis=1) - 1).max() < 1e-4
    assert (preds["pred"] == [PAIR[i] for i in probs.argmax(axis=1)]).all()


def test_head_mode_leaves_backbone_untouched(trained_run):
    run_dir, _ = trained_run
    model, _ = runs.load_model(run_dir)
    fresh = imodels.build_model("efficientnet_lite0", 2, weights="imagenet")
    own, ref = model.backbone.state_dict(), fresh.backbone.state_dict()
    assert all(torch.equal(own[k], ref[k]) for k in ref)
    assert not torch.equal(model.head[-1].weight, fresh.head[-1].weight)  # only the head learned


# ----------------------------------------------------------------------------- best epoch, schedule, batches, seeds


def test_best_epoch_weights_are_a_true_copy(pair_dir, pair_df, tmp_path):
    """The saved weights are those of the best validation epoch, not of the last one."""
    out = tmp_path / "run"
    # a far too large learning rate makes the validation loss jump around, so patience stops the run
    run = quiet_train(pair_df, out, lr=2.0, epochs=12, patience=2, seed=0, **QUICK)
    best, last = run.best_epoch, run.epochs_run
    assert last < 12, "patience should have stopped the run early"
    assert best == last - 2
    history = run.history.set_index(["epoch", "phase"])
    best_loss, last_loss = history.loc[(best, "val"), "loss"], history.loc[(last, "val"), "loss"]
    assert abs(best_loss - last_loss) > 0.05

    # recompute the validation loss of the SAVED model straight from the image files
    from imgasdata.images import load_image
    from imgasdata.transforms import build_transform, decode_size

    model, manifest = runs.load_model(out)
    pre = manifest["preprocessing"]
    tf = build_transform(pre)
    val = pair_df[pair_df["split"] == "val"]
    x = torch.stack([tf(load_image(p, min_size=decode_size(pre))) for p in val["path"]])
    y = torch.tensor([manifest["classes"].index(lab) for lab in val["label"]])
    with torch.no_grad():
        loss = nn.CrossEntropyLoss()(model(x), y).item()
    assert loss == pytest.approx(best_loss, rel=1e-3, abs=1e-4)
    assert loss != pytest.approx(last_loss, rel=1e-2)
    # and the reported val metrics are those of the best epoch
    assert run.metrics["val"]["accuracy"] == pytest.approx(history.loc[(best, "val"), "accuracy"])


def test_select_accuracy_picks_the_most_accurate_epoch(pair_df):
    run = quiet_train(pair_df, None, lr=1.0, epochs=6, select="accuracy", **QUICK)
    val = run.history[run.history["phase"] == "val"]
    best = val[val["epoch"] == run.best_epoch].iloc[0]
    assert best["accuracy"] == val["accuracy"].max()
    # ties on accuracy are broken by the lower loss
    assert best["loss"] == val.loc[val["accuracy"] == best["accuracy"], "loss"].min()


def test_learning_rate_follows_steplr(pair_df):
    run = quiet_train(pair_df, None, lr=0.02, step_size=2, gamma=0.5, epochs=5, **QUICK)
    lrs = run.history.groupby("epoch")["lr"].agg(["min", "max"])
    assert (lrs["min"] == lrs["max"]).all()  # train and val rows of an epoch share one lr
    assert lrs["min"].tolist() == pytest.approx([0.02, 0.02, 0.01, 0.01, 0.005])


def test_batch_size_is_really_used(pair_df, monkeypatch):
    steps = []
    original = torch.optim.SGD.step

    def counting_step(self, *args, **kwargs):
        steps.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", counting_step)
    n_train = int((pair_df["split"] == "train").sum())
    histories = {}
    for bs in (1, 16):
        steps.clear()
        run = quiet_train(pair_df, None, batch_size=bs, epochs=2, lr=0.01, **QUICK)
        assert len(steps) == 2 * math.ceil(n_train / bs)
        assert run.settings.batch_size == bs
        histories[bs] = run.history
    assert not histories[1]["loss"].equals(histories[16]["loss"])


def test_same_seed_same_history_other_seed_differs(pair_df):
    a = quiet_train(pair_df, None, epochs=3, seed=5, dropout=0.3, **QUICK)
    b = quiet_train(pair_df, None, epochs=3, seed=5, dropout=0.3, **QUICK)
    pd.testing.assert_frame_equal(a.history, b.history)
    assert torch.equal(a.model.head[-1].weight, b.model.head[-1].weight)
    c = quiet_train(pair_df, None, epochs=3, seed=6, dropout=0.3, **QUICK)
    assert not a.history["loss"].equals(c.history["loss"])


def test_cached_and_fresh_features_give_the_same_run(tiny_dir, monkeypatch):
    """Head mode caches backbone features in-process; a cache hit must not change the results."""
    from imgasdata.batches import feature_cache

    feature_cache.clear()
    fresh = quiet_train(tiny_dir, None, epochs=3, image_size=64, seed=2, dropout=0.2, **QUICK)
    assert len(feature_cache) == 1
    cached = quiet_train(tiny_dir, None, epochs=3, image_size=64, seed=2, dropout=0.2, **QUICK)
    assert len(feature_cache) == 1
    pd.testing.assert_frame_equal(fresh.history, cached.history)
    assert fresh.metrics == cached.metrics


def test_no_test_images_warns_and_reports_val_only(tiny_dir, tmp_path):
    df = load_dataset(tiny_dir)
    no_test = df[df["split"] != "test"]  # a table whose index no longer runs 0..n-1
    with pytest.warns(UserWarning, match="no test images"):
        run = train(no_test, tmp_path / "run", epochs=2, image_size=64, **QUICK)
    assert run.metrics["test"] is None and run.metrics["val"]["n"] == 4
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test"] is None
    assert set(run.predictions["split"]) == {"val"}
    assert run.manifest["dataset"]["source"] is None  # a table, not a folder
    assert run.manifest["dataset"]["split"] == {"method": "folders"}  # load_dataset's record travels with the table


def test_train_takes_a_settings_object_and_keywords_on_top(pair_df):
    s = TrainSettings(epochs=2, lr=0.01, seed=4, mode="head", device="cpu")
    a = quiet_train(pair_df, None, settings=s, progress=False)
    assert a.settings.epochs == 2 and a.settings.lr == 0.01 and a.settings.seed == 4
    b = quiet_train(pair_df, None, progress=False, **QUICK_KW, epochs=2, lr=0.01, seed=4)
    pd.testing.assert_frame_equal(a.history, b.history)  # the object and the keywords are one run
    c = quiet_train(pair_df, None, settings=s, progress=False, epochs=3)  # a keyword overrides the object
    assert c.epochs_run == 3 and c.settings.lr == 0.01
    with pytest.raises(SettingsError, match="TrainSettings"):
        train(pair_df, None, settings={"epochs": 2})
    with pytest.raises(SettingsError, match="unknown setting"):
        train(pair_df, None, settings=s, epoch=2)


def test_out_holding_a_run_is_refused_unless_overwrite(tiny_dir, tmp_path):
    out = tmp_path / "run"
    quiet_train(tiny_dir, out, epochs=1, image_size=64, **QUICK)
    notes = out / "notes.txt"
    notes.write_text("my notes")  # a file the run did not write
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(UserError, match="already holds a run.*--overwrite"):
        quiet_train(tiny_dir, out, epochs=1, image_size=64, **QUICK)
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp  # refused before any work
    (out / "skipped.csv").write_text("path,error\nx,y\n")  # as if an earlier run had skipped files
    run = quiet_train(tiny_dir, out, epochs=2, image_size=64, overwrite=True, **QUICK)
    assert run.epochs_run == 2 and runs.load_run(out, model=False).epochs_run == 2
    assert notes.read_text() == "my notes"  # only the run's own files were replaced
    assert not (out / "skipped.csv").exists() and (out / "curves.png").is_file()


def test_out_inside_the_data_folder_is_refused(tiny_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_dir, data)
    with pytest.raises(UserError, match="inside the data folder"):
        quiet_train(data, data / "run", epochs=1, image_size=64, **QUICK)
    assert not (data / "run").exists()


def test_manifest_records_a_seeded_split(tiny_dir, tmp_path):
    flat = tmp_path / "flat"
    for cls in PAIR:
        shutil.copytree(tiny_dir / "train" / cls, flat / cls)
        for split in ("val", "test"):
            for f in (tiny_dir / split / cls).iterdir():
                shutil.copy(f, flat / cls / f"{split}_{f.name}")
    run = quiet_train(flat, None, epochs=1, image_size=64, seed=3, split=(0.6, 0.2, 0.2), **QUICK)
    assert run.manifest["dataset"]["split"] == {"method": "seeded", "fractions": [0.6, 0.2, 0.2], "seed": 3}

def test_adam_and_positive_class(pair_df):
    run = quiet_train(pair_df, None, epochs=2, optimizer="adam", positive="smileys_emotion", **QUICK)
    assert run.manifest["positive"] == "smileys_emotion"
    test = run.metrics["test"]
    assert test["average"] == "binary" and test["positive"] == "smileys_emotion"
    assert test["recall"] == pytest.approx(test["per_class"]["smileys_emotion"]["recall"])


@pytest.mark.parametrize("kwargs, name", [
    ({"epochs": 0}, "epochs"),
    ({"lr": 0}, "lr"),
    ({"lr": -0.1}, "lr"),
    ({"momentum": 1.0}, "momentum"),
    ({"batch_size": 0}, "batch_size"),
    ({"step_size": 0}, "step_size"),
    ({"gamma": 0}, "gamma"),
    ({"gamma": 1.5}, "gamma"),
    ({"dropout": 1.0}, "dropout"),
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"weight_decay": -1}, "weight_decay"),
    ({"select": "f1"}, "select"),
    ({"patience": 0}, "patience"),
    ({"mode": "fast"}, "mode"),
    ({"normalize": "imagenet"}, "normalize"),
    ({"resize": "stretch"}, "resize"),
    ({"image_size": 8}, "image_size"),
    ({"augment": ["rotate"]}, "augment"),
])
def test_bad_arguments_name_the_setting(kwargs, name, tmp_path, monkeypatch):
    # must fail before any work: no data is read, no model is built
    monkeypatch.setattr(itrain, "load_dataset", lambda *a, **k: pytest.fail("data read before checking arguments"))
    monkeypatch.setattr(itrain, "build_model", lambda *a, **k: pytest.fail("model built before checking arguments"))
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        train(tmp_path, None, progress=False, **kwargs)


def test_bad_positive_class(pair_df):
    with pytest.raises(ValueError, match="positive='cats'"):
        train(pair_df, None, positive="cats", **QUICK)


def test_grid_rejects_unknown_setting(pair_df):
    with pytest.raises(ValueError, match="cannot grid over \\['learning_rate'\\]"):
        grid(pair_df, None, {"learning_rate": [0.1]}, progress=False)


def test_grid_without_folder_and_with_single_values(pair_df):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = grid(pair_df, None, {"lr": 0.01, "momentum": [0.5, 0.9]}, epochs=1, progress=False,
                       mode="head", device="cpu")
    assert results[["lr", "momentum"]].values.tolist() == [[0.01, 0.5], [0.01, 0.9]]
    assert results["run"].isna().all()  # no folder, no run path
    # test metrics for the run validation chose, and for no other
    assert results["chosen"].sum() == 1
    assert results.loc[results["chosen"], "test_accuracy"].between(0, 1).all()
    assert results.loc[~results["chosen"], "test_accuracy"].isna().all()


def test_grid_marks_the_run_validation_chose():
    from imgasdata.grid import mark_chosen

    table = pd.DataFrame({"lr": [0.1, 0.01, 0.001], "best_epoch": [1, 2, 3], "val_loss": [0.5, 0.2, 0.2],
                          "val_accuracy": [0.9, 0.8, 0.85], "val_f1": [0.9, 0.7, 0.8],
                          "test_accuracy": [0.99, 0.7, 0.8], "test_f1": [0.99, 0.6, 0.75], "run": ["a", "b", "c"]})
    by_loss = mark_chosen(table)
    # lowest validation loss, ties to the higher validation F1; the best *test* score (row 0) is not it
    assert by_loss["chosen"].tolist() == [False, False, True]
    assert by_loss["test_accuracy"].isna().tolist() == [True, True, False]
    assert list(by_loss.columns[-2:]) == ["chosen", "run"]
    # a diverged run is never chosen, whatever its validation loss (the one rule: grid.rank)
    diverged = mark_chosen(table.assign(diverged=[False, False, True]))
    assert diverged["chosen"].tolist() == [False, True, False]
    assert diverged.loc[1, "test_f1"] == 0.6
    assert table["test_accuracy"].notna().all()  # the caller's table is left as it was


# ----------------------------------------------------------------------------- grid


def test_grid_results_and_resume(pair_dir, tmp_path, monkeypatch):
    out = tmp_path / "grid"
    settings = dict(epochs=2, mode="head", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = grid(pair_dir, out, {"lr": [0.01, 0.001], "batch_size": [8]}, progress=False, **settings)
    assert len(results) == 2
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 2 and table["lr"].tolist() == [0.01, 0.001]
    assert {"lr", "batch_size", "best_epoch", "epochs_run", "val_loss", "val_accuracy", "test_accuracy",
            "val_f1", "test_f1", "seconds", "run"} <= set(table.columns)
    run_dirs = [out / "lr=0.01_batch_size=8", out / "lr=0.001_batch_size=8"]
    assert table["run"].tolist() == [str(d) for d in run_dirs]
    for d in run_dirs:
        run = runs.load_run(d, model=False)
        assert run.settings.batch_size == 8 and run.epochs_run == 2
    assert run.settings.lr == 0.001
    assert "diverged" in table and not table["diverged"].any()
    assert (out / "curves_loss.png").is_file() and (out / "curves_accuracy.png").is_file()
    mtimes = {d: (d / "model.safetensors").stat().st_mtime_ns for d in run_dirs}

    # resume: nothing is retrained (train would fail if called), the table is the same
    monkeypatch.setattr(itrain, "build_model", lambda *a, **k: pytest.fail("a finished run was retrained"))
    again = grid(pair_dir, out, {"lr": [0.01, 0.001], "batch_size": [8]}, progress=False, **settings)
    pd.testing.assert_frame_equal(again.drop(columns="seconds"), results.drop(columns="seconds"),
                                  check_dtype=False)
    assert {d: (d / "model.safetensors").stat().st_mtime_ns for d in run_dirs} == mtimes
    monkeypatch.undo()

    # other settings (epochs) do not count as finished: the runs are redone
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        third = grid(pair_dir, out, {"lr": [0.01, 0.001], "batch_size": [8]}, progress=False,
                     **{**settings, "epochs": 3})
    assert third["epochs_run"].tolist() == [3, 3]
    assert all((d / "model.safetensors").stat().st_mtime_ns != mtimes[d] for d in run_dirs)


def test_grid_resume_only_reuses_runs_made_with_the_same_settings(tiny_dir, tmp_path, monkeypatch):
    """Settings outside the grid (image size, mode, defaults left out) must match too."""
    out = tmp_path / "grid"
    combos = {"lr": [0.01]}
    model_file = out / "lr=0.01" / "model.safetensors"

    def run_grid(**kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return grid(tiny_dir, out, combos, progress=False, device="cpu", **kwargs)

    run_grid(epochs=2, image_size=64, mode="head")
    stamp = model_file.stat().st_mtime_ns
    run_grid(epochs=2, image_size=64, mode="auto")  # auto means head on this CPU: same run
    assert model_file.stat().st_mtime_ns == stamp
    run_grid(epochs=2, image_size=96, mode="head")  # another image size: retrained
    manifest = json.loads((out / "lr=0.01" / "manifest.json").read_text())
    assert manifest["preprocessing"]["image_size"] == 96
    stamp = model_file.stat().st_mtime_ns
    run_grid(image_size=96, mode="head")  # epochs left out means train()'s default, not the 2 on disk
    assert model_file.stat().st_mtime_ns != stamp
    assert runs.load_run(out / "lr=0.01", model=False).settings.epochs == 25


def test_grid_resume_redoes_incomplete_runs(pair_df, tmp_path):
    out = tmp_path / "grid"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid(pair_df, out, {"lr": [0.01]}, epochs=1, progress=False, **{k: v for k, v in QUICK.items()
                                                                           if k != "progress"})
        (out / "lr=0.01" / "metrics.json").unlink()  # as if interrupted while saving
        results = grid(pair_df, out, {"lr": [0.01]}, epochs=1, progress=False, mode="head", device="cpu")
    assert (out / "lr=0.01" / "metrics.json").is_file() and len(results) == 1


# ----------------------------------------------------------------------------- full mode, unreadable files


@pytest.fixture
def tiny_with_bad_files(tiny_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_dir, data)
    cls = PAIR[0]
    make_image_file("corrupt", data / "train" / cls, name="broken_download.png")
    make_image_file("zero", data / "train" / cls, name="empty.jpg")
    return data


def test_full_mode_one_epoch_on_cpu_with_unreadable_files(tiny_with_bad_files, tmp_path):
    out = tmp_path / "full"
    with pytest.warns(UserWarning, match="2 unreadable image"):
        run = train(tiny_with_bad_files, out, mode="full", epochs=1, image_size=64, batch_size=4,
                    device="cpu", progress=False, lr=0.01)
    assert run.settings.mode == "full" and run.epochs_run == 1
    assert run.manifest["preprocessing"]["image_size"] == 64
    assert run.settings.augment == ("crop", "flip")
    assert run.manifest["dataset"]["n"] == {"train": 12, "val": 4, "test": 4}
    assert run.manifest["dataset"]["skipped"] == 2
    skipped = pd.read_csv(out / "skipped.csv")
    assert sorted(p.rsplit("/", 1)[-1] for p in skipped["path"]) == ["broken_download.png", "empty.jpg"]
    assert skipped["error"].str.len().gt(0).all()
    # every layer trained: the backbone moved away from the ImageNet weights
    model, _ = runs.load_model(out)
    fresh = imodels.build_model("efficientnet_lite0", 2, weights="imagenet")
    moved = [k for k, v in fresh.backbone.state_dict().items()
             if v.dtype.is_floating_point and not torch.equal(v, model.backbone.state_dict()[k])]
    assert len(moved) > 10
    assert set(json.loads((out / "metrics.json").read_text())) == {"val", "test"}


def test_head_mode_with_unreadable_files_and_dataset_normalization(tiny_with_bad_files, tmp_path):
    out = tmp_path / "head"
    with pytest.warns(UserWarning, match="unreadable"):
        run = train(tiny_with_bad_files, out, epochs=2, image_size=64, normalize="dataset", **QUICK)
    skipped = pd.read_csv(out / "skipped.csv")
    assert len(skipped) == 2 and len(run.skipped) == 2
    assert run.manifest["dataset"]["n"]["train"] == 12
    pre = run.manifest["preprocessing"]
    assert pre["normalize"] == "dataset"
    assert pre["mean"] != pytest.approx([0.5, 0.5, 0.5], abs=1e-3)  # computed from the emoji
    assert all(0 < s < 0.6 for s in pre["std"])
    # unreadable files are in neither predictions nor metrics
    preds = pd.read_csv(out / "predictions.csv")
    assert not preds["path"].str.contains("broken_download|empty").any()


def test_all_training_images_unreadable_is_a_clear_error(tmp_path, tiny_dir):
    data = tmp_path / "data"
    shutil.copytree(tiny_dir, data)
    for f in (data / "train").rglob("*.png"):
        f.write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="No readable train images left"):
            train(data, None, epochs=1, image_size=64, **QUICK)


# ----------------------------------------------------------------------------- choosing from a grid


def _history(train_loss, val_loss):
    rows = []
    for i, (t, v) in enumerate(zip(train_loss, val_loss), start=1):
        rows += [{"epoch": i, "phase": "train", "loss": t, "accuracy": 0.5},
                 {"epoch": i, "phase": "val", "loss": v, "accuracy": 0.5}]
    return pd.DataFrame(rows)


def test_diverged():
    assert not diverged(_history([0.7, 0.5, 0.3], [0.6, 0.5, 0.4]))
    assert diverged(_history([0.7, float("nan"), 0.3], [0.6, 0.5, 0.4]))  # not finite anywhere
    assert diverged(_history([0.7, 0.5, 0.3], [0.6, float("inf"), 0.4]))
    assert diverged(_history([0.7, 3.0, 9.0], [0.6, 0.5, 0.4]))  # ends above where it started
    assert not diverged(_history([0.0, 0.0], [0.0, 0.0]))  # a loss of 0 is not divergence
    assert diverged(_history([0.6, 0.9, 0.1], [0.6, 0.5, 0.4]))  # above guessing (ln 2) after epoch 1
    assert not diverged(_history([1.5, 0.9, 0.5], [0.6, 0.5, 0.4]), n_classes=6)  # ln 6 = 1.79


def _results(rows):
    keys = ["lr", "best_epoch", "diverged", "val_loss", "val_accuracy", "val_f1"]
    return pd.DataFrame([dict(zip(keys, r)) for r in rows])


def test_rank_sets_aside_diverged_and_zero_loss_ties():
    results = _results([
        (0.5, 3, True, 0.01, 1.0, 1.0),     # lowest loss, but training diverged
        (0.1, 2, False, 0.0, 1.0, 1.0),     # loss exactly 0 at accuracy 1.0, tied with the next
        (0.01, 5, False, 0.05, 1.0, 1.0),
        (0.001, 9, False, 0.2, 0.9, 0.9),
    ])
    ranked = rank(results)
    assert ranked["lr"].tolist() == [0.01, 0.001, 0.1, 0.5]
    assert ranked["set_aside"].tolist() == ["", "", "validation loss 0 tied at accuracy 1.0", "training diverged"]
    assert choose(results)["lr"] == 0.01
    # alone at accuracy 1.0, a zero loss is not a tie and may win
    alone = _results([(0.1, 2, False, 0.0, 1.0, 1.0), (0.01, 5, False, 0.05, 0.95, 0.9)])
    assert choose(alone)["lr"] == 0.1
    # equal losses: higher F1 first, then grid order
    ties = _results([(1, 1, False, 0.3, 0.8, 0.7), (2, 1, False, 0.3, 0.8, 0.8), (3, 1, False, 0.3, 0.8, 0.8)])
    assert rank(ties)["lr"].tolist() == [2, 3, 1]
    with pytest.warns(UserWarning, match="none of them can be trusted"):
        assert choose(_results([(1, 1, True, 0.3, 0.8, 0.7), (2, 1, True, 0.2, 0.8, 0.7)]))["lr"] == 2


def test_grid_curves_keep_a_loss_of_zero_visible(tmp_path):
    """A run whose loss goes to 0 stays on the plot (a log axis would drop it)."""
    import matplotlib.pyplot as plt

    from imgasdata.plots import plot_grid_curves

    rows = []
    for lr, losses in ((0.1, [0.5, 0.0, 0.0]), (0.01, [0.7, 0.6, 0.5])):
        d = tmp_path / f"lr={lr}"
        d.mkdir()
        (d / "manifest.json").write_text(json.dumps({"format": runs.MANIFEST_FORMAT, "best_epoch": 2}))
        _history(losses, losses).to_csv(d / "history.csv", index=False)
        rows.append({"lr": lr, "best_epoch": 2, "diverged": False, "run": str(d)})
    fig = plot_grid_curves(pd.DataFrame(rows), "loss")
    ax = fig.axes[0]
    assert ax.get_yscale() == "symlog" and ax.get_ylim()[0] == 0
    ys = ax.lines[0].get_ydata()
    assert list(ys) == [0.5, 0.0, 0.0]
    low, high = ax.get_ylim()
    assert all(low <= y <= high for y in ys)
    plt.close(fig)
