"""Labelling well (issue 17): suggest vs random, label-issues on planted noise, prevalence intervals.

Prints five tables:

(a) learning curves: mean test F1 after each labelling round with every ``suggest`` strategy,
    and the labels each needs to reach random choice's final F1 (mean over seeds), on three
    tasks: the sample data's balanced binary task plus its shifted images, the six-group
    multiclass task, and every emoji of the binary task's two populations in their real mix
    (271 positive of 1,879: 14 %, as a rare category is in a real collection);
(b) ``label-issues`` precision and recall on planted label errors at 5, 10 and 20 % noise
    (random flips, and on the binary tasks also one-sided flips: negatives called positive),
    on the sample data, a larger binary set and six Unicode emoji categories (classes the
    pictures do not define), against the head alone as ``label-issues`` used it before;
(c) coverage and mean width of each estimator's 95 % interval over 500 random gold samples of
    50, 100 and 200 images of the shifted new images (classifier trained on the clean pictures);
(d) the time of one ``suggest`` round on a 10,000-image pool with cached features.
(e) (only with ``--parts e``) ``imgasdata suggest --cache`` as whole processes on real image
    files: cold (every feature computed and stored), then warm (read back from the cache).

Features are computed once (efficientnet_lite0, through ``imgasdata.labelling.features.embed``)
and kept in ``--work`` (features.npz, emoji.npz), so a second run only fits models.

    .venv/bin/python benchmarks/bench_labelling.py                 # builds sample data with 340 new images
    .venv/bin/python benchmarks/bench_labelling.py --seeds 3 --reps 200
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import loadavg, machine_header  # noqa: E402


def cached_features(work, name, rows):
    """Features and table of the images listed by ``rows()`` (dicts with a ``path``), computed once
    and kept in ``work`` as NAME.npz and NAME.csv."""
    work = Path(work)
    if (work / f"{name}.npz").is_file():
        return np.load(work / f"{name}.npz", allow_pickle=False)["X"], pd.read_csv(work / f"{name}.csv",
                                                                                  keep_default_na=False)
    from imgasdata.labelling.features import embed

    tables = pd.DataFrame(rows())
    t = time.perf_counter()
    X, errors = embed(list(tables["path"]), progress=True)
    print(f"features of {len(tables)} images in {time.perf_counter() - t:.0f} s")
    assert not errors, errors
    np.savez(work / f"{name}.npz", X=X)
    tables.to_csv(work / f"{name}.csv", index=False)
    return X, tables


def load_features(work, n_new):
    """Features, labels and groups of the sample data's binary, multiclass and new images (cached in ``work``)."""
    def rows():
        from imgasdata.sample_data import TRUTH_CSV, build_sample_data

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            paths = build_sample_data(Path(work) / "data", n_new=n_new)
        out = [{"path": str(f), "task": task, "label": f.parent.name, "split": f.parent.parent.name,
                "style": "original"} for task in ("binary", "multiclass") for f in sorted(paths[task].rglob("*.png"))]
        truth = pd.read_csv(Path(work) / "data" / TRUTH_CSV)
        return out + [{"path": str(paths["new_images"] / r.filename), "task": "new", "label": r.label,
                       "split": "new", "style": r.style} for r in truth.itertuples()]

    return cached_features(work, "features", rows)


def load_emoji_features(work):
    """Features and labels of every emoji of the binary task's two populations and of six Unicode
    categories (80 each), straight from the Twemoji files (cached in ``work``)."""
    def rows():
        from imgasdata import sample_data

        religion, flags, negatives = sample_data._binary_pools(sample_data._emoji_table())
        out = [{"path": str(r["asset"]), "task": "population", "label": "positive"} for r in religion + flags]
        out += [{"path": str(r["asset"]), "task": "population", "label": "negative"} for r in negatives]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            categories = sample_data.build_unicode_categories(Path(work) / "unicode", n_per_group=80)
        return out + [{"path": str(f), "task": "unicode", "label": f.parent.name}
                      for f in sorted(categories.rglob("*.png"))]

    return cached_features(work, "emoji", rows)


def f1(y_true, y_pred, classes):
    from sklearn.metrics import f1_score

    if len(classes) == 2 and "positive" in classes:
        return f1_score(y_true, y_pred, pos_label="positive", zero_division=0)
    return f1_score(y_true, y_pred, average="macro", labels=classes, zero_division=0)


