"""Tests of the preparing chapter on a researcher's own data: safe outputs, sheets as they come, one table.

A flat folder of pictures and a wide coder sheet (one column per coder, class names, empty cells)
go through labels -> agreement -> clean -> dedup -> split and into load_dataset with no renaming;
outputs pointed at their own inputs leave every original byte-identical.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgasdata.cli import main
from imgasdata.datasets import load_dataset
from imgasdata.errors import DataError, UserError
from imgasdata.paths import path_key
from imgasdata.prepare.agreement import agreement
from imgasdata.prepare.dedup import find_pairs, group_around_kept
from imgasdata.prepare.exclude import read_exclusions
from imgasdata.prepare.labels import adjudication_list, make_labels
from imgasdata.prepare.place import folder_name, place_file
from imgasdata.prepare.split import assign_groups, split_dataset


def _picture(path, seed, size=(80, 64)):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)  # large blocks: a hash-stable picture
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(small).resize(size, Image.NEAREST).save(path)
    return Path(path)


def _snapshot(folder):
    """Every file under ``folder``: bytes, and whether it is a link (a self-link would hide a lost file)."""
    return {p.relative_to(folder): (p.is_symlink(), p.read_bytes() if p.is_file() else None)
            for p in sorted(Path(folder).rglob("*"))}


@pytest.fixture()
def photos(tmp_path):
    """A flat folder of 12 pictures of three kinds, one re-saved copy and one thumbnail."""
    folder = tmp_path / "photos"
    for k in range(12):
        _picture(folder / f"{['cat', 'dog', 'bird'][k % 3]}_{k:02d}.png", k, size=(160, 128))
    Image.open(folder / "cat_00.png").resize((120, 96)).save(folder / "cat_00_small.jpg", quality=90)
    _picture(folder / "thumb.png", 99, size=(40, 40))
    return folder


def test_outputs_pointed_at_their_input_leave_originals_untouched(photos, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = _snapshot(photos)
    for link in ("copy", "hardlink", "symlink"):
        assert main(["clean", "photos", "--out", "r.csv", "--keep-to", "photos", "--link", link]) == 2
        assert "inside, the input folder" in capsys.readouterr().err
        assert main(["clean", "photos", "--out", "r.csv", "--keep-to", "photos/kept", "--link", link]) == 2
        assert main(["dedup", "photos", "--out", "d.csv", "--copy-unique", "photos", "--link", link]) == 2
        assert main(["dedup", "photos/cat_00.png", "photos/dog_01.png", "--out", "d.csv",
                     "--copy-unique", "photos", "--link", link]) == 2
    # the placing itself: a destination that is the source is left alone, in every mode
    for link in ("copy", "hardlink", "symlink"):
        for p in photos.iterdir():
            assert place_file(p, p, link) == p
    assert _snapshot(photos) == before
    # a hard link or a symlink to the source already there: nothing to do, nothing unlinked
    os.link(photos / "cat_00.png", tmp_path / "hard.png")
    os.symlink(photos / "dog_01.png", tmp_path / "soft.png")
    place_file(photos / "cat_00.png", tmp_path / "hard.png", "copy")
    place_file(photos / "dog_01.png", tmp_path / "soft.png", "copy")
    assert (tmp_path / "soft.png").is_symlink() and _snapshot(photos) == before
    # another file of that name is refused unless --overwrite, and replaced in one step
    other = tmp_path / "out" / "cat_00.png"
    other.parent.mkdir()
    other.write_bytes(b"someone else's file")
    with pytest.raises(UserError, match="already exists"):
        place_file(photos / "cat_00.png", other)
    assert other.read_bytes() == b"someone else's file"
    place_file(photos / "cat_00.png", other, "symlink", overwrite=True)
    assert other.is_symlink() and other.read_bytes() == (photos / "cat_00.png").read_bytes()
    assert not [p for p in other.parent.iterdir() if p.name.endswith(".part")]
    # into a folder of their own the commands work, and a second run finds the same files in place
    for _ in range(2):
        assert main(["clean", "photos", "--out", "r.csv", "--keep-to", "kept"]) == 0
        assert main(["dedup", "photos", "--out", "d.csv", "--copy-unique", "unique", "--link", "symlink"]) == 0
    assert len(list((tmp_path / "kept").iterdir())) == 13  # the 40x40 thumbnail is not kept
    assert len(list((tmp_path / "unique").iterdir())) == 13  # the re-saved copy is not copied
    assert _snapshot(photos) == before


def test_split_twice_into_one_folder_never_leaks(photos, tmp_path):
    labels = pd.DataFrame({"path": sorted(p.name for p in photos.glob("*.png") if p.name != "thumb.png")})
    labels["label"] = labels["path"].str.split("_").str[0]
    labels = pd.concat([labels] * 3, ignore_index=True)  # 36 rows; make the names unique per copy
    for k in range(len(labels)):
        name = f"{k:02d}_{labels.at[k, 'path']}"
        if not (photos / name).exists():
            (photos / name).write_bytes((photos / labels.at[k, "path"]).read_bytes())
        labels.at[k, "path"] = name
    labels_csv = photos.parent / "labels.csv"
    labels["path"] = "photos/" + labels["path"]
    labels.to_csv(labels_csv, index=False)
    out = tmp_path / "DATA"
    split_dataset(labels_csv, out, val=0.2, test=0.2, seed=0)
    with pytest.raises(UserError, match="not empty"):
        split_dataset(labels_csv, out, val=0.2, test=0.2, seed=1)
    manifest, _ = split_dataset(labels_csv, out, val=0.2, test=0.2, seed=1, overwrite=True)
    on_disk = [p for p in out.rglob("*.png")]
    assert len(on_disk) == len(labels)
    names = pd.Series([p.name for p in on_disk])
    assert not names.duplicated().any()  # no image in two splits
    assert sorted(str(out / p) for p in manifest["path"]) == sorted(map(str, on_disk))
    # a file no split wrote stops --overwrite from clearing the folder
    stray = out / "train" / "cat" / "stray.png"
    stray.write_bytes(b"x")
    with pytest.raises(UserError, match="no earlier split listed"):
        split_dataset(labels_csv, out, val=0.2, test=0.2, seed=2, overwrite=True)
    assert stray.exists()
    stray.unlink()
    # links are cleared as links: re-splitting a hard-linked, then a symlinked split leaves the originals as they were
    before = _snapshot(photos)
    split_dataset(labels_csv, out, val=0.2, test=0.2, seed=3, overwrite=True, link="hardlink")
    split_dataset(labels_csv, out, val=0.2, test=0.2, seed=4, overwrite=True, link="symlink")
    split_dataset(labels_csv, out, val=0.2, test=0.2, seed=5, overwrite=True)
    assert _snapshot(photos) == before and len(list(out.rglob("*.png"))) == len(labels)
    # an image inside --out, or --out inside the images' folder, is refused
    with pytest.raises(UserError, match="input folder"):
        split_dataset(labels_csv, photos / "DATA", val=0.2, test=0.2)


@pytest.mark.parametrize("label", ["../x", "a/b", "..", ".", "/tmp/abs", "tab\there"])
def test_unsafe_label_values_are_refused(photos, tmp_path, label, monkeypatch, capsys):
    labels = pd.DataFrame({"path": ["photos/cat_00.png", "photos/dog_01.png", "photos/bird_02.png"],
                           "label": ["cat", label, "cat"]})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(DataError, match="cannot be a folder name"):
        folder_name(label)
    monkeypatch.chdir(tmp_path)
    assert main(["split", "labels.csv", "--out", "DATA", "--val", "0", "--test", "0.3"]) == 2
    assert repr(label) in capsys.readouterr().err
    assert not (tmp_path / "DATA").exists() and not (tmp_path / "x").exists()


def test_duplicate_groups_never_chain():
    # a - b - c: a and b are 6 bits apart, b and c 6 bits, a and c 12 bits (beyond the threshold of 10)
    a = np.uint64(0)
    b = a ^ np.uint64(0b111111)
    c = b ^ np.uint64(0b111111 << 20)
    codes = np.array([a, b, c], dtype=np.uint64)
    pairs = find_pairs(codes, 10)
    assert sorted(map(tuple, pairs[["i", "j"]].to_numpy().tolist())) == [(0, 1), (1, 2)]
    kept, dist = group_around_kept(["a", "b", "c"], pairs, keep="first")
    assert kept.tolist() == [0, 0, 2]  # b joins a, kept first; c is too far from a and is kept on its own
    assert dist.max() <= 10 and dist.tolist() == [0, 6, 0]
    # keeping another image changes the groups, never the rule
    later = pairs.assign(i=2 - pairs["j"], j=2 - pairs["i"])  # the same chain, reversed: c - b - a
    kept, dist = group_around_kept(["a", "b", "c"], later, keep="first")
    assert kept.tolist() == [0, 0, 2] and dist.max() <= 10


def test_split_groups_land_close_to_the_fractions(tmp_path):
    rng = np.random.default_rng(0)
    sizes = np.concatenate([rng.integers(2, 25, 12), np.ones(160, int)])  # a few large families
    group = np.repeat(np.arange(len(sizes)), sizes)
    label = np.repeat(rng.choice(["a", "b", "c"], len(sizes), p=[0.6, 0.3, 0.1]), sizes)
    src = _picture(tmp_path / "one.png", 0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    paths = [f"imgs/{k:04d}.png" for k in range(len(group))]
    for p in paths:
        os.link(src, tmp_path / p)
    labels = pd.DataFrame({"path": paths, "label": label})
    groups = pd.DataFrame({"path": [str(tmp_path / p) for p in paths], "group": group})
    for val, test in ((0.1, 0.2), (0.15, 0.15)):
        manifest, report = split_dataset(labels, tmp_path / f"DATA{val}", val=val, test=test, groups=groups,
                                         base=tmp_path, seed=1, link="symlink")
        share = manifest["split"].value_counts(normalize=True)
        for split, asked in (("train", 1 - val - test), ("val", val), ("test", test)):
            assert abs(share[split] - asked) < 0.05
        assert report["off_by"] < 5 and report["groups_across_splits"] == 0
        grouped = manifest[manifest["group"] != ""]  # images without duplicates have no group
        assert grouped["group"].nunique() == 12 and (grouped.groupby("group")["split"].nunique() == 1).all()
    split = assign_groups(pd.DataFrame({"label": label, "group": group}), (0.7, 0.1, 0.2), seed=3)
    assert (pd.DataFrame({"g": group, "s": split}).groupby("g")["s"].nunique() == 1).all()


WIDE = pd.DataFrame({
    "image": ["p/a.png", "p/b.png", "p/c.png", "p/d.png", "p/e.png", "p/f.png"],
    "coder_a": ["cat", "dog", "cat", "bird", "", "cat"],
    "coder_b": ["cat", "dog", "dog", "cat", "", "cat"],
    "coder_c": ["dog", "", "bird", "", "", "cat"],
})


def test_wide_sheet_with_class_names_majority_and_ties():
    lab = make_labels(WIDE, "majority", answers=True).set_index("path")
    assert lab["label"].tolist() == ["cat", "dog", "", "", "", "cat"]
    assert lab["tie"].tolist() == [False, False, True, True, False, False]  # c: three answers; d: split two
    assert lab["n_ratings"].tolist() == [3, 2, 3, 2, 0, 3]  # ratings given, not coders
    assert lab.at["p/c.png", "answers"] == "coder_a: cat; coder_b: dog; coder_c: bird"
    todo = adjudication_list(lab.reset_index())
    assert todo["path"].tolist() == ["p/c.png", "p/d.png", "p/e.png"] and (todo["label"] == "").all()
    strict = make_labels(WIDE, "majority", min_ratings=3).set_index("path")
    assert strict.at["p/b.png", "label"] == "" and not strict.at["p/b.png", "tie"]
    cat = make_labels(WIDE, "majority", positive="cat").set_index("path")
    assert cat["label"].tolist() == ["cat", "not cat", "not cat", "", "", "cat"]  # d: cat vs bird is a tie
    anyr = make_labels(WIDE, "any", positive="cat", coders=["coder_a", "coder_b"]).set_index("path")
    assert anyr["label"].tolist() == ["cat", "not cat", "cat", "cat", "", "cat"]
    votes = make_labels(WIDE, "majority", votes=True).set_index("path")
    assert votes.at["p/a.png", "votes_cat"] == 2 and votes.at["p/a.png", "votes_dog"] == 1
    with pytest.raises(DataError, match="not one of the answers"):
        make_labels(WIDE, "majority", positive="horse")
    # numbers as categories: codes 0-4, labels written as whole numbers
    codes = WIDE.replace({"cat": 0, "dog": 1, "bird": 4, "": np.nan})
    assert make_labels(codes, "majority")["label"].tolist() == ["0", "1", "", "", "", "0"]
    # 0/1 answers need the name of the yes class
    yes = pd.DataFrame({"image": ["x", "y"], "a": [1, 0], "b": [1, 1]})
    with pytest.raises(DataError, match="--positive NAME"):
        make_labels(yes, "majority")
    assert make_labels(yes, "majority", positive="monument")["label"].tolist() == ["monument", ""]


def test_agreement_levels_follow_the_data():
    import krippendorff

    text = agreement(WIDE).iloc[0]
    assert text["level"] == "nominal" and text["level_rule"] == "text categories"
    codes = WIDE.replace({"cat": 0, "dog": 1, "bird": 4, "": np.nan}).infer_objects()
    ag = agreement(codes).iloc[0]
    assert ag["level"] == "nominal" and "codes" in ag["level_rule"]
    matrix = codes.set_index("image").T.to_numpy(dtype=float)
    assert ag["krippendorff_alpha"] == pytest.approx(krippendorff.alpha(reliability_data=matrix,
                                                                        level_of_measurement="nominal"))
    assert ag["krippendorff_alpha"] == pytest.approx(text["krippendorff_alpha"])  # the same answers
    asked = agreement(codes, level="interval").iloc[0]
    assert asked["level"] == "interval" and asked["level_rule"] == "as asked"
    assert asked["krippendorff_alpha"] != pytest.approx(ag["krippendorff_alpha"])
    with pytest.raises(UserError, match="only --level nominal"):
        agreement(WIDE, level="interval")
    scores = pd.DataFrame({"image": list("abcdefgh"), "r1": [0, 2, 3, 5, 6, 7, 9, 10],
                           "r2": [1, 2, 4, 5, 6, 8, 9, 10]})
    assert agreement(scores).iloc[0]["level"] == "interval"


def test_split_names_the_rows_without_a_label(photos, tmp_path, monkeypatch, capsys):
    labels = pd.DataFrame({"path": [f"photos/{n}" for n in ("cat_00.png", "dog_01.png", "bird_02.png",
                                                            "cat_03.png", "dog_04.png", "bird_05.png")],
                           "label": ["cat", "", "dog", "cat", "dog", None]})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    monkeypatch.chdir(tmp_path)
    assert main(["split", "labels.csv", "--out", "DATA", "--val", "0", "--test", "0.4"]) == 2
    err = capsys.readouterr().err
    assert "2 row(s) of labels.csv have no label: row 3 (photos/dog_01.png), 7 (photos/bird_05.png)" in err
    assert "Traceback" not in err and "--drop-unlabelled" in err
    assert main(["split", "labels.csv", "--out", "DATA", "--val", "0", "--test", "0.4", "--drop-unlabelled"]) == 0
    assert "2 image(s) without a label left out" in capsys.readouterr().out
    assert len(pd.read_csv("DATA/manifest.csv")) == 4


def test_own_project_from_flat_folder_and_wide_sheet(photos, tmp_path, monkeypatch, capsys):
    """labels -> agreement -> clean -> dedup -> split -> load_dataset, no renaming, reports applied by --exclude."""
    monkeypatch.chdir(tmp_path)
    names = sorted(p.name for p in photos.iterdir())
    kind = lambda n: n.split("_")[0] if n != "thumb.png" else "cat"  # noqa: E731
    sheet = pd.DataFrame({"image": [f"photos/{n}" for n in names],
                          "coder_a": [kind(n) for n in names], "coder_b": [kind(n) for n in names],
                          "coder_c": ["dog" if n == "bird_02.png" else kind(n) for n in names]})
    sheet.loc[sheet["image"] == "photos/bird_05.png", ["coder_b", "coder_c"]] = ["cat", "dog"]  # a tie
    sheet.loc[sheet["image"] == "photos/dog_04.png", "coder_c"] = ""  # a rating not given
    sheet.to_csv("sheet.csv", index=False)
    assert main(["labels", "sheet.csv", "--out", "out/labels.csv", "--ties", "out/ties.csv"]) == 0
    out = capsys.readouterr().out
    assert "1 tie(s)" in out
    labels = pd.read_csv("out/labels.csv", keep_default_na=False)
    assert labels.columns.tolist() == ["path", "label", "n_ratings", "tie"]
    assert labels["path"].iloc[0] == "../photos/bird_02.png"  # relative to the CSV's folder
    assert pd.read_csv("out/ties.csv")["path"].tolist() == ["../photos/bird_05.png"]
    assert main(["agreement", "sheet.csv"]) == 0
    assert "nominal level (text categories)" in capsys.readouterr().out
    assert main(["clean", "photos", "--out", "out/clean.csv"]) == 0
    clean = pd.read_csv("out/clean.csv")
    assert clean.loc[~clean["keep"], "path"].tolist() == ["../photos/thumb.png"]  # 40 px; no size rule
    assert main(["dedup", "photos", "--out", "out/dups.csv"]) == 0
    dups = pd.read_csv("out/dups.csv", keep_default_na=False)
    assert dups.loc[dups["duplicate"].astype(str) == "True", "path"].tolist() == ["../photos/cat_00_small.jpg"]
    assert dups.set_index("path").at["../photos/cat_00_small.jpg", "kept"] == "../photos/cat_00.png"  # larger
    assert read_exclusions(["out/clean.csv", "out/dups.csv"]) == {
        path_key(photos / "thumb.png"), path_key(photos / "cat_00_small.jpg")}
    assert main(["split", "out/labels.csv", "--out", "DATA", "--val", "0.2", "--test", "0.2",
                 "--groups", "out/dups.csv", "--exclude", "out/clean.csv", "out/dups.csv"]) == 2
    assert "row 3 (../photos/bird_05.png)" in capsys.readouterr().err
    assert main(["split", "out/labels.csv", "--out", "DATA", "--val", "0.2", "--test", "0.2",
                 "--groups", "out/dups.csv", "--exclude", "out/clean.csv", "out/dups.csv",
                 "--drop-unlabelled"]) == 0
    out = capsys.readouterr().out
    assert "2 image(s) left out by --exclude" in out and "off by" in out
    df = load_dataset("DATA/manifest.csv")  # what train reads: no renaming
    assert len(df) == len(names) - 3 and set(df["label"]) == {"bird", "cat", "dog"}
    with pytest.raises(DataError, match="1 row\\(s\\) of .* have no label"):  # train refuses the tie too
        load_dataset("out/labels.csv")
    # train and predict take the same reports: load_dataset leaves the files out (here from labels.csv)
    given = labels[labels["label"] != ""].copy()
    given["split"] = np.where(given["label"].duplicated(), "train", "val")
    given.to_csv("out/given.csv", index=False)
    assert len(load_dataset("out/given.csv")) == len(names) - 1
    fewer = load_dataset("out/given.csv", exclude=["out/dups.csv", "out/clean.csv"])
    assert len(fewer) == len(names) - 3 and fewer.attrs["excluded"] == 2
    assert not fewer["path"].str.endswith(("cat_00_small.jpg", "thumb.png")).any()
    with pytest.raises(DataError, match="none of the columns"):
        read_exclusions("out/labels.csv")


def test_train_and_predict_take_the_same_reports(photos, tmp_path, monkeypatch, capsys):
    import imgasdata.predict
    import imgasdata.train

    monkeypatch.chdir(tmp_path)
    assert main(["dedup", "photos", "--out", "dups.csv"]) == 0
    seen = {}
    monkeypatch.setattr(imgasdata.predict, "predict",
                        lambda run, paths, out, **kw: seen.setdefault("predict", paths) and pd.DataFrame(
                            {"path": [], "label": [], "error": []}))
    assert main(["predict", "RUN", "photos", "--out", "p.csv", "--exclude", "dups.csv"]) == 0
    assert "1 image(s) left out by --exclude" in capsys.readouterr().out
    assert len(seen["predict"]) == 13 and photos / "cat_00_small.jpg" not in seen["predict"]
    flat = tmp_path / "flat"  # the same pictures in one folder per class
    kind = lambda name: "cat" if name == "thumb.png" else name.split("_")[0]  # noqa: E731
    for p in photos.iterdir():
        (flat / kind(p.name)).mkdir(parents=True, exist_ok=True)
        os.link(p, flat / kind(p.name) / p.name)
    report = pd.read_csv("dups.csv")
    report["path"] = [f"flat/{kind(Path(p).name)}/{Path(p).name}" for p in report["path"]]
    report.to_csv("dups_flat.csv", index=False)

    class Run:
        best_epoch, epochs_run, settings = 1, 1, type("Settings", (), {"mode": "head"})
        metrics = {}
        run_dir = "RUN"

    monkeypatch.setattr(imgasdata.train, "train", lambda data, out, **kw: seen.setdefault("train", data) is not None
                        and Run())
    monkeypatch.setattr("imgasdata.metrics.format_summary", lambda m: "")
    assert main(["train", "flat", "--out", "RUN", "--exclude", "dups_flat.csv", "--split", "0.5", "0.25", "0.25"]) == 0
    assert "1 image(s) left out by --exclude" in capsys.readouterr().out
    assert len(seen["train"]) == 13 and not seen["train"]["path"].str.endswith("cat_00_small.jpg").any()
