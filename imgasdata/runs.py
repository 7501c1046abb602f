"""The run folder: what a training run leaves behind, written and read in one place.

A run folder holds

* ``model.safetensors`` — the weights (never a pickle);
* ``manifest.json`` — classes, backbone, preprocessing, the resolved settings,
  seed, best epoch, the dataset's SHA-256, package versions and date;
* ``history.csv`` — loss, accuracy, precision, recall, F1 and learning rate per epoch and phase;
* ``metrics.json`` — validation and test metrics;
* ``predictions.csv`` — every validation and test image with its label, prediction and probabilities;
* ``dataset.csv`` — every file with its label, split and SHA-256;
* ``skipped.csv`` — unreadable files left out (only when there were some);
* ``curves.png`` — the learning curves.

:func:`load_run` reads it back from the folder alone; nothing is downloaded and
nothing is unpickled.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import MissingFileError

WEIGHTS = "model.safetensors"
MANIFEST = "manifest.json"
HISTORY = "history.csv"
METRICS = "metrics.json"
PREDICTIONS = "predictions.csv"
DATASET = "dataset.csv"
SKIPPED = "skipped.csv"
CURVES = "curves.png"
#: Weights files read besides model.safetensors (plain state dicts, read with weights_only=True).
OTHER_WEIGHTS = ("model.pt", "model.pth")


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
        return self.manifest["best_epoch"]

    @property
    def settings(self):
        """The resolved training settings as recorded (a dict)."""
        return self.manifest.get("settings", {})


def package_versions():
    """Versions of Python and the libraries that shape a run's numbers."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("imgasdata", "torch", "torchvision", "timm", "numpy", "pillow", "scikit-learn", "pandas"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def save_model(run_dir, model, manifest):
    """Write ``model.safetensors`` and ``manifest.json`` into ``run_dir``; returns the folder."""
    from safetensors.torch import save_file

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
    return json.loads(path.read_text())


def load_model(run_dir, device="cpu"):
    """Rebuild a saved model from its run folder alone. Returns ``(model, manifest)``.

    The weights are read from ``model.safetensors`` (or a plain state dict in
    ``model.pt``, read with ``weights_only=True``); nothing is downloaded and no
    pickled object is ever loaded.
    """
    from .models import build_model, load_state_dict_file, pick_device

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    weights_file = next((run_dir / n for n in (WEIGHTS, *OTHER_WEIGHTS) if (run_dir / n).is_file()), None)
    if weights_file is None:
        raise MissingFileError(f"{run_dir} has no {WEIGHTS}")
    state = load_state_dict_file(weights_file)
    model = build_model(manifest["backbone"], len(manifest["classes"]), weights="none",
                        dropout=manifest.get("hyperparameters", {}).get("dropout", 0.0))
    model.load_state_dict(state, strict=True)
    return model.to(pick_device(device)).eval(), manifest


def save_run(run, out, df):
    """Write a run folder (weights, manifest, history, metrics, predictions, dataset, curves); returns it."""
    import matplotlib.pyplot as plt

    from .datasets import fingerprint
    from .plots import plot_history

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
    fig = plot_history(run.history, select=run.manifest["hyperparameters"]["select"])
    fig.savefig(out / CURVES, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out


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
