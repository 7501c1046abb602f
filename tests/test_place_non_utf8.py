"""Steps that place files (dedup --copy-unique, clean --keep-to, split) reach a file whose name is not UTF-8.

Tables spell such a name with ``\\xNN`` escapes (:func:`imgasdata.paths.path_text`), which name no
file; the copy must use the real file, byte for byte, while the table shows the escaped text.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgasdata.cli import main
from imgasdata.paths import path_text, real_path

LATIN = b"Bj\xf6rk.png"  # Latin-1, not valid UTF-8
SHOWN = "Bj\\xf6rk.png"  # how tables spell it


def blocks(seed, size=128):
    """A picture of 8x8 coloured blocks: a resized copy of it is a near-duplicate, another seed is not."""
    arr = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(np.kron(arr, np.ones((16, 16, 1), dtype=np.uint8))).resize((size, size), Image.NEAREST)


@pytest.fixture
def photos(tmp_path):
    """``photos/`` with the Latin-1-named picture, a half-size near-duplicate of it and four other pictures."""
    if sys.getfilesystemencoding().lower() not in ("utf-8", "utf8"):
        pytest.skip("the file system encoding is not UTF-8")
    folder = tmp_path / "photos"
    folder.mkdir()
    try:
        with open(os.path.join(os.fsencode(folder), LATIN), "wb") as fh:
            blocks(0).save(fh, format="PNG")
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    if LATIN not in os.listdir(os.fsencode(folder)):  # e.g. re-encoded by the file system
        pytest.skip("this file system changes names that are not UTF-8")
    blocks(0, 64).save(folder / "small.png")
    for i in range(1, 5):
        blocks(i * 7).save(folder / f"other_{i}.png")
    return folder


def latin(folder):
    return os.path.join(os.fsencode(folder), LATIN)


def placed(folder):
    """Every file under ``folder`` (names as bytes, relative) with its bytes."""
    out = {}
    for root, _, names in os.walk(os.fsencode(folder)):
        for name in names:
            path = os.path.join(root, name)
            out[os.path.relpath(path, os.fsencode(folder))] = Path(os.fsdecode(path)).read_bytes()
    return out


def test_real_path_finds_the_file_a_table_names(photos, tmp_path, monkeypatch):
    real = real_path(photos / SHOWN)
    assert os.fsencode(real) == latin(photos) and real.is_file()
    monkeypatch.chdir(tmp_path)
    assert os.fsencode(real_path(path_text(os.fsdecode(latin("photos"))))) == latin("photos")
    assert real_path("photos/small.png") == Path("photos/small.png")
    assert real_path("photos/nothing\\xf6.png") == Path("photos/nothing\\xf6.png")  # missing: the text itself


def test_dedup_copy_unique_copies_the_latin1_file(photos, tmp_path):
    out, uniq = tmp_path / "dups.csv", tmp_path / "unique"
    assert main(["dedup", str(photos), "--out", str(out), "--copy-unique", str(uniq), "--no-cache"]) == 0
    table = pd.read_csv(out, keep_default_na=False)
    by_name = {p.rsplit("/", 1)[-1]: r for p, r in zip(table["path"], table.itertuples())}
    assert set(by_name) == {SHOWN, "small.png", *(f"other_{i}.png" for i in range(1, 5))}
    assert bool(by_name["small.png"].duplicate) and by_name["small.png"].kept.endswith(f"photos/{SHOWN}")
    assert not bool(by_name[SHOWN].duplicate) and by_name[SHOWN].error == ""
    kept = {os.fsencode(p.rsplit("/", 1)[-1].replace(SHOWN, os.fsdecode(LATIN)))
            for p in table.loc[~table["duplicate"].astype(bool), "path"]}
    copies = placed(uniq)
    assert set(copies) == kept == {LATIN, *(f"other_{i}.png".encode() for i in range(1, 5))}
    for name, data in copies.items():
        assert data == Path(os.fsdecode(os.path.join(os.fsencode(photos), name))).read_bytes()


@pytest.mark.parametrize("keep", ["largest", "newest"])
def test_dedup_keep_rules_read_the_latin1_file(photos, keep):
    """The keep rules stat and open the files: by the real path, not the table's text."""
    from imgasdata.prepare.dedup import find_duplicates

    os.utime(photos / "small.png", ns=(4 * 10**18, 4 * 10**18))  # the newest (in 2096)
    df = find_duplicates([photos], "phash", keep=keep, progress=False)
    row = df[df["path"].str.endswith("small.png")].iloc[0]
    expected = str(photos / "small.png") if keep == "newest" else path_text(os.fsdecode(latin(photos)))
    assert row["kept"] == expected


def test_clean_keep_to_copies_the_latin1_file(photos, tmp_path):
    out, kept = tmp_path / "clean.csv", tmp_path / "kept"
    assert main(["clean", str(photos), "--out", str(out), "--keep-to", str(kept)]) == 0
    table = pd.read_csv(out, keep_default_na=False)
    assert any(p.endswith(f"photos/{SHOWN}") for p in table["path"]) and table["keep"].all()
    assert placed(kept) == placed(photos)


def test_split_places_the_latin1_file_and_overwrite_clears_it(photos, tmp_path):
    labels = tmp_path / "labels.csv"
    names = [SHOWN, "small.png", "other_1.png", "other_2.png", "other_3.png", "other_4.png"]
    pd.DataFrame({"path": [f"photos/{n}" for n in names], "label": ["a", "a", "a", "b", "b", "b"]}).to_csv(
        labels, index=False)
    ds = tmp_path / "ds"
    for extra in ([], ["--overwrite", "--seed", "1"]):
        assert main(["split", str(labels), "--out", str(ds), "--val", "0", "--test", "0.34", *extra]) == 0
        manifest = pd.read_csv(ds / "manifest.csv", keep_default_na=False)
        assert path_text(os.fsdecode(latin(photos.resolve()))) in set(manifest["source"])
        files = {k: v for k, v in placed(ds).items() if k != b"manifest.csv"}
        assert sorted(os.path.basename(k) for k in files) == sorted(os.fsencode(n.replace(SHOWN, os.fsdecode(LATIN)))
                                                                   for n in names)
        for rel, data in files.items():
            assert data == Path(os.fsdecode(os.path.join(os.fsencode(photos), os.path.basename(rel)))).read_bytes()
        assert {os.fsencode(real_path(ds / t)) for t in manifest["path"]} == \
            {os.path.join(os.fsencode(ds), k) for k in files}
