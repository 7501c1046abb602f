"""imgasdata.metrics: hand-checked accuracy, precision, recall, F1 and confusion matrices."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from imgasdata.metrics import classification_metrics, per_class_table, summary_table

REQUIRED = {"accuracy", "precision", "recall", "f1", "confusion_matrix", "labels", "n", "average",
            "positive", "per_class"}


def test_binary_with_positive_class_hand_computed():
    # TP=3, FN=1, FP=2, TN=4  (10 images)
    y_true = ["positive"] * 4 + ["negative"] * 6
    y_pred = ["positive", "positive", "positive", "negative",
              "positive", "positive", "negative", "negative", "negative", "negative"]
    m = classification_metrics(y_true, y_pred, positive="positive")
    assert REQUIRED <= set(m)
    assert m["n"] == 10
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4))
    assert m["average"] == "binary" and m["positive"] == "positive"
    assert m["labels"] == ["negative", "positive"]
    # rows = true class, columns = predicted class, in label order
    assert m["confusion_matrix"] == [[4, 2], [1, 3]]
    # the negative class's figures are different and live under per_class
    assert m["per_class"]["negative"]["precision"] == pytest.approx(4 / 5)
    assert m["per_class"]["negative"]["recall"] == pytest.approx(4 / 6)
    assert m["per_class"]["positive"]["support"] == 4


def test_multiclass_macro_hand_computed():
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    m = classification_metrics(y_true, y_pred)
    # a: P=2/2 R=2/3; b: P=1/2 R=1/2; c: P=1/2 R=1/1
    pa, ra, pb, rb, pc, rc = 1.0, 2 / 3, 0.5, 0.5, 0.5, 1.0

    def f(p, r):
        return 2 * p * r / (p + r)

    assert m["average"] == "macro" and m["positive"] is None
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx((pa + pb + pc) / 3)
    assert m["recall"] == pytest.approx((ra + rb + rc) / 3)
    assert m["f1"] == pytest.approx((f(pa, ra) + f(pb, rb) + f(pc, rc)) / 3)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert {k: v["support"] for k, v in m["per_class"].items()} == {"a": 3, "b": 2, "c": 1}


def test_confusion_matrix_orientation_rows_true_columns_predicted():
    # every true "x" predicted as "y": the count sits in row x, column y
    m = classification_metrics(["x", "x", "x", "y"], ["y", "y", "y", "y"], labels=["x", "y"])
    assert m["confusion_matrix"] == [[0, 3], [0, 1]]
    # label order given by the caller is kept
    m2 = classification_metrics(["x", "x", "x", "y"], ["y", "y", "y", "y"], labels=["y", "x"])
    assert m2["labels"] == ["y", "x"]
    assert m2["confusion_matrix"] == [[1, 0], [3, 0]]


def test_labels_include_classes_absent_from_data():
    m = classification_metrics(["a", "b"], ["a", "b"], labels=["a", "b", "c"])
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert m["per_class"]["c"]["support"] == 0


def test_zero_division_gives_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics(["positive", "negative", "negative"], ["negative"] * 3, positive="positive")
        # never predicting the positive class: precision would be 0/0
        assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
        assert m["accuracy"] == pytest.approx(2 / 3)
        multi = classification_metrics(["a", "b", "c"], ["a", "a", "a"])
        assert multi["per_class"]["b"]["precision"] == 0.0
        assert multi["precision"] == pytest.approx((1 / 3 + 0 + 0) / 3)


def test_perfect_and_all_wrong():
    assert classification_metrics(list("abab"), list("abab"))["f1"] == 1.0
    wrong = classification_metrics(list("abab"), list("baba"))
    assert wrong["accuracy"] == 0.0 and wrong["f1"] == 0.0


def test_accepts_arrays_series_and_numbers():
    m = classification_metrics(np.array([0, 1, 1]), pd.Series([0, 1, 0]), positive=1)
    assert m["labels"] == ["0", "1"] and m["positive"] == "1"
    assert m["recall"] == pytest.approx(0.5) and m["precision"] == pytest.approx(1.0)


@pytest.mark.parametrize("args, kwargs, match", [
    ((["a", "b"], ["a"]), {}, "y_true has 2 labels but y_pred has 1"),
    (([], []), {}, "at least one labelled example"),
    ((["a", "b"], ["a", "z"]), {"labels": ["a", "b"]}, r"labels \['z'\] are not in"),
    ((["a", "b"], ["a", "b"]), {"positive": "c"}, "positive='c' needs a binary task"),
])
def test_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(*args, **kwargs)


def test_per_class_and_summary_tables():
    m = classification_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    table = per_class_table(m)
    assert list(table.index) == ["a", "b", "macro average"]
    assert table.loc["macro average", "precision"] == pytest.approx(m["precision"])
    assert table.loc["macro average", "support"] == 4
    s = summary_table({"val": m, "test": m})
    assert list(s.index) == ["val", "test"]
    assert list(s.columns) == ["n", "accuracy", "precision", "recall", "f1"]
    assert s.loc["test", "accuracy"] == 0.75 and s.loc["val", "n"] == 4
