"""predict(engine="ray") and ray_engine.map_paths on a local Ray: the same CSV as one machine, bad files and resume included."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import PAIR, make_image_file
from ray_fixtures import interrupted_after_first_chunk, local_ray  # noqa: F401  (local_ray: the session's one local Ray)

from imgasdata.errors import MissingExtraError, SettingsError
from imgasdata.predict import predict

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

PROB_COLUMNS = [f"prob_{c}" for c in PAIR]
COLUMNS = ["path", "label", *PROB_COLUMNS, "error"]


@pytest.fixture
def inputs(tmp_path, pair_dir):
    """Ten real images, a damaged file, a zero-byte file and a broken link in one folder, plus a missing path."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    for i, f in enumerate(sorted((pair_dir / "test").rglob("*.png"))[:10]):
        shutil.copyfile(f, folder / f"{i:02d}_{f.name}")
    make_image_file("corrupt", folder, name="05b_damaged.png")
    make_image_file("zero", folder, name="07b_empty.png")
    (folder / "08b_link.png").symlink_to(tmp_path / "gone.png")
    return [folder, tmp_path / "not_there.jpg"]


def read(csv):
    return pd.read_csv(csv, dtype=str, keep_default_na=False)


def assert_same_rows(got, expected):
    """Same paths in the same order, same labels and errors, probabilities within float noise."""
    assert list(got.columns) == COLUMNS
    assert got["path"].tolist() == expected["path"].tolist()
    assert got["label"].tolist() == expected["label"].tolist()
    assert got["error"].tolist() == expected["error"].tolist()
    ok = expected["error"] == ""
    a = got.loc[ok, PROB_COLUMNS].astype(float).to_numpy()
    b = expected.loc[ok, PROB_COLUMNS].astype(float).to_numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert (got.loc[~ok, PROB_COLUMNS] == "").all().all()


@pytest.mark.usefixtures("local_ray")
def test_ray_gives_the_single_machine_csv_bad_files_included(trained_run, inputs, tmp_path):
    run_dir = trained_run[0]
    expected = predict(run_dir, inputs, tmp_path / "torch.csv", batch_size=4, progress=False)
    got = predict(run_dir, inputs, tmp_path / "ray.csv", batch_size=4, progress=False, engine="ray", workers=2)
    assert len(got) == 14  # 10 images + damaged + empty + broken link + missing path
    assert (got["error"] != "").sum() == 4
    assert_same_rows(read(tmp_path / "ray.csv"), read(tmp_path / "torch.csv"))
    errors = dict(zip(got["path"], got["error"]))
    assert "broken symbolic link" in errors[str(inputs[0] / "08b_link.png")]
    assert "file not found" in errors[str(inputs[1])]
    assert "empty file" in errors[str(inputs[0] / "07b_empty.png")]
    assert len(expected) == 14

    # without a CSV the rows come back as a DataFrame, numbers as numbers
    in_memory = predict(run_dir, inputs, batch_size=4, progress=False, engine="ray", workers=1)
    assert in_memory["path"].tolist() == expected["path"].tolist()
    assert in_memory["label"].tolist() == expected["label"].tolist()
    np.testing.assert_allclose(in_memory[PROB_COLUMNS].to_numpy(float), expected[PROB_COLUMNS].to_numpy(float),
                               atol=1e-5)


@pytest.mark.usefixtures("local_ray")
def test_ray_resumes_an_interrupted_run(trained_run, inputs, tmp_path):
    run_dir, out = trained_run[0], tmp_path / "ray.csv"
    with interrupted_after_first_chunk(), pytest.raises(KeyboardInterrupt):
        predict(run_dir, inputs, out, batch_size=4, progress=False, engine="ray", workers=2)
    assert len(read(out)) == 4

    done = predict(run_dir, inputs, out, batch_size=4, resume=True, progress=False, engine="ray", workers=2)
    assert len(done) == 14 and done["path"].is_unique
    expected = predict(run_dir, inputs, tmp_path / "torch.csv", batch_size=4, progress=False)
    assert_same_rows(read(out), read(tmp_path / "torch.csv"))
    assert len(expected) == 14

    # a finished CSV resumed again stays as it is
    again = predict(run_dir, inputs, out, batch_size=4, resume=True, progress=False, engine="ray")
    assert len(again) == 14


