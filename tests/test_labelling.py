"""The labelling chapter: suggest, label-issues and estimate do what they claim, on real and simulated data."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from imgasdata.labelling.estimate import estimate, prevalence
from imgasdata.labelling.label_issues import find_issues
from imgasdata.labelling.suggest import COLUMNS, STRATEGIES, cold_start, rank, suggest
from test_cli import assert_one_line_error, run_cli


def blobs(n_per_class, k=2, dim=16, spread=1.0, seed=0):
    """Gaussian clusters in feature space, one per class: ``(features, labels)``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(k, dim))
    X = np.vstack([c + rng.normal(0, spread, size=(n_per_class, dim)) for c in centres])
    y = np.repeat([f"c{i}" for i in range(k)], n_per_class)
    return X, y


# ------------------------------------------------------------------ suggest


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_rank_orders_the_whole_pool_once(strategy):
    X, y = blobs(30, k=3)
    labelled = np.r_[0:3, 30:33, 60:63]
    pool = np.setdiff1d(np.arange(90), labelled)
    out = rank(X[pool], X[labelled], y[labelled], n=None, strategy=strategy, seed=1)
    assert sorted(out["position"]) == list(range(len(pool)))
    assert list(out["rank"]) == list(range(1, len(pool) + 1))
    assert (out["strategy"] == strategy).all()
    assert set(out["predicted"]) <= {"c0", "c1", "c2"} and out["probability"].between(1 / 3, 1).all()


def test_uncertainty_puts_the_images_between_the_classes_first():
    X, y = blobs(40, k=2, spread=0.5)
    middle = (X[:40].mean(0) + X[40:].mean(0)) / 2
    pool = np.vstack([X[5:40], X[45:80], middle[None]])
    out = rank(pool, np.vstack([X[:5], X[40:45]]), list(y[:5]) + list(y[40:45]), n=3, strategy="uncertainty")
    assert out["position"].iloc[0] == len(pool) - 1  # the point halfway between the classes
    assert out["score"].is_monotonic_decreasing


def test_cold_start_falls_back_to_a_diverse_sample_that_covers_every_cluster():
    X, y = blobs(50, k=4, spread=0.3, seed=3)
    assert cold_start(["c0", "c0", "c1"]) is not None and cold_start([]) is not None
    assert cold_start(["c0", "c0", "c1", "c1"]) is None
    out = rank(X, X[:1], ["c0"], n=4, strategy="hybrid", seed=0)
    assert (out["strategy"] == "diverse").all() and (out["predicted"] == "").all()
    # four picks, after one labelled image of cluster 0: each of the other three clusters is reached
    assert {int(p) // 50 for p in out["position"]} >= {1, 2, 3}


def test_rank_refuses_an_unknown_strategy_in_one_sentence():
    X, _ = blobs(5)
    with pytest.raises(ValueError, match="strategy must be one of uncertainty, diverse, hybrid, random"):
        rank(X, strategy="smart")


def test_suggest_ranks_a_real_pool_and_writes_the_sheet(tiny_dir, tmp_path, capsys, bad_image):
    pool = tmp_path / "pool"
    shutil.copytree(tiny_dir / "train", pool)
    broken = bad_image("corrupt", pool / "food_drink", "zz_broken.png")
    labelled = sorted((pool / "food_drink").glob("*.png"))[:2] + sorted((pool / "smileys_emotion").glob("*.png"))[:2]
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"path": [p.relative_to(tmp_path).as_posix() for p in labelled],
                  "label": [p.parent.name for p in labelled]}).to_csv(labels, index=False)
    out = tmp_path / "out" / "next.csv"
    code, text, err = run_cli(capsys, "suggest", pool, "--labels", labels, "--n", 100, "--out", out,
                              "--coders", 2, "--device", "cpu")
    assert code == 0, err
    df = pd.read_csv(out, keep_default_na=False)
    assert list(df.columns) == COLUMNS
    ranked = df[df["rank"] != ""]
    assert len(ranked) == 12 - 4 and list(ranked["rank"].astype(int)) == list(range(1, 9))  # --n past the pool
    assert not set(map(str, labelled)) & set(ranked["path"])  # labelled images are not suggested
    assert set(ranked["predicted"]) <= {"food_drink", "smileys_emotion"}
    assert df.loc[df["rank"] == "", "path"].tolist() == [str(broken)]
    assert "zz_broken.png" in df.loc[df["rank"] == "", "error"].iloc[0]
    sheet = pd.read_csv(out.with_name("next_sheet.csv"), keep_default_na=False)
    assert list(sheet.columns) == ["image", "coder1", "coder2"] and len(sheet) == 8
    assert (sheet[["coder1", "coder2"]] == "").all().all()


