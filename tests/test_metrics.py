"""imgasdata.metrics: hand-checked accuracy, precision, recall, F1 and confusion matrices."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from imgasdata.metrics import (
    classification_metrics,
    confusion_intervals,
    format_summary,
    per_class_table,
    summary_table,
    wilson_interval,
)

REQUIRED = {"accuracy", "precision", "recall", "f1", "confusion_matrix", "labels", "n", "average",
            "positive", "per_class", "intervals", "interval_level", "interval_methods", "n_boot"}


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
    assert list(s.columns) == ["n"] + [c for k in ("accuracy", "precision", "recall", "f1")
                                       for c in (k, f"{k}_low", f"{k}_high")]
    assert s.loc["test", "accuracy"] == 0.75 and s.loc["val", "n"] == 4
    assert s.loc["test", "accuracy_low"] < 0.75 < s.loc["test", "accuracy_high"]
    assert s.attrs["averaging"] == ("precision, recall and F1 are macro averages over 2 classes "
                                    "(each class counts the same)")
    plain = summary_table({"val": m}, intervals=False)
    assert list(plain.columns) == ["n", "accuracy", "precision", "recall", "f1"]


# ----------------------------------------------------------------------------- intervals


@pytest.mark.parametrize("k, n", [(7, 7), (0, 7), (3, 10), (1, 1), (27, 28), (422, 815)])
def test_wilson_matches_statsmodels(k, n):
    from statsmodels.stats.proportion import proportion_confint

    low, high = wilson_interval(k, n)
    ref = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert low == pytest.approx(max(ref[0], 0.0), abs=1e-9) and high == pytest.approx(min(ref[1], 1.0), abs=1e-9)


def test_wilson_does_not_collapse_at_the_edges():
    # by hand: for k = n the lower end is n / (n + z^2), z = 1.959964
    z2 = 1.959963984540054 ** 2
    low, high = wilson_interval(7, 7)
    assert low == pytest.approx(7 / (7 + z2), abs=1e-9) and high == 1.0
    low, high = wilson_interval(0, 7)
    assert low == 0.0 and high == pytest.approx(z2 / (7 + z2), abs=1e-9)
    assert wilson_interval(0, 0) == (0.0, 1.0)  # no images: nothing known
    # a lower level gives a narrower interval
    assert wilson_interval(7, 7, level=0.8)[0] > wilson_interval(7, 7)[0]


def test_binary_intervals_use_wilson_for_proportions_and_bootstrap_for_f1():
    # 7 positives all found, one false alarm among 20 negatives
    y_true = ["positive"] * 7 + ["negative"] * 20
    y_pred = ["positive"] * 7 + ["negative"] * 19 + ["positive"]
    m = classification_metrics(y_true, y_pred, positive="positive")
    iv = m["intervals"]
    assert iv["recall"] == pytest.approx(list(wilson_interval(7, 7)), abs=1e-6)  # recall 7/7 is not [1, 1]
    assert iv["recall"][0] < 0.7 and iv["recall"][1] == 1.0
    assert iv["precision"] == pytest.approx(list(wilson_interval(7, 8)), abs=1e-6)
    assert iv["accuracy"] == pytest.approx(list(wilson_interval(26, 27)), abs=1e-6)
    assert m["interval_methods"] == {"accuracy": "Wilson score", "precision": "Wilson score",
                                     "recall": "Wilson score", "f1": "stratified Bayesian bootstrap"}
    assert m["interval_level"] == 0.95 and m["n_boot"] == 2000
    low, high = iv["f1"]
    assert low < m["f1"] < high <= 1.0 and 0.5 < low < 0.85
    # fixed by the seed: the same numbers every time
    assert classification_metrics(y_true, y_pred, positive="positive")["intervals"] == iv


def test_f1_interval_does_not_collapse_for_a_perfect_classifier():
    m = classification_metrics(["positive"] * 7 + ["negative"] * 7, ["positive"] * 7 + ["negative"] * 7,
                               positive="positive")
    low, high = m["intervals"]["f1"]
    assert m["f1"] == 1.0 and high == 1.0 and 0.5 < low < 0.97
    none = classification_metrics(["positive"] * 7 + ["negative"] * 7, ["negative"] * 7 + ["positive"] * 7,
                                  positive="positive")
    low, high = none["intervals"]["f1"]
    assert none["f1"] == 0.0 and low == 0.0 and 0.03 < high < 0.5


def test_macro_intervals_contain_the_estimates_and_shrink_with_more_images():
    y_true, y_pred = list("aaabbbcccc"), list("aabbbbcccc")
    small = classification_metrics(y_true, y_pred)
    large = classification_metrics(y_true * 10, y_pred * 10)
    assert small["interval_methods"]["precision"] == "stratified Bayesian bootstrap"
    for k in ("accuracy", "precision", "recall", "f1"):
        lo, hi = small["intervals"][k]
        assert lo <= small[k] <= hi
        lo10, hi10 = large["intervals"][k]
        assert lo10 <= large[k] <= hi10 and hi10 - lo10 < hi - lo


def test_macro_interval_reaches_above_the_estimate_with_few_images_per_class():
    # 4 classes of 2 test images, one mistake: a better true score is plausible, so the interval goes above
    y_true = ["a", "a", "b", "b", "c", "c", "d", "d"]
    m = classification_metrics(y_true, ["a", "a", "b", "b", "c", "c", "d", "a"])
    for k in ("precision", "recall", "f1"):
        low, high = m["intervals"][k]
        assert low < m[k] < high


def test_bootstrap_redraws_reproduce_scikit_learn_per_class_rates():
    # the rates computed on the confusion matrix itself are scikit-learn's (macro, zero_division=0)
    from imgasdata.metrics import _rates

    m = classification_metrics(["a", "a", "a", "b", "b", "c"], ["a", "a", "b", "b", "c", "c"], labels=list("abcd"))
    p, r, f = _rates(np.array(m["confusion_matrix"], dtype=float))
    assert p.mean() == pytest.approx(m["precision"]) and r.mean() == pytest.approx(m["recall"])
    assert f.mean() == pytest.approx(m["f1"])


def test_confusion_intervals_rejects_bad_input():
    with pytest.raises(ValueError, match="square"):
        confusion_intervals([[1, 2, 3]])
    with pytest.raises(ValueError, match="n_boot"):
        confusion_intervals([[1, 0], [0, 1]], n_boot=0)


def test_format_summary_names_the_averaging_and_the_methods():
    multi = classification_metrics(list("aabbccddee"), list("aabbccddea"))
    text = format_summary({"test": multi})
    assert "macro averages over 5 classes" in text
    assert "95 % intervals" in text and "Wilson score" in text and "stratified Bayesian bootstrap (2000 draws)" in text
    lo, hi = multi["intervals"]["accuracy"]
    assert f"0.900 [{lo:.3f}, {hi:.3f}]" in text
    binary = classification_metrics(["monument", "other"] * 3, ["monument", "other"] * 3, positive="monument")
    assert format_summary({"val": binary}).splitlines()[0] == "binary: precision, recall and F1 of the class 'monument'"
