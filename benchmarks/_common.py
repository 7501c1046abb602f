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
