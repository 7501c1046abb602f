"""One runner for every job that turns image paths into table rows.

Labelling with a saved run (:mod:`imgasdata.predict`), the offline taggers
(:mod:`imgasdata.autotag.local`), dedup's hashes and CNN embeddings
(:mod:`imgasdata.prepare.dedup`) are each a :class:`Job`: a name, the table's columns
(the first one holds the image's path and is the key), an identity (what must be the
same for two runs' rows to share one file: the weights' SHA-256, the options that change
rows) and a :meth:`Job.worker` that loads its model once and turns lists of paths into
rows. :func:`run_job` does the rest the same way for all of them:

* the inputs: files and folders expanded by :func:`imgasdata.images.expand_inputs`, in its order;
* the table: every text cell written through :func:`imgasdata.paths.path_text`, so a file
  name that is not UTF-8 gets its row instead of crashing the job;
* the engine: ``local`` (this machine; ``torch`` is the same) or ``ray`` (a Ray cluster),
  and one meaning of ``workers``: how many worker processes run the job, each with its
  own copy of the model (local default: one, this process);
* the errors: an unreadable or invalid file (a :class:`~imgasdata.errors.UserError`)
  becomes a row with the reason in ``error``; anything else is a bug and keeps its
  traceback, on either engine;
* the output: written as the work goes, with a record of the job beside it
  (``OUT.job.jsonl``: the identity, then which images are done with how many rows), so
  ``resume`` carries on where a run stopped, refuses to mix another model's or option's
  rows in, can redo the error rows (``retry_errors``), and never counts an image whose
  rows were cut by a kill as done. Without ``resume`` an existing file is left intact
  until the new one is complete (written beside it and moved over it at the end);
* a progress bar (:func:`imgasdata.progress.progress`) and a clean stop on Ctrl-C.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from .errors import DataError, SettingsError, UserError
from .paths import path_key
from .rows import checked_rows, clean_rows, keys_in, rows_or_errors

#: The engines; ``torch`` is an older name of ``local``, still accepted.
ENGINES = ("local", "ray")
ENGINE_ALIASES = {"torch": "local"}


def engine_name(engine):
    """``engine`` as one of :data:`ENGINES` (``torch`` is ``local``); a wrong one raises :class:`SettingsError`."""
    engine = ENGINE_ALIASES.get(engine, engine)
    if engine not in ENGINES:
        raise SettingsError(f"engine must be one of {', '.join(ENGINES)} (or torch, the same as local), "
                            f"got {engine!r}")
    return engine


def check_workers(workers):
    """``workers`` as an int (or ``None``); fewer than one raises :class:`SettingsError`."""
    if workers is not None and int(workers) < 1:
        raise SettingsError(f"workers must be at least 1, got {workers}")
    return None if workers is None else int(workers)


def check_engine(engine, workers=None, address=None):
    """Check ``engine`` and ``workers`` and, for Ray, join (or start) the cluster before any model is loaded.

    Returns the engine's name. Says in one sentence if Ray is not installed.
    """
    engine = engine_name(engine)
    check_workers(workers)
    if engine == "ray":
        from .ray_engine import start_ray

        start_ray(address)
    return engine


class Job:
    """What a job declares; :func:`run_job` does the rest (see the module docstring).

    Subclasses set ``name`` (for messages), ``columns`` (the first holds the path and is the
    key; one is ``error``), ``owner`` (how a message names the table: "this model's"),
    ``chunk_size`` (paths sent to a worker at a time), and implement :meth:`identity` and
    :meth:`worker`. A job object is sent to each worker process as it is, so it holds
    options, not loaded models.
    """

    name = "job"
    columns: tuple = ("path", "error")
    owner = "this job's"
    chunk_size = 64
    cpus_per_worker = 1
    gpus_per_worker = 0

    def identity(self):
        """What must match for a run to resume another's file: a JSON-able dict."""
        return {}

    def worker(self, threads=None):
        """Load the model (once per worker process) and return an object with ``batches(paths)``.

        ``batches`` yields lists of rows (lists in ``columns`` order, ``None`` for an empty
        cell), every path's rows together (at least one each) and in input order.
        ``threads``: decoding threads beside the model (``None``: the job's default; a pool
        or Ray worker gets 1, the parallelism being the workers).
        """
        raise NotImplementedError


