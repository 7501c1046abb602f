"""The run folder: what a training run leaves behind, written and read in one place.

A run folder holds

* ``model.safetensors`` — the weights (never a pickle);
* ``manifest.json`` — classes, preprocessing, one ``settings`` block (the resolved
  :class:`~imgasdata.settings.TrainSettings`), best epoch, the dataset's SHA-256 and how it
  was split, package versions and date;
* ``history.csv`` — loss, accuracy, precision, recall, F1 and learning rate per epoch and phase;
* ``metrics.json`` — validation and test metrics;
* ``predictions.csv`` — every validation and test image with its label, prediction and probabilities;
* ``dataset.csv`` — every file with its label, split and SHA-256;
* ``skipped.csv`` — unreadable files left out (only when there were some);
* ``curves.png`` — the learning curves (drawn by ``train``).

:func:`load_run` reads it back from the folder alone; nothing is downloaded and
nothing is unpickled. Run folders written before the one-``settings``-block
manifest are read through :func:`upgrade_manifest`.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from safetensors.torch import save_file

from .datasets import fingerprint
from .errors import MissingFileError, UserError
from .models import build_model, pick_device
from .settings import TrainSettings
from .weights import load_state_dict_file

WEIGHTS = "model.safetensors"
MANIFEST = "manifest.json"
HISTORY = "history.csv"
METRICS = "metrics.json"
PREDICTIONS = "predictions.csv"
DATASET = "dataset.csv"
SKIPPED = "skipped.csv"
CURVES = "curves.png"
#: Weights files read besides model.safetensors (plain state dicts, read with weights_only=True) with allow_pt=True.
OTHER_WEIGHTS = ("model.pt", "model.pth")
#: Every file a run writes: ``train(..., overwrite=True)`` removes these, and only these, from an earlier run.
RUN_FILES = (WEIGHTS, *OTHER_WEIGHTS, MANIFEST, HISTORY, METRICS, PREDICTIONS, DATASET, SKIPPED, CURVES)
#: The manifest layout this version writes (1: settings repeated at the top level and in ``hyperparameters``).
MANIFEST_FORMAT = 2
#: Top-level keys of format 1 that are settings, now only in the ``settings`` block.
_OLD_SETTING_KEYS = ("backbone", "weights", "mode", "seed")


@dataclass
class Run:
    """A training run: the model with its best weights and everything recorded about it."""

    model: object
    manifest: dict
    history: pd.DataFrame
    metrics: dict
    predictions: pd.DataFrame
    run_dir: Path | None = None
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "error"]))

    @property
    def classes(self):
        """The class names, in the order of the model's outputs."""
        return self.manifest["classes"]

    @property
    def best_epoch(self):
        """The epoch whose weights the run kept."""
        return int(self.manifest["best_epoch"])

    @property
    def epochs_run(self):
        """How many epochs ran (fewer than ``settings.epochs`` when ``patience`` stopped early)."""
        return int(self.manifest["epochs_run"])

    @property
    def settings(self):
        """The resolved :class:`~imgasdata.settings.TrainSettings` the run was trained with.

        ``mode``, ``resize`` and ``image_size`` are what was really applied; ``device`` and
        ``num_workers`` are not recorded (see ``manifest["device"]``) and read as their defaults.
        """
        return run_settings(self.manifest)

    @property
    def preprocessing(self):
        """The preprocessing dict images go through for this model (resize, size, mean, std, ...)."""
        return self.manifest["preprocessing"]


def run_settings(manifest):
    """The :class:`~imgasdata.settings.TrainSettings` recorded in a manifest (any format)."""
    return TrainSettings.from_kwargs(**upgrade_manifest(manifest)["settings"])


def upgrade_manifest(manifest):
    """A manifest in the current layout: one ``settings`` block, nothing repeated.

    Format 1 (before this version) repeated ``backbone``, ``weights``, ``mode`` and
    ``seed`` at the top level and the optimisation settings in ``hyperparameters``;
    those move into ``settings`` (which wins where both hold a value). A current
    manifest is returned unchanged. Returns a new dict.
    """
    manifest = dict(manifest)
    if manifest.get("format", 1) >= MANIFEST_FORMAT:
        return manifest
    settings = {**manifest.pop("hyperparameters", {}),
                **{k: manifest.pop(k) for k in _OLD_SETTING_KEYS if k in manifest},
                **manifest.get("settings", {})}
    settings.pop("split", None)  # how the data was split is the dataset's record now
    manifest["settings"] = settings
    manifest["format"] = MANIFEST_FORMAT
    return manifest


