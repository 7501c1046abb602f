"""Labelling well (issue 17): suggest vs random, label-issues on planted noise, prevalence intervals.

Prints four tables:

(a) learning curves: test F1 after each labelling round with every ``suggest`` strategy, and
    the labels each needs to reach random choice's final F1 (several seeds);
(b) ``label-issues`` precision and recall on planted label errors at 5, 10 and 20 % noise;
(c) coverage and mean width of each estimator's 95 % interval over 500 random gold samples of
    50, 100 and 200 images of the shifted new images (classifier trained on the clean pictures);
(d) the time of one ``suggest`` round on a 10,000-image pool with cached features.
(e) (only with ``--parts e``) ``imgasdata suggest --cache`` as whole processes on real image
    files: cold (every feature computed and stored), then warm (read back from the cache).

Features are computed once (efficientnet_lite0, through ``imgasdata.labelling.features.embed``)
and kept in ``--work``/features.npz, so a second run takes about a minute.

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


def load_features(work, n_new):
    """Features, labels and groups of the sample data's binary, multiclass and new images (cached in ``work``)."""
    from imgasdata.sample_data import TRUTH_CSV, build_sample_data

    work = Path(work)
    cache = work / "features.npz"
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        tables = pd.read_csv(work / "features.csv", keep_default_na=False)
        return z["X"], tables
    from imgasdata.labelling.features import embed

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = build_sample_data(work / "data", n_new=n_new)
    rows = []
    for task in ("binary", "multiclass"):
        for f in sorted(paths[task].rglob("*.png")):
            rows.append({"path": str(f), "task": task, "label": f.parent.name, "split": f.parent.parent.name,
                         "style": "original"})
    truth = pd.read_csv(work / "data" / TRUTH_CSV)
    for r in truth.itertuples():
        rows.append({"path": str(paths["new_images"] / r.filename), "task": "new", "label": r.label,
                     "split": "new", "style": r.style})
    tables = pd.DataFrame(rows)
    t = time.perf_counter()
    X, errors = embed(list(tables["path"]), progress=True)
    print(f"features of {len(tables)} images in {time.perf_counter() - t:.0f} s")
    assert not errors, errors
    np.savez(cache, X=X)
    tables.to_csv(work / "features.csv", index=False)
    return X, tables


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
                else:
                    score = np.nan
                rows.append({"strategy": name, "seed": seed, "labels": len(labelled), "f1": score})
                if len(labelled) >= budget:
                    break
                pool = np.setdiff1d(pool_all, labelled)
                ranked = rank(X[pool], X[labelled], y[labelled], n=step, strategy=name, seed=seed)
                labelled += list(pool[ranked["position"]])
    return pd.DataFrame(rows)


def labels_needed(curves):
    """Labels each strategy needs to reach random's mean final F1 (median over seeds; '>' = not reached)."""
    target = curves[(curves["strategy"] == "random") & (curves["labels"] == curves["labels"].max())]["f1"].mean()
    out = {}
    for name, part in curves.groupby("strategy", sort=False):
        needed = []
        for _, run in part.groupby("seed"):
            hit = run[run["f1"] >= target - 1e-9]["labels"]
            needed.append(hit.min() if len(hit) else np.inf)
        out[name] = np.median(needed)
    return target, out


def planted_noise(X, y, rates, seeds, folds=5):
    from imgasdata.labelling.label_issues import find_issues

    classes = sorted(set(y))
    rows = []
    for rate in rates:
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            flipped = rng.choice(len(y), size=int(round(rate * len(y))), replace=False)
            noisy = y.copy()
            for i in flipped:
                noisy[i] = rng.choice([c for c in classes if c != y[i]])
            found = find_issues(X, noisy, folds=folds, seed=seed)
            flagged = set(np.flatnonzero(found["is_issue"].to_numpy()))
            hits = len(flagged & set(flipped))
            rows.append({"noise": rate, "seed": seed, "planted": len(flipped), "flagged": len(flagged),
                         "precision": hits / max(len(flagged), 1), "recall": hits / len(flipped)})
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
    ap.add_argument("--seeds", type=int, default=5)
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

    # (a) learning curves
    for task, step, budget in (("binary+new", 4, 60), ("multiclass", 6, 60)) if "a" in args.parts else ():
        keep = np.flatnonzero((tab["task"] == "binary") | (tab["task"] == "new")) if task == "binary+new" \
            else np.flatnonzero(tab["task"] == "multiclass")
        rng = np.random.default_rng(123)
        test = np.sort(rng.choice(len(keep), size=len(keep) // 4, replace=False))
        t = time.perf_counter()
        curves = learning_curves(X[keep], y[keep], test, budget, step, args.seeds)
        target, needed = labels_needed(curves)
        wide = curves.groupby(["labels", "strategy"], sort=False)["f1"].mean().unstack()
        print(f"\n(a) {task}: pool {len(keep) - len(test)} images, test {len(test)}, {step} labels per round "
              f"(the first {step} at random), mean test F1 over {args.seeds} seeds ({time.perf_counter() - t:.0f} s)")
        print(wide.iloc[::2].round(3).to_string())
        print(f"labels needed to reach random's final F1 ({target:.3f}), median over seeds: "
              + ", ".join(f"{k} {v:g}" for k, v in needed.items()))

    # (b) planted noise
    for task in ("binary", "multiclass") if "b" in args.parts else ():
        keep = np.flatnonzero(tab["task"] == task)
        t = time.perf_counter()
        res = planted_noise(X[keep], y[keep], (0.05, 0.10, 0.20), seeds=3)
        print(f"\n(b) label-issues on {task} ({len(keep)} images), planted flips, 5-fold, mean of 3 seeds "
              f"({time.perf_counter() - t:.0f} s)")
        print(res.groupby("noise")[["planted", "flagged", "precision", "recall"]].mean().round(3).to_string())

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