def learning_curves(X, y, test, budget, step, seeds, start=None):
    """Test F1 after each round of ``step`` labels, per strategy and seed: a long table."""
    from imgasdata.labelling.features import head, one_thread
    from imgasdata.labelling.suggest import STRATEGIES, cold_start, rank

    classes = sorted(set(y))
    pool_all = np.setdiff1d(np.arange(len(y)), test)
    rows = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        first = rng.choice(pool_all, size=step, replace=False) if start is None else start
        for name in STRATEGIES:
            labelled = list(first)
            while True:
                if cold_start(y[labelled]) is None:
                    with one_thread():
                        model = head(seed).fit(X[labelled], y[labelled])
                        score = f1(y[test], model.predict(X[test]), classes)
                else:  # no model yet: what a researcher has is the most common label so far
                    majority = pd.Series(y[labelled]).mode()[0]
                    score = f1(y[test], np.full(len(test), majority), classes)
                rows.append({"strategy": name, "seed": seed, "labels": len(labelled), "f1": score})
                if len(labelled) >= budget:
                    break
                pool = np.setdiff1d(pool_all, labelled)
                ranked = rank(X[pool], X[labelled], y[labelled], n=step, strategy=name, seed=seed)
                labelled += list(pool[ranked["position"]])
    return pd.DataFrame(rows)


def labels_needed(curves):
    """The fewest labels at which each strategy's mean F1 (over seeds) reaches random's mean F1 at
    the full budget (``inf``: not within the budget). Returns ``(target, {strategy: labels})``.

    Means over seeds, not a median of per-seed counts: one seed's F1 on a small test set jumps
    by several points between rounds, so per-seed counts mostly measure luck.
    """
    mean = curves.groupby(["strategy", "labels"], sort=False)["f1"].mean()
    target = mean["random"].iloc[-1]
    out = {}
    for name in curves["strategy"].unique():
        hit = mean[name][mean[name] >= target - 1e-9]
        out[name] = int(hit.index.min()) if len(hit) else np.inf
    return target, out


def head_alone(X, noisy, folds, seed):
    """``label-issues`` before this benchmark's issue-17 rework: out-of-fold probabilities of the
    logistic-regression head alone (C = 0.01), flagged with cleanlab's default rule."""
    from cleanlab.filter import find_label_issues
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from imgasdata.labelling.features import head, one_thread

    classes = sorted(set(noisy))
    codes = np.array([classes.index(v) for v in noisy])
    with one_thread():
        probs = cross_val_predict(head(seed, C=0.01), X.astype(np.float64), codes,
                                  cv=StratifiedKFold(folds, shuffle=True, random_state=seed), method="predict_proba")
    return find_label_issues(codes, probs)


def planted_noise(X, y, rates, seeds, folds=5, one_sided=False):
    """Precision and recall of each way of flagging on planted flips: a long table.

    Random flips give a wrong class chosen at random; ``one_sided`` flips only negatives to
    positive (a coder who calls every doubtful image positive).
    """
    from imgasdata.labelling.label_issues import find_issues

    classes = sorted(set(y))
    rows = []
    for rate in rates:
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            candidates = np.flatnonzero(y == "negative") if one_sided else np.arange(len(y))
            flipped = rng.choice(candidates, size=int(round(rate * len(y))), replace=False)
            noisy = y.copy()
            for i in flipped:
                noisy[i] = "positive" if one_sided else rng.choice([c for c in classes if c != y[i]])
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                flags = {rule: find_issues(X, noisy, folds=folds, seed=seed, filter_by=rule)
                         for rule in ("confident_learning", "prune_by_noise_rate")}
            agreement = flags["confident_learning"].attrs["agreement"]
            flags = {rule: found["is_issue"].to_numpy() for rule, found in flags.items()}
            flags["head alone (before)"] = head_alone(X, noisy, folds, seed)
            for rule, flagged in flags.items():
                flagged = set(np.flatnonzero(flagged))
                hits = len(flagged & set(flipped))
                rows.append({"noise": rate, "method": rule, "seed": seed, "planted": len(flipped),
                             "flagged": len(flagged), "precision": hits / max(len(flagged), 1),
                             "recall": hits / len(flipped), "agreement": agreement, "warned": bool(caught)})
    return pd.DataFrame(rows)