def package_versions():
    """Versions of Python and the libraries that shape a run's numbers."""
    out = {"python": platform.python_version()}
    for name in ("imgasdata", "torch", "torchvision", "timm", "numpy", "pillow", "scikit-learn", "pandas"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def save_model(run_dir, model, manifest):
    """Write ``model.safetensors`` and ``manifest.json`` into ``run_dir``; returns the folder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(run_dir / WEIGHTS), metadata={"format": "pt"})
    (run_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return run_dir


def read_manifest(run_dir):
    """The manifest of a run folder, as a dict; a clear error when the folder is not a run."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise MissingFileError(f"{run_dir} is not a saved run: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); the run folder is damaged") from None
    return upgrade_manifest(manifest)


def load_model(run_dir, device="cpu", allow_pt=False):
    """Rebuild a saved model from its run folder alone. Returns ``(model, manifest)``.

    The weights are read from ``model.safetensors``; a ``model.pt``/``model.pth``
    (a pickle) only with ``allow_pt=True``, and then with ``weights_only=True``.
    Nothing is downloaded and no pickled object is ever loaded. The manifest is
    returned in the current layout (see :func:`upgrade_manifest`).
    """
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    weights_file = next((run_dir / n for n in (WEIGHTS, *OTHER_WEIGHTS) if (run_dir / n).is_file()), None)
    if weights_file is None:
        raise MissingFileError(f"{run_dir} has no {WEIGHTS}")
    state = load_state_dict_file(weights_file, allow_pt=allow_pt)
    settings = manifest["settings"]
    model = build_model(settings["backbone"], len(manifest["classes"]), weights="none",
                        dropout=settings.get("dropout", 0.0))
    model.load_state_dict(state, strict=True)
    return model.to(pick_device(device)).eval(), manifest


def save_run(run, out, df):
    """Write a run folder (weights, manifest, history, metrics, predictions, dataset); returns it.

    The learning curves (``curves.png``) are drawn by ``train``, which knows how to plot.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table, digest = fingerprint(df[[c for c in ("path", "label", "split", "sha256") if c in df.columns]])
    run.manifest["dataset"]["sha256"] = digest
    save_model(out, run.model, run.manifest)
    table.to_csv(out / DATASET, index=False)
    run.history.to_csv(out / HISTORY, index=False)
    (out / METRICS).write_text(json.dumps(run.metrics, indent=2) + "\n")
    run.predictions.to_csv(out / PREDICTIONS, index=False)
    if len(run.skipped):
        run.skipped.to_csv(out / SKIPPED, index=False)
    else:
        (out / SKIPPED).unlink(missing_ok=True)  # from an earlier run in the same folder
    return out


def run_files(folder):
    """The files of a run that ``folder`` already holds (names from :data:`RUN_FILES`), sorted."""
    folder = Path(folder)
    return sorted(folder / n for n in RUN_FILES if (folder / n).exists())


def is_complete(run_dir):
    """True when ``run_dir`` holds every file a finished run writes (an interrupted save does not)."""
    run_dir = Path(run_dir)
    return all((run_dir / n).is_file() for n in (MANIFEST, METRICS, HISTORY, WEIGHTS))


def load_run(run_dir, device="cpu", model=True):
    """Read a saved run folder back into a :class:`Run`: model, manifest, history, metrics, predictions.

    With ``model=False`` the weights are not read (``run.model`` is ``None``):
    enough for tables and curves, and much faster.
    """
    run_dir = Path(run_dir)
    if model:
        net, manifest = load_model(run_dir, device)
    else:
        net, manifest = None, read_manifest(run_dir)

    def table(name, **kwargs):
        path = run_dir / name
        return pd.read_csv(path, **kwargs) if path.is_file() else pd.DataFrame()

    metrics_path = run_dir / METRICS
    skipped = table(SKIPPED)
    return Run(model=net, manifest=manifest, history=table(HISTORY),
               metrics=json.loads(metrics_path.read_text()) if metrics_path.is_file() else {},
               predictions=table(PREDICTIONS), run_dir=run_dir,
               skipped=skipped if len(skipped.columns) else pd.DataFrame(columns=["path", "error"]))
