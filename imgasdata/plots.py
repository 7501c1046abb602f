"""Pictures for the notebooks: images, resizing, augmentation, curves, confusion matrices,
the model's mistakes, and Grad-CAM heat maps.

Every function returns a matplotlib ``Figure`` (shown inline in a notebook;
save it with ``fig.savefig(...)``).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.metrics import ConfusionMatrixDisplay

from .errors import SettingsError
from .fit import best_epoch
from .images import load_image
from .runs import load_run
from .transforms import RESIZE_METHODS, Resize, build_transform, decode_size, to_display


def _grid(n, ncols, size):
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.25), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes.flat


def show_images(images, titles=None, ncols=5, size=2.2, cmap="gray", captions=None):
    """Show images (paths, PIL images or arrays) in a grid with optional titles above and ``captions`` below.

    Two-dimensional arrays (one colour channel) are drawn with ``cmap``, grey by default.
    """
    images = list(images)
    fig, axes = _grid(len(images), ncols, size)
    for i, (ax, img) in enumerate(zip(axes, images)):
        if isinstance(img, (str, Path)):
            img = load_image(img)
        arr = np.asarray(img)
        ax.imshow(arr, cmap=cmap if arr.ndim == 2 else None)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
        if captions is not None:
            ax.text(0.5, -0.03, str(captions[i]), transform=ax.transAxes, ha="center", va="top", fontsize=7)
    fig.tight_layout()
    return fig


def _short_name(path, width=30):
    """A file's name, shortened in the middle when longer than ``width`` characters."""
    name = Path(path).name
    return name if len(name) <= width else name[:width // 2 - 1] + "…" + name[-(width // 2 - 1):]


def plot_resize_strategies(path, size=224, interpolation="bilinear"):
    """The original picture next to the four resizing strategies (the book's Figure 14)."""
    img = load_image(path)
    panels = [img] + [Resize(size, m, 0.875, interpolation)(img) for m in RESIZE_METHODS]
    titles = [f"original {img.width}x{img.height}"] + [f"{m} {size}x{size}" for m in RESIZE_METHODS]
    return show_images(panels, titles, ncols=5, size=2.6)


def plot_augmentations(path, pre, n=6, seed=0):
    """The picture as the network gets it, each augmentation alone, then ``n`` random versions.

    The book's Figure 15 shows crop and flip separately; so do the first panels
    here: the original (resized, no augmentation), its mirror image (the flip)
    and one random crop without a flip, then ``n`` versions with both at random.
    """
    torch.manual_seed(seed)
    img = load_image(path, min_size=decode_size(pre))
    plain = to_display(build_transform(pre)(img), pre)
    crop = to_display(build_transform(pre, train=True, augment=["crop"])(img), pre)
    both = build_transform(pre, train=True, augment=True)
    panels = [plain, plain[:, ::-1], crop] + [to_display(both(img), pre) for _ in range(n)]
    titles = ["original", "flip only", "crop only"] + [f"crop + flip at random ({i + 1})" for i in range(n)]
    return show_images(panels, titles, ncols=3, size=2.2)


def plot_history(history, title=None, select="loss"):
    """Loss and accuracy per epoch for training and validation (the book's Figures 26-27).

    A dotted line marks the epoch a run keeps: lowest validation loss, or with
    ``select="accuracy"`` highest validation accuracy (ties: lower loss).
    """
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
    for phase, style in (("train", "-o"), ("val", "-s")):
        h = history[history["phase"] == phase]
        ax_loss.plot(h["epoch"], h["loss"], style, ms=3, label=phase)
        ax_acc.plot(h["epoch"], h["accuracy"], style, ms=3, label=phase)
    best = best_epoch(history, select)
    if best is not None:
        for ax in (ax_loss, ax_acc):
            ax.axvline(best, color="grey", ls=":", lw=1)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    ax_acc.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_grid_curves(results, metric="loss", ncols=4):
    """One small panel per grid combination: ``metric`` per epoch for train and validation.

    ``results`` is a grid's table (:func:`imgasdata.grid.grid`); each panel is titled
    with the searched settings (the columns before ``best_epoch``). Losses are drawn on
    a *symlog* axis: logarithmic above 0.01, so one diverging run cannot flatten the
    others, and linear below it, so a loss that reaches 0 stays on the plot at 0
    (a log axis would silently drop it). A run whose training diverged says so in its title.
    """
    results = results.reset_index(drop=True)
    params = list(results.columns[:results.columns.get_loc("best_epoch")])
    fig, axes = plt.subplots(math.ceil(len(results) / ncols), min(ncols, len(results)),
                             figsize=(3.0 * min(ncols, len(results)), 2.4 * math.ceil(len(results) / ncols)),
                             squeeze=False, sharey=True)
    for ax in axes.flat:
        ax.set_visible(False)
    for ax, (_, row) in zip(axes.flat, results.iterrows()):
        ax.set_visible(True)
        h = load_run(row["run"], model=False).history
        for phase in ("train", "val"):
            hp = h[h["phase"] == phase]
            ax.plot(hp["epoch"], hp[metric], label=phase, lw=1.2)
        ax.axvline(row["best_epoch"], color="grey", ls=":", lw=1)
        title = ", ".join(f"{p}={row[p]}" for p in params)
        if row.get("diverged", False):
            title += "\n(training diverged)"
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
        if metric == "loss":
            # one diverging run's loss can be 100 times the others': log above 0.01 keeps all readable,
            # linear below keeps a loss of exactly 0 visible
            ax.set_yscale("symlog", linthresh=0.01)
            ax.set_ylim(bottom=0)
        elif metric in ("accuracy", "precision", "recall", "f1"):
            ax.set_ylim(0, 1.02)  # from 0, so that one image more or less does not look like a cliff
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("epoch", fontsize=9)
    fig.supylabel(metric + (" (symlog: linear below 0.01)" if metric == "loss" else ""), fontsize=9)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(metrics, title=None, normalize=False):
    """The confusion matrix of a metrics dict: rows are the true classes, columns the predictions."""
    cm = np.array(metrics["confusion_matrix"], dtype=float)
    if normalize:
        cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(metrics["labels"])
    fig, ax = plt.subplots(figsize=(1.2 + 0.75 * n, 1.0 + 0.7 * n))
    ConfusionMatrixDisplay(cm if normalize else cm.astype(int), display_labels=metrics["labels"]).plot(
        ax=ax, cmap="Blues", colorbar=False, values_format=".2f" if normalize else "d",
        xticks_rotation=45 if n > 2 else "horizontal")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def select_errors(predictions, kind="wrong", positive="positive", n=10):
    """Rows of a predictions table that the model got wrong, most confident mistakes first.

    ``kind`` is ``"false_positive"`` (predicted ``positive``, truly not),
    ``"false_negative"`` (truly ``positive``, predicted not) or ``"wrong"`` (any mistake).
    """
    p = predictions[predictions["label"] != predictions["pred"]].copy()
    if kind == "false_positive":
        p = p[p["pred"] == positive]
    elif kind == "false_negative":
        p = p[p["label"] == positive]
    elif kind != "wrong":
        raise SettingsError("kind must be 'false_positive', 'false_negative' or 'wrong'")
    p["confidence"] = [row[f"prob_{row['pred']}"] for _, row in p.iterrows()]
    return p.sort_values(["confidence", "path"], ascending=[False, True]).head(n)


def show_predictions(rows, ncols=5, size=2.2, file_names=False):
    """A gallery of predicted images titled ``true -> predicted (probability)``, with ``file_names`` under each."""
    if len(rows) == 0:
        fig, ax = plt.subplots(figsize=(4, 0.6))
        ax.axis("off")
        ax.text(0.5, 0.5, "no images to show", ha="center", va="center")
        return fig
    titles = [f"{r['label']} -> {r['pred']} ({r['prob_' + r['pred']]:.2f})" for _, r in rows.iterrows()]
    captions = [_short_name(p) for p in rows["path"]] if file_names else None
    return show_images(rows["path"], titles, ncols=ncols, size=size, captions=captions)


def grad_cam(model, path, pre, target=None):
    """Grad-CAM heat map of where the model looks for class ``target`` (default: its prediction).

    Returns ``(image, heat, target)``: the preprocessed picture as an ``H x W x 3``
    array, the heat map scaled to [0, 1] at the same size, and the class index
    explained. Uses the last feature map with a spatial extent in the backbone.
    """
    device = next(model.parameters()).device
    model.eval()
    x = build_transform(pre)(load_image(path, min_size=decode_size(pre))).unsqueeze(0).to(device)
    maps = []

    def keep(_module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.dim() == 4 and min(output.shape[-2:]) > 1:
            maps.append(output)

    hooks = [m.register_forward_hook(keep) for m in model.backbone.modules()]
    try:
        with torch.enable_grad():
            x.requires_grad_(True)
            scores = model(x)
            target = int(scores.argmax(1)) if target is None else int(target)
            fmap = maps[-1]
            grads = torch.autograd.grad(scores[0, target], fmap)[0]
    finally:
        for h in hooks:
            h.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * fmap).sum(1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam / cam.max().clamp(min=1e-8)
    return to_display(x[0], pre), cam.detach().cpu().numpy(), target


def plot_grad_cam(model, paths, pre, classes, titles=None, ncols=4, size=2.6):
    """Each picture with its Grad-CAM heat map laid over it.

    Titles default to the file name and the predicted class; pass ``titles``
    (e.g. ``"true: positive"``) to add what you know, the prediction is appended.
    """
    paths = list(paths)
    fig, axes = _grid(len(paths), ncols, size)
    axes = list(axes)
    shown = None
    for i, (ax, path) in enumerate(zip(axes, paths)):
        image, heat, target = grad_cam(model, path, pre)
        ax.imshow(image)
        shown = ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        head = Path(path).name if titles is None else str(titles[i])
        ax.set_title(f"{head}\nsees: {classes[target]}", fontsize=8)
    fig.tight_layout()
    if shown is not None:
        bar = fig.colorbar(shown, ax=list(axes), shrink=0.6, pad=0.02)
        bar.set_label("share of the strongest evidence for the class seen", fontsize=8)
    return fig
