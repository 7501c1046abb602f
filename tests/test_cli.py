"""The imgasdata command line, called in-process (plus one real subprocess for --help)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import PAIR, run_cli
from imgasdata.cli import main


def assert_one_line_error(code, err, command, *needles):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"imgasdata {command}: error: "), lines[0]
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_help_in_a_real_process():
    script = Path(sys.executable).with_name("imgasdata")
    cmd = [str(script), "--help"] if script.exists() else [sys.executable, "-m", "imgasdata", "--help"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr
    for sub in ("train", "grid", "evaluate", "errors", "predict", "check", "sample-data", "notebooks"):
        assert sub in result.stdout
    module = subprocess.run([sys.executable, "-m", "imgasdata", "train", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert module.returncode == 0 and "--batch-size" in module.stdout and "--weights" in module.stdout


def test_version_comes_from_the_package_metadata(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"imgasdata {version('imgasdata')}"


def test_a_warning_is_one_plain_sentence(capsys, monkeypatch):
    import imgasdata.cli as cli

    def warns(_args):
        warnings.warn("2 unreadable image(s) left out of training and evaluation, e.g. x.jpg: truncated",
                      stacklevel=2)

    monkeypatch.setattr(cli, "cmd_check", warns)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["check", "anything"]) == 0
    err = capsys.readouterr().err
    assert err == ("imgasdata check: warning: 2 unreadable image(s) left out of training and evaluation, "
                   "e.g. x.jpg: truncated\n")
    # outside the command line, Python's own warning display is back
    assert warnings.showwarning.__module__ == "warnings"


def test_progress_bars_redraw_rarely_when_output_is_not_a_terminal(capsys):
    from imgasdata.progress import progress

    bar = progress(range(3), desc="work")
    assert bar.mininterval == 30.0 and not bar.dynamic_ncols  # pytest's captured stderr is not a terminal
    bar.close()


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


# ----------------------------------------------------------------------------- train, grid


def test_cli_train(capsys, pair_dir, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", pair_dir, "--out", out, "--mode", "head", "--epochs", "3",
                                "--lr", "0.01", "--batch-size", "8", "--step-size", "2", "--device", "cpu",
                                "--seed", "1")
    assert code == 0, err
    assert "best epoch" in stdout and f"run saved to {out}" in stdout
    assert "test" in stdout and "accuracy" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["batch_size"] == 8
    assert manifest["settings"]["step_size"] == 2 and manifest["settings"]["seed"] == 1
    assert manifest["epochs_run"] == 3 and manifest["classes"] == list(PAIR)
    history = pd.read_csv(out / "history.csv")
    assert history["lr"].tolist() == pytest.approx([0.01, 0.01, 0.01, 0.01, 0.001, 0.001])
    assert (out / "model.safetensors").is_file() and (out / "metrics.json").is_file()
    # the same --out again is refused; --overwrite replaces the run
    code, _, err = run_cli(capsys, "train", pair_dir, "--out", out, "--mode", "head", "--epochs", "1", "--device", "cpu")
    assert_one_line_error(code, err, "train", "already holds a run", "--overwrite")
    code, _, err = run_cli(capsys, "train", pair_dir, "--out", out, "--mode", "head", "--epochs", "1", "--device", "cpu",
                           "--overwrite")
    assert code == 0, err
    assert json.loads((out / "manifest.json").read_text())["epochs_run"] == 1


def test_cli_grid_and_resume(capsys, pair_dir, tmp_path):
    out = tmp_path / "grid"
    args = ["grid", pair_dir, "--out", out, "--mode", "head", "--epochs", "2", "--lr", "0.01", "0.002",
            "--device", "cpu"]
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 2 and table["lr"].tolist() == [0.01, 0.002]
    assert table["batch_size"].tolist() == [4, 4] and table["epochs_run"].tolist() == [2, 2]
    assert f"table saved to {out / 'results.csv'}" in stdout
    assert "val_accuracy" in stdout
    models = sorted(out.glob("*/model.safetensors"))
    assert len(models) == 2
    mtimes = [m.stat().st_mtime_ns for m in models]
    code, _, err = run_cli(capsys, *args)  # resumes: nothing retrained
    assert code == 0, err
    assert [m.stat().st_mtime_ns for m in models] == mtimes
    code, _, err = run_cli(capsys, *args, "--no-resume")
    assert code == 0, err
    assert all(m.stat().st_mtime_ns != t for m, t in zip(models, mtimes))


# ----------------------------------------------------------------------------- evaluate, predict, check


def test_cli_evaluate(capsys, trained_run, pair_dir, tmp_path):
    run_dir, _ = trained_run
    out = tmp_path / "eval.json"
    code, stdout, err = run_cli(capsys, "evaluate", run_dir, pair_dir / "test", "--out", out, "--device", "cpu")
    assert code == 0, err
    written = json.loads(out.read_text())
    saved = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert written["accuracy"] == pytest.approx(saved["accuracy"])
    assert written["confusion_matrix"] == saved["confusion_matrix"]
    # the same table as train prints: each metric with its interval, the averaging named
    lo, hi = written["intervals"]["accuracy"]
    assert written["intervals"] == saved["intervals"]
    assert f"{written['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]" in stdout
    assert f"binary: precision, recall and F1 of the class '{saved['positive']}'" in stdout or \
        "macro averages over 2 classes" in stdout
    assert "95 % intervals" in stdout and not stdout.lstrip().startswith("{")
    preds = pd.read_csv(tmp_path / "eval.predictions.csv")
    assert len(preds) == 28 and {"path", "true", "label"} <= set(preds.columns)


def test_cli_predict_and_resume(capsys, trained_run, sample_data, tmp_path):
    run_dir, _ = trained_run
    out = tmp_path / "labels.csv"
    new = sample_data["new_images"]
    code, stdout, err = run_cli(capsys, "predict", run_dir, new, "--out", out, "--device", "cpu",
                                "--batch-size", "4")
    assert code == 0, err
    assert f"7 rows in {out} (1 unreadable file(s))" in stdout
    df = pd.read_csv(out, keep_default_na=False)
    assert len(df) == 7 and df["path"].is_unique
    assert (df["error"] != "").sum() == 1
    assert df.loc[df["error"] != "", "path"].iloc[0].endswith("broken_download.jpg")
    first = out.read_text()
    code, stdout, err = run_cli(capsys, "predict", run_dir, new, "--out", out, "--resume", "--device", "cpu")
    assert code == 0, err
    assert out.read_text() == first  # all done already: nothing appended, no duplicates
    assert "7 rows" in stdout


def test_cli_predict_resume_after_partial_run(capsys, trained_run, sample_data, tmp_path):
    run_dir, _ = trained_run
    out = tmp_path / "labels.csv"
    files = sorted(sample_data["new_images"].glob("img_*.png"))
    code, _, err = run_cli(capsys, "predict", run_dir, *files[:2], "--out", out, "--device", "cpu")
    assert code == 0, err
    code, _, err = run_cli(capsys, "predict", run_dir, *files, "--out", out, "--resume", "--device", "cpu")
    assert code == 0, err
    df = pd.read_csv(out)
    assert df["path"].tolist() == [str(f) for f in files]


def test_cli_check(capsys, sample_data, tmp_path):
    out = tmp_path / "check.csv"
    code, stdout, err = run_cli(capsys, "check", sample_data["new_images"], sample_data["photos"] / "chelsea.jpg",
                                "--out", out)
    assert code == 0, err
    assert "8 files checked, 1 unreadable" in stdout
    assert "broken_download.jpg" in stdout
    df = pd.read_csv(out)
    assert len(df) == 8 and df["ok"].sum() == 7


def test_check_report_in_another_folder_is_read_by_exclude(capsys, sample_data, tmp_path, monkeypatch):
    """Relative paths in the report are relative to its folder, as --exclude reads them."""
    from imgasdata.paths import path_key
    from imgasdata.prepare.exclude import read_exclusions

    shutil.copytree(sample_data["new_images"], tmp_path / "data" / "new_images")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "check", "data/new_images", "--out", "reports/check.csv")
    assert code == 0, err
    assert pd.read_csv(tmp_path / "reports" / "check.csv")["path"].str.startswith("../data/new_images/").all()
    monkeypatch.chdir(tmp_path / "data")  # read from elsewhere: the report's folder anchors its paths
    assert read_exclusions(tmp_path / "reports" / "check.csv") == {
        path_key(tmp_path / "data" / "new_images" / "broken_download.jpg")}


def test_cli_sample_data(capsys, tmp_path):
    out = tmp_path / "data"
    code, stdout, err = run_cli(capsys, "sample-data", "--out", out)
    assert code == 0, err
    for name in ("binary", "multiclass", "photos", "new_images"):
        assert (out / name / ".complete").is_file()
        assert f"{name}: {out / name}" in stdout
    assert "dataset" in stdout and "multiclass" in stdout
    # defaults: 100 per binary class, 50 per category, 40 new images (+1 broken)
    assert len(list((out / "binary").rglob("*.png"))) == 200
    assert len(list((out / "new_images").iterdir())) == 42  # 41 files + .complete
    code, _, _ = run_cli(capsys, "sample-data", "--out", out)  # already there: kept
    assert code == 0


# ----------------------------------------------------------------------------- user errors


def test_error_missing_folder(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", tmp_path / "no_such_data", "--out", tmp_path / "run")
    assert_one_line_error(code, err, "train", "no_such_data", "not found")
    assert not (tmp_path / "run").exists()


def test_error_one_class_only(capsys, pair_dir, tmp_path):
    data = tmp_path / "one"
    for split in ("train", "val", "test"):
        shutil.copytree(pair_dir / split / PAIR[0], data / split / PAIR[0])
    code, _, err = run_cli(capsys, "train", data, "--out", tmp_path / "run")
    assert_one_line_error(code, err, "train", f"only the class '{PAIR[0]}'", "at least two")


def test_error_unknown_backbone(capsys, pair_dir, tmp_path):
    code, _, err = run_cli(capsys, "train", pair_dir, "--out", tmp_path / "run", "--backbone", "resnet181")
    assert_one_line_error(code, err, "train", "Unknown backbone 'resnet181'", "resnet18")


def test_error_refused_pickle_weights(capsys, pair_dir, tmp_path):
    evil = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), evil)  # a whole pickled module, not a state dict
    # without the opt-in a .pt is not even opened: one sentence on how to convert it
    code, _, err = run_cli(capsys, "train", pair_dir, "--out", tmp_path / "run", "--backbone", "resnet18",
                           "--weights", evil)
    assert_one_line_error(code, err, "train", "Refusing", str(evil), "--allow-pickle-weights", "save_file")
    # with it, weights-only loading still refuses the pickled module
    code, _, err = run_cli(capsys, "train", pair_dir, "--out", tmp_path / "run", "--backbone", "resnet18",
                           "--weights", evil, "--allow-pickle-weights")
    line = assert_one_line_error(code, err, "train", "Refusing", str(evil), "torch.nn.modules.linear.Linear")
    assert "\x1b" not in line
    assert not (tmp_path / "run").exists()


def test_error_bad_setting(capsys, pair_dir, tmp_path):
    code, _, err = run_cli(capsys, "train", pair_dir, "--out", tmp_path / "run", "--lr", "-1")
    assert_one_line_error(code, err, "train", "lr")


def test_error_evaluate_and_predict_missing_run(capsys, pair_dir, tmp_path):
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "no_run", pair_dir / "test")
    assert_one_line_error(code, err, "evaluate", "manifest.json is missing")
    code, _, err = run_cli(capsys, "predict", tmp_path / "no_run", pair_dir, "--out", tmp_path / "x.csv")
    assert_one_line_error(code, err, "predict", "manifest.json is missing")


def test_debug_shows_the_real_exception(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["--debug", "train", str(tmp_path / "nothing"), "--out", str(tmp_path / "run")])


def test_error_tampered_weights_file_is_one_sentence(capsys, trained_run, pair_dir, tmp_path):
    """A run folder whose model.safetensors was replaced (here by a torch.save pickle) is refused in one line."""
    run_dir, _ = trained_run
    tampered = tmp_path / "tampered"
    shutil.copytree(run_dir, tampered)
    torch.save({"weight": torch.zeros(2, 2)}, tampered / "model.safetensors")
    for args in (("predict", tampered, pair_dir / "test", "--out", tmp_path / "x.csv"),
                 ("evaluate", tampered, pair_dir / "test")):
        code, _, err = run_cli(capsys, *args)
        assert_one_line_error(code, err, args[0], "not a valid safetensors file", "model.safetensors")
    (tampered / "model.safetensors").write_bytes(b"\x00" * 3)  # truncated
    code, _, err = run_cli(capsys, "predict", tampered, pair_dir / "test", "--out", tmp_path / "x.csv")
    assert_one_line_error(code, err, "predict", "not a valid safetensors file")


def test_cli_every_input_gets_a_row(capsys, trained_run, sample_data, tmp_path):
    """Broken links, folders named like images and missing files each get an error row (predict and check)."""
    run_dir, _ = trained_run
    folder = tmp_path / "new"
    shutil.copytree(sample_data["new_images"], folder)
    (folder / "gone.png").symlink_to(tmp_path / "deleted.png")
    (folder / "album.jpg").mkdir()
    n_files = len([p for p in folder.iterdir() if p.suffix in (".png", ".jpg", ".jpeg")])
    out = tmp_path / "labels.csv"
    code, _, err = run_cli(capsys, "predict", run_dir, folder, tmp_path / "missing.png", "--out", out)
    assert code == 0, err
    df = pd.read_csv(out, keep_default_na=False)
    assert len(df) == n_files + 1 and df["path"].is_unique
    errors = df.set_index(df["path"].map(lambda p: Path(p).name))["error"]
    assert "broken symbolic link" in errors["gone.png"]
    assert "is a folder" in errors["album.jpg"]
    assert "not found" in errors["missing.png"]
    code, stdout, err = run_cli(capsys, "check", folder, "--out", tmp_path / "check.csv")
    assert code == 0, err
    checked = pd.read_csv(tmp_path / "check.csv")
    assert len(checked) == n_files and (~checked["ok"]).sum() >= 3


def test_other_errors_keep_their_traceback(monkeypatch, pair_dir, tmp_path):
    """Only the user's mistakes become one sentence: a bug or out-of-memory is not reported as one."""
    import imgasdata.train as itrain

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(itrain, "build_model", out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory"):
        main(["train", str(pair_dir), "--out", str(tmp_path / "run"), "--mode", "head", "--device", "cpu"])


def test_train_options_are_generated_from_the_settings():
    """Every setting has its command-line option with the setting's own default and help."""
    import dataclasses

    from imgasdata.cli import build_parser
    from imgasdata.settings import TrainSettings

    parser = build_parser()
    args = parser.parse_args(["train", "data", "--out", "run"])
    for f in dataclasses.fields(TrainSettings):
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        assert getattr(args, f.name) == default, f.name
    grid_args = parser.parse_args(["grid", "data", "--out", "g", "--lr", "0.1", "0.01", "--batch-size", "2", "8"])
    assert grid_args.lr == [0.1, 0.01] and grid_args.batch_size == [2, 8] and grid_args.momentum == [0.9]
