"""The replication capsule: one command from a clean checkout to a results folder a replicator can check.

``imgasdata capsule run --results results`` builds the sample data (and records its
checksums), runs every numbered notebook headless with papermill, and writes

* ``notebooks/`` — each executed notebook with its figures and tables;
* ``environment.json`` — Python, OS, CPU and thread count, GPU/CUDA if any, every
  installed package's version, the git commit, the data checksums and the seed;
* ``summary.csv`` and ``summary.md`` — the numbers a replicator compares, one row each,
  with the book's figure beside it where the book prints one.

``imgasdata capsule check results`` compares a results folder's ``summary.csv`` with the
reference committed in ``capsule/reference/`` and exits non-zero when a number falls
outside its tolerance. The tolerances (see :func:`tolerance`) are by kind of number:

* ``count`` and ``setting`` — exact: a count of images or a chosen hyperparameter does
  not depend on the CPU's last float digits;
* ``proportion`` — one image's worth, ``1/n`` (plus 1e-9), where ``n`` is the number of
  images the proportion is taken over: float differences between CPU kinds can move one
  borderline image across the decision threshold, never a whole group of them;
* ``book`` — a number recomputed from the book's printed counts: to the book's printed
  precision (0.0005 for percentages printed with one decimal).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .errors import DataError, MissingFileError, UserError
from .outputs import refuse_inside, write_atomically, write_csv

#: The repository that holds this package (for the default reference and the git commit).
REPOSITORY = Path(__file__).resolve().parents[1]
#: The committed reference a results folder is checked against by default.
REFERENCE = REPOSITORY / "capsule" / "reference" / "summary.csv"
SUMMARY = "summary.csv"
ENVIRONMENT = "environment.json"
COLUMNS = ["notebook", "quantity", "value", "kind", "n", "book", "source"]
KINDS = ("count", "setting", "proportion", "book")


# ----------------------------------------------------------------------------- environment

def _cpu_model():
    """The CPU's model name as the operating system reports it (Linux: /proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu():
    """GPU name, CUDA version and driver when PyTorch sees a CUDA device, else ``None`` for each."""
    import torch

    info = {"gpu": None, "cuda": torch.version.cuda, "driver": None}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        try:
            info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20, check=True).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def _git_commit(folder=REPOSITORY):
    """The checked-out commit (with ``+dirty`` when tracked files were changed), or ``None`` outside git."""
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=20, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=20, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def data_checksums(data_dir):
    """SHA-256 of each sample dataset under ``data_dir``: one digest over its files' paths and bytes.

    Returns ``{dataset folder or file name: hex digest}``; the same seed and the same
    locked packages give the same digests on any machine.
    """
    data_dir = Path(data_dir)
    out = {}
    for entry in sorted(data_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        files = sorted(p for p in entry.rglob("*") if p.is_file()) if entry.is_dir() else [entry]
        digest = hashlib.sha256()
        for f in files:
            if any(part.startswith(".") for part in f.relative_to(data_dir).parts):
                continue  # build markers such as .complete
            digest.update(f.relative_to(data_dir).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(f.read_bytes()).digest())
        out[entry.name] = digest.hexdigest()
    return out


def environment(data_dir=None, seed=0):
    """Everything about this machine and installation that can change a result, as a dict."""
    import importlib.metadata as md

    packages = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[name.lower()] = dist.version
    env = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "torch_threads": None,
        **_gpu(),
        "git_commit": _git_commit(),
        "seed": seed,
        "data_dir": str(Path(data_dir).resolve()) if data_dir else None,
        "data_sha256": data_checksums(data_dir) if data_dir and Path(data_dir).is_dir() else {},
        "packages": dict(sorted(packages.items())),
    }
    import torch

    env["torch_threads"] = torch.get_num_threads()
    return env


# ----------------------------------------------------------------------------- the numbers

