"""Tests of the preparing chapter: deduplication, cleaning, labels, agreement, splits and their commands."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgasdata.cli import main
from imgasdata.errors import DataError, SettingsError, UserError
from imgasdata.images import load_image
from imgasdata.prepare import dedup
from imgasdata.prepare.agreement import agreement
from imgasdata.prepare.clean import clean_images, keep_images, reason_counts
from imgasdata.prepare.dedup import (evaluate_duplicates, find_cross_duplicates, find_duplicates, find_pairs,
                                     hash_files, plant_duplicates)
from imgasdata.prepare.labels import emotion_steps, make_labels
from imgasdata.prepare.split import split_dataset


def _brute(codes, threshold, other=None):
    other = codes if other is None else other
    d = np.bitwise_count(codes[:, None] ^ other[None, :])
    i, j = np.nonzero(d <= threshold)
    keep = (i < j) if other is codes else np.ones(len(i), bool)
    return {(int(a), int(b), int(d[a, b])) for a, b in zip(i[keep], j[keep])}


@pytest.mark.parametrize("threshold", [0, 3, 8, 12])
def test_find_pairs_matches_all_pairs(threshold):
    rng = np.random.default_rng(1)
    centres = rng.integers(0, 2**63, size=40, dtype=np.uint64)
    codes = np.repeat(centres, 15)
    # clusters: each centre with random flips of up to 14 bits, so pairs exist on both sides of the threshold
    for k in range(len(codes)):
        for b in rng.choice(64, rng.integers(0, 8), replace=False):
            codes[k] ^= np.uint64(1) << np.uint64(b)
    found = {tuple(map(int, r)) for r in find_pairs(codes, threshold).to_numpy()}
    assert found == _brute(codes, threshold)
    assert len(found) > 0
    other = codes[::7] ^ np.uint64(0b101)
    cross = {tuple(map(int, r)) for r in find_pairs(codes, threshold, other=other).to_numpy()}
    assert cross == _brute(codes, threshold, other)


def _picture(path, seed, size=(80, 64), mode="RGB"):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)  # large blocks: a hash-stable picture
    img = Image.fromarray(small).resize(size, Image.NEAREST)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    img.convert(mode).save(path)
    return Path(path)


def test_phash_pairs_need_a_confirming_dhash():
    from imgasdata.prepare.dedup import CONFIRM_MARGIN, DEFAULT_THRESHOLDS, near_pairs

    th = DEFAULT_THRESHOLDS["phash"]
    flip = lambda code, n: code ^ ((1 << n) - 1)  # flips the n lowest bits
    p0, d0 = 0x0123456789ABCDEF, 0xFEDCBA9876543210
    hashes = [f"{p0:016x}{d0:016x}",
              f"{flip(p0, th):016x}{flip(d0, th + CONFIRM_MARGIN):016x}",        # both within: a pair
              f"{flip(p0, th):016x}{flip(d0, th + CONFIRM_MARGIN + 1):016x}",    # dHash too far: no pair with 0
              f"{flip(p0, th + 1):016x}{d0:016x}"]                               # pHash too far: none with 0
    pairs = {(int(i), int(j)): int(d) for i, j, d in near_pairs(hashes).to_numpy()}
    assert (0, 1) in pairs and pairs[(0, 1)] == th
    assert (0, 2) not in pairs and (0, 3) not in pairs
    # the other methods are one hash, no confirmation; the cross-set search confirms the same way
    assert set(near_pairs([h[:16] for h in hashes], "dhash", th).itertuples(index=False, name=None)) >= {(0, 2, th)}
    cross = near_pairs(hashes[:1], "phash", other=hashes[1:])
    assert cross[["i", "j"]].values.tolist() == [[0, 0]]


def test_exact_is_about_pixels_and_transparency_is_on_white(tmp_path):
    a = _picture(tmp_path / "a.png", 0)
    img = Image.open(a)
    img.save(tmp_path / "a_again.png", compress_level=1)  # other bytes, same pixels
    img.save(tmp_path / "a_again.bmp")
    _picture(tmp_path / "b.png", 1)
    # two transparent drawings with the same (black) colour under different shapes: without the
    # alpha channel both are one black square and every hash would call them duplicates
    for name, box in (("t1.png", (5, 5, 30, 60)), ("t2.png", (40, 2, 78, 20))):
        rgba = Image.new("RGBA", (80, 64), (0, 0, 0, 0))
        rgba.paste((0, 0, 0, 255), box)
        rgba.save(tmp_path / name)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    df = find_duplicates([tmp_path], method="exact", progress=False, keep="first").set_index("path")
    p = lambda n: str(tmp_path / n)  # noqa: E731
    assert df.at[p("a_again.png"), "group"] == df.at[p("a.png"), "group"] == df.at[p("a_again.bmp"), "group"]
    assert df.at[p("a_again.png"), "kept"] == p("a.png")  # first in sorted order
    # the default keeps the largest copy: same pixels, so the most bytes (the uncompressed BMP)
    largest = find_duplicates([tmp_path], method="exact", progress=False).set_index("path")
    assert largest.at[p("a.png"), "kept"] == p("a_again.bmp") and not largest.at[p("a_again.bmp"), "duplicate"]
    assert df.loc[p("a.png"), "group_size"] == 3
    assert df.at[p("b.png"), "group_size"] == 1
    assert "could not be decoded" in df.at[p("broken.jpg"), "error"] or "not a readable" in df.at[p("broken.jpg"), "error"]
    ph = find_duplicates([tmp_path], method="phash", progress=False).set_index("path")
    assert ph.at[p("t1.png"), "group"] != ph.at[p("t2.png"), "group"]
    assert ph.at[p("t1.png"), "hash"] != ph.at[p("t2.png"), "hash"]
    assert list(ph.index) == sorted(ph.index)
    assert ph["group"].nunique() == len(ph) - 2  # the two re-saved copies of a.png join it


def test_cache_hashes_only_new_or_changed_files(tmp_path, monkeypatch):
    files = [_picture(tmp_path / "img" / f"{i}.png", i) for i in range(4)]
    cache = tmp_path / "cache.sqlite"
    first = hash_files(files, "phash", cache=cache, progress=False)
    calls = []
    real = dedup._hash_one
    monkeypatch.setattr(dedup, "_hash_one", lambda h, p: calls.append(p) or real(h, p))
    files.append(_picture(tmp_path / "img" / "new.png", 9))
    _picture(files[0], 5)  # rewritten in place: new content, new size/time
    second = hash_files(files, "phash", cache=cache, progress=False)
    assert sorted(calls) == sorted([str(files[0]), str(files[-1])])
    assert (second["hash"].iloc[1:4].to_numpy() == first["hash"].iloc[1:4].to_numpy()).all()
    assert second["hash"].iloc[0] != first["hash"].iloc[0]


def test_planted_copies_are_found_and_scored(sample_data, tmp_path):
    truth = plant_duplicates(sample_data["binary"] / "train", tmp_path / "corpus", n=15, seed=0,
                             transforms=("jpeg70", "resize50", "flip"))
    assert len(truth) == 45 and set(truth["transform"]) == {"jpeg70", "resize50", "flip"}
    df = find_duplicates([tmp_path / "corpus"], progress=False, keep="first")
    assert len(df) == len(list((tmp_path / "corpus" / "originals").iterdir())) + 45
    assert (df.loc[~df["duplicate"], "distance"] == 0).all()
    assert (df["kept"] <= df["path"]).all()
    assert df["distance"].max() <= 10
    # keeping the largest: a half-size copy is never kept over its original; a full-size copy of
    # the same original (the re-encoded JPEG can have more bytes) may be
    largest = find_duplicates([tmp_path / "corpus"], progress=False).set_index("path")
    resized = truth[truth["transform"] == "resize50"]
    found = resized[[largest.at[c, "duplicate"] for c in resized["copy"]]]
    full = {o: {o, *truth.loc[(truth["original"] == o) & (truth["transform"] != "resize50"), "copy"]}
            for o in resized["original"]}
    assert len(found) >= 12
    assert all(largest.at[c, "kept"] in full[o] for o, c in found[["original", "copy"]].to_numpy())
    originals = [str(p) for p in (tmp_path / "corpus" / "originals").iterdir()]
    resize = evaluate_duplicates(df, truth[truth["transform"] == "resize50"],
                                 originals + list(truth.loc[truth["transform"] == "resize50", "copy"]))
    assert resize["true_pairs"] == 15
    assert resize["recall"] >= 0.8
    flip = evaluate_duplicates(df, truth[truth["transform"] == "flip"],
                               originals + list(truth.loc[truth["transform"] == "flip", "copy"]))
    assert flip["recall"] < resize["recall"]  # hashes are not mirror-invariant


def test_evaluate_duplicates_counts_pairs():
    truth = {"a": ["a1", "a2"], "b": ["b1"]}  # a1-a2 are duplicates of each other too: 4 true pairs
    found = [("a", "a1"), ("a1", "a2"), ("b", "c")]
    m = evaluate_duplicates(found, truth)
    assert m["true_pairs"] == 4 and m["found_pairs"] == 3 and m["correct_pairs"] == 2
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(0.5)


def test_cross_set_finds_the_leak(tmp_path):
    train = [_picture(tmp_path / "train" / f"{i}.png", i) for i in range(6)]
    _picture(tmp_path / "test" / "fresh.png", 99)
    Image.open(train[2]).resize((40, 32)).save(tmp_path / "test" / "leak.jpg", quality=80)
    df = find_cross_duplicates(tmp_path / "train", tmp_path / "test", progress=False).set_index("path")
    assert df.at[str(tmp_path / "test" / "leak.jpg"), "match"] == str(train[2])
    assert df.at[str(tmp_path / "test" / "fresh.png"), "match"] == ""
    assert df["n_matches"].sum() == 1


def test_bad_settings_are_user_errors(tmp_path):
    _picture(tmp_path / "x.png", 0)
    with pytest.raises(SettingsError, match="Unknown deduplication method"):
        find_duplicates([tmp_path], method="md5", progress=False)
    with pytest.raises(SettingsError, match="Hamming"):
        find_duplicates([tmp_path], threshold=70, progress=False)


def test_clean_report_reasons(tmp_path):
    _picture(tmp_path / "ok.png", 0, size=(200, 150))
    Image.new("RGB", (200, 150), (120, 120, 121)).save(tmp_path / "blank.png")
    _picture(tmp_path / "banner.png", 2, size=(600, 60))
    _picture(tmp_path / "tiny.png", 3, size=(12, 12))
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:200])
    rep = clean_images([tmp_path], min_kb=0.5, min_side=32, progress=False).set_index("path")
    default = clean_images([tmp_path], progress=False).set_index("path")
    assert default.at[str(tmp_path / "tiny.png"), "reasons"] == "small image"  # 64 px; no size rule by default
    r = lambda n: rep.at[str(tmp_path / n), "reasons"]  # noqa: E731
    assert r("ok.png") == ""
    assert "near-uniform" in r("blank.png")
    assert "extreme aspect ratio" in r("banner.png")
    assert "small image" in r("tiny.png") and "small file" in r("tiny.png")
    assert "unreadable" in r("cut.png") and rep.at[str(tmp_path / "cut.png"), "error"]
    counts = reason_counts(rep.reset_index())
    assert counts["kept"] == 1 and counts["unreadable"] == 1
    with pytest.raises(UserError, match="inside, the input folder"):
        keep_images(rep.reset_index(), tmp_path / "kept")
    written = keep_images(rep.reset_index(), tmp_path.parent / f"{tmp_path.name}_kept")
    assert [p.name for p in written] == ["ok.png"]


SHEET = pd.DataFrame(
    [("i1", "a", 1, 8, 0), ("i1", "b", 1, 6, 1), ("i1", "c", 0, 7, 0),
     ("i2", "a", 0, 0, 0), ("i2", "b", 0, 0, 0), ("i2", "c", 1, 0, 0),
     ("i3", "a", 0, 0, 0), ("i3", "b", 0, 0, 0), ("i3", "c", 0, 0, 0),
     ("i4", "a", 1, 4, 3), ("i4", "b", 1, 5, 3), ("i4", "c", 1, 3, 3),
     ("i5", "a", 0, 0, 0), ("i5", "b", 0, 0, 0)],
    columns=["image", "annotator", "protest", "joy", "fear"])


def test_label_rules():
    anyr = make_labels(SHEET, "any", ["protest"]).set_index("path")
    assert anyr["label"].tolist() == ["protest", "protest", "not protest", "protest", "not protest"]
    maj = make_labels(SHEET, "majority", ["protest"]).set_index("path")
    assert maj["label"].tolist() == ["protest", "not protest", "not protest", "protest", "not protest"]
    assert maj["n_ratings"].tolist() == [3, 3, 3, 3, 2] and not maj["tie"].any()
    named = make_labels(SHEET, "majority", ["protest"], positive="march")
    assert set(named["label"]) == {"march", "not march"}
    mean = make_labels(SHEET, "mean", ["joy", "fear"]).set_index("path")
    assert mean.at["i1", "joy"] == pytest.approx(7.0) and mean.at["i1", "fear"] == pytest.approx(1 / 3)
    steps = emotion_steps(mean.drop(columns="n_ratings")).set_index("emotion")
    # joy: i1 (7 vs 1/3) and i4 (4 vs 3: mean high and top, but the margin is 1) pass the first steps
    assert steps.loc["joy"].tolist() == [2, 2, 1, 3]
    assert steps.loc["fear"].tolist() == [1, 0, 0, 3]
    emo = make_labels(SHEET, "emotion", ["joy", "fear"], seed=0)
    joy = emo[emo["emotion"] == "joy"]
    assert joy.loc[joy["label"] == "joy", "path"].tolist() == ["i1"]
    assert len(joy[joy["label"] == "not joy"]) == 1
    assert set(joy.loc[joy["label"] == "not joy", "path"]) <= {"i2", "i3", "i5"}
    assert emo[emo["emotion"] == "fear"].empty


def test_label_sheet_errors():
    with pytest.raises(DataError, match="any rule needs yes/no"):
        make_labels(SHEET, "any", ["joy"])
    with pytest.raises(DataError, match="one question at a time"):
        make_labels(SHEET, "majority")
    with pytest.raises(DataError, match="more than once"):
        make_labels(pd.concat([SHEET, SHEET.iloc[:1]]), "mean")
    with pytest.raises(DataError, match="two rows in a wide sheet"):
        make_labels(SHEET.drop(columns="annotator"), "majority")
    with pytest.raises(DataError, match="image \\(or path\\) column"):
        make_labels(SHEET.drop(columns="image"), "majority")


def test_agreement_levels_and_kappas():
    ag = agreement(SHEET).set_index("label")
    assert ag.at["protest", "level"] == "nominal" and ag.at["joy", "level"] == "interval"
    assert ag.at["protest", "kappa_type"].startswith("fleiss")
    assert ag.at["protest", "n_images"] == 5 and ag.at["protest", "n_annotators"] == 3
    assert ag.at["protest", "n_ratings"] == 14
    # Krippendorff's alpha by hand for the protest column (nominal): observed vs expected disagreement
    import krippendorff
    wide = SHEET.pivot(index="annotator", columns="image", values="protest").to_numpy(float)
    assert ag.at["protest", "krippendorff_alpha"] == pytest.approx(
        krippendorff.alpha(reliability_data=wide, level_of_measurement="nominal"))
    assert ag.at["protest", "percent_agreement"] == pytest.approx(3 / 5)
    two = agreement(SHEET[SHEET["annotator"] != "c"]).set_index("label")
    assert two.at["protest", "kappa_type"] == "cohen" and two.at["protest", "kappa"] == pytest.approx(1.0)
    # without coder c, joy shows five whole numbers: read as category codes unless told otherwise
    assert two.at["joy", "level"] == "nominal" and "codes" in two.at["joy", "level_rule"]
    scores = agreement(SHEET[SHEET["annotator"] != "c"], ["joy"], level="interval").set_index("label")
    assert scores.at["joy", "level_rule"] == "as asked"
    assert scores.at["joy", "krippendorff_alpha"] == pytest.approx(0.95, abs=0.05)


def test_split_keeps_duplicate_groups_together(sample_data, tmp_path):
    src = sample_data["binary"]
    labels = pd.read_csv(src / "labels.csv").rename(columns={"path": "image"})  # "image" is read as "path"
    labels["label"] = labels["label"].map({"positive": "symbol", "negative": "not symbol"})
    # pretend the images come in duplicate pairs (e.g. one photo re-posted)
    groups = pd.DataFrame({"path": [str(src / p) for p in labels["image"]], "group": np.arange(len(labels)) // 2})
    manifest, report = split_dataset(labels, tmp_path / "DATA", val=0.15, test=0.15, groups=groups, base=src, seed=3)
    m = manifest.merge(groups, left_on="source", right_on="path", suffixes=("", "_dup"))
    assert len(m) == len(labels) and (m.groupby("group_dup")["split"].nunique() == 1).all()
    assert report["groups_across_splits"] == 0 and report["grouped_images"] == len(labels)
    assert report["off_by"] < 5 and abs(report["fractions"]["test"] - 0.15) < 0.05
    table = report["table"]
    assert table.loc["total", "total"] == len(labels)
    assert set(table.index) == {"not symbol", "symbol", "total"}  # the classes keep their names
    for row in manifest.itertuples():
        assert (tmp_path / "DATA" / row.path).is_file() and row.path.startswith(f"{row.split}/{row.label}/")
    # the manifest is a labels table that train reads as it is
    from imgasdata.datasets import load_dataset

    loaded = load_dataset(tmp_path / "DATA" / "manifest.csv")
    assert len(loaded) == len(labels) and set(loaded["split"]) == {"train", "val", "test"}
    # balanced, symlinked, without groups
    unbalanced = labels.drop(labels.index[labels["label"] == "symbol"][:8])
    manifest, report = split_dataset(unbalanced, tmp_path / "BAL", balance=True, link="symlink", base=src)
    counts = manifest["label"].value_counts()
    n_pos = int((unbalanced["label"] == "symbol").sum())
    assert counts["symbol"] == counts["not symbol"] and report["dropped_by_balance"] == abs(n_pos * 2 - len(unbalanced))
    assert (tmp_path / "BAL" / manifest["path"].iloc[0]).is_symlink()


def test_commands_end_to_end(sample_data, tmp_path, monkeypatch, capsys):
    data = sample_data["binary"].parent
    sheet = tmp_path / "sheet.csv"
    rows = [(f"binary/{p}", a, int(lab == "positive") if a != "c" or i % 4 else 1 - int(lab == "positive"))
            for i, (p, lab) in enumerate(pd.read_csv(data / "binary" / "labels.csv")[["path", "label"]].to_numpy()[:40])
            for a in "abc"]
    pd.DataFrame(rows, columns=["image", "annotator", "symbol"]).to_csv(sheet, index=False)
    shutil.copy(sheet, data / "sheet.csv")
    monkeypatch.chdir(tmp_path)
    assert main(["labels", str(data / "sheet.csv"), "--out", "out/labels.csv", "--rule", "majority"]) == 0
    assert pd.read_csv("out/labels.csv").columns.tolist() == ["path", "label", "n_ratings", "tie"]
    assert main(["agreement", str(data / "sheet.csv"), "--out", "out/agreement.csv"]) == 0
    assert pd.read_csv("out/agreement.csv")["n_images"].tolist() == [40]
    assert main(["dedup", str(data / "binary"), "--out", "out/dups.csv"]) == 0
    dups = pd.read_csv("out/dups.csv", keep_default_na=False)
    assert {"path", "group", "kept", "distance", "cluster", "error"} <= set(dups.columns) and len(dups) == 40
    assert main(["split", "out/labels.csv", "--out", "DATA", "--groups", "out/dups.csv",
                 "--val", "0.2", "--test", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "total" in out and "off by" in out and "not symbol" in out
    assert sorted(p.name for p in Path("DATA").iterdir()) == ["manifest.csv", "test", "train", "val"]
    assert main(["clean", str(data / "binary"), "--out", "out/clean.csv", "--min-kb", "0"]) == 0
    assert main(["dedup", "--across", str(data / "binary" / "train"), str(data / "binary" / "test"),
                 "--out", "out/across.csv"]) == 0
    assert main(["labels", str(data / "sheet.csv"), "--out", "x.csv", "--rule", "emotion"]) == 2
    assert "emotion rule compares" in capsys.readouterr().err
    assert main(["dedup", str(data / "binary"), "--out", "y.csv", "--threshold", "2.5"]) == 2


def test_every_hash_method_runs(tmp_path):
    files = [_picture(tmp_path / f"{i}.png", i) for i in range(3)]
    for method in ("exact", "phash", "dhash", "whash", "ahash"):
        df = hash_files(files, method, progress=False)
        assert (df["error"] == "").all() and df["hash"].str.len().min() >= 16
    assert list(itertools.chain(dedup.METHODS)) == ["exact", "phash", "dhash", "whash", "ahash", "cnn"]


def test_cnn_embeddings_group_a_reencoded_copy(sample_data, tmp_path):
    src = sorted((sample_data["binary"] / "train" / "negative").glob("*.png"))[:3]
    for p in src:
        shutil.copy(p, tmp_path / p.name)
    load_image(src[0]).save(tmp_path / "z_copy.jpg", quality=70)  # on white, as a viewer shows it
    df = find_duplicates([tmp_path], method="cnn", progress=False, keep="first").set_index("path")
    assert df.at[str(tmp_path / "z_copy.jpg"), "kept"] == str(tmp_path / src[0].name)
    assert 0 <= df.at[str(tmp_path / "z_copy.jpg"), "distance"] <= 0.15
    assert df["group"].nunique() == 3