def test_suggest_refuses_an_output_inside_the_pool_and_missing_labels(tiny_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, "suggest", tiny_dir / "train", "--out", tiny_dir / "train" / "next.csv")
    assert_one_line_error(code, err, "suggest")
    assert "is, or is inside, the input" in err and not (tiny_dir / "train" / "next.csv").exists()
    code, _, err = run_cli(capsys, "suggest", tiny_dir / "train", "--labels", tmp_path / "none.csv",
                           "--out", tmp_path / "next.csv")
    assert_one_line_error(code, err, "suggest")
    assert "Labels CSV not found" in err


def test_suggest_with_every_image_labelled_is_one_sentence(tiny_dir, tmp_path):
    files = sorted((tiny_dir / "val").rglob("*.png"))
    labels = pd.DataFrame({"path": [str(f) for f in files], "label": [f.parent.name for f in files]})
    with pytest.raises(ValueError, match="Every image of the pool is labelled already"):
        suggest(tiny_dir / "val", labels, progress=False)


# ------------------------------------------------------------------ the feature cache


def _spy_on_features(monkeypatch):
    """A fresh process's view (no features in memory) and the list of files whose features get computed."""
    from imgasdata import batches
    from imgasdata.labelling import features

    monkeypatch.setattr(features, "_per_image", {})
    computed = []
    real = batches.extract_features

    def spy(module, paths, *args, **kwargs):
        computed.extend(map(str, paths))
        return real(module, paths, *args, **kwargs)

    monkeypatch.setattr(batches, "extract_features", spy)
    return computed


def _cache_rows(cache):
    """``{path: (stamp..., features text)}`` of the labelling features in the SQLite file ``cache``."""
    import sqlite3

    with sqlite3.connect(cache) as db:
        rows = db.execute("SELECT path, size, mtime_ns, inode, ctime_ns, hash FROM file_hashes "
                          "WHERE method = 'cnn:efficientnet_lite0'").fetchall()
    return {r[0]: r[1:] for r in rows}


@pytest.mark.parametrize("few", [32, 0], ids=["checked-first", "through-the-model"])
def test_suggest_with_a_cache_computes_each_image_once_and_an_edited_one_again(tiny_dir, tmp_path, capsys,
                                                                                 monkeypatch, bad_image, few):
    from imgasdata.file_cache import text_vectors
    from imgasdata.labelling import features
    from imgasdata.paths import path_key

    # a few images the cache lacks are checked for readability first; 0: all go to the model at once
    monkeypatch.setattr(features, "FEW", few)

    pool = tmp_path / "pool"
    shutil.copytree(tiny_dir / "train", pool)
    broken = bad_image("corrupt", pool / "food_drink", "zz_broken.png")
    images = sorted(p for p in pool.rglob("*.png") if p != broken)
    tried = [] if few else [str(broken)]  # what of the unreadable image reaches the model
    labelled = images[:2] + images[-2:]
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"path": [str(p) for p in labelled], "label": [p.parent.name for p in labelled]}).to_csv(
        labels, index=False)
    cache = tmp_path / "cache" / "features.sqlite"

    def round_(name):
        out = tmp_path / f"{name}.csv"
        code, _, err = run_cli(capsys, "suggest", pool, "--labels", labels, "--n", 100, "--out", out,
                               "--device", "cpu", "--cache", cache)
        assert code == 0, err
        return pd.read_csv(out, keep_default_na=False)

    computed = _spy_on_features(monkeypatch)
    first = round_("first")
    assert sorted(computed) == sorted([*map(str, images), *tried])
    rows = _cache_rows(cache)
    assert set(rows) == {path_key(p) for p in images}  # the unreadable image is not cached

    computed = _spy_on_features(monkeypatch)  # as a new process: nothing in memory
    second = round_("second")
    assert computed == tried  # the unreadable image is tried again (in case it was repaired), nothing else
    pd.testing.assert_frame_equal(first, second)  # the same features give the same ranking
    assert second.loc[second["rank"] == "", "path"].tolist() == [str(broken)]
    assert "zz_broken.png" in second.loc[second["rank"] == "", "error"].iloc[0]

    edited = images[3]
    shutil.copyfile(images[-3], edited)  # another picture under the same name
    computed = _spy_on_features(monkeypatch)
    round_("third")
    assert sorted(computed) == sorted([str(edited), *tried])
    after = _cache_rows(cache)
    assert after[path_key(edited)] != rows[path_key(edited)]
    # the copy's features (to float precision: the batch an image is in changes the last digits)
    np.testing.assert_allclose(*text_vectors([after[path_key(edited)][-1], after[path_key(images[-3])][-1]]),
                               atol=1e-4)
    assert {k: v for k, v in after.items() if k != path_key(edited)} == \
        {k: v for k, v in rows.items() if k != path_key(edited)}

    shutil.copyfile(images[0], broken)  # repaired: its features are computed and kept from now on
    computed = _spy_on_features(monkeypatch)
    fourth = round_("fourth")
    assert computed == [str(broken)] and (fourth["error"] == "").all()
    assert path_key(broken) in _cache_rows(cache)


