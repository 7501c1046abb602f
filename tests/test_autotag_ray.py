"""The offline autotaggers on a local Ray (``engine="ray"``): the same table, in the same order, as on one machine."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from ray_fixtures import interrupted_after_first_chunk, local_ray  # noqa: F401  (local_ray: the session's one local Ray)
from test_autotag_local import text_image

from imgasdata.autotag.local import tag_faces, tag_imagenet, tag_text
from imgasdata.cli import main
from imgasdata.errors import MissingExtraError, SettingsError


@pytest.fixture
def inputs(tmp_path, sample_data):
    """Six emoji, two photos, a text sign, a blank, a damaged download in one folder, plus a missing path."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    for i, f in enumerate(sorted(sample_data["binary"].rglob("*.png"))[::7][:6]):
        shutil.copyfile(f, folder / f"e{i}_{f.name}")
    shutil.copyfile(sample_data["photos"] / "coffee.jpg", folder / "p_coffee.jpg")
    Image.open(sample_data["photos"] / "rocket.jpg").resize((320, 480)).save(folder / "p_rocket.jpg")
    text_image(folder / "s_sign.png", "NO WAR 2026")
    Image.new("RGB", (200, 120), (90, 160, 90)).save(folder / "s_blank.png")
    shutil.copyfile(sample_data["new_images"] / "broken_download.jpg", folder / "x_broken.jpg")
    return [folder, tmp_path / "not_there.jpg"]


def assert_same_table(got, expected, numeric, atol):
    """Same rows in the same order, text cells equal, numbers within float noise."""
    assert list(got.columns) == list(expected.columns)
    assert got["image"].tolist() == expected["image"].tolist()
    text = [c for c in expected.columns if c not in numeric]
    pd.testing.assert_frame_equal(got[text], expected[text])
    for c in numeric:
        np.testing.assert_allclose(got[c].to_numpy(float), expected[c].to_numpy(float), atol=atol, equal_nan=True)


def check_bad_files(table, inputs):
    errors = table.groupby("image", sort=False)["error"].first()
    assert table["image"].nunique() == 12  # 11 files + the missing path, each at least once
    assert (errors != "").sum() == 2
    assert "could not be decoded" in errors[str(inputs[0] / "x_broken.jpg")]
    assert "file not found" in errors[str(inputs[1])]


@pytest.mark.usefixtures("local_ray")
def test_imagenet_on_ray_equals_one_machine(inputs):
    expected = tag_imagenet(inputs, k=3, batch_size=4, device="cpu", progress=False)
    got = tag_imagenet(inputs, k=3, batch_size=4, device="cpu", progress=False, engine="ray", workers=2)
    check_bad_files(got, inputs)
    assert len(got) == 10 * 3 + 2
    assert_same_table(got, expected, ["confidence"], atol=0.02)
    pd.testing.assert_series_equal(got["rank"], expected["rank"])

    # min_confidence keeps one empty row for an image left without classes, on Ray too
    strict = tag_imagenet(inputs, k=3, min_confidence=99.9, batch_size=4, device="cpu", progress=False,
                          engine="ray", workers=1)
    assert strict["image"].tolist() == got["image"].drop_duplicates().tolist()
    assert (strict["label"] == "").all()


@pytest.mark.usefixtures("local_ray")
def test_ocr_on_ray_equals_one_machine_and_cli(inputs, tmp_path):
    expected = tag_text(inputs, progress=False)
    got = tag_text(inputs, progress=False, engine="ray", workers=2)
    check_bad_files(got, inputs)
    numeric = ["confidence", "line", "box_left", "box_top", "box_width", "box_height"]
    assert_same_table(got, expected, numeric, atol=0.02)
    sign = got[got["image"].str.endswith("s_sign.png")]
    assert sign["label"].str.replace(" ", "").tolist() == ["NOWAR2026"]

    # the command line writes the same CSV as without Ray
    assert main(["autotag", "local", "ocr", *map(str, inputs), "--out", str(tmp_path / "ray"), "--engine", "ray",
                 "--workers", "1"]) == 0
    (tmp_path / "torch").mkdir()
    expected.to_csv(tmp_path / "torch" / "ocr.csv", index=False)  # what the command writes without Ray
    read = {k: pd.read_csv(tmp_path / k / "ocr.csv", keep_default_na=False, na_values={c: [""] for c in numeric})
            for k in ("ray", "torch")}
    assert_same_table(read["ray"], read["torch"], numeric, atol=0.02)


@pytest.mark.usefixtures("local_ray")
def test_faces_on_ray_equals_one_machine(inputs, tmp_path):
    pytest.importorskip("dlib")
    data = pytest.importorskip("skimage.data")
    refs = tmp_path / "refs" / "eileen_collins"
    refs.mkdir(parents=True)
    astro = Image.fromarray(data.astronaut())
    astro.crop((110, 10, 330, 230)).save(refs / "crop.png")
    astro.resize((300, 300)).save(inputs[0] / "f_astronaut.jpg", quality=92)

    expected = tag_faces(inputs, reference_faces=refs.parent, progress=False)
    got = tag_faces(inputs, reference_faces=refs.parent, progress=False, engine="ray", workers=2)
    numeric = ["confidence", "face", "distance", "detector_score", "box_left", "box_top", "box_width", "box_height"]
    assert_same_table(got, expected, numeric, atol=1e-6)
    assert "eileen_collins" in got.loc[got["image"].str.endswith("f_astronaut.jpg"), "label"].tolist()
    assert (got.loc[got["image"].str.endswith("x_broken.jpg"), "error"] != "").all()


def test_engine_settings_are_checked(tmp_path):
    with pytest.raises(SettingsError, match="engine"):
        tag_imagenet([tmp_path], engine="spark", progress=False)
    with pytest.raises(SettingsError, match="workers"):
        tag_imagenet([tmp_path], engine="ray", workers=0, progress=False)


def test_without_ray_one_sentence_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes "import ray" fail
    with pytest.raises(MissingExtraError, match=r'pip install "imgasdata\[ray\]"'):
        tag_imagenet([tmp_path], engine="ray", progress=False)
    (tmp_path / "in").mkdir()  # --out outside the input, so the missing extra is what is said
    assert main(["autotag", "local", "ocr", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--engine", "ray"]) == 2
    assert 'pip install "imgasdata[ray]"' in capsys.readouterr().err


@pytest.mark.usefixtures("local_ray")
def test_ray_tagger_resumes_an_interrupted_run(inputs, tmp_path):
    settings = {"k": 3, "batch_size": 4, "device": "cpu", "progress": False}
    out = tmp_path / "ray.csv"
    with interrupted_after_first_chunk(), pytest.raises(KeyboardInterrupt):
        tag_imagenet(inputs, out_csv=out, engine="ray", workers=2, **settings)
    partial = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert partial["image"].nunique() == 4 and len(partial) == 4 * 3  # four whole images, k rows each

    got = tag_imagenet(inputs, out_csv=out, resume=True, engine="ray", workers=2, **settings)
    assert got.attrs["skipped"] == 4
    blocks = got["image"].loc[got["image"] != got["image"].shift()]
    assert blocks.is_unique and blocks.nunique() == 12  # one block per image, no duplicates
    expected = tag_imagenet(inputs, out_csv=tmp_path / "torch.csv", **settings)
    assert_same_table(got, expected, ["confidence", "rank"], atol=0.02)
    assert (tmp_path / "torch.csv").read_text().splitlines()[0] == out.read_text().splitlines()[0]
