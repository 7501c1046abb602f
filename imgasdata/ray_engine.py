"""Running a per-file job on a Ray cluster: the same rows as on one machine, from many.

Any job of the package that turns a list of image paths into one table row per path
(labelling with a saved run, perceptual hashing, an offline autotagger) can run on Ray
through :func:`map_paths`: Ray Data streams the paths in chunks to a pool of worker
processes (actors, one per worker slot, on any node of the cluster), each worker builds
its "paths -> rows" function once (loading a model once, not once per chunk), and the
rows come back to the calling process in input order as soon as each chunk is done, so
the caller writes its CSV as it goes and ``resume`` works as on one machine.

Ray is optional (``pip install "imgasdata[ray]"``). The image files and the run folder
must be readable under the same paths from every node (a shared file system), because
the workers open them by path.
"""

from __future__ import annotations

import logging
import math
import os
import warnings

import pandas as pd

from .errors import SettingsError, require


def start_ray(address=None):
    """Connect to the Ray cluster at ``address`` (``"auto"``: the one this node belongs to), or start a local one.

    Does nothing when Ray is already initialized in this process (a notebook that called
    ``ray.init`` itself, or a second job). Returns the ``ray`` module.
    """
    # Ray's notice that Jupyter widgets are missing concerns its own rich display only, and
    # it would print a time-stamped line into every notebook that imports Ray Data.
    logging.getLogger("ray.widgets.util").setLevel(logging.WARNING)
    ray = require("ray", "ray", "--engine ray")
    require("ray.data", "ray", "--engine ray")
    if not ray.is_initialized():
        # a local Ray started for one job needs none of a cluster's security notices
        ray.init(address=address, include_dashboard=False, log_to_driver=True,
                 logging_level=logging.WARNING if address else logging.ERROR)
    return ray


def cluster_cpus(ray):
    """How many CPUs the connected Ray cluster has in all."""
    return int(ray.cluster_resources().get("CPU", 1))


class _RowWorker:
    """One Ray actor: builds the rows function once, then maps it over the chunks it is sent.

    A chunk whose function raises is retried path by path, and a path that still raises
    gets a row with its reason in ``error`` — a bug or a crashed library costs rows,
    never the job. Every cell is sent back as the text the ``csv`` module would write,
    so the caller's CSV is byte for byte the single-machine one.
    """

    def __init__(self, make_rows, columns, cwd):
        # relative paths mean the same file on every node of a shared file system
        if os.path.isdir(cwd):
            os.chdir(cwd)
        self.rows_for = make_rows()
        self.columns = list(columns)

    def _rows(self, paths):
        try:
            rows = list(self.rows_for(paths))
            if list(dict.fromkeys(str(row[0]) for row in rows)) != list(paths):
                raise RuntimeError("the rows function must return rows for every path, in order, "
                                   "each row starting with its path")
            return rows
        except Exception:
            if len(paths) == 1:
                raise
            return [row for p in paths for row in self._rows_or_error([p])]

    def _rows_or_error(self, paths):
        try:
            return self._rows(paths)
        # only single paths get here (_rows retried the chunk path by path); the crash becomes the row
        except Exception as exc:  # noqa: BLE001
            error = self.columns.index("error")
            return [[p if j == 0 else (f"{p}: {type(exc).__name__}: {exc}" if j == error else "")
                     for j in range(len(self.columns))] for p in paths]

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        # one row of the dataset is one chunk of paths, so a worker call handles exactly one chunk
        paths = [str(p) for chunk in batch["paths"] for p in chunk]
        rows = self._rows_or_error(paths)
        text = [["" if v is None else str(v) for v in row] for row in rows]
        return pd.DataFrame(text, columns=self.columns, dtype=object).astype(str)


def map_paths(paths, make_rows, columns, *, address=None, workers=None, chunk_size=64,
              cpus_per_worker=1, gpus_per_worker=0):
    """Map a "list of paths -> rows" function over ``paths`` in a Ray actor pool; yield the rows as they come.

    ``make_rows`` is a picklable function without arguments, called once in each worker,
    that returns the function doing the work: it takes a list of path strings and returns
    rows (lists of values in the order of ``columns``, each starting with its path): one
    per path, or several (a long table, e.g. the top-k tags of each image), in path order.
    ``columns`` starts with ``"path"`` and includes ``"error"``. ``workers`` is the number
    of worker processes (default: the cluster's CPUs divided by ``cpus_per_worker``).

    Yields one DataFrame of string cells per chunk of ``chunk_size`` paths, in input order.
    Stopping the iteration (an interruption) stops the job; rows already yielded stay valid.
    """
    columns = list(columns)
    if not columns or columns[0] != "path" or "error" not in columns:
        raise SettingsError(f"columns must start with 'path' and include 'error', got {columns}")
    if workers is not None and int(workers) < 1:
        raise SettingsError(f"workers must be at least 1, got {workers}")
    if int(chunk_size) < 1:
        raise SettingsError(f"chunk_size must be at least 1, got {chunk_size}")
    paths = [str(p) for p in paths]
    if not paths:
        return
    ray = start_ray(address)
    if workers is None:
        workers = max(1, math.floor(cluster_cpus(ray) / max(cpus_per_worker, 1e-9)))
    # no more workers than chunks: an idle actor would still load its model
    workers = max(1, min(int(workers), math.ceil(len(paths) / chunk_size)))

    ctx = ray.data.DataContext.get_current()
    data_log = logging.getLogger("ray.data")
    log_level = data_log.level
    data_log.setLevel(logging.ERROR)  # Ray Data's per-run notices; the caller reports progress
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.print_on_execution_start)
    # rows in input order, so the CSV equals the single-machine one; the caller shows its own bar
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    try:
        chunks = [{"paths": paths[i:i + int(chunk_size)]} for i in range(0, len(paths), int(chunk_size))]
        ds = ray.data.from_items(chunks, override_num_blocks=len(chunks))
        with warnings.catch_warnings():
            # Ray 2.60 deprecates ray_remote_args (removal planned for 2.64; the extra pins below
            # it) but offers no other way to set max_restarts for an actor pool
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*is deprecated")
            ds = ds.map_batches(_RowWorker, batch_size=1, batch_format="pandas",
                                fn_constructor_kwargs={"make_rows": make_rows, "columns": columns,
                                                       "cwd": os.getcwd()},
                                compute=ray.data.ActorPoolStrategy(size=workers),
                                num_cpus=cpus_per_worker, num_gpus=gpus_per_worker or None,
                                # no restarts: Ray keeps a worker's constructor arguments in the
                                # object store, from where a restarted worker may not get them back
                                # (Ray warns so on every run). A lost worker fails the job instead,
                                # and --resume carries on from the rows already written.
                                max_restarts=0)
        for df in ds.iter_batches(batch_size=None, batch_format="pandas", prefetch_batches=1):
            if len(df):
                yield df[columns]
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.print_on_execution_start = saved
        data_log.setLevel(log_level)