def test_one_cache_serves_dedup_cnn_suggest_and_label_issues(tiny_dir, tmp_path, capsys, monkeypatch):
    from imgasdata.labelling.features import embed
    from imgasdata.prepare import dedup

    pool = tmp_path / "pool"
    shutil.copytree(tiny_dir / "train", pool)
    images = sorted(pool.rglob("*.png"))
    cache = tmp_path / "hashes.sqlite"
    code, _, err = run_cli(capsys, "dedup", pool, "--method", "cnn", "--cache", cache, "--out", tmp_path / "d.csv")
    assert code == 0, err
    assert len(_cache_rows(cache)) == len(images)

    computed = _spy_on_features(monkeypatch)
    code, _, err = run_cli(capsys, "suggest", pool, "--n", 5, "--out", tmp_path / "next.csv", "--device", "cpu",
                           "--cache", cache)
    assert code == 0, err
    code, _, err = run_cli(capsys, "label-issues", pool, "--folds", 3, "--out", tmp_path / "issues.csv",
                           "--device", "cpu", "--cache", cache)
    assert code == 0, err
    assert computed == []  # every feature came from dedup's embeddings
    cached, errors = embed(images, progress=False, cache=cache)
    computed = _spy_on_features(monkeypatch)
    fresh, _ = embed(images, device="cpu", progress=False)
    assert len(computed) == len(images) and not errors
    np.testing.assert_allclose(cached, fresh, atol=1e-4)  # they are the labelling features

    # and the other way round: features suggest stored are dedup's embeddings
    other = tmp_path / "other.sqlite"
    _spy_on_features(monkeypatch)
    code, _, err = run_cli(capsys, "suggest", pool, "--n", 5, "--out", tmp_path / "next2.csv", "--device", "cpu",
                           "--cache", other)
    assert code == 0, err

    def no_model(self, threads=None):
        raise AssertionError("dedup computed an embedding the cache holds")

    monkeypatch.setattr(dedup.EmbedJob, "worker", no_model)
    table = dedup.hash_files(images, "cnn", cache=other, progress=False)
    np.testing.assert_allclose(dedup.CnnEmbedding.decode(table["hash"]), cached, atol=1e-4)


def test_a_cache_inside_an_input_or_with_other_weights_is_refused_in_one_sentence(tiny_dir, tmp_path, capsys):
    from imgasdata.errors import SettingsError
    from imgasdata.labelling.features import embed

    pool = tmp_path / "pool"
    shutil.copytree(tiny_dir / "val", pool)
    inside = pool / "food_drink" / "features.sqlite"
    code, _, err = run_cli(capsys, "suggest", pool, "--out", tmp_path / "next.csv", "--cache", inside)
    assert_one_line_error(code, err, "suggest", "--cache", "is, or is inside, the input folder")
    code, _, err = run_cli(capsys, "label-issues", pool, "--folds", 2, "--out", tmp_path / "issues.csv",
                           "--cache", pool / "features.sqlite")
    assert_one_line_error(code, err, "label-issues", "--cache", "is, or is inside, the input folder")
    assert not list(pool.rglob("*.sqlite*")) and not (tmp_path / "next.csv").exists()
    with pytest.raises(SettingsError, match="The feature cache holds ImageNet features only"):
        embed(sorted(pool.rglob("*.png")), weights="none", cache=tmp_path / "c.sqlite")
    assert not (tmp_path / "c.sqlite").exists()


