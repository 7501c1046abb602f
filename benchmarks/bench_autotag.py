"""Autotagging: images per second of the offline taggers, and Rekognition calls saved on resume.

Prints plain-text tables; asserts nothing about time (this is not a test).

* Offline taggers (ImageNet top-5, dlib faces, RapidOCR) on the sample data's eight photos
  and its 200 Twemoji PNGs (72 px), one pass each after a warm-up image.
* Resume: ``imgasdata autotag rekognition labels`` against a local moto server, killed with
  SIGKILL after a few answers, then re-run; the store's call log says how many calls the
  second run made and whether any went to an image answered before the kill.

Usage: ``python benchmarks/bench_autotag.py [--data DATA]`` (needs boto3 and moto[server]).
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
from _common import sample_data

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="sample-data folder (default: build one)")
    a = ap.parse_args()
    offline(sample_data(a.data))
    resume()


if __name__ == "__main__":
    main()
