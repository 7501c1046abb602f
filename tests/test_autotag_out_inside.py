"""An autotag ``--out`` that is, or lies inside, an input is refused before anything is sent or written.

No AWS at all: the refusal must come before a Rekognition client is built, so building one fails
the test; the local taggers must refuse before a model is loaded or a row is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgasdata.cli import main
from imgasdata.errors import SettingsError


def images(folder, n=2):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        arr = np.random.default_rng(i).integers(0, 256, (90, 120, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img_{i}.png")
    return sorted(folder.iterdir())


def tree(folder):
    """Every path under ``folder`` with the bytes of each file, to show nothing was added or changed."""
    return {p: (p.read_bytes() if p.is_file() else None) for p in Path(folder).rglob("*")}


@pytest.fixture
def no_client(monkeypatch):
    """Fail the test if a Rekognition client (or any boto3 session) is built."""
    from imgasdata.autotag import rekognition as rk

    built = []

    def refuse(*args, **kwargs):
        built.append(args)
        raise AssertionError("a client was built")

    monkeypatch.setattr(rk, "make_client", refuse)
    try:
        import boto3

        monkeypatch.setattr(boto3.session, "Session", refuse)
    except ImportError:
        pass
    return built


@pytest.mark.parametrize("where", ["the folder", "inside the folder", "deep inside", "the file"])
@pytest.mark.parametrize("dry", [False, True])
def test_rekognition_out_in_an_input_is_refused_before_any_client(tmp_path, capsys, no_client, where, dry):
    photos = tmp_path / "photos"
    files = images(photos)
    out = {"the folder": photos, "inside the folder": photos / "tags", "deep inside": photos / "a" / ".." / "tags",
           "the file": files[0]}[where]
    inputs = [str(files[0])] if where == "the file" else [str(photos)]
    before = tree(tmp_path)
    code = main(["autotag", "rekognition", "labels", *inputs, "--out", str(out), *(["--dry-run"] if dry else [])])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "--out" in err and "input" in err, err
    assert tree(tmp_path) == before  # no folder, store or CSV created; the inputs as they were
    assert no_client == []


def test_rekognition_library_refuses_too(tmp_path, no_client):
    from imgasdata.autotag.rekognition import tag_images

    photos = tmp_path / "photos"
    images(photos)
    with pytest.raises(SettingsError, match="inside, the input folder"):
        tag_images("labels", photos, photos / "out", progress=False)  # one folder, not a list
    assert not (photos / "out").exists() and no_client == []


def test_rekognition_out_beside_an_input_file_is_fine(tmp_path, capsys, monkeypatch):
    """An input file stands for itself: a results folder next to it (in its folder) is allowed."""
    for var in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    files = images(tmp_path / "photos")
    code = main(["autotag", "rekognition", "labels", str(files[0]), "--out", str(tmp_path / "photos" / "tags"),
                 "--dry-run"])
    assert code == 0, capsys.readouterr().err
    assert "images: 1" in capsys.readouterr().out


@pytest.mark.parametrize("tagger", ["imagenet", "faces", "ocr"])
def test_local_tagger_out_in_an_input_is_refused_before_work(tmp_path, capsys, monkeypatch, tagger):
    from imgasdata import jobs

    monkeypatch.setattr(jobs, "job_rows", lambda *a, **k: pytest.fail("the tagger ran"))
    photos = tmp_path / "photos"
    images(photos)
    before = tree(tmp_path)
    assert main(["autotag", "local", tagger, str(photos), "--out", str(photos / "tags")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err and "input folder" in err, err
    assert tree(tmp_path) == before


def test_local_faces_out_in_the_reference_folder_is_refused(tmp_path, capsys):
    photos, refs = tmp_path / "photos", tmp_path / "refs"
    images(photos)
    images(refs / "someone", 1)
    before = tree(tmp_path)
    assert main(["autotag", "local", "faces", str(photos), "--reference-faces", str(refs),
                 "--out", str(refs / "someone")]) == 2
    assert "input folder" in capsys.readouterr().err
    assert tree(tmp_path) == before


def test_run_job_refuses_a_csv_inside_an_input_folder(tmp_path, monkeypatch):
    """The library path (predict, tag_imagenet, ...) refuses too, whatever the command line did."""
    from imgasdata import jobs
    from imgasdata.autotag.local import tag_imagenet

    monkeypatch.setattr(jobs, "job_rows", lambda *a, **k: pytest.fail("the tagger ran"))
    photos = tmp_path / "photos"
    images(photos)
    with pytest.raises(SettingsError, match="input folder"):
        tag_imagenet(photos, out_csv=photos / "sub" / "tags.csv", progress=False)
    assert not (photos / "sub").exists()
