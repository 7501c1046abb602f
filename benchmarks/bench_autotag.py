"""Autotagging: images per second of the offline taggers, and Rekognition calls saved on resume.

Prints plain-text tables; asserts nothing about time (this is not a test).

* Offline taggers (ImageNet top-5, dlib faces, RapidOCR) on the sample data's eight photos
  and its 200 Twemoji PNGs (72 px), one pass each after a warm-up image.
* Resume: ``imgasdata autotag rekognition labels`` against a local moto server, killed with
  SIGKILL after a few answers, then re-run; the store's call log says how many calls the
  second run made and whether any went to an image answered before the kill.

* ``--ray``: each offline tagger on ``--n-ray`` (100) Twemoji on one machine
  (``engine="torch"``) and on a local ``ray.init(num_cpus=2)`` with 1 and 2 workers; each
  call's wall time includes loading the tagger's model (here, or once in every Ray worker),
  starting Ray does not (it is printed once).

Usage: ``python benchmarks/bench_autotag.py [--data DATA] [--ray [--n-ray N]]``
(the resume part needs boto3 and moto[server]).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import loadavg, sample_data

ROOT = Path(__file__).resolve().parents[1]


def offline(data):
    from imgasdata.autotag.local import tag_faces, tag_imagenet, tag_text

    photos = sorted((data / "photos").glob("*.jpg"))
    emoji = sorted((data / "binary").rglob("*.png"))
    rows = []
    for name, func in (("imagenet top-5", lambda p: tag_imagenet(p, progress=False)),
                       ("faces (dlib HOG + encodings)", lambda p: tag_faces(p, progress=False)),
                       ("ocr (RapidOCR)", lambda p: tag_text(p, progress=False))):
        func(photos[:1])  # warm-up: model loading is not per-image work
        for kind, paths in (("8 photos", photos), ("200 Twemoji 72 px", emoji)):
            t = time.perf_counter()
            func(paths)
            rows.append((name, kind, len(paths) / (time.perf_counter() - t)))
    print(f"\n{'tagger':<30} {'images':<20} {'images/s':>9}")
    for name, kind, rate in rows:
        print(f"{name:<30} {kind:<20} {rate:9.1f}")


def resume(n=40):
    from moto.server import ThreadedMotoServer

    tmp = Path(tempfile.mkdtemp(prefix="imgasdata_bench_resume_"))
    for i in range(n):
        arr = np.random.default_rng(i).integers(0, 256, (100, 120, 3), dtype=np.uint8)
        Image.fromarray(arr).save(tmp / f"img_{i:03d}.png")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
               AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", PYTHONPATH=str(ROOT))
    out = tmp / "out"
    cmd = [sys.executable, "-m", "imgasdata", "autotag", "rekognition", "labels", str(tmp), "--out", str(out)]
    db = out / "results.sqlite"

    def query(sql):
        if not db.exists():
            return []
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return con.execute(sql).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            con.close()

    try:
        proc = subprocess.Popen(cmd + ["--rate", "5", "--concurrency", "2"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and len(query("SELECT key FROM answers")) < n // 2:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = {k for (k,) in query("SELECT key FROM answers")}
        first = len(query("SELECT id FROM calls"))
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        second = query(f"SELECT key FROM calls WHERE id > {first}")
    finally:
        server.stop()
    repeated = sum(k in before for (k,) in second)
    print(f"\n{'images':>7} {'answered before SIGKILL':>24} {'calls in run 1':>15} {'calls in run 2':>15} "
          f"{'repeated':>9} {'calls saved':>12}")
    print(f"{n:>7} {len(before):>24} {first:>15} {len(second):>15} {repeated:>9} {n - len(second):>12}")


def on_ray(data, n=100):
    """Images per second of each offline tagger on one machine and on a local Ray with 1 and 2 workers."""
    import logging

    import ray

    from imgasdata.autotag.local import tag_faces, tag_imagenet, tag_text

    paths = sorted((data / "binary").rglob("*.png"))[:n]
    print(f"\n{len(paths)} Twemoji (72 px); load average at start {loadavg()}")
    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    print(f"starting a local Ray (num_cpus=2): {time.perf_counter() - t:.1f} s")
    rows = []
    for name, func in (("imagenet top-5", tag_imagenet), ("faces (dlib)", tag_faces), ("ocr (RapidOCR)", tag_text)):
        base = None
        for engine, workers in (("torch", None), ("ray", 1), ("ray", 2)):
            t = time.perf_counter()
            table = func(paths, progress=False, engine=engine, workers=workers)
            seconds = time.perf_counter() - t
            if base is None:
                base, reference = seconds, table
            same = table.to_csv(index=False) == reference.to_csv(index=False)
            rows.append((name, engine if engine == "torch" else f"ray, {workers} worker{'s' * (workers > 1)}",
                         seconds, len(paths) / seconds, base / seconds, same))
    ray.shutdown()
    print(f"\n{'tagger':<16} {'engine':<15} {'call s':>7} {'img/s':>7} {'vs torch':>9} {'same CSV':>9}")
    for name, engine, seconds, rate, ratio, same in rows:
        print(f"{name:<16} {engine:<15} {seconds:7.1f} {rate:7.1f} {ratio:9.2f} {str(same):>9}")
    print(f"load average at end {loadavg()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="sample-data folder (default: build one)")
    ap.add_argument("--ray", action="store_true", help="only the Ray comparison of the offline taggers")
    ap.add_argument("--n-ray", type=int, default=100, help="images for the Ray comparison")
    a = ap.parse_args()
    data = sample_data(a.data)
    if a.ray:
        on_ray(data, a.n_ray)
        return
    offline(data)
    resume()


if __name__ == "__main__":
    main()
