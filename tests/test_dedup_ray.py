"""Deduplication hashing on a local Ray: the same hashes and groups as on one machine."""

from __future__ import annotations

import pandas as pd
import pytest
from ray_fixtures import local_ray  # noqa: F401  (the session's one local Ray)

from imgasdata.cli import main
from imgasdata.images import expand_inputs
from imgasdata.prepare.dedup import find_duplicates, hash_files, plant_duplicates


@pytest.fixture(scope="module")
def planted(sample_data, tmp_path_factory):
    """A folder of real emoji with planted near-copies, a broken file and a folder named like an image."""
    folder = tmp_path_factory.mktemp("planted")
    sources = sorted((sample_data["binary"] / "train" / "positive").glob("*.png"))[:6]
    plant_duplicates(sources, folder / "images", seed=0)
    (folder / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (folder / "images" / "album.png").mkdir()
    return folder / "images"


@pytest.mark.usefixtures("local_ray")
def test_hashes_on_ray_equal_the_local_ones(planted):
    paths = expand_inputs(planted)
    local = hash_files(paths, "phash", progress=False)
    on_ray = hash_files(paths, "phash", progress=False, engine="ray", workers=2)
    pd.testing.assert_frame_equal(local, on_ray)
    assert (on_ray["error"] != "").sum() == 2 and len(on_ray) == len(paths)


@pytest.mark.usefixtures("local_ray")
def test_dedup_command_with_ray_writes_the_local_table(planted, tmp_path, capsys):
    for engine in ("local", "ray"):
        code = main(["dedup", str(planted), "--out", str(tmp_path / f"{engine}.csv"), "--no-cache",
                     "--engine", engine, "--workers", "2"])
        assert code == 0, capsys.readouterr().err
    local, on_ray = (pd.read_csv(tmp_path / f"{e}.csv", keep_default_na=False) for e in ("local", "ray"))
    pd.testing.assert_frame_equal(local, on_ray)
    assert local["duplicate"].sum() > 0  # the planted copies were found
    assert find_duplicates(planted, progress=False)["group"].nunique() == local["group"].nunique()


def test_unknown_engine_is_one_sentence(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["dedup", str(tmp_path), "--out", str(tmp_path / "d.csv"), "--engine", "spark"])
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(ValueError, match="engine must be one of local, ray"):
        hash_files([], engine="spark")