@dataclass(frozen=True)
class Quantity:
    """One number of the summary: where it comes from, what kind it is, and the book's figure if any.

    ``read(results)`` returns ``(value, n)`` from a results folder (``n``: the number of
    images a proportion is taken over, else ``None``), or raises :class:`FileNotFoundError`
    / :class:`KeyError` when the notebook did not write it.
    """

    notebook: str
    quantity: str
    kind: str
    read: object
    book: float | str | None = None
    source: str = ""


def _notebook_dir(results, stem_prefix):
    """The output folder of the notebook whose name starts with ``stem_prefix`` (e.g. ``03_``)."""
    hits = sorted((Path(results) / "notebooks").glob(f"{stem_prefix}*/"))
    if not hits:
        raise FileNotFoundError(f"no output folder for notebook {stem_prefix}")
    return hits[0]


def _run_metric(prefix, run, split, metric):
    """Reader of ``metrics.json`` of a run folder a notebook saved: ``(value, number of images)``."""
    def read(results):
        metrics = json.loads((_notebook_dir(results, prefix) / run / "metrics.json").read_text())
        block = metrics[split]
        n = block.get("n") or sum(map(sum, block["confusion_matrix"]))
        return float(block[metric]), int(n)
    return read


def _run_setting(prefix, run, name):
    """Reader of one chosen setting from a run folder's manifest."""
    def read(results):
        manifest = json.loads((_notebook_dir(results, prefix) / run / "manifest.json").read_text())
        return manifest["settings"][name], None
    return read


def _book_table(counts, metric):
    """A metric recomputed from a confusion table the book prints, ``[TP, FP, FN, TN]``."""
    def read(results):
        from .autotag.validate import scores_from_counts

        tp, fp, fn, tn = counts
        y_true = [1] * tp + [0] * fp + [1] * fn + [0] * tn
        y_pred = [1] * tp + [1] * fp + [0] * fn + [0] * tn
        return scores_from_counts(y_true, y_pred)[metric], sum(counts)
    return read


def _new_images(what):
    """Notebook 05: share predicted positive, true share, or accuracy on the shifted new images.

    Computed from the predictions CSV the notebook wrote and the sample data's answers,
    so the number does not depend on how the notebook prints it.
    """
    def read(results):
        import pandas as pd

        folder = _notebook_dir(results, "05_")
        preds = pd.read_csv(folder / "predictions.csv", dtype=str, keep_default_na=False)
        preds = preds[preds["error"] == ""]
        data_dir = json.loads((Path(results) / ENVIRONMENT).read_text())["data_dir"]
        truth = pd.read_csv(Path(data_dir) / "new_images_truth.csv", dtype=str)
        preds = preds.assign(filename=preds["path"].map(lambda p: Path(p).name))
        joined = preds.merge(truth, on="filename", how="inner")
        n = len(joined)
        if what == "predicted_share":
            return float((joined["label_x"] == "positive").mean()), n
        if what == "true_share":
            return float((joined["label_y"] == "positive").mean()), n
        return float((joined["label_x"] == joined["label_y"]).mean()), n
    return read


def _table_value(prefix, file, where, column, n=None):
    """Reader of one cell of a CSV a notebook wrote: the row matching ``where`` (``{column: value}``).

    ``n`` names the column holding the number of images behind a proportion, or is a number.
    """
    def read(results):
        import pandas as pd

        table = pd.read_csv(_notebook_dir(results, prefix) / file)
        rows = table
        for key, value in where.items():
            rows = rows[rows[key].astype(str) == str(value)]
        if len(rows) != 1:
            raise KeyError(f"{file} has {len(rows)} rows where {where}")
        row = rows.iloc[0]
        size = int(row[n]) if isinstance(n, str) else n
        return float(row[column]), size
    return read


