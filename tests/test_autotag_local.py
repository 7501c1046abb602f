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


# ------------------------------------------------------------------------- written as it goes, resumed


def read_tags(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def check_blocks(table, paths):
    """One contiguous block of rows per image, every input image once, in input order."""
    blocks = table["image"].loc[table["image"] != table["image"].shift()].tolist()
    assert blocks == [str(p) for p in paths]


def assert_same_tags(got, expected):
    """The same rows: text cells equal, confidences within float noise (batches fall differently on resume)."""
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(got.drop(columns="confidence"), expected.drop(columns="confidence"))
    np.testing.assert_allclose(got["confidence"].to_numpy(float), expected["confidence"].to_numpy(float), atol=0.05)


@pytest.fixture
def tag_inputs(sample_data):
    photos = sorted(sample_data["photos"].glob("*.jpg"))[:5]
    return [*photos, sample_data["new_images"] / "broken_download.jpg"]


def test_imagenet_tags_written_per_batch_and_resumed_after_interruption(tag_inputs, tmp_path, monkeypatch):
    import imgasdata.batches as ibatches
    from imgasdata.autotag.local import tag_imagenet

    settings = {"k": 3, "batch_size": 2, "device": "cpu", "progress": False, "workers": 1}
    expected = tag_imagenet(tag_inputs, out_csv=tmp_path / "whole.csv", **settings)
    check_blocks(expected, tag_inputs)
    assert len(expected) == 5 * 3 + 1  # the broken download keeps its one error row
    assert read_tags(tmp_path / "whole.csv").columns.tolist() == list(expected.columns)

    out, calls, real_load = tmp_path / "tags.csv", [], ibatches.load_image

    def interrupted_load(path, *args, **kwargs):
        calls.append(str(path))
        if len(calls) == 5:
            raise KeyboardInterrupt  # Ctrl-C while the third batch is decoded
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(ibatches, "load_image", interrupted_load)
    with pytest.raises(KeyboardInterrupt):
        tag_imagenet(tag_inputs, out_csv=out, **settings)
    partial = read_tags(out)
    done = partial["image"].drop_duplicates().tolist()
    assert done == [str(p) for p in tag_inputs[: len(done)]] and 0 < len(done) < len(tag_inputs)
    assert len(partial) == 3 * len(done)  # whole images only: each with its k rows

    counted = []
    monkeypatch.setattr(ibatches, "load_image", lambda p, *a, **kw: counted.append(str(p)) or real_load(p, *a, **kw))
    got = tag_imagenet(tag_inputs, out_csv=out, resume=True, **settings)
    assert counted == [str(p) for p in tag_inputs[len(done):]]  # only the images not yet tagged
    assert got.attrs["skipped"] == len(done)
    check_blocks(got, tag_inputs)
    assert_same_tags(got, expected)
    with open(out) as fh:
        assert sum(line.startswith("image,") for line in fh) == 1  # one header line

    # resuming a finished table tags nothing and changes nothing
    counted.clear()
    again = tag_imagenet(tag_inputs, out_csv=out, resume=True, **settings)
    assert counted == [] and again.attrs["skipped"] == len(tag_inputs)
    pd.testing.assert_frame_equal(again, got)

    # a write cut by a kill mid-batch: the torn line and the rest of that image's block are re-done
    data = out.read_bytes()
    cut = data.index(b"\n", data.index(str(tag_inputs[3]).encode())) + 7  # inside the 2nd row of the 4th image
    out.write_bytes(data[:cut])
    counted.clear()
    repaired = tag_imagenet(tag_inputs, out_csv=out, resume=True, **settings)
    assert counted == [str(p) for p in tag_inputs[3:]]
    check_blocks(repaired, tag_inputs)
    assert_same_tags(repaired, expected)

    # without resume the table starts afresh
    fresh = tag_imagenet(tag_inputs[:2], out_csv=out, **settings)
    check_blocks(fresh, tag_inputs[:2])


def test_cli_resumes_by_rerunning_and_refuses_other_columns(tag_inputs, tmp_path, capsys):
    from imgasdata.autotag.local import tag_imagenet

    args = ["autotag", "local", "imagenet", *map(str, tag_inputs[:2]), "--out", str(tmp_path / "o"), "--k", "2",
            "--device", "cpu"]
    assert main(args) == 0
    first = read_tags(tmp_path / "o" / "imagenet.csv")
    assert main([*args[:3], *map(str, tag_inputs[:3]), *args[5:]]) == 0  # the same command on one image more
    out = capsys.readouterr().out
    assert "resumed: 2 image(s)" in out
    table = read_tags(tmp_path / "o" / "imagenet.csv")
    check_blocks(table, tag_inputs[:3])
    pd.testing.assert_frame_equal(table.iloc[:4], first)
    assert main([*args, "--no-resume"]) == 0
    check_blocks(read_tags(tmp_path / "o" / "imagenet.csv"), tag_inputs[:2])

    (tmp_path / "o" / "imagenet.csv").write_text("path,label,prob\nx.jpg,cat,0.9\n")
    with pytest.raises(DataError, match=r"^Cannot resume .*imagenet\.csv: its columns \['path', 'label', 'prob'\]"):
        tag_imagenet(tag_inputs[:1], out_csv=tmp_path / "o" / "imagenet.csv", resume=True, progress=False)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error: Cannot resume" in err and "the imagenet tagger's" in err and err.count("\n") == 1