def coverage(pred, truth, sizes, reps, level=0.95, n_boot=1000, population=10_000):
    """Coverage and width of each estimator's interval for the positive share over random gold samples.

    A study labels far more images than the sample data has, so a population of ``population``
    images is drawn with replacement from the (prediction, truth) pairs (each picture standing
    for many like it); every gold sample is a simple random sample of that population.
    """
    from imgasdata.labelling.estimate import prevalence

    rng = np.random.default_rng(0)
    members = rng.integers(0, len(pred), size=population)
    pred, truth = pred[members], truth[members]
    true_share = float(np.mean(truth == 1))
    rows = []
    for n in sizes:
        rng = np.random.default_rng(n)
        for r in range(reps):
            gold = rng.choice(population, size=n, replace=False)
            t = prevalence(pred, truth[gold], pred[gold], ["negative", "positive"], level, n_boot, seed=r)
            t = t[t["class"] == "positive"]
            for m in t.itertuples():
                rows.append({"n_gold": n, "method": m.method, "estimate": m.estimate,
                             "covered": m.lower <= true_share <= m.upper, "width": m.upper - m.lower})
    table = pd.DataFrame(rows).groupby(["n_gold", "method"], sort=False).agg(
        coverage=("covered", "mean"), mean_width=("width", "mean"), mean_estimate=("estimate", "mean"))
    return true_share, float(pred.mean()), table


def round_time(X, pool_size, n_labelled, n, strategies, repeats=3, seed=0):
    """Seconds for one suggest round (fit + rank) on a synthetic pool made of jittered real features."""
    from imgasdata.labelling.suggest import rank

    rng = np.random.default_rng(seed)
    base = rng.integers(0, len(X), size=pool_size + n_labelled)
    big = X[base] + rng.normal(0, 0.05 * X.std(), size=(len(base), X.shape[1])).astype(np.float32)
    labels = np.where(base % 2, "positive", "negative")[pool_size:]
    rows = []
    for name in strategies:
        for k in n:
            times = []
            for _ in range(repeats if k <= 1000 else 1):
                t = time.perf_counter()
                rank(big[:pool_size], big[pool_size:], labels, n=k, strategy=name, seed=seed)
                times.append(time.perf_counter() - t)
            rows.append({"strategy": name, "n": k, "seconds": round(min(times), 2), "runs": len(times)})
    return pd.DataFrame(rows)


def _make_pool(files, folder, size):
    """``folder`` holding ``size`` copies of ``files`` (repeated when fewer) under new names: ``[(file, copy)]``.

    Copies, not hard links: a link changes the change time, so the cache stamp, of the file it links to.
    """
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    made = []
    for i in range(size):
        src = Path(files[i % len(files)])
        dst = folder / f"{i:05d}_{src.name.split('_', 1)[-1]}"
        shutil.copyfile(src, dst)
        made.append((src, dst))
    return made