#: The summary, one record per number. Book figures as printed: Table 3 (protest vs
#: Rekognition's "Crowd"), Table 4 (John Legend vs Rekognition's celebrity match), Table 6
#: (the protest grid's best run, accuracy 1.00 on the images that chose it).
QUANTITIES = [
    Quantity("02", "table3_accuracy", "book", _book_table((374, 72, 48, 321), "accuracy"), 0.853,
             "book Table 3 counts [TP, FP, FN, TN] = [374, 72, 48, 321]"),
    Quantity("02", "table3_precision", "book", _book_table((374, 72, 48, 321), "precision"), 0.839,
             "book Table 3 counts"),
    Quantity("02", "table3_recall", "book", _book_table((374, 72, 48, 321), "recall"), 0.886,
             "book Table 3 counts"),
    Quantity("02", "table4_accuracy", "book", _book_table((31, 0, 5, 779), "accuracy"), 0.994,
             "book Table 4 counts [TP, FP, FN, TN] = [31, 0, 5, 779]"),
    Quantity("02", "table4_precision", "book", _book_table((31, 0, 5, 779), "precision"), 1.0,
             "book Table 4 counts"),
    Quantity("02", "table4_recall", "book", _book_table((31, 0, 5, 779), "recall"), 0.861,
             "book Table 4 counts"),
    Quantity("03", "test_accuracy", "proportion", _run_metric("03_", "best_run", "test", "accuracy"), 1.0,
             "best_run/metrics.json; the book's 1.00 (Table 6) is on the validation images that chose the model"),
    Quantity("03", "test_f1", "proportion", _run_metric("03_", "best_run", "test", "f1"), None,
             "best_run/metrics.json"),
    Quantity("03", "chosen_lr", "setting", _run_setting("03_", "best_run", "lr"), 0.0005,
             "best_run/manifest.json; book Table 6: lr 0.0005"),
    Quantity("03", "chosen_batch_size", "setting", _run_setting("03_", "best_run", "batch_size"), 1,
             "best_run/manifest.json; book Table 6: batch size 1"),
    Quantity("03", "chosen_momentum", "setting", _run_setting("03_", "best_run", "momentum"), 0.9,
             "best_run/manifest.json; book Table 6: momentum 0.9"),
    Quantity("03", "emotion_test_accuracy", "proportion",
             _run_metric("03_", "emotion_enthusiasm", "test", "accuracy"), None,
             "the evoked-emotion model (the book's negative result): about the share of 'negative' test images"),
    Quantity("03", "emotion_test_recall", "proportion", _run_metric("03_", "emotion_enthusiasm", "test", "recall"),
             None, "the evoked-emotion model's recall: near 0, a model near chance on a subjective label"),
    Quantity("04", "test_accuracy", "proportion", _run_metric("04_", "best_run", "test", "accuracy"), None,
             "best_run/metrics.json"),
    Quantity("04", "test_f1_macro", "proportion", _run_metric("04_", "best_run", "test", "f1"), None,
             "best_run/metrics.json (macro average over the classes)"),
    *[Quantity("01", f"dedup_{measure}_{transform}", "proportion",
               _table_value("01_", "dedup_scores.csv", {"transform": transform}, measure,
                            "found_pairs" if measure == "precision" else "true_pairs"), None,
               f"dedup_scores.csv: planted {transform} copies at the notebook's threshold")
      for transform in ("jpeg70", "resize50", "crop5", "watermark", "flip") for measure in ("precision", "recall")],
    *[Quantity("01", f"leaked_pairs_{kind.split()[0]}", "count",
               _table_value("01_", "leakage.csv", {"split": kind}, "planted_pairs_train_test"), None,
               f"leakage.csv: planted copies on the other side of train/test, {kind}")
      for kind in ("plain split", "grouped split")],
    Quantity("05", "new_images_accuracy", "proportion", _new_images("accuracy"), None,
             "predictions.csv against data/new_images_truth.csv"),
    Quantity("05", "predicted_positive_share", "proportion", _new_images("predicted_share"), None,
             "classify-and-count prevalence on the shifted new images"),
    Quantity("05", "true_positive_share", "proportion", _new_images("true_share"), None,
             "the truth the estimate is compared with"),
    *[Quantity("06", f"prevalence_{method}", "proportion",
               _table_value("06_", "estimate.csv", {"group": "all", "class": "positive", "method": method},
                            "estimate", "n_gold"), None,
               f"estimate.csv: the share of positive new images, {method}")
      for method in ("classify_and_count", "corrected", "ppi")],
    *[Quantity("06", f"coverage_{method}", "proportion",
               _table_value("06_", "coverage.csv", {"method": method}, "coverage"), None,
               f"coverage.csv: how often the 95 % interval covered the truth, {method}")
      for method in ("classify_and_count", "corrected", "ppi")],
]


