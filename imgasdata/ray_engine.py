"""Running a per-file job on a Ray cluster: the same rows as on one machine, from many.

Any job of the package that turns a list of image paths into one table row per path
(labelling with a saved run, perceptual hashing, an offline autotagger) can run on Ray
through :func:`map_paths` (the ``ray`` engine of :func:`imgasdata.jobs.run_job`): the
paths go in chunks to a pool of worker processes (Ray actors, on any node of the
cluster), each worker builds the job's worker once (loading a model once, not once per
chunk), and the rows come back to the calling process in input order as soon as each
chunk is done, so the caller writes its CSV as it goes and ``resume`` works as on one
machine. A worker that dies (a native crash, the out-of-memory killer) costs a row for
the file that killed it, not the job.

Ray is optional (``pip install "imgasdata[ray]"``). The image files and the run folder
must be readable under the same paths from every node (a shared file system), because
the workers open them by path.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque

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
    if not ray.is_initialized():
        # a local Ray started for one job needs none of a cluster's security notices
        ray.init(address=address, include_dashboard=False, log_to_driver=True,
                 logging_level=logging.WARNING if address else logging.ERROR)
    return ray


def cluster_cpus(ray):
    """How many CPUs the connected Ray cluster has in all."""
    return int(ray.cluster_resources().get("CPU", 1))


class _RowWorker:
    """One Ray worker process: builds the job's worker once, then turns the chunks it is sent into rows.

    Rows follow :func:`imgasdata.rows.rows_or_errors`, the runner's one rule: an unreadable
    or invalid file becomes an error row, a bug raises (and fails the job with its
    traceback, as on one machine). Every cell is sent back as the text the ``csv`` module
    would write, so the caller's CSV is byte for byte the single-machine one.
    """

    def __init__(self, make_rows, columns, cwd):
        # relative paths mean the same file on every node of a shared file system
        if os.path.isdir(cwd):
            os.chdir(cwd)
        made = make_rows()
        # a job's worker has batches(); a plain "paths -> rows" function is one batch per chunk
        self.worker = made if hasattr(made, "batches") else _OneBatch(made)
        self.columns = list(columns)

    def rows(self, paths):
        """The text rows of ``paths`` (file names as bytes: Arrow carries only UTF-8 text)."""
        from .rows import rows_or_errors

        rows = rows_or_errors(self.worker, [os.fsdecode(p) for p in paths], self.columns)
        return [["" if v is None else str(v) for v in row] for row in rows]

    def ping(self):
        """Answers while the worker's process is alive."""
        return True


class _OneBatch:
    def __init__(self, rows_for):
        self.rows_for = rows_for

    def batches(self, paths):
        yield list(self.rows_for(paths))


def _worker_died(exc):
    """True when ``exc`` (or what it wraps) says a worker process died: a native crash, ``os._exit``, the OOM killer."""
    from ray import exceptions as rex

    died = tuple(getattr(rex, n) for n in ("RayActorError", "ActorDiedError", "ActorUnavailableError",
                                           "WorkerCrashedError", "OutOfMemoryError", "NodeDiedError")
                 if hasattr(rex, n))
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, died):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _one_by_one(ray, chunk, new_worker, rescuer, columns):
    """The rows of a chunk whose worker died, each path in turn in a fresh worker.

    A path whose worker dies too gets an error row saying so (its decoder or library
    crashed the process, or the memory ran out); the next path gets another fresh worker.
    ``rescuer`` holds the rescuing worker between calls (killed by the caller at the end).
    """
    from .rows import error_row

    rows = []
    for path in chunk:
        if not rescuer:
            # no CPU reserved: the pool's workers hold the cluster's CPUs for their lifetime,
            # and one worker more for a few paths does not overload a node
            rescuer.append(new_worker(num_cpus=0))
        try:
            rows += ray.get(rescuer[0].rows.remote([path]))
        except Exception as exc:  # noqa: BLE001  (only a worker's death becomes a row; the rest re-raises)
            if not _worker_died(exc):
                raise
            text = os.fsdecode(path)
            row = error_row(columns, text, f"{text}: the worker process died while working on this file "
                                            "(a crash in a decoder or library, or out of memory)")
            rows.append(["" if v is None else str(v) for v in row])
            rescuer.clear()
    return rows


