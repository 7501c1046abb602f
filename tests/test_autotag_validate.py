"""validate-tags reproduces the book's Tables 3 and 4 from files with those confusion counts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from imgasdata.autotag.validate import (
    compare_taggers,
    label_frequencies,
    threshold_sweep,
    validate,
)
from imgasdata.cli import main
from imgasdata.errors import DataError


def derive_counts(n, positives, accuracy, precision, recall):
    """Every (TP, FP, FN, TN) with these totals whose metrics round (to 0.1 %) to the published ones."""
    found = []
    for tp in range(positives + 1):
        fn = positives - tp
        for fp in range(n - positives + 1):
            tn = n - positives - fp
            prec = tp / (tp + fp) if tp + fp else 0.0
            if (round(100 * (tp + tn) / n, 1) == accuracy and round(100 * prec, 1) == precision
                    and round(100 * tp / positives, 1) == recall):
                found.append((tp, fp, fn, tn))
    return found


def write_files(folder, counts, concept, label, confidence=90.0):
    """A tidy TAGS.csv (tagged images carry ``label``; others a different label) and GOLD.csv with these counts."""
    tp, fp, fn, tn = counts
    rows, gold = [], []
    kinds = [("tp", tp, 1, True), ("fp", fp, 0, True), ("fn", fn, 1, False), ("tn", tn, 0, False)]
    for kind, count, truth, tagged in kinds:
        for i in range(count):
            image = f"img_{kind}_{i:04d}.jpg"
            gold.append({"image": image, concept: truth})
            rows.append({"image": image, "label": label if tagged else "Person", "confidence": confidence,
                         "model_version": "test"})
            rows.append({"image": image, "label": "Outdoors", "confidence": 70.0, "model_version": "test"})
    tags, gold_csv = Path(folder) / "tags.csv", Path(folder) / "gold.csv"
    pd.DataFrame(rows).to_csv(tags, index=False)
    pd.DataFrame(gold).to_csv(gold_csv, index=False)
    return tags, gold_csv


def test_table3_counts_are_unique():
    assert derive_counts(815, 422, 85.3, 83.9, 88.6) == [(374, 72, 48, 321)]


def test_table4_counts_are_unique():
    assert derive_counts(815, 36, 99.4, 100.0, 86.1) == [(31, 0, 5, 779)]


@pytest.mark.parametrize("table", [
    {"n": 815, "pos": 422, "acc": 85.3, "prec": 83.9, "rec": 88.6, "concept": "protest", "label": "Crowd"},
    {"n": 815, "pos": 36, "acc": 99.4, "prec": 100.0, "rec": 86.1, "concept": "john_legend", "label": "John Legend"},
])
def test_validate_tags_reproduces_book_table(tmp_path, capsys, table):
    (counts,) = derive_counts(table["n"], table["pos"], table["acc"], table["prec"], table["rec"])
    tags, gold = write_files(tmp_path, counts, table["concept"], table["label"])
    out = tmp_path / "report.json"
    status = main(["validate-tags", str(tags), str(gold), "--concept", table["concept"], "--labels",
                   table["label"], "--min-confidence", "50", "--n-boot", "200", "--out", str(out)])
    assert status == 0
    report = json.loads(out.read_text())
    tp, fp, fn, tn = counts
    assert report["confusion_matrix"] == [[tn, fp], [fn, tp]]
    assert report["n"] == table["n"]
    assert round(100 * report["accuracy"], 1) == table["acc"]
    assert round(100 * report["precision"], 1) == table["prec"]
    assert round(100 * report["recall"], 1) == table["rec"]
    assert report["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-9)
    for m in ("accuracy", "precision", "recall", "f1"):
        lo, hi = report["intervals"][m]
        assert lo <= report[m] + 1e-9 and report[m] <= hi + 1e-9
    # An accuracy interval from 815 images is a few points wide, not zero and not huge.
    lo, hi = report["intervals"]["accuracy"]
    assert 0.005 < hi - lo < 0.08
    printed = capsys.readouterr().out
    assert f"{table['n']} gold images ({table['pos']} {table['concept']})" in printed
    # the package's one interval rule: Wilson for the proportions, the same numbers as train's metrics
    from imgasdata.metrics import wilson_interval

    assert report["intervals"]["precision"] == pytest.approx(list(wilson_interval(tp, tp + fp)), abs=1e-6)
    assert report["intervals"]["recall"] == pytest.approx(list(wilson_interval(tp, tp + fn)), abs=1e-6)
    assert report["interval_methods"]["f1"] == "stratified Bayesian bootstrap" and report["n_boot"] == 200
    assert "Wilson score" in printed


def test_precision_of_100_percent_gets_an_interval_that_is_not_a_point(tmp_path, capsys):
    # the book's Table 4: 31 true positives, no false positive; a percentile bootstrap said [100 %, 100 %]
    tags, gold = write_files(tmp_path, (31, 0, 5, 779), "john_legend", "John Legend")
    report = validate(tags, gold, "john_legend", ["John Legend"], min_confidence=50)
    low, high = report["intervals"]["precision"]
    assert report["precision"] == 1.0 and high == 1.0 and 0.85 < low < 0.95
    assert main(["validate-tags", str(tags), str(gold), "--concept", "john_legend", "--labels", "John Legend"]) == 0
    assert "[100.0%, 100.0%]" not in capsys.readouterr().out


def test_an_error_row_is_not_a_tagged_image():
    gold = pd.DataFrame({"image": ["a.jpg", "b.jpg"], "protest": [1, 0]})
    tags = pd.DataFrame({"image": ["a.jpg", "b.jpg", "c.jpg"], "label": ["Crowd", "Crowd", ""],
                         "confidence": [90.0, 80.0, float("nan")], "error": ["", "timed out", "unreadable"]})
    r = validate(tags, gold, "protest", ["Crowd"], n_boot=50)
    # b failed: counted as not tagged (a true negative), never as a tag; c failed and is not "tagged but not in gold"
    assert r["confusion_matrix"] == [[1, 0], [0, 1]]
    assert r["tag_errors"] == 1 and r["not_in_gold"] == 0


def test_validate_threshold_and_missing_images(tmp_path):
    gold = pd.DataFrame({"image": ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], "protest": [1, 1, 0, 0]})
    tags = pd.DataFrame({"image": ["a.jpg", "b.jpg", "c.jpg", "x.jpg"],
                         "label": ["Crowd", "crowd", "Crowd", "Crowd"],
                         "confidence": [95.0, 60.0, 55.0, 99.0]})
    r = validate(tags, gold, "protest", ["Crowd"], min_confidence=58, n_boot=50)
    # a: TP, b: TP (case-insensitive), c: under the threshold -> TN, d: absent from tags -> TN
    assert r["confusion_matrix"] == [[2, 0], [0, 2]]
    assert r["not_in_tags"] == 1 and r["not_in_gold"] == 1 and r["not_in_gold_examples"] == ["x.jpg"]
    r = validate(tags, gold, "protest", ["Crowd"], min_confidence=70, n_boot=50)
    assert r["confusion_matrix"] == [[2, 0], [1, 1]]
    sweep = threshold_sweep(tags, gold, "protest", ["Crowd"], thresholds=[0, 58, 70, 100])
    assert sweep["recall"].tolist() == [1.0, 1.0, 0.5, 0.0]
    assert sweep["precision"].tolist() == pytest.approx([2 / 3, 1.0, 1.0, 0.0])


def test_validate_matches_file_names_when_paths_differ():
    gold = pd.DataFrame({"image": ["a.jpg", "b.jpg"], "flag": [1, 0]})
    tags = pd.DataFrame({"image": ["data/x/a.jpg", "data/x/b.jpg"], "label": ["flagpole", "balloon"],
                         "confidence": [80.0, 90.0]})
    r = validate(tags, gold, "flag", "flagpole", n_boot=20)
    assert r["matched_on"] == "name" and r["confusion_matrix"] == [[1, 0], [0, 1]]


def test_bad_gold_is_one_clear_error(tmp_path):
    tags = pd.DataFrame({"image": ["a.jpg"], "label": ["Crowd"], "confidence": [90.0]})
    with pytest.raises(DataError, match="0 or 1"):
        validate(tags, pd.DataFrame({"image": ["a.jpg"], "protest": ["yes"]}), "protest", "Crowd")
    with pytest.raises(DataError, match="columns image and 'protest'"):
        validate(tags, pd.DataFrame({"image": ["a.jpg"], "riot": [1]}), "protest", "Crowd")
    with pytest.raises(DataError, match="image, label and confidence"):
        validate(pd.DataFrame({"image": ["a.jpg"]}), pd.DataFrame({"image": ["a.jpg"], "protest": [1]}),
                 "protest", "Crowd")


def test_cli_missing_file_exits_2(tmp_path, capsys):
    assert main(["validate-tags", str(tmp_path / "no.csv"), str(tmp_path / "no2.csv"), "--concept", "p",
                 "--labels", "Crowd"]) == 2
    assert "tags file not found" in capsys.readouterr().err


def test_compare_and_label_frequencies():
    gold = pd.DataFrame({"image": list("abcd"), "protest": [1, 1, 0, 0]})
    t1 = pd.DataFrame({"image": list("abcd"), "label": ["Crowd", "Crowd", "Crowd", "Tree"],
                       "confidence": [90.0, 90, 90, 90]})
    t2 = pd.DataFrame({"image": list("abcd"), "label": ["Protest", "Tree", "Tree", "Tree"],
                       "confidence": [90.0, 90, 90, 40]})
    table = compare_taggers({"one": (t1, ["Crowd"]), "two": (t2, ["Protest"])}, gold, "protest", n_boot=20)
    assert table.set_index("tagger")[["TP", "FP", "FN", "TN"]].loc["one"].tolist() == [2, 1, 0, 1]
    assert table.set_index("tagger")[["TP", "FP", "FN", "TN"]].loc["two"].tolist() == [1, 0, 1, 2]
    freq = label_frequencies(pd.concat([t1, t2]), min_confidence=50)
    assert freq.set_index("label")["images"].to_dict() == {"Crowd": 3, "Tree": 3, "Protest": 1}
    assert freq["share"].iloc[0] == pytest.approx(0.75)
