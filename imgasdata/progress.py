"""Progress bars: one home for how long work reports its progress.

In a terminal a bar goes to stderr as usual. Inside a Jupyter kernel it goes to
stdout and updates at most every few seconds, so a notebook shows one quiet line
per step instead of a pink stderr block (and the committed outputs stay small).
"""

from __future__ import annotations

import sys


def in_notebook():
    """True inside a Jupyter kernel (JupyterLab, papermill, nbval)."""
    return "ipykernel" in sys.modules and type(sys.stdout).__module__.startswith("ipykernel")


def progress(iterable=None, *, total=None, desc=None, unit="it", enabled=True, leave=True):
    """A tqdm bar over ``iterable`` (or a manual one with ``total``); ``enabled=False`` shows nothing."""
    from tqdm import tqdm

    notebook = in_notebook()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled, leave=leave,
                file=sys.stdout if notebook else None, mininterval=5.0 if notebook else 0.1,
                dynamic_ncols=not notebook, ncols=90 if notebook else None)