def _in_process(job, worker, paths):
    """Rows of ``paths`` batch by batch from ``worker`` in this process (the job's own batching and prefetching)."""
    start = 0
    while start < len(paths):
        rest = paths[start:]
        try:
            for batch in worker.batches(rest):
                batch = clean_rows(batch)
                n = len(keys_in(batch))
                yield checked_rows(batch, paths[start:start + n], job.name)
                start += n
            return
        except UserError:
            # the batch in flight failed as a whole: its first path alone, then the rest again
            rows = rows_or_errors(worker, [paths[start]], job.columns, job.name)
            yield rows
            start += 1


_POOL_WORKER = None


def _pool_start(job):
    global _POOL_WORKER
    _POOL_WORKER = (job, job.worker(threads=1))


def _pool_chunk(paths):
    job, worker = _POOL_WORKER
    return rows_or_errors(worker, [os.fsdecode(p) for p in paths], job.columns, job.name)


def _in_pool(job, paths, workers):
    """Rows of ``paths`` chunk by chunk from ``workers`` processes on this machine, in input order."""
    from concurrent.futures import ProcessPoolExecutor

    chunks = [paths[i:i + job.chunk_size] for i in range(0, len(paths), job.chunk_size)]
    with ProcessPoolExecutor(workers, initializer=_pool_start, initargs=(job,)) as pool:
        pending = []
        try:
            for k, chunk in enumerate(chunks):
                pending.append(pool.submit(_pool_chunk, [os.fsencode(p) for p in chunk]))
                if len(pending) > 2 * workers:  # a few chunks ahead, not the whole list in memory
                    yield pending.pop(0).result()
            while pending:
                yield pending.pop(0).result()
        finally:
            for f in pending:
                f.cancel()


def _on_ray(job, paths, workers, address):
    from functools import partial

    from . import ray_engine

    for df in ray_engine.map_paths(paths, partial(_ray_worker, job), list(job.columns), address=address,
                                   workers=workers, chunk_size=job.chunk_size,
                                   cpus_per_worker=job.cpus_per_worker, gpus_per_worker=job.gpus_per_worker):
        yield [[None if v == "" else v for v in row] for row in df.values.tolist()]


def _ray_worker(job):
    return job.worker(threads=1)


def job_rows(job, paths, engine="local", workers=None, address=None):
    """Yield the rows of ``paths`` (strings or ``Path``) batch by batch, in input order, on ``engine``.

    Cells are written as the CSV will hold them (:func:`imgasdata.rows.text_cell`); from Ray every cell is text.
    """
    engine = engine_name(engine)
    workers = check_workers(workers)
    paths = [os.fspath(p) for p in paths]
    if not paths:
        return iter(())
    if engine == "ray":
        return _on_ray(job, paths, workers, address)
    if workers and workers > 1 and len(paths) > job.chunk_size:
        return _in_pool(job, paths, min(workers, math.ceil(len(paths) / job.chunk_size)))
    # the model is loaded here, before any progress bar or output: a refused weights file is one sentence
    return _in_process(job, job.worker(), paths)


# --------------------------------------------------------------------------- the output and its record


def record_path(out_csv):
    """Where the record of the job that writes ``out_csv`` lives: ``OUT.job.jsonl`` beside it."""
    out_csv = Path(out_csv)
    return out_csv.with_name(out_csv.name + ".job.jsonl")


def _differences(old, new):
    """``"name=old, not new"`` for each entry of two identities that differ."""
    out = []
    for k in sorted(set(old) | set(new)):
        if old.get(k) != new.get(k):
            out.append(f"{k}={old.get(k)!r}, not {new.get(k)!r}")
    return "; ".join(out)


