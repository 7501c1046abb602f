"""The one runner of "image paths -> table rows" jobs: file names that are not UTF-8, resume that
refuses another model's file, error rows redone, one key per file, an output never destroyed by an
interrupted run, a kill at a line end, a stale hash cache, and Ray workers that die or hit a bug."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgasdata.errors import DataError
from imgasdata.jobs import Job, record_path, run_job
from imgasdata.predict import predict

LATIN1 = b"Bj\xf6rk.png"


def _noise_png(path, seed, size=(40, 32)):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


@pytest.fixture
def latin1_folder(tmp_path):
    """A folder with a picture named in Latin-1 (as a Windows zip leaves it), a UTF-8 one and a broken file."""
    folder = tmp_path / "zip"
    folder.mkdir()
    latin = os.path.join(os.fsencode(folder), LATIN1)
    _noise_png(os.fsdecode(latin), 1)
    _noise_png(folder / "smörgås.png", 2)
    (folder / "broken.png").write_bytes(b"not a picture")
    return folder


def _one_row_per_file(table, column, n=3):
    keys = table[column]
    assert keys.nunique() == n
    assert any(k.endswith("Bj\\xf6rk.png") for k in keys)  # the undecodable byte spelled as \xNN
    assert any(k.endswith("smörgås.png") for k in keys)


def test_predict_with_a_latin1_file_name_and_resume(trained_run, latin1_folder, tmp_path):
    out = tmp_path / "labels.csv"
    df = predict(trained_run[0], latin1_folder, out, progress=False, device="cpu")
    assert len(df) == 3
    _one_row_per_file(df, "path")
    assert (df["error"] != "").sum() == 1
    before = out.read_bytes()
    again = predict(trained_run[0], latin1_folder, out, resume=True, progress=False, device="cpu")
    assert out.read_bytes() == before and len(again) == 3 and again.attrs["skipped"] == 3


def test_autotag_and_dedup_with_a_latin1_file_name(latin1_folder, tmp_path):
    from imgasdata.autotag.local import tag_imagenet
    from imgasdata.prepare.dedup import find_duplicates

    out = tmp_path / "imagenet.csv"
    tags = tag_imagenet(latin1_folder, k=1, device="cpu", progress=False, out_csv=out)
    _one_row_per_file(tags, "image")
    assert len(tags) == 3
    before = out.read_bytes()
    again = tag_imagenet(latin1_folder, k=1, device="cpu", progress=False, out_csv=out, resume=True)
    assert out.read_bytes() == before and again.attrs["skipped"] == 3

    dup = find_duplicates(latin1_folder, cache=tmp_path / "h.sqlite", progress=False)
    _one_row_per_file(dup, "path")
    cached = find_duplicates(latin1_folder, cache=tmp_path / "h.sqlite", progress=False)
    pd.testing.assert_frame_equal(cached, dup)


def _other_run(run_dir, tmp_path):
    """A copy of the run with one weight changed: the same classes, another model."""
    from safetensors.torch import load_file, save_file

    other = tmp_path / "other_run"
    shutil.copytree(run_dir, other)
    state = load_file(other / "model.safetensors")
    name = next(iter(state))
    state[name] = state[name] + 0.5
    save_file(state, other / "model.safetensors")
    return other


def test_resuming_predict_with_another_run_stops_in_one_sentence(trained_run, pair_dir, tmp_path, capsys):
    from imgasdata.cli import main

    images = sorted((pair_dir / "test").rglob("*.png"))[:3]
    out = tmp_path / "labels.csv"
    predict(trained_run[0], images[:2], out, progress=False, device="cpu")
    before = out.read_bytes()
    other = _other_run(trained_run[0], tmp_path)
    with pytest.raises(DataError, match=r"^Cannot resume .*labels\.csv: it was written with weights_sha256="):
        predict(other, images, out, resume=True, progress=False, device="cpu")
    assert main(["predict", str(other), *map(str, images), "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "weights_sha256" in err
    assert out.read_bytes() == before
    # without resuming, the other run's table replaces the file
    assert len(predict(other, images, out, progress=False, device="cpu")) == 3


def test_error_rows_are_redone_with_retry_errors(trained_run, pair_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = sorted((pair_dir / "test").rglob("*.png"))[:2]
    for f in good:
        shutil.copyfile(f, folder / f.name)
    (folder / "late.png").write_bytes(b"")  # still downloading
    out = tmp_path / "labels.csv"
    first = predict(trained_run[0], folder, out, progress=False, device="cpu")
    assert (first["error"] != "").sum() == 1
    shutil.copyfile(good[0], folder / "late.png")  # the download finished
    kept = predict(trained_run[0], folder, out, resume=True, progress=False, device="cpu")
    assert (kept["error"] != "").sum() == 1  # plain resume counts the error row as done
    redone = predict(trained_run[0], folder, out, resume=True, retry_errors=True, progress=False, device="cpu")
    assert len(redone) == 3 and redone["path"].is_unique and (redone["error"] == "").all()
    assert redone.loc[redone["path"].str.endswith("late.png"), "label"].iloc[0] != ""


def test_relative_and_absolute_invocations_are_one_image(trained_run, pair_dir, tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    for f in sorted((pair_dir / "test").rglob("*.png"))[:3]:
        shutil.copyfile(f, folder / f.name)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "labels.csv"
    predict(trained_run[0], "in", out, progress=False, device="cpu")
    again = predict(trained_run[0], [str(folder), "in"], out, resume=True, progress=False, device="cpu")
    assert len(again) == 3 and again.attrs["skipped"] == 3


# ------------------------------------------------------------------------- a cheap job with a block of rows per image


class _Blocks:
    def __init__(self, fail_on=None, bug_on=None):
        self.fail_on, self.bug_on = fail_on, bug_on

    def batches(self, paths):
        for i in range(0, len(paths), 2):
            rows = []
            for p in paths[i:i + 2]:
                if self.bug_on and p.endswith(self.bug_on):
                    raise TypeError("a bug in the job")
                if self.fail_on and p.endswith(self.fail_on):
                    raise DataError(f"{p}: cannot be read")
                rows += [[p, rank, None] for rank in (1, 2, 3)]
            yield rows


class BlockJob(Job):
    """Three rows per path; ``fail_on``: a path that raises a UserError; ``bug_on``: one that raises a TypeError."""

    name = "blocks"
    columns = ("path", "rank", "error")
    owner = "the blocks'"
    chunk_size = 2

    def __init__(self, option=1, fail_on=None, bug_on=None):
        self.option, self.fail_on, self.bug_on = option, fail_on, bug_on

    def identity(self):
        return {"option": self.option}

    def worker(self, threads=None):
        return _Blocks(self.fail_on, self.bug_on)


@pytest.fixture
def files(tmp_path):
    out = []
    for i in range(5):
        p = tmp_path / "f" / f"img{i}.png"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x")
        out.append(p)
    return out


def blocks_of(table):
    return table["path"].loc[table["path"] != table["path"].shift()].tolist()


def test_an_invalid_file_is_a_row_and_a_bug_a_traceback(files):
    table = run_job(BlockJob(fail_on="img2.png"), files, progress=False)
    assert blocks_of(table) == [str(p) for p in files]
    bad = table[table["error"] != ""]
    assert bad["path"].tolist() == [str(files[2])] and "cannot be read" in bad["error"].iloc[0]
    with pytest.raises(TypeError, match="a bug in the job"):
        run_job(BlockJob(bug_on="img3.png"), files, progress=False)


def test_a_run_stopped_midway_leaves_the_previous_table_intact(files, tmp_path):
    out = tmp_path / "t.csv"
    run_job(BlockJob(), files[:2], out, progress=False)
    before, record = out.read_bytes(), record_path(out).read_bytes()
    with pytest.raises(TypeError):
        run_job(BlockJob(bug_on="img3.png"), files, out, progress=False)  # not resuming: a new table
    assert out.read_bytes() == before and record_path(out).read_bytes() == record
    assert not list(tmp_path.glob("t.csv.partial*"))
    fresh = run_job(BlockJob(), files[2:], out, progress=False)  # completed: now it replaces the old one
    assert blocks_of(fresh) == [str(p) for p in files[2:]]


def test_a_kill_at_a_line_end_inside_a_block_does_not_count_the_image(files, tmp_path):
    out = tmp_path / "t.csv"
    whole = run_job(BlockJob(), files, out, progress=False)
    data = out.read_bytes()
    lines = data.splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:1 + 3 * 3 + 2]))  # the header, 3 whole images, 2 of the 4th's 3 rows
    got = run_job(BlockJob(), files, out, resume=True, progress=False)
    assert got.attrs["skipped"] == 3
    pd.testing.assert_frame_equal(got, whole)
    assert out.read_bytes() == data

    # killed after the rows were written, before the record line: those rows are not counted either
    record = record_path(out)
    entries = record.read_text().splitlines()
    record.write_text("\n".join(entries[:-1]) + "\n")  # the last batch's record line lost
    lost = len(json.loads(entries[-1])["done"])
    got = run_job(BlockJob(), files, out, resume=True, progress=False)
    assert got.attrs["skipped"] == 5 - lost and blocks_of(got) == [str(p) for p in files]
    assert len(got) == 15


def test_resume_refuses_other_options_and_a_file_without_record(files, tmp_path):
    out = tmp_path / "t.csv"
    run_job(BlockJob(option=1), files[:2], out, progress=False)
    with pytest.raises(DataError, match=r"written with option=1, not 2;"):
        run_job(BlockJob(option=2), files, out, resume=True, progress=False)
    record_path(out).unlink()
    with pytest.raises(DataError, match=r"no t\.csv\.job\.jsonl beside it"):
        run_job(BlockJob(option=1), files, out, resume=True, progress=False)


def test_torch_is_the_local_engine_and_workers_are_processes(files):
    one = run_job(BlockJob(fail_on="img1.png"), files, progress=False, engine="torch")
    two = run_job(BlockJob(fail_on="img1.png"), files, progress=False, workers=2)
    pd.testing.assert_frame_equal(one, two)


# ------------------------------------------------------------------------- the dedup cache


def test_hash_cache_sees_a_replaced_file_with_the_same_size_and_time(tmp_path):
    from imgasdata.prepare.dedup import hash_files

    path = tmp_path / "a.bmp"
    Image.new("RGB", (16, 16), (10, 20, 30)).save(path)
    stat = path.stat()
    cache = tmp_path / "h.sqlite"
    first = hash_files([path], "exact", cache=cache, progress=False)
    Image.new("RGB", (16, 16), (200, 20, 30)).save(path)  # same size on disk (BMP), another picture
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old time, as cp -p or unzip leave it
    assert path.stat().st_size == stat.st_size
    second = hash_files([path], "exact", cache=cache, progress=False)
    assert second["hash"].iloc[0] != first["hash"].iloc[0]
    assert second["hash"].iloc[0] == hash_files([path], "exact", progress=False)["hash"].iloc[0]


def test_cnn_takes_the_cache_and_engine_like_the_hashes(tmp_path, write_png):
    from imgasdata.prepare.dedup import find_duplicates

    a = write_png(tmp_path / "in" / "a.png", (200, 50, 50), (32, 32))
    shutil.copyfile(a, tmp_path / "in" / "b.png")
    write_png(tmp_path / "in" / "c.png", (20, 50, 250), (32, 32))
    cache = tmp_path / "h.sqlite"
    first = find_duplicates(tmp_path / "in", "cnn", cache=cache, progress=False)
    assert first["duplicate"].sum() == 1
    import sqlite3

    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT count(*) FROM file_hashes WHERE method LIKE 'cnn:%'").fetchone()[0] == 3
    again = find_duplicates(tmp_path / "in", "cnn", cache=cache, progress=False)
    pd.testing.assert_frame_equal(again, first)