# ------------------------------------------------------------------ label issues


def test_find_issues_finds_most_planted_flips_with_few_false_alarms():
    X, y = blobs(100, k=3, dim=32, spread=2.0, seed=5)
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(y), size=30, replace=False)  # 10 % noise
    noisy = y.copy()
    for i in flipped:
        noisy[i] = rng.choice([c for c in ("c0", "c1", "c2") if c != y[i]])
    found = find_issues(X, noisy, folds=5, seed=0)
    flagged = set(np.flatnonzero(found["is_issue"]))
    recall = len(flagged & set(flipped)) / len(flipped)
    precision = len(flagged & set(flipped)) / max(len(flagged), 1)
    assert recall >= 0.8 and precision >= 0.7, (recall, precision)
    # the flipped images get the true class as the suggestion and a low quality score
    assert (found["suggested"].to_numpy()[flipped] == y[flipped]).mean() >= 0.8
    assert found["quality"].to_numpy()[flipped].mean() < found["quality"].drop(flipped).mean() - 0.3


def test_label_issues_on_real_images_with_planted_errors_and_votes(sample_data, tmp_path, capsys):
    files = sorted(sample_data["multiclass"].rglob("*.png"))  # six visual groups, 24 images each
    truth = [f.parent.name for f in files]
    classes = sorted(set(truth))
    rng = np.random.default_rng(1)
    flipped = set(rng.choice(len(files), size=len(files) // 10, replace=False).tolist())
    given = [classes[(classes.index(t) + 1) % len(classes)] if i in flipped else t for i, t in enumerate(truth)]
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"image": [str(f) for f in files], "label": given}).to_csv(labels, index=False)
    sheet = tmp_path / "sheet.csv"
    pd.DataFrame({"image": [str(f) for f in files], "coder1": truth, "coder2": given}).to_csv(sheet, index=False)
    out = tmp_path / "issues.csv"
    code, text, err = run_cli(capsys, "label-issues", labels, "--out", out, "--sheet", sheet, "--device", "cpu")
    assert code == 0, err
    df = pd.read_csv(out, keep_default_na=False)
    assert list(df.columns) == ["path", "given", "suggested", "quality", "is_issue", "error", "votes"]
    assert len(df) == len(files)
    flagged = set(df.loc[df["is_issue"].astype(str) == "True", "path"])
    planted = {str(files[i]) for i in flipped}
    assert len(flagged & planted) / len(planted) >= 0.6
    assert len(flagged & planted) / max(len(flagged), 1) >= 0.5
    assert "the out-of-fold model agrees with" in text
    first = df.iloc[0]
    assert first["votes"] == ", ".join([truth[[str(f) for f in files].index(first["path"])], first["given"]])


def test_labels_the_pictures_do_not_show_get_a_warning_not_confident_flags():
    X, _ = blobs(60, k=2, dim=16, spread=1.0, seed=2)
    arbitrary = np.random.default_rng(0).permutation(np.repeat(["a", "b"], 60))  # unrelated to the features
    with pytest.warns(UserWarning, match=r"agrees with only \d+% of the given labels.*hard images"):
        found = find_issues(X, arbitrary, folds=5, seed=0)
    assert found.attrs["agreement"] < 0.6
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # learnable labels: no warning
        assert find_issues(*blobs(60, k=2, dim=16, spread=1.0, seed=2), folds=5).attrs["agreement"] > 0.95


def test_filter_by_is_checked_and_offers_the_recall_minded_rule():
    X, y = blobs(40, k=3, dim=16, spread=1.5, seed=4)
    with pytest.raises(ValueError, match="filter_by must be one of confident_learning"):
        find_issues(X, y, filter_by="most")
    flipped = np.random.default_rng(1).choice(len(y), size=8, replace=False)
    noisy = y.copy()
    noisy[flipped] = np.where(y[flipped] == "c0", "c1", "c0")
    for rule in ("confident_learning", "prune_by_noise_rate"):
        flagged = set(np.flatnonzero(find_issues(X, noisy, filter_by=rule)["is_issue"]))
        assert len(flagged & set(flipped)) >= 6 and len(flagged - set(flipped)) <= 2, (rule, flagged)