@pytest.mark.usefixtures("local_ray")
def test_map_paths_streams_rows_in_order_and_turns_unreadable_files_into_error_rows(tmp_path):
    from imgasdata.ray_engine import map_paths

    paths = [tmp_path / f"f{i:02d}.txt" for i in range(9)]
    for i, p in enumerate(paths):
        p.write_text("x" * i)

    def make_rows():  # nested, so Ray ships it by value to the workers
        import os

        from imgasdata.errors import DataError

        def rows(chunk):
            if any(c.endswith("f04.txt") for c in chunk):
                raise DataError("a damaged file")
            return [[c, os.path.getsize(c), ""] for c in chunk]
        return rows

    chunks = list(map_paths(paths, make_rows, ["path", "size", "error"], workers=2, chunk_size=4))
    assert [len(c) for c in chunks] == [4, 4, 1]
    df = pd.concat(chunks, ignore_index=True)
    assert df["path"].tolist() == [str(p) for p in paths]
    good = df[df["error"] == ""]
    assert good["size"].astype(int).tolist() == [i for i in range(9) if i != 4]
    bad = df[df["error"] != ""]
    assert bad["path"].tolist() == [str(paths[4])]
    assert bad["error"].iloc[0] == "a damaged file" and bad["size"].iloc[0] == ""


def _block_job(die_on=None, bug_on=None):
    """A job made inside a function, so Ray ships it by value: one row per path; ``die_on`` kills its worker
    process (as a native crash or the OOM killer would); ``bug_on`` raises a TypeError (a bug)."""
    from imgasdata.jobs import Job

    class Worker:
        def batches(self, paths):
            for p in paths:
                if die_on and p.endswith(die_on):
                    import os

                    os._exit(1)
                if bug_on and p.endswith(bug_on):
                    raise TypeError("a bug in a transform")
                yield [[p, len(p), None]]

    class DyingJob(Job):
        name = "dying"
        columns = ("path", "n", "error")
        chunk_size = 4

        def worker(self, threads=None):
            return Worker()

    return DyingJob()


@pytest.mark.usefixtures("local_ray")
def test_a_worker_that_dies_on_one_file_costs_that_file_a_row_not_the_job(tmp_path):
    from imgasdata.jobs import run_job

    paths = [tmp_path / f"f{i:02d}.png" for i in range(10)]
    out = tmp_path / "rows.csv"
    table = run_job(_block_job(die_on="f05.png"), paths, out, engine="ray", workers=2, progress=False)
    assert table["path"].tolist() == [str(p) for p in paths]
    bad = table[table["error"] != ""]
    assert bad["path"].tolist() == [str(paths[5])]
    assert "worker process died" in bad["error"].iloc[0]
    assert (table.loc[table["error"] == "", "n"] != "").all()
    again = run_job(_block_job(die_on="f05.png"), paths, out, resume=True, engine="ray", progress=False)
    assert again.attrs["skipped"] == 10


@pytest.mark.usefixtures("local_ray")
def test_a_bug_raises_on_ray_as_on_one_machine(tmp_path):
    from imgasdata.jobs import run_job

    paths = [tmp_path / f"f{i}.png" for i in range(6)]
    with pytest.raises(TypeError, match="a bug in a transform"):
        run_job(_block_job(bug_on="f3.png"), paths, progress=False)
    with pytest.raises(TypeError, match="a bug in a transform"):
        run_job(_block_job(bug_on="f3.png"), paths, engine="ray", workers=2, progress=False)


@pytest.mark.usefixtures("local_ray")
def test_map_paths_takes_several_rows_per_path(tmp_path):
    from imgasdata.ray_engine import map_paths

    def make_rows():
        def rows(chunk):  # a long table: two tags per file
            return [[c, rank, ""] for c in chunk for rank in (1, 2)]
        return rows

    paths = [str(tmp_path / f"f{i}.png") for i in range(5)]
    df = pd.concat(map_paths(paths, make_rows, ["path", "rank", "error"], workers=1, chunk_size=2))
    assert df["path"].tolist() == [p for p in paths for _ in (1, 2)]
    assert df["rank"].tolist() == ["1", "2"] * 5


@pytest.mark.usefixtures("local_ray")
def test_cli_engine_ray(trained_run, inputs, tmp_path, capsys):
    from imgasdata.cli import main

    out = tmp_path / "cli.csv"
    code = main(["predict", str(trained_run[0]), *map(str, inputs), "--out", str(out), "--engine", "ray",
                 "--workers", "1", "--batch-size", "8"])
    assert code in (0, None)
    assert "14 rows" in capsys.readouterr().out
    expected = predict(trained_run[0], inputs, tmp_path / "torch.csv", progress=False)
    assert_same_rows(read(out), read(tmp_path / "torch.csv"))
    assert len(expected) == 14


def test_settings_are_checked(trained_run, tmp_path):
    from imgasdata.ray_engine import map_paths

    with pytest.raises(SettingsError, match="engine"):
        predict(trained_run[0], [tmp_path], engine="spark")
    with pytest.raises(SettingsError, match="workers"):
        predict(trained_run[0], [tmp_path], workers=0)
    with pytest.raises(SettingsError, match="columns"):
        list(map_paths(["a.png"], lambda: None, ["label"]))


def test_without_ray_one_sentence_names_the_extra(trained_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingExtraError, match=r'pip install "imgasdata\[ray\]"'):
        predict(trained_run[0], [tmp_path], engine="ray")
