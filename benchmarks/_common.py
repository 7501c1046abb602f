"""Helpers shared by the benchmark scripts (not a test module; nothing here asserts on time)."""

from __future__ import annotations

import os
import platform
import tempfile
import time
import warnings
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path


def sample_data(data=None):
    """The sample-data root: ``data`` if given, else built offline into a temporary folder (~2-3 s)."""
    if data is not None:
        return Path(data)
    from imgasdata.sample_data import build_sample_data

    root = Path(tempfile.mkdtemp(prefix="imgasdata_bench_data_"))
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_sample_data(root)
    print(f"built the sample data into {root} in {time.perf_counter() - t:.1f} s")
    return root


def loadavg():
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "n/a"


def machine_header(title):
    """A few lines saying when, where and with what versions the numbers were taken."""
    import PIL
    import torch
    import torchvision

    lines = [
        f"== {title} ==",
        f"date        {datetime.now().isoformat(timespec='seconds')}",
        f"machine     {platform.machine()} {_cpu_name()}, {os.cpu_count()} logical cores, "
        f"torch threads {torch.get_num_threads()} (interop {torch.get_num_interop_threads()})",
        f"versions    python {platform.python_version()}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, pillow {PIL.__version__}",
        f"load avg    {loadavg()} (1/5/15 min; above {os.cpu_count()} means other processes share the cores)",
    ]
    return "\n".join(lines)


def _cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


class Timer:
    """Accumulates wall time per label; ``wrap`` times every call of a function."""

    def __init__(self):
        self.seconds, self.calls = {}, {}

    def add(self, label, seconds):
        self.seconds[label] = self.seconds.get(label, 0.0) + seconds
        self.calls[label] = self.calls.get(label, 0) + 1

    def wrap(self, label, fn):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(label, time.perf_counter() - t)

        timed.__wrapped__ = fn
        return timed


@contextmanager
def patched(module, **replacements):
    """Temporarily replace attributes of ``module`` (restored on exit)."""
    old = {name: getattr(module, name) for name in replacements}
    for name, value in replacements.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in old.items():
            setattr(module, name, value)


def _photo_sources():
    """Real photographs that ship inside scikit-image and scikit-learn (no download)."""
    import numpy as np
    import skimage.data as sk
    from sklearn.datasets import load_sample_images

    arrays = [getattr(sk, name)() for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
                                               "immunohistochemistry", "retina", "camera")]
    arrays += list(load_sample_images().images)
    return [np.stack([a] * 3, axis=-1) if a.ndim == 2 else a[..., :3] for a in arrays]


def big_photos(folder, n=300, min_side=2000, max_side=2800, seed=0):
    """``n`` JPEGs of ``min_side``-``max_side`` px (long side) made offline from bundled photos.

    Each is a random crop (60-100 % of each side) of one of ten real photographs, upscaled
    (bicubic), colour-jittered (per-channel gain 0.8-1.2), mirrored half of the time and saved
    at JPEG quality 85-95, so that no two files are alike. Files already in ``folder`` are reused.
    """
    import numpy as np
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources, files, made, t = None, [], 0, time.perf_counter()
    for i in range(n):
        src, side = int(rng.integers(10)), int(rng.integers(min_side, max_side + 1))
        fx, fy, ox, oy = rng.uniform(0.6, 1.0, 2).tolist() + rng.uniform(0, 1, 2).tolist()
        gain, flip, quality = rng.uniform(0.8, 1.2, 3), bool(rng.integers(2)), int(rng.integers(85, 96))
        target = folder / f"photo_{i:04d}_{side}.jpg"
        files.append(target)
        if target.is_file():
            continue
        sources = sources or _photo_sources()
        a = sources[src]
        h, w = a.shape[:2]
        ch, cw = max(16, int(h * fy)), max(16, int(w * fx))
        y0, x0 = int((h - ch) * oy), int((w - cw) * ox)
        crop = np.clip(a[y0:y0 + ch, x0:x0 + cw].astype(np.float32) * gain, 0, 255).astype(np.uint8)
        img = Image.fromarray(crop)
        scale = side / max(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
        if flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        img.save(target, quality=quality)
        made += 1
    if made:
        print(f"wrote {made} photos of {min_side}-{max_side} px into {folder} in {time.perf_counter() - t:.1f} s")
    return files