class Output:
    """The CSV a job writes and the record beside it; what makes resume safe.

    The record (``OUT.job.jsonl``) starts with the job's name, columns and identity; after
    every batch written to the CSV, one line lists the images done in it with their number of
    rows and whether they are error rows. An image counts as done only when its line is in
    the record *and* all its rows are in the CSV, so a kill that cuts either file anywhere
    (mid-line or exactly at a line end inside an image's block) leaves that image to redo.
    """

    def __init__(self, path, job, resume=False, retry_errors=False):
        self.path = Path(path)
        self.record = record_path(self.path)
        self.job = job
        self.columns = list(job.columns)
        self.head = {"job": job.name, "columns": self.columns, "identity": job.identity()}
        self.done = {}  # key -> (path text, rows, error)
        self.target = self.path
        self.handle = self.log = None
        if resume and self.path.exists() and self.path.stat().st_size > 0:
            self._read_back(retry_errors)
        elif not resume and self.path.exists() and self.path.stat().st_size > 0:
            # an existing table stays intact until the new one is complete
            self.target = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)

    # -- reading back a file to resume
    def _read_back(self, retry_errors):
        data = self.path.read_bytes()
        data = data[: data.rfind(b"\n") + 1]  # a torn last line is not a row
        rows = list(csv.reader(io.StringIO(data.decode("utf-8", "replace"), newline="")))
        if rows and rows[0] != self.columns:
            raise DataError(f"Cannot resume {self.path}: its columns {rows[0]} are not {self.job.owner} "
                            f"{self.columns}; write to a new file instead")
        body = rows[1:]
        if not body:  # nothing written yet (killed after the header, or before it): start the file afresh
            self._rewrite([])
            return
        entries = self._read_record()
        kept, position = [], 0
        for key, text, n, error in entries:
            block = body[position:position + n]
            if len(block) < n or any(r[0] != text for r in block):
                break  # cut here (or edited): this image and any after it are redone
            position += n
            if not (retry_errors and error):
                kept.append((key, text, n, error, block))
        self.done = {key: (text, n, error) for key, text, n, error, _ in kept}
        if position != len(body) or len(kept) != len(entries):
            self._rewrite(kept)

    def _read_record(self):
        """The record's entries ``(key, path text, rows, error)``, after checking the identity."""
        if not self.record.exists():
            raise DataError(f"Cannot resume {self.path}: there is no {self.record.name} beside it to say "
                            "which model and options wrote its rows; write to a new file or start afresh")
        lines = self.record.read_text(encoding="utf-8").splitlines()
        try:
            head = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            head = None
        if head is None:
            raise DataError(f"Cannot resume {self.path}: its record {self.record.name} is damaged; "
                            "write to a new file or start afresh")
        if head.get("job") != self.head["job"]:
            raise DataError(f"Cannot resume {self.path}: it was written by {head.get('job')!r}, not "
                            f"{self.head['job']!r}; write to a new file instead")
        if head.get("identity") != self.head["identity"]:
            raise DataError(f"Cannot resume {self.path}: it was written with "
                            f"{_differences(head.get('identity') or {}, self.head['identity'])}; "
                            "write to a new file or start afresh")
        entries = []
        for line in lines[1:]:
            try:
                entries += [tuple(e) for e in json.loads(line)["done"]]
            except (json.JSONDecodeError, KeyError, TypeError):
                break  # a torn last line: the images in it are redone
        return entries

    def _rewrite(self, kept):
        """Write back only the whole blocks of the images kept (temporary file, then ``os.replace``)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(self.columns)
            for *_, block in kept:
                writer.writerows(block)
        tmp_record = self.record.with_name(self.record.name + ".tmp")
        with open(tmp_record, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(self.head) + "\n")
            if kept:
                fh.write(json.dumps({"done": [[k, t, n, e] for k, t, n, e, _ in kept]}) + "\n")
        os.replace(tmp, self.path)
        os.replace(tmp_record, self.record)

    # -- writing
    def __enter__(self):
        record = self.record if self.target == self.path else record_path(self.target)
        fresh = self.target != self.path or not self.target.exists() or self.target.stat().st_size == 0
        if fresh:
            self.target.write_bytes(b"")
            record.write_text(json.dumps(self.head) + "\n", encoding="utf-8")
        self.handle = open(self.target, "a", newline="", encoding="utf-8")
        self.log = open(record, "a", encoding="utf-8")
        if fresh:
            self._append([self.columns])
        return self

    def _append(self, rows):
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)
        self.handle.write(buffer.getvalue())
        self.handle.flush()

    def write(self, rows, keys):
        """Append one batch: ``rows`` (every key's block, in the order of ``keys``), then its record line."""
        self._append(rows)
        errors = self.columns.index("error")
        entries, position = [], 0
        for key in keys:
            text = rows[position][0]
            n = 0
            while position + n < len(rows) and rows[position + n][0] == text:
                n += 1
            error = any(r[errors] not in (None, "") for r in rows[position:position + n])
            entries.append([key, text, n, int(error)])
            position += n
        # the record line after the rows: a kill between the two leaves rows the record does not count
        self.log.write(json.dumps({"done": entries}) + "\n")
        self.log.flush()

    def __exit__(self, exc_type, *exc):
        self.handle.close()
        self.log.close()
        if self.target != self.path:
            if exc_type is None:
                os.replace(self.target, self.path)
                os.replace(record_path(self.target), self.record)
            else:  # interrupted: the old table stays as it was
                self.target.unlink(missing_ok=True)
                record_path(self.target).unlink(missing_ok=True)
        return False


def run_job(job, inputs, out_csv=None, resume=False, retry_errors=False, engine="local", address=None,
            workers=None, progress=True, desc=None):
    """Run ``job`` over ``inputs`` (files and/or folders); return its table as text cells.

    With ``out_csv`` the rows are appended to that CSV batch by batch and the whole file is
    returned; ``resume`` skips the images already done there (``retry_errors``: except those
    with an error row), refusing a file written by another job, model or options. Without
    ``out_csv`` the rows are kept in memory. Returns a DataFrame of strings (empty cells are
    ``""``) whose ``attrs["skipped"]`` counts the input images found done. An ``out_csv`` that
    is an input file, or lies inside an input folder, is refused before any work.
    """
    import pandas as pd

    from .images import expand_inputs
    from .outputs import refuse_inside
    from .progress import progress as progress_bar

    engine = check_engine(engine, workers, address)
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if out_csv is not None:
        refuse_inside(out_csv, inputs)
    paths = expand_inputs(inputs)
    out = Output(out_csv, job, resume, retry_errors) if out_csv is not None else None
    todo = [p for p in paths if out is None or path_key(p) not in out.done]
    batches = job_rows(job, todo, engine, workers, address)
    bar = progress_bar(total=len(todo), desc=desc or job.name, unit="img", enabled=progress)
    rows = []
    try:
        if out is not None:
            with out:
                position = 0
                for batch in batches:
                    n = len(keys_in(batch))
                    out.write(batch, [path_key(p) for p in todo[position:position + n]])
                    position += n
                    bar.update(n)
        else:
            for batch in batches:
                rows += batch
                bar.update(len(keys_in(batch)))
    finally:
        bar.close()
    if out is not None:
        table = pd.read_csv(out_csv, dtype=str, keep_default_na=False)
    else:
        table = pd.DataFrame([["" if v is None else str(v) for v in row] for row in rows],
                             columns=list(job.columns), dtype=object)
    table.attrs["skipped"] = len(paths) - len(todo)
    return table


# --------------------------------------------------------------------------- shared command-line options


def add_engine_options(parser, what="the job", local_workers="1, this process, decoding in half the CPU cores' threads"):
    """``--engine``, ``--address`` and ``--workers``: the same names, choices and meaning for every job.

    ``local_workers`` says what ``--workers`` defaults to on this machine, for the help.
    """
    parser.add_argument("--engine", default="local", choices=[*ENGINES, *ENGINE_ALIASES],
                        help=f"local: run {what} on this machine (default; torch is the same); ray: on a Ray "
                             "cluster (pip install \"imgasdata[ray]\"), the same table")
    parser.add_argument("--address", default=None,
                        help="ray: the cluster to join, e.g. auto on a cluster node or ray://HEAD:10001 "
                             "(default: RAY_ADDRESS, else a local Ray on this machine)")
    parser.add_argument("--workers", type=int, default=None,
                        help=f"worker processes, each loading the model once (local default: {local_workers}; "
                             "ray default: one per CPU of the cluster)")


def add_device_option(parser):
    """``--device``: where a model runs."""
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto (the best there is)")


def add_batch_size_option(parser, default=32):
    """``--batch-size``: images per forward pass (and per chunk sent to a worker)."""
    parser.add_argument("--batch-size", type=int, default=default, help=f"images per batch (default {default})")


def add_seed_option(parser, default=0, what="random draws"):
    """``--seed``: makes random draws repeatable."""
    parser.add_argument("--seed", type=int, default=default, help=f"seed of the {what} (default {default})")


def add_resume_options(parser, default_resume):
    """``--resume``/``--no-resume`` and ``--retry-errors``: how an existing output is carried on."""
    if default_resume:
        parser.add_argument("--no-resume", action="store_true",
                            help="start the table afresh (the old file stays until the new one is complete)")
    else:
        parser.add_argument("--resume", action="store_true",
                            help="skip the images already in --out (refused if another model or options wrote it)")
    parser.add_argument("--retry-errors", action="store_true",
                        help="when resuming, redo the images that have an error row")


def add_cache_option(parser, default=None):
    """``--cache``: the SQLite file of per-image hashes and features kept between runs.

    One file (:class:`imgasdata.file_cache.HashCache`) serves ``dedup`` and the labelling
    commands, which share the ``cnn`` embeddings as their features. ``default`` says, for the
    help, where the command keeps one when none is given.
    """
    where = f"default: {default}" if default else "default: none, every image is decoded again"
    parser.add_argument("--cache", metavar="FILE",
                        help=f"SQLite file of image hashes and features reused between runs ({where}); one file "
                             "serves dedup --method cnn, suggest and label-issues, which share the features")