def test_label_issues_needs_enough_images_per_fold(tiny_dir, tmp_path, capsys):
    code, _, err = run_cli(capsys, "label-issues", tiny_dir / "val", "--out", tmp_path / "i.csv", "--folds", 5)
    assert_one_line_error(code, err, "label-issues")
    assert "has only 2 image(s); 5 folds need at least 5 per class" in err


# ------------------------------------------------------------------ estimate


def simulate(rng, N, n, prevalence_true, sensitivity, specificity):
    """A population whose classifier errs unevenly, and a random gold sample: codes ``(pred, gold_true, gold_pred)``."""
    truth = (rng.random(N) < prevalence_true).astype(int)
    right = np.where(truth == 1, rng.random(N) < sensitivity, rng.random(N) < specificity)
    pred = np.where(right, truth, 1 - truth)
    gold = rng.choice(N, size=n, replace=False)
    return pred, truth[gold], pred[gold], truth.mean()


def test_corrected_and_ppi_intervals_cover_where_classify_and_count_does_not():
    rng = np.random.default_rng(0)
    hits = {m: 0 for m in ("classify_and_count", "corrected", "ppi")}
    reps = 200
    for r in range(reps):
        pred, gt, gp, true_share = simulate(rng, N=5000, n=200, prevalence_true=0.3, sensitivity=0.7,
                                            specificity=0.9)
        table = prevalence(pred, gt, gp, ["negative", "positive"], n_boot=400, seed=r)
        pos = table[table["class"] == "positive"].set_index("method")
        for m in hits:
            hits[m] += pos.loc[m, "lower"] <= true_share <= pos.loc[m, "upper"]
    coverage = {m: h / reps for m, h in hits.items()}
    assert 0.89 <= coverage["corrected"] <= 0.99, coverage
    assert 0.89 <= coverage["ppi"] <= 0.99, coverage
    assert coverage["classify_and_count"] < 0.2, coverage  # 0.3*0.7 + 0.7*0.1 = 0.28 predicted, 0.30 true


def test_corrected_is_rogan_gladen_for_two_classes_and_inverts_several():
    pred = np.r_[np.zeros(60, int), np.ones(40, int)]
    # gold: 10 true positives, 40 true negatives; sensitivity 0.8, specificity 0.9
    gt = np.r_[np.ones(10, int), np.zeros(40, int)]
    gp = np.r_[np.ones(8, int), np.zeros(2, int), np.zeros(36, int), np.ones(4, int)]
    table = prevalence(pred, gt, gp, ["n", "p"], n_boot=200).set_index(["class", "method"])
    expected = (0.4 + 0.9 - 1) / (0.8 + 0.9 - 1)
    assert table.loc[("p", "corrected"), "estimate"] == pytest.approx(expected, abs=1e-9)
    assert table.loc[("p", "ppi"), "estimate"] == pytest.approx(0.4 - (12 / 50 - 10 / 50), abs=1e-9)
    # three classes, a known confusion matrix: the inverse recovers the true shares
    M = np.array([[0.8, 0.1, 0.0], [0.2, 0.8, 0.2], [0.0, 0.1, 0.8]])  # P(pred j | true k)
    true_shares = np.array([0.5, 0.3, 0.2])
    pred = np.repeat([0, 1, 2], (M @ true_shares * 10000).round().astype(int))
    gt = np.repeat([0, 1, 2], [100, 100, 100])
    gp = np.concatenate([np.repeat([0, 1, 2], (M[:, k] * 100).round().astype(int)) for k in range(3)])
    est = prevalence(pred, gt, gp, ["a", "b", "c"], n_boot=200)
    est = est[est["method"] == "corrected"].set_index("class")["estimate"]
    assert est.to_numpy() == pytest.approx(true_shares, abs=1e-6)


