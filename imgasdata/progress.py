"""Progress bars: one home for how long work reports its progress.

In a terminal a bar goes to stderr as usual. Inside a Jupyter kernel it goes to
stdout and updates at most every few seconds, so a notebook shows one quiet line
per step instead of a pink stderr block (and the committed outputs stay small).
When stderr is not a terminal (a log file, a batch job, a pipe) the bar redraws
at most every 30 seconds at a fixed width, so a log stays a few lines long.
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
    terminal = not notebook and getattr(sys.stderr, "isatty", lambda: False)()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled, leave=leave,
                file=sys.stdout if notebook else None,
                mininterval=0.1 if terminal else 5.0 if notebook else 30.0,
                dynamic_ncols=terminal, ncols=None if terminal else 90)