def summarize(results):
    """The summary table of a results folder: one row per :data:`QUANTITIES` record.

    A number the notebooks did not write gets an empty value and the reason in
    ``source``, so :func:`check` names it instead of the table silently losing a row.
    """
    import pandas as pd

    rows = []
    for q in QUANTITIES:
        try:
            value, n = q.read(results)
            source = q.source
        except (FileNotFoundError, KeyError) as exc:
            value, n, source = None, None, f"missing: {exc}"
        rows.append({"notebook": q.notebook, "quantity": q.quantity, "value": value, "kind": q.kind,
                     "n": n, "book": q.book, "source": source})
    return pd.DataFrame(rows, columns=COLUMNS).sort_values("notebook", kind="stable", ignore_index=True)


def write_summary(results):
    """Write ``summary.csv`` and ``summary.md`` into ``results``; returns the table."""
    table = summarize(results)
    results = Path(results)
    write_csv(table, results / SUMMARY)
    shown = table.drop(columns=["source"]).astype(object).fillna("")
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    write_atomically(results / "summary.md", "# Replication summary\n\n" + "\n".join(lines) + "\n")
    return table


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if not math.isnan(value) else ""
    return str(value)


# ----------------------------------------------------------------------------- run and check

def run(results="results", data=None, seed=0, notebooks=(), folder=None, parameters=None, overwrite=False):
    """Build the sample data, run the notebooks and write the results folder; returns its path.

    ``data``: where the sample data lives or is built (default: ``data/`` beside the
    notebooks folder, where the notebooks read it). With another folder, the notebooks'
    parameters whose default points into ``../data`` are pointed at it. A results folder that holds
    anything but an earlier capsule run is refused, so a mistyped path never mixes two
    runs; an earlier capsule run is replaced only with ``overwrite``.
    """
    from .course import find_notebooks, run_notebooks
    from .sample_data import build_sample_data

    results = Path(results).resolve()
    folder = Path(folder) if folder else REPOSITORY / "notebooks"
    refuse_inside(results, [folder], "--results")  # before the data is built (run_notebooks would refuse it)
    if results.exists() and any(results.iterdir()):
        if not (results / ENVIRONMENT).is_file():
            raise UserError(f"{results} is not empty and holds no earlier capsule run; "
                            "choose an empty or new --results folder")
        if not overwrite:
            raise UserError(f"{results} holds an earlier capsule run; pass --overwrite to replace it")
        _clear_run(results)
    results.mkdir(parents=True, exist_ok=True)
    data = Path(data).resolve() if data else (folder.parent / "data").resolve()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_sample_data(data, seed=seed)
    if caught:
        # A dataset kept from a build with other sizes or seed would give other numbers than the reference.
        raise UserError(f"The sample data in {data} was built with other settings than the capsule's "
                        f"({caught[0].message}); rebuild it with: imgasdata sample-data --out {data} "
                        f"--seed {seed} --overwrite, or give --data an empty folder")
    sheet = folder.parent / "data" / "annotator_sheet.csv"
    if sheet.is_file() and not (data / "annotator_sheet.csv").exists():
        # The committed annotator sheet is part of the sample data (notebook 01 reads it).
        (data / "annotator_sheet.csv").write_bytes(sheet.read_bytes())
    write_atomically(results / ENVIRONMENT, json.dumps(environment(data, seed), indent=2) + "\n")
    moved = data != (folder.parent / "data").resolve()
    for nb in find_notebooks(folder, notebooks):
        params = {"seed": seed, **(_data_parameters(nb, data) if moved else {}), **(parameters or {})}
        run_notebooks([nb], out=results / "notebooks", parameters=params, folder=folder)
    write_summary(results)
    return results