def map_paths(paths, make_rows, columns, *, address=None, workers=None, chunk_size=64,
              cpus_per_worker=1, gpus_per_worker=0):
    """Map a job's worker over ``paths`` in a Ray actor pool; yield the rows chunk by chunk as they come.

    ``make_rows`` is a picklable function without arguments, called once in each worker,
    that returns the worker: an object whose ``batches(paths)`` yields lists of rows (see
    :class:`imgasdata.jobs.Job`), or a plain function from a list of path strings to rows.
    Rows are lists of values in the order of ``columns``, each starting with its path: one
    per path, or several (a long table, e.g. the top-k tags of each image), in path order.
    ``columns`` starts with the path's column and includes ``"error"``. ``workers`` is the
    number of worker processes (default: the cluster's CPUs divided by ``cpus_per_worker``).

    Yields one DataFrame of string cells per chunk of ``chunk_size`` paths, in input order.
    When a worker process dies (a native crash, the out-of-memory killer), the chunk it held
    is re-run path by path in fresh workers, the path that kills them gets an error row, and
    the rest of the job goes on. Stopping the iteration (an interruption) stops the job;
    rows already yielded stay valid.
    """
    columns = list(columns)
    if not columns or "error" not in columns:
        raise SettingsError(f"columns must start with the path's column and include 'error', got {columns}")
    if workers is not None and int(workers) < 1:
        raise SettingsError(f"workers must be at least 1, got {workers}")
    if int(chunk_size) < 1:
        raise SettingsError(f"chunk_size must be at least 1, got {chunk_size}")
    # Arrow carries text as UTF-8 only; a file name from another system need not be, its bytes always are
    paths = [os.fsencode(p) for p in paths]
    if not paths:
        return
    ray = start_ray(address)
    if workers is None:
        workers = max(1, math.floor(cluster_cpus(ray) / max(cpus_per_worker, 1e-9)))
    size = int(chunk_size)
    chunks = [paths[i:i + size] for i in range(0, len(paths), size)]
    # no more workers than chunks: an idle worker would still load its model
    workers = max(1, min(int(workers), len(chunks)))
    options = {"num_cpus": cpus_per_worker, "num_gpus": gpus_per_worker or None, "max_restarts": 0}
    worker_class = ray.remote(**options)(_RowWorker)
    made = ray.put(make_rows)  # sent to the object store once, not once per worker

    def new_worker(**extra):
        return worker_class.options(**extra).remote(made, columns, os.getcwd())

    slots = [new_worker() for _ in range(workers)]
    rescuer = []
    queue = deque()  # (chunk, slot, pending rows), in input order
    todo = iter(chunks)

    def submit(slot):
        chunk = next(todo, None)
        if chunk is not None:
            queue.append((chunk, slot, slots[slot].rows.remote(chunk)))

    try:
        for _ in range(2):  # two chunks queued per worker: the next is there when one is done
            for slot in range(workers):
                submit(slot)
        while queue:
            chunk, slot, pending = queue.popleft()
            try:
                rows = ray.get(pending)
            except Exception as exc:  # noqa: BLE001  (only a worker's death is handled; the rest re-raises)
                if not _worker_died(exc):
                    raise
                rows = _one_by_one(ray, chunk, new_worker, rescuer, columns)
                if _dead(ray, slots[slot]):
                    slots[slot] = new_worker()
            yield pd.DataFrame(rows, columns=columns, dtype=object).astype(str)
            submit(slot)
    finally:
        for actor in slots + rescuer:
            ray.kill(actor)


def _dead(ray, actor):
    """True when ``actor`` no longer answers (its process died)."""
    try:
        ray.get(actor.ping.remote(), timeout=60)
        return False
    except Exception as exc:  # noqa: BLE001
        if _worker_died(exc):
            return True
        raise