def cache_rounds(work, data, big=None, n=100, repeats=2, backbone="efficientnet_lite0"):
    """Seconds of whole ``imgasdata suggest POOL --labels L --n N --cache C`` processes. Returns a table.

    The pool is a copy of the sample data's images; the labels are 20 images per class of the
    binary task, outside the pool. A fresh cache first (cold: every feature computed and
    stored), then the same command again (warm). With ``big``, warm rounds on a pool of ``big``
    files too: copies of the pool's images under new names, their cache rows copied from the
    rows the cold run stored for the same pictures (computing them would take ``big`` / 723
    times the cold run).
    """
    import os
    import subprocess

    from imgasdata.file_cache import HashCache, embedding_key, file_stamp
    from imgasdata.images import expand_inputs
    from imgasdata.paths import path_key

    work, data = Path(work), Path(data)
    files = [Path(p) for p in expand_inputs([data])]
    pool = work / "cache_pool"
    _make_pool(files, pool, len(files))
    binary = sorted(Path(p) for p in expand_inputs([data / "binary"]))
    labelled = [p for cls in ("positive", "negative") for p in [q for q in binary if q.parent.name == cls][:20]]
    labels = work / "cache_labels.csv"
    pd.DataFrame({"path": [str(p) for p in labelled], "label": [p.parent.name for p in labelled]}).to_csv(
        labels, index=False)
    cache = work / "cache_features.sqlite"
    for f in (cache, cache.with_name(cache.name + "-wal"), cache.with_name(cache.name + "-shm")):
        f.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def suggest(folder):
        return [sys.executable, "-m", "imgasdata", "suggest", str(folder), "--labels", str(labels), "--n", str(n),
                "--out", str(work / "cache_next.csv"), "--cache", str(cache), "--device", "cpu",
                "--backbone", backbone]

    def timed(args, run, size):
        t = time.perf_counter()
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - t
        if done.returncode:
            raise RuntimeError(done.stderr)
        return {"run": run, "pool": size, "seconds": round(seconds, 1), "load avg": loadavg()}

    rows = [timed([sys.executable, "-m", "imgasdata", "suggest", "--help"], "start-up only (suggest --help)", 0)]
    rows.append(timed(suggest(pool), "cold: empty cache, every feature computed", len(files)))
    rows += [timed(suggest(pool), f"warm {k + 1}: every feature from the cache", len(files)) for k in range(repeats)]
    if big:
        made = _make_pool(sorted(pool.iterdir()), work / "cache_pool_big", big)
        with HashCache(cache) as store:  # closed: the last connection to close folds the log into the file
            texts = dict(store.db.execute("SELECT path, hash FROM file_hashes WHERE method = ?",
                                          (embedding_key(backbone),)))
            store.put(embedding_key(backbone), [(path_key(dst), file_stamp(dst), texts[path_key(src)])
                                                for src, dst in made if path_key(src) in texts])  # not unreadable
        rows += [timed(suggest(work / "cache_pool_big"), f"warm {k + 1}: every feature from the cache", big)
                 for k in range(repeats)]
    table = pd.DataFrame(rows)
    table.attrs.update(labelled=len(labelled), cache_mb=cache.stat().st_size / 1e6)
    return table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/imgasdata_bench_labelling", help="sample data and feature cache")
    ap.add_argument("--n-new", type=int, default=340, help="shifted new images to build (at most 342)")
    ap.add_argument("--seeds", type=int, default=20, help="seeds of (a) (half as many on the 1,879-image task and in (b))")
    ap.add_argument("--reps", type=int, default=500)
    ap.add_argument("--pool-size", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--parts", default="abcd", help="which tables to print, e.g. 'cd'")
    ap.add_argument("--cache-pool", type=int, default=None,
                    help="(e): also warm rounds on a pool of this many files (the sample images repeated)")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print(machine_header("bench_labelling"))
    Path(args.work).mkdir(parents=True, exist_ok=True)
    X, tab = load_features(args.work, args.n_new)
    y = tab["label"].to_numpy()
    pd.set_option("display.width", 160)
    warnings.filterwarnings("ignore")

    emoji_X, emoji = load_emoji_features(args.work) if set(args.parts) & {"a", "b"} else (None, None)

    # (a) learning curves
    tasks = (("binary+new", 4, 60, args.seeds), ("multiclass", 6, 60, args.seeds),
             ("population", 10, 150, max(1, args.seeds // 2)))
    for task, step, budget, seeds in tasks if "a" in args.parts else ():
        if task == "population":  # every emoji of the binary task's populations, in their real mix
            from sklearn.model_selection import train_test_split

            XX, yy = emoji_X[emoji["task"] == "population"], emoji.loc[emoji["task"] == "population", "label"].to_numpy()
            test = np.sort(train_test_split(np.arange(len(yy)), test_size=0.25, stratify=yy, random_state=123)[1])
        else:
            keep = np.flatnonzero((tab["task"] == "binary") | (tab["task"] == "new")) if task == "binary+new" \
                else np.flatnonzero(tab["task"] == "multiclass")
            XX, yy = X[keep], y[keep]
            rng = np.random.default_rng(123)
            test = np.sort(rng.choice(len(keep), size=len(keep) // 4, replace=False))
        t = time.perf_counter()
        curves = learning_curves(XX, yy, test, budget, step, seeds)
        target, needed = labels_needed(curves)
        wide = curves.groupby(["labels", "strategy"], sort=False)["f1"].mean().unstack()
        spread = curves[curves["labels"] == budget].groupby("strategy", sort=False)["f1"].sem().max()
        share = f", {np.mean(yy == 'positive'):.0%} positive" if "positive" in set(yy) else ""
        print(f"\n(a) {task}: pool {len(yy) - len(test)} images{share}, test {len(test)}, {step} labels per round "
              f"(the first {step} at random), mean test F1 over {seeds} seeds; standard error at {budget} labels "
              f"at most {spread:.3f} ({time.perf_counter() - t:.0f} s)")
        print(wide.iloc[::max(1, len(wide) // 8)].round(3).to_string())
        print(f"labels at which the mean F1 reaches random's F1 at {budget} labels ({target:.3f}): "
              + ", ".join(f"{k} {v:g}" for k, v in needed.items()))

    # (b) planted noise
    if "b" in args.parts:
        noise_seeds = max(1, args.seeds // 2)
        rng = np.random.default_rng(0)
        population = np.flatnonzero(emoji["task"] == "population")
        labels_pop = emoji["label"].to_numpy()[population]
        larger = np.concatenate([rng.choice(population[labels_pop == c], 250, replace=False)
                                 for c in ("negative", "positive")])
        unicode_rows = np.flatnonzero(emoji["task"] == "unicode")
        sets = [("binary (sample data)", X, y, np.flatnonzero(tab["task"] == "binary")),
                ("multiclass (sample data)", X, y, np.flatnonzero(tab["task"] == "multiclass")),
                ("binary, 250 + 250 emoji", emoji_X, emoji["label"].to_numpy(), larger),
                ("six Unicode categories", emoji_X, emoji["label"].to_numpy(), unicode_rows)]
        for name, XX, yy, keep in sets:
            t = time.perf_counter()
            parts = [planted_noise(XX[keep], yy[keep], (0.05, 0.10, 0.20), seeds=noise_seeds).assign(flips="random")]
            if "positive" in set(yy[keep]):
                parts.append(planted_noise(XX[keep], yy[keep], (0.10,), seeds=noise_seeds,
                                           one_sided=True).assign(flips="one-sided"))
            res = pd.concat(parts)
            print(f"\n(b) label-issues on {name} ({len(keep)} images), planted flips, 5-fold, mean of {noise_seeds} "
                  f"seeds ({time.perf_counter() - t:.0f} s); agreement = out-of-fold model with the given labels")
            table = res.groupby(["flips", "noise", "method"], sort=False)[
                ["planted", "flagged", "precision", "recall", "agreement", "warned"]].mean()
            print(table.round(3).to_string())

    # (c) interval coverage on the shifted images
    if "c" in args.parts:
        from imgasdata.labelling.features import head, one_thread

        train = np.flatnonzero((tab["task"] == "binary") & (tab["split"] != "test"))
        new = np.flatnonzero(tab["task"] == "new")
        with one_thread():
            model = head(0).fit(X[train], y[train])
        pred = (model.predict(X[new]) == "positive").astype(int)
        truth = (y[new] == "positive").astype(int)
        t = time.perf_counter()
        true_share, predicted_share, table = coverage(pred, truth, (50, 100, 200), args.reps)
        print(f"\n(c) {len(new)} shifted new images, classifier trained on the clean binary images (accuracy "
              f"{np.mean(pred == truth):.3f}); a population of 10,000 drawn from them with replacement: "
              f"predicted positive share {predicted_share:.3f}, true share {true_share:.3f}; 95 % intervals "
              f"over {args.reps} gold samples per size ({time.perf_counter() - t:.0f} s)")
        print(table.round(3).to_string())

    # (d) a suggest round on a large pool
    if "d" in args.parts:
        print(f"\n(d) one suggest round (fit on 200 labelled + rank) on a {args.pool_size:,}-image pool of cached "
              f"{X.shape[1]}-d features")
        print(round_time(X, args.pool_size, 200, (100, args.pool_size),
                         ("uncertainty", "hybrid", "diverse", "random")).to_string(index=False))
    # (e) suggest --cache as whole processes
    if "e" in args.parts:
        t = cache_rounds(args.work, Path(args.work) / "data", args.cache_pool)
        print(f"\n(e) imgasdata suggest POOL --labels L --n 100 --cache C as whole processes, on real image "
              f"files ({t.attrs['labelled']} labelled images apart); cache file at the end "
              f"{t.attrs['cache_mb']:.0f} MB")
        print(t.to_string(index=False))
    print(f"\nload avg at end {loadavg()}")


if __name__ == "__main__":
    main()
