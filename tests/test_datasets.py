"""imgasdata.datasets: the three dataset layouts, the splits, the checks and the fingerprint."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest

from imgasdata.datasets import (
    classes_of,
    dataset_table,
    file_sha256,
    fingerprint,
    load_dataset,
    positive_class,
)


def make_class_folders(root, counts, write_png, ext=".png"):
    """``counts`` maps ``"split/label"`` or ``"label"`` to a number of small PNGs."""
    root = Path(root)
    for i, (rel, n) in enumerate(counts.items()):
        for j in range(n):
            write_png(root / rel / f"img_{j:03d}{ext}", colour=(10 * i, 7 * j % 256, 100))
    return root


def paths_of(df, split):
    return set(df.loc[df["split"] == split, "path"])


# ----------------------------------------------------------------------------- book layout


def test_book_layout_train_val_test(tmp_path, write_png):
    root = make_class_folders(tmp_path / "d", {"train/neg": 6, "train/pos": 5, "val/neg": 2, "val/pos": 2,
                                               "test/neg": 3, "test/pos": 1}, write_png)
    df = load_dataset(root)
    assert list(df.columns) == ["path", "label", "split"]
    assert len(df) == 19
    assert df.groupby(["split", "label"]).size().to_dict() == {
        ("test", "neg"): 3, ("test", "pos"): 1, ("train", "neg"): 6, ("train", "pos"): 5,
        ("val", "neg"): 2, ("val", "pos"): 2}
    # each row's split and label are those of its folders, paths absolute
    for row in df.itertuples():
        p = Path(row.path)
        assert p.is_absolute() and p.is_file()
        assert p.parent.name == row.label and p.parent.parent.name == row.split
    # sorted by split (train, val, test), then label, then path
    assert list(dict.fromkeys(df["split"])) == ["train", "val", "test"]
    assert df.equals(load_dataset(root))


def test_book_layout_train_and_test_only(tmp_path, write_png):
    root = make_class_folders(tmp_path / "d", {"train/a": 20, "train/b": 20, "test/a": 4, "test/b": 3}, write_png)
    df = load_dataset(root, val_fraction=0.15, seed=1)
    test = paths_of(df, "test")
    # test stays exactly the test folder
    assert test == {str(p.resolve()) for p in (root / "test").rglob("*.png")}
    train, val = paths_of(df, "train"), paths_of(df, "val")
    train_folder = {str(p.resolve()) for p in (root / "train").rglob("*.png")}
    assert train | val == train_folder  # validation carved out of train/
    assert not train & val and not val & test and not train & test
    assert len(val) == 6  # 15 % of 40
    assert df.loc[df["split"] == "val", "label"].value_counts().to_dict() == {"a": 3, "b": 3}


def test_book_layout_train_and_val_only_val_becomes_test(tmp_path, write_png):
    root = make_class_folders(tmp_path / "d", {"train/a": 10, "train/b": 10, "val/a": 3, "val/b": 3}, write_png)
    df = load_dataset(root)
    assert paths_of(df, "test") == {str(p.resolve()) for p in (root / "val").rglob("*.png")}
    assert paths_of(df, "val") and paths_of(df, "val") <= {str(p.resolve()) for p in (root / "train").rglob("*.png")}
    assert not paths_of(df, "train") & paths_of(df, "val")


def test_book_layout_train_only_carves_val_and_test(tmp_path, write_png):
    root = make_class_folders(tmp_path / "d", {"train/a": 20, "train/b": 20}, write_png)
    df = load_dataset(root, val_fraction=0.1)
    counts = df["split"].value_counts().to_dict()
    assert counts == {"train": 32, "val": 4, "test": 4}
    assert set(df.loc[df["split"] == "test", "label"]) == {"a", "b"}


def test_hidden_folders_and_checkpoints_are_not_classes(tmp_path, write_png):
    root = make_class_folders(tmp_path / "d", {"train/a": 4, "train/b": 4, "test/a": 2, "test/b": 2,
                                               "train/.ipynb_checkpoints": 3}, write_png)
    write_png(root / "train" / "a" / ".ipynb_checkpoints" / "x-checkpoint.png")
    df = load_dataset(root, val_fraction=0.25)
    assert classes_of(df) == ["a", "b"]
    assert not df["path"].str.contains("checkpoint").any()


def test_non_image_files_warn_and_are_ignored(tmp_path, write_png):
    root = make_class_folders(tmp_path / "d", {"a": 10, "b": 10}, write_png)
    (root / "a" / "notes.txt").write_text("x")
    with pytest.warns(UserWarning, match="non-image"):
        df = load_dataset(root)
    assert not df["path"].str.endswith(".txt").any() and len(df) == 20


# ----------------------------------------------------------------------------- flat class folders


def test_flat_folders_split_80_10_10_stratified(tmp_path, write_png):
    root = make_class_folders(tmp_path / "d", {"cats": 20, "dogs": 20}, write_png)
    df = load_dataset(root, seed=0)
    assert df.groupby(["split", "label"]).size().to_dict() == {
        ("test", "cats"): 2, ("test", "dogs"): 2, ("train", "cats"): 16, ("train", "dogs"): 16,
        ("val", "cats"): 2, ("val", "dogs"): 2}
    assert df["path"].is_unique and len(df) == 40


def test_flat_split_reproducible_by_seed(tmp_path, write_png):
    root = make_class_folders(tmp_path / "d", {"cats": 20, "dogs": 20}, write_png)
    a, b = load_dataset(root, seed=3), load_dataset(root, seed=3)
    pd.testing.assert_frame_equal(a, b)
    c = load_dataset(root, seed=4)
    assert paths_of(a, "train") != paths_of(c, "train")  # another seed, another split
    assert c["split"].value_counts().to_dict() == a["split"].value_counts().to_dict()


def test_flat_custom_split_fractions(tmp_path, write_png):
    root = make_class_folders(tmp_path / "d", {"a": 10, "b": 10}, write_png)
    df = load_dataset(root, split=(0.6, 0.2, 0.2))
    assert df["split"].value_counts().to_dict() == {"train": 12, "val": 4, "test": 4}
    with pytest.raises(ValueError, match="add up to 1"):
        load_dataset(root, split=(0.5, 0.2, 0.2))


def test_too_few_images_for_three_splits(tmp_path, write_png):
    root = make_class_folders(tmp_path / "d", {"a": 10, "b": 2}, write_png)
    with pytest.raises(ValueError, match="Class 'b' has only 2 image"):
        load_dataset(root)


# ----------------------------------------------------------------------------- CSV


def test_csv_relative_paths_resolved_against_csv_folder(tmp_path, write_png, monkeypatch):
    root = make_class_folders(tmp_path / "d" / "imgs", {"a": 10, "b": 10}, write_png)
    rows = [{"path": f"imgs/{lab}/img_{j:03d}.png", "label": lab} for lab in "ab" for j in range(10)]
    csv = tmp_path / "d" / "labels.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    monkeypatch.chdir(tmp_path)  # the working folder must not matter
    df = load_dataset(csv, seed=0)
    assert len(df) == 20
    assert set(df["path"]) == {str(p.resolve()) for p in root.rglob("*.png")}
    assert df["split"].value_counts().to_dict() == {"train": 16, "val": 2, "test": 2}
    # labels agree with the files
    assert all(Path(p).parent.name == lab for p, lab in zip(df["path"], df["label"]))


def test_csv_with_split_column_is_respected(tmp_path, write_png):
    make_class_folders(tmp_path / "d", {"a": 4, "b": 4}, write_png)
    splits = ["train", "train", "val", "test"]
    rows = [{"path": f"{lab}/img_{j:03d}.png", "label": lab, "split": splits[j]} for lab in "ab" for j in range(4)]
    csv = tmp_path / "d" / "labels.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    df = load_dataset(csv)
    got = {(Path(p).parent.name, Path(p).name): s for p, s in zip(df["path"], df["split"])}
    assert got == {(r["label"], Path(r["path"]).name): r["split"] for r in rows}


def test_csv_numeric_labels_are_strings(tmp_path, write_png):
    make_class_folders(tmp_path / "d", {"x": 10, "y": 10}, write_png)
    rows = [{"path": f"{lab}/img_{j:03d}.png", "label": int(lab == "y")} for lab in "xy" for j in range(10)]
    pd.DataFrame(rows).to_csv(tmp_path / "d" / "l.csv", index=False)
    assert classes_of(load_dataset(tmp_path / "d" / "l.csv")) == ["0", "1"]


def test_sample_data_labels_csv_matches_folders(sample_data):
    folder = load_dataset(sample_data["binary"])
    table = load_dataset(sample_data["binary"] / "labels.csv")
    pd.testing.assert_frame_equal(folder, table)


def test_csv_missing_columns(tmp_path):
    csv = tmp_path / "bad.csv"
    pd.DataFrame({"file": ["a.png"], "label": ["x"]}).to_csv(csv, index=False)
    with pytest.raises(ValueError, match=r"needs the columns 'path' and 'label'; missing \['path'\]"):
        load_dataset(csv)


def test_csv_listing_missing_files(tmp_path, write_png):
    make_class_folders(tmp_path / "d", {"a": 3}, write_png)
    rows = [{"path": "a/img_000.png", "label": "a"}, {"path": "a/gone.png", "label": "b"},
            {"path": "a/also_gone.png", "label": "b"}]
    pd.DataFrame(rows).to_csv(tmp_path / "d" / "l.csv", index=False)
    with pytest.raises(FileNotFoundError, match=r"2 file\(s\) listed in .* do not exist, e.g. .*gone.png"):
        load_dataset(tmp_path / "d" / "l.csv")


def test_csv_bad_split_values(tmp_path, write_png):
    make_class_folders(tmp_path / "d", {"a": 2, "b": 2}, write_png)
    rows = [{"path": f"{lab}/img_{j:03d}.png", "label": lab, "split": ["train", "validation"][j]}
            for lab in "ab" for j in range(2)]
    pd.DataFrame(rows).to_csv(tmp_path / "d" / "l.csv", index=False)
    with pytest.raises(ValueError, match="validation"):
        load_dataset(tmp_path / "d" / "l.csv")


# ----------------------------------------------------------------------------- errors


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found: .*nowhere"):
        load_dataset(tmp_path / "nowhere")


def test_only_one_class(tmp_path, write_png):
    root = make_class_folders(tmp_path / "d", {"train/only": 10, "test/only": 2}, write_png)
    with pytest.raises(ValueError, match="only the class 'only'.*at least two"):
        load_dataset(root)
    flat = make_class_folders(tmp_path / "flat", {"only": 10}, write_png)
    with pytest.raises(ValueError, match="at least two"):
        load_dataset(flat)


def test_empty_class_folder(tmp_path, write_png):
    root = make_class_folders(tmp_path / "d", {"train/a": 5, "train/b": 5, "test/a": 2, "test/b": 2}, write_png)
    (root / "train" / "c").mkdir()
    with pytest.raises(ValueError, match=r"Class folder .*train/c holds no image files"):
        load_dataset(root)


def test_folder_without_class_subfolders(tmp_path, write_png):
    write_png(tmp_path / "d" / "x.png")
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_dataset(tmp_path / "d")


def test_class_in_test_not_in_train(tmp_path, write_png):
    root = make_class_folders(tmp_path / "d", {"train/a": 5, "train/b": 5, "val/a": 1, "val/b": 1,
                                               "test/a": 2, "test/b": 2, "test/zebra": 2}, write_png)
    with pytest.raises(ValueError, match=r"\['zebra'\] appear in test but not in train"):
        load_dataset(root)


# ----------------------------------------------------------------------------- table, fingerprint


def test_dataset_table_counts_and_totals(tmp_path, write_png):
    root = make_class_folders(tmp_path / "d", {"train/neg": 6, "train/pos": 5, "val/neg": 2, "val/pos": 1,
                                               "test/neg": 3, "test/pos": 4}, write_png)
    table = dataset_table(load_dataset(root))
    assert list(table.columns) == ["train", "val", "test", "total"]
    assert list(table.index) == ["neg", "pos", "total"]
    assert table.loc["neg"].tolist() == [6, 2, 3, 11]
    assert table.loc["pos"].tolist() == [5, 1, 4, 10]
    assert table.loc["total"].tolist() == [11, 3, 7, 21]


def test_dataset_table_on_sample_data(sample_data):
    table = dataset_table(load_dataset(sample_data["multiclass"]))
    assert table.loc["total", "total"] == 6 * 24
    assert (table.drop(index="total")[["train", "val", "test"]].to_numpy() == [14, 5, 5]).all()


def test_fingerprint_changes_when_bytes_change(tmp_path, write_png):
    root = make_class_folders(tmp_path / "d", {"a": 10, "b": 10}, write_png)
    df = load_dataset(root)
    table, digest = fingerprint(df)
    assert len(digest) == 64 and table["sha256"].str.len().eq(64).all()
    assert table.loc[0, "sha256"] == file_sha256(table.loc[0, "path"])
    assert fingerprint(df)[1] == digest  # deterministic
    assert fingerprint(df.sample(frac=1, random_state=0))[1] == digest  # row order does not matter
    # the same file relabelled gives another fingerprint
    relabelled = df.copy()
    relabelled.loc[0, "label"] = "b" if relabelled.loc[0, "label"] == "a" else "a"
    assert fingerprint(relabelled)[1] != digest
    # one pixel of one file changed
    from PIL import Image

    target = Path(df.loc[3, "path"])
    img = Image.open(target).convert("RGB")
    img.putpixel((0, 0), (1, 2, 3))
    img.save(target)
    assert fingerprint(df)[1] != digest


def test_classes_and_positive_class():
    df = pd.DataFrame({"label": ["b", "a", "b"]})
    assert classes_of(df) == ["a", "b"]
    assert positive_class(["negative", "positive"]) == "positive"
    assert positive_class(["a", "b"]) is None
    assert positive_class(["negative", "neutral", "positive"]) is None


def test_no_warning_on_clean_folder(tmp_path, write_png):
    root = make_class_folders(tmp_path / "d", {"a": 10, "b": 10}, write_png)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset(root)