def _prediction_files(tmp_path, n=300, seed=0):
    rng = np.random.default_rng(seed)
    names = [f"img_{i:03d}.png" for i in range(n)]
    truth = np.where(rng.random(n) < 0.4, "positive", "negative")
    flip = rng.random(n) < 0.15
    pred = np.where(flip, np.where(truth == "positive", "negative", "positive"), truth)
    preds = pd.DataFrame({"path": [f"images/{f}" for f in names], "label": pred, "error": "",
                          "day": np.where(np.arange(n) % 2, "mon", "tue")})
    preds.loc[len(preds)] = {"path": "images/broken.jpg", "label": "", "error": "cannot read", "day": "mon"}
    preds.to_csv(tmp_path / "preds.csv", index=False)
    gold_idx = rng.choice(n, size=80, replace=False)
    gold = pd.DataFrame({"path": [f"images/{names[i]}" for i in gold_idx], "truth": truth[gold_idx]})
    return preds, gold


def test_estimate_joins_on_resolved_paths_and_groups(tmp_path):
    preds, gold = _prediction_files(tmp_path)
    gold["path"] = [str((tmp_path / p).resolve()) for p in gold["path"]]  # absolute here, relative there
    gold.to_csv(tmp_path / "gold.csv", index=False)
    (tmp_path / "images").mkdir()
    for p in preds["path"]:  # relative paths are read from the CSV's folder when the files are there
        (tmp_path / p).touch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every gold path is found: no warning
        df = estimate(tmp_path / "preds.csv", tmp_path / "gold.csv", positive="positive", by="day",
                      label_column="truth", n_boot=200)
    assert list(df.columns) == ["group", "class", "method", "estimate", "lower", "upper", "n_predicted", "n_gold"]
    assert list(df["group"].unique()) == ["all", "mon", "tue"] and set(df["class"]) == {"positive"}
    overall = df[df["group"] == "all"].set_index("method")
    assert (overall["n_predicted"] == 300).all() and (overall["n_gold"] == 80).all()  # the error row is left out
    assert df.groupby("method")["n_gold"].apply(lambda s: s.iloc[1:].sum() == s.iloc[0]).all()
    assert ((df["lower"] <= df["estimate"]) & (df["estimate"] <= df["upper"])).all()
    assert (df[["lower", "upper"]].to_numpy() >= 0).all() and (df[["lower", "upper"]].to_numpy() <= 1).all()


def test_estimate_warns_once_when_gold_images_are_not_predicted(tmp_path, capsys):
    preds, gold = _prediction_files(tmp_path)
    gold.loc[len(gold)] = {"path": "elsewhere/other.png", "truth": "positive"}
    gold.to_csv(tmp_path / "gold.csv", index=False)
    with pytest.warns(UserWarning, match=r"1 of 81 gold image\(s\) are not among the predictions"):
        estimate(tmp_path / "preds.csv", tmp_path / "gold.csv", label_column="truth", n_boot=100)
    out = tmp_path / "estimate.csv"
    code, text, err = run_cli(capsys, "estimate", tmp_path / "preds.csv", "--gold", tmp_path / "gold.csv",
                              "--label-column", "truth", "--out", out)
    assert code == 0
    assert [line for line in err.splitlines() if line.strip()] == [
        line for line in err.splitlines() if line.startswith("imgasdata estimate: warning: 1 of 81")]
    assert "random sample" in text
    assert len(pd.read_csv(out)) == 2 * 3  # two classes, three methods


def test_estimate_cli_errors_are_one_sentence(tmp_path, capsys):
    preds, gold = _prediction_files(tmp_path)
    gold.to_csv(tmp_path / "gold.csv", index=False)
    code, _, err = run_cli(capsys, "estimate", tmp_path / "preds.csv", "--gold", tmp_path / "gold.csv",
                           "--out", tmp_path / "e.csv")
    assert_one_line_error(code, err, "estimate")
    assert "'label'" in err  # the gold table has 'truth', not 'label'
    code, _, err = run_cli(capsys, "estimate", tmp_path / "preds.csv", "--gold", tmp_path / "gold.csv",
                           "--label-column", "truth", "--positive", "maybe", "--out", tmp_path / "e.csv")
    assert_one_line_error(code, err, "estimate")
    code, _, err = run_cli(capsys, "estimate", tmp_path / "preds.csv", "--gold", tmp_path / "gold.csv",
                           "--label-column", "truth", "--out", tmp_path / "preds.csv")
    assert_one_line_error(code, err, "estimate")
    assert pd.read_csv(tmp_path / "preds.csv").shape == (301, 4)  # the input is untouched
