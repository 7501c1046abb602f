"""Looking at a model's mistakes: the list, a gallery with file names, and Grad-CAM maps (the book's 7.6).

:func:`write_mistakes` (the command ``imgasdata errors RUN IMAGES --out DIR``)
predicts labelled images with a saved run and writes into ``DIR``:

* ``errors.csv`` — one row per mistake: ``path``, ``true``, ``predicted``,
  ``probability`` (the model's probability for the class it predicted) and
  ``error``, the most confident mistakes first; unreadable files follow, with
  the reason in ``error``;
* ``gallery.png`` — the mistakes (the first :data:`MAX_GALLERY`), each titled
  ``true -> predicted (probability)`` with its file name underneath;
* ``gradcam/NN_<name>.png`` — where the model looked (Grad-CAM) for the ``n``
  most confident mistakes, ``NN`` being the rank in ``errors.csv``.

IMAGES takes the layouts ``imgasdata evaluate`` takes (a folder with one
sub-folder per class: all its images; a dataset folder or a CSV: its test split).
Every file is written by temporary file and rename, and ``DIR`` may not lie
among the images.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .outputs import refuse_inside, save_figure, write_atomically
from .paths import path_text

ERRORS_CSV = "errors.csv"
GALLERY = "gallery.png"
GRADCAM = "gradcam"
#: At most this many mistakes in the gallery (a picture of thousands helps nobody); errors.csv lists all.
MAX_GALLERY = 100
COLUMNS = ["path", "true", "predicted", "probability", "error"]


def mistakes_table(predictions):
    """The mistakes of ``evaluate``'s predictions (``path, true, label, prob_<class>…, error``), most confident first.

    Returns a DataFrame with :data:`COLUMNS`: the mistakes sorted by the
    probability of the predicted class (highest first, then by path), followed
    by the unreadable files (empty ``predicted``, the reason in ``error``).
    """
    from .plots import select_errors

    ok = predictions["error"] == ""
    read = predictions[ok].rename(columns={"label": "pred"}).rename(columns={"true": "label"})
    wrong = select_errors(read, "wrong", n=len(read)) if len(read) else read.assign(confidence=[])
    table = pd.DataFrame({"path": wrong["path"], "true": wrong["label"], "predicted": wrong["pred"],
                          "probability": wrong["confidence"].astype(float).round(6), "error": ""})
    failed = predictions[~ok]
    unreadable = pd.DataFrame({"path": failed["path"], "true": failed["true"], "predicted": "",
                               "probability": float("nan"), "error": failed["error"]})
    table = pd.concat([table, unreadable], ignore_index=True) if len(unreadable) else table.reset_index(drop=True)
    table["path"] = table["path"].map(path_text)
    return table[COLUMNS]


def _file_stem(rank, path):
    """``NN_<name>`` for a Grad-CAM file: the rank, then the file's name in safe characters."""
    return f"{rank:02d}_" + re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem)[:60]


def write_mistakes(run, images, out, n=12, device="auto", batch_size=32, progress=True):
    """Predict the labelled ``images`` with ``run`` and write the mistakes into the folder ``out``.

    Writes ``errors.csv``, ``gallery.png`` and ``gradcam/NN_<name>.png`` for the
    ``n`` most confident mistakes (module docstring). Grad-CAM pictures left in
    ``out/gradcam`` by an earlier call are replaced, so the folder never mixes two
    runs. Returns ``(metrics, table, written)``: the metrics on the readable
    images, the table of ``errors.csv`` and the list of files written.
    """
    import matplotlib.pyplot as plt

    from .errors import SettingsError
    from .plots import plot_grad_cam, show_predictions
    from .predict import evaluate, labelled_images
    from .progress import progress as progress_bar
    from .runs import load_model

    if int(n) < 0:
        raise SettingsError(f"--n must be 0 or more, got {n}")
    df = labelled_images(images)
    folders = {Path(p).parent for p in df["path"]} | ({Path(images)} if Path(images).is_dir() else set())
    refuse_inside(out, sorted(folders))
    model, manifest = load_model(run, device="cpu")
    metrics, predictions = evaluate((model, manifest), df, device=device, batch_size=batch_size, progress=progress)
    table = mistakes_table(predictions)
    out = Path(out)
    written = [write_atomically(out / ERRORS_CSV, table.to_csv(index=False))]

    wrong = table[table["error"] == ""]
    shown = pd.DataFrame({"path": wrong["path"], "label": wrong["true"], "pred": wrong["predicted"]})
    for c in manifest["classes"]:
        shown[f"prob_{c}"] = wrong["probability"].where(wrong["predicted"] == c)
    fig = show_predictions(shown.head(MAX_GALLERY), ncols=6, file_names=True)
    written.append(save_figure(fig, out / GALLERY, dpi=100))
    plt.close(fig)

    cams = out / GRADCAM
    for old in cams.glob("[0-9][0-9]_*.png") if cams.is_dir() else []:
        old.unlink()  # pictures of an earlier call: never mixed with this one's
    top = wrong.head(int(n))
    for rank, row in enumerate(progress_bar(list(top.itertuples()), desc="Grad-CAM", unit="img",
                                            enabled=progress), start=1):
        title = f"{Path(row.path).name}\ntrue: {row.true}, predicted: {row.predicted} ({row.probability:.2f})"
        fig = plot_grad_cam(model, [row.path], manifest["preprocessing"], manifest["classes"], titles=[title],
                            ncols=1, size=3.2)
        written.append(save_figure(fig, cams / f"{_file_stem(rank, row.path)}.png", dpi=100))
        plt.close(fig)
    return metrics, table, written