def _clear_run(results):
    """Remove what an earlier capsule run wrote into ``results`` (and nothing else)."""
    import shutil

    if (results / "notebooks").is_dir():
        shutil.rmtree(results / "notebooks")
    for name in (SUMMARY, "summary.md", ENVIRONMENT):
        (results / name).unlink(missing_ok=True)


def _data_parameters(notebook, data):
    """The notebook's parameters whose default is a path into ``../data``, pointed into ``data``."""
    import papermill as pm

    out = {}
    for name, info in pm.inspect_notebook(str(notebook)).items():
        default = str(info.get("default", "")).strip("\"'")
        if default == "../data" or default.startswith("../data/"):
            out[name] = str(Path(data) / default[len("../data/"):]) if default != "../data" else str(data)
    return out


def tolerance(kind, n=None):
    """How far a number may be from the reference and still match (see the module's docstring)."""
    if kind in ("count", "setting"):
        return 0.0
    if kind == "proportion":
        return 1.0 / n + 1e-9 if n and n > 0 else 0.02
    if kind == "book":
        return 0.0005
    raise DataError(f"unknown kind of number {kind!r}; expected one of {', '.join(KINDS)}")


def check(results, reference=None):
    """Compare a results folder's summary with the reference; returns the comparison table.

    One row per quantity of the reference: its value there and here, the tolerance and
    ``ok``. A quantity missing here, or with no value, does not match.
    """
    import pandas as pd

    results = Path(results)
    summary_path = results / SUMMARY if results.is_dir() else results
    reference = Path(reference) if reference else REFERENCE
    for path, what in ((summary_path, "results"), (reference, "reference")):
        if not path.is_file():
            raise MissingFileError(f"No {SUMMARY} for the {what}: {path} does not exist")
    ours, ref = _read_summary(summary_path), _read_summary(reference)
    rows = []
    for r in ref.itertuples(index=False):
        mine = ours[(ours["notebook"] == r.notebook) & (ours["quantity"] == r.quantity)]
        here = mine["value"].iloc[0] if len(mine) else None
        n = r.n if pd.notna(r.n) else None
        tol = tolerance(r.kind, n)
        ok = _matches(r.value, here, r.kind, tol)
        rows.append({"notebook": r.notebook, "quantity": r.quantity, "kind": r.kind, "reference": r.value,
                     "here": here, "tolerance": tol, "ok": ok})
    return pd.DataFrame(rows)


def _read_summary(path):
    import pandas as pd

    table = pd.read_csv(path, dtype={"notebook": str, "quantity": str, "kind": str, "value": str})
    missing = {"notebook", "quantity", "value", "kind"} - set(table.columns)
    if missing:
        raise DataError(f"{path} is not a capsule summary: it lacks the column(s) {', '.join(sorted(missing))}")
    table["notebook"] = table["notebook"].str.zfill(2)
    return table


def _matches(reference, here, kind, tol):
    if here is None or (isinstance(here, float) and math.isnan(here)) or str(here) in ("", "nan"):
        return False
    if kind == "setting":
        try:
            return math.isclose(float(reference), float(here), rel_tol=1e-9, abs_tol=1e-12)
        except ValueError:
            return str(reference) == str(here)
    try:
        return abs(float(reference) - float(here)) <= tol
    except ValueError:
        return False
