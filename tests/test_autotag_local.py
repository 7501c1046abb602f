"""Offline taggers on small real images: dlib faces (with "is this person X"), RapidOCR text, ImageNet labels."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFont, ImageOps

from imgasdata.cli import main
from imgasdata.errors import DataError, MissingExtraError


@pytest.fixture(scope="module")
def faces_dir(tmp_path_factory):
    """A reference photo of the astronaut (a crop), probes of her (flipped, smaller) and photos without faces."""
    data = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("faces")
    astro = Image.fromarray(data.astronaut())
    (root / "refs" / "eileen_collins").mkdir(parents=True)
    astro.crop((110, 10, 330, 230)).save(root / "refs" / "eileen_collins" / "crop.png")
    probes = root / "probes"
    probes.mkdir()
    ImageOps.mirror(astro).save(probes / "astronaut_flipped.jpg", quality=92)
    astro.resize((384, 384)).save(probes / "astronaut_small.jpg", quality=92)
    Image.fromarray(data.coffee()).save(probes / "coffee.jpg")
    (probes / "broken.jpg").write_text("not an image")
    return root


def test_faces_identity_against_reference_folder(faces_dir, tmp_path):
    pytest.importorskip("dlib")
    from imgasdata.autotag.local import tag_faces

    df = tag_faces([faces_dir / "probes"], reference_faces=faces_dir / "refs", progress=False)
    by_image = {name: g for name, g in df.groupby(df["image"].map(lambda s: s.rsplit("/", 1)[-1]))}
    assert set(by_image) == {"astronaut_flipped.jpg", "astronaut_small.jpg", "coffee.jpg", "broken.jpg"}
    for name in ("astronaut_flipped.jpg", "astronaut_small.jpg"):
        best = by_image[name].sort_values("distance").iloc[0]
        assert best["label"] == "eileen_collins" and best["distance"] < 0.45
        assert best["confidence"] == pytest.approx(100 * (1 - best["distance"]), abs=0.01)
    coffee = by_image["coffee.jpg"]
    assert len(coffee) == 1 and coffee["label"].iloc[0] == "" and coffee["error"].iloc[0] == ""
    assert "not a readable image" in by_image["broken.jpg"]["error"].iloc[0]
    assert df["model_version"].str.contains("dlib").all()


def test_reference_photo_without_one_face_is_refused(faces_dir, tmp_path):
    pytest.importorskip("dlib")
    from imgasdata.autotag.local import tag_faces

    refs = tmp_path / "refs"
    refs.mkdir()
    Image.open(faces_dir / "probes" / "coffee.jpg").save(refs / "nobody.jpg")
    with pytest.raises(DataError, match="shows 0 faces"):
        tag_faces([faces_dir / "probes" / "coffee.jpg"], reference_faces=refs, progress=False)


def text_image(path, text):
    img = Image.new("RGB", (520, 140), "white")
    try:
        font = ImageFont.load_default(size=44)
    except TypeError:  # Pillow < 10.1 has one bitmap font size
        font = ImageFont.load_default()
    ImageDraw.Draw(img).text((20, 40), text, fill="black", font=font)
    img.save(path)
    return path


def test_ocr_reads_rendered_text_and_cli(tmp_path):
    pytest.importorskip("rapidocr")
    (tmp_path / "imgs").mkdir()
    sign = text_image(tmp_path / "imgs" / "sign.png", "NO WAR 2026")
    Image.new("RGB", (200, 120), (90, 160, 90)).save(tmp_path / "imgs" / "blank.png")
    assert main(["autotag", "local", "ocr", str(tmp_path / "imgs"), "--out", str(tmp_path / "out")]) == 0
    df = pd.read_csv(tmp_path / "out" / "ocr.csv", keep_default_na=False)
    found = df[df["image"] == str(sign)]
    assert found["label"].str.replace(" ", "").tolist() == ["NOWAR2026"]
    assert float(found["confidence"].iloc[0]) > 80
    assert 0 <= float(found["box_left"].iloc[0]) < 0.2
    blank = df[df["image"].str.endswith("blank.png")]
    assert len(blank) == 1 and blank["label"].iloc[0] == ""


def test_imagenet_tagger_rows(sample_data):
    from imgasdata.autotag.local import tag_imagenet

    photos = sample_data["photos"]
    df = tag_imagenet([photos / "coffee.jpg", photos / "rocket.jpg"], k=3, device="cpu", progress=False)
    assert df.groupby("image").size().tolist() == [3, 3]
    assert df["rank"].tolist() == [1, 2, 3, 1, 2, 3]
    assert df.loc[df["image"].str.endswith("coffee.jpg"), "label"].iloc[0] in {"espresso", "cup", "coffee mug"}
    assert df["confidence"].between(0, 100).all()
    assert (df.groupby("image")["confidence"].sum() <= 100.01).all()


def test_missing_extra_is_one_sentence(monkeypatch):
    from imgasdata.autotag import local

    monkeypatch.setitem(sys.modules, "rapidocr", None)  # makes "import rapidocr" fail
    with pytest.raises(MissingExtraError, match=r'pip install "imgasdata\[ocr\]"'):
        local.tag_text([])


def test_face_box_fractions():
    pytest.importorskip("dlib")
    data = pytest.importorskip("skimage.data")
    from imgasdata.autotag.local import FaceModels

    found = FaceModels().faces(np.ascontiguousarray(data.astronaut()), upsample=1)
    best = max(found, key=lambda f: f[1])
    left, top, right, bottom = best[0]
    assert 150 < (left + right) / 2 < 260 and 60 < (top + bottom) / 2 < 160  # her face, upper middle
