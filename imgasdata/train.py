"""Fine-tuning a pretrained CNN on labelled images (the book's chapters 4.4 and 7).

One explicit loop, in the spirit of torchvision's reference ``train.py``:
SGD with momentum (or Adam), a StepLR schedule, the best epoch picked on the
*validation* images (a copy of its weights, not a live reference), and final
numbers computed once on the *test* images, which play no part in choosing.

Two modes:

* ``head`` — the backbone stays frozen, so each image's features are computed
  once and cached; an epoch then costs milliseconds. The right choice on a CPU.
* ``full`` — every layer is trained, with augmentation, as in the book. Wants a GPU.

``mode="auto"`` picks ``full`` on a GPU and ``head`` otherwise.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import json
import platform
import random
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import __version__
from .datasets import classes_of, fingerprint, load_dataset, positive_class
from .metrics import classification_metrics
from .models import DEFAULT_BACKBONE, build_model, default_preprocessing, pick_device, save_model
from .predict import forward, load_batches
from .transforms import RESIZE_METHODS, augmentations, build_transform, compute_normalization, decode_size

HYPERPARAMETERS = ("epochs", "lr", "momentum", "batch_size", "step_size", "gamma", "dropout",
                   "optimizer", "weight_decay", "augment", "select", "patience")


@dataclass
class Run:
    """What :func:`train` returns: the model with its best weights and everything about the run."""

    model: nn.Module
    manifest: dict
    history: pd.DataFrame
    metrics: dict
    predictions: pd.DataFrame
    run_dir: Path | None = None
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "error"]))

    @property
    def classes(self):
        return self.manifest["classes"]


def set_seed(seed):
    """Seed Python, NumPy and PyTorch so a run on the same machine repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _check_args(mode, epochs, lr, momentum, batch_size, step_size, gamma, dropout, optimizer,
                weight_decay, select, patience, normalize, resize, image_size):
    """Say exactly which setting is wrong before any work starts."""
    checks = [
        (mode in ("auto", "head", "full"), f"mode must be 'auto', 'head' or 'full', got {mode!r}"),
        (int(epochs) >= 1, f"epochs must be at least 1, got {epochs}"),
        (float(lr) > 0, f"lr (learning rate) must be positive, got {lr}"),
        (0 <= float(momentum) < 1, f"momentum must be in [0, 1), got {momentum}"),
        (int(batch_size) >= 1, f"batch_size must be at least 1, got {batch_size}"),
        (int(step_size) >= 1, f"step_size must be at least 1 epoch, got {step_size}"),
        (0 < float(gamma) <= 1, f"gamma must be in (0, 1], got {gamma}"),
        (0 <= float(dropout) < 1, f"dropout must be in [0, 1), got {dropout}"),
        (optimizer in ("sgd", "adam"), f"optimizer must be 'sgd' or 'adam', got {optimizer!r}"),
        (float(weight_decay) >= 0, f"weight_decay must be >= 0, got {weight_decay}"),
        (select in ("loss", "accuracy"), f"select must be 'loss' or 'accuracy', got {select!r}"),
        (patience is None or int(patience) >= 1, f"patience must be None or >= 1, got {patience}"),
        (normalize in ("backbone", "dataset"), f"normalize must be 'backbone' or 'dataset', got {normalize!r}"),
        (resize is None or resize in RESIZE_METHODS, f"resize must be one of {RESIZE_METHODS}, got {resize!r}"),
        (image_size is None or int(image_size) >= 16, f"image_size must be at least 16, got {image_size}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def _resolve_mode(mode, dev):
    """What ``mode="auto"`` means on this device: full fine-tuning on a GPU, head mode otherwise."""
    if mode != "auto":
        return mode
    return "full" if dev.type == "cuda" else "head"


def _preprocessing(backbone, resize=None, image_size=None):
    """The backbone's own preprocessing with the resize strategy and size a user overrides."""
    pre = default_preprocessing(backbone)
    pre.update({k: v for k, v in (("resize", resize), ("image_size", image_size)) if v is not None})
    return pre


def _recorded_augment(augment, mode):
    """The augmentations a run really applies (and records): none in head mode."""
    return list(augmentations(augment)) if mode == "full" else []


def _make_optimizer(params, optimizer, lr, momentum, weight_decay):
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


# --- features for head mode ---------------------------------------------------------

_FEATURE_CACHE: dict = {}


@torch.no_grad()
def extract_features(backbone, paths, pre, device="cpu", batch_size=32, progress=True, workers=2):
    """Run a frozen backbone once over images. Returns ``(features, errors)``.

    ``features`` is an ``N x D`` float tensor (rows of unreadable images are
    NaN) and ``errors`` maps positions in ``paths`` to the reason they failed.
    """
    from tqdm import tqdm

    backbone = backbone.eval().to(device)
    transform = build_transform(pre, train=False)
    feats, errors = None, {}
    bar = tqdm(total=len(paths), desc="computing features", unit="img", disable=not progress)
    for positions, batch, errs in load_batches(paths, transform, batch_size, decode_size(pre), workers):
        errors.update(errs)
        if batch is not None:
            out = forward(backbone, batch, torch.device(device)).float().cpu()
            if feats is None:
                feats = torch.full((len(paths), out.shape[1]), float("nan"))
            feats[positions] = out
        bar.update(len(positions) + len(errs))
    bar.close()
    if feats is None:
        raise ValueError(f"None of the {len(paths)} images could be read; first error: {next(iter(errors.values()), '')}")
    return feats, errors


def _file_stamp(path):
    """``(path, size, modification time)``, or ``(path, None, None)`` for a missing file."""
    try:
        st = Path(path).stat()
    except OSError:
        return (path, None, None)
    return (path, st.st_size, st.st_mtime_ns)


def _cached_features(model, backbone_name, weights, paths, pre, device, progress):
    # keyed on size and modification time too, so an image edited in place gets new features
    stamps = tuple(_file_stamp(p) for p in paths)
    key = (backbone_name, str(weights), json.dumps(pre, sort_keys=True), str(device), stamps)
    if key not in _FEATURE_CACHE:
        if len(_FEATURE_CACHE) >= 4:  # a few datasets at most; features of 10k images are ~50 MB
            _FEATURE_CACHE.pop(next(iter(_FEATURE_CACHE)))
        _FEATURE_CACHE[key] = extract_features(model.backbone, paths, pre, device, progress=progress)
    return _FEATURE_CACHE[key]


# --- full mode data -------------------------------------------------------------------

class ImageDataset(torch.utils.data.Dataset):
    """Images and integer targets for a DataLoader (full mode); files are decoded on demand."""

    def __init__(self, paths, targets, transform, min_size=None):
        self.paths, self.targets, self.transform, self.min_size = list(paths), list(targets), transform, min_size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from .images import load_image

        return self.transform(load_image(self.paths[i], min_size=self.min_size)), self.targets[i]


# --- one epoch ----------------------------------------------------------------------------

def _run_epoch(module, batches, criterion, device, optimizer=None, scaler=None):
    """Train (with an optimizer) or evaluate on batches of ``(x, y)``. Returns loss, targets, scores."""
    training = optimizer is not None
    module.train(training)
    total_loss, n, ys, scores = 0.0, 0, [], []
    amp = device.type == "cuda"
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.set_grad_enabled(training), torch.autocast(device.type, enabled=amp):
            out = module(x)
            loss = criterion(out.float(), y)
        if training:
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
        total_loss += float(loss.detach()) * len(y)
        n += len(y)
        ys.append(y.cpu())
        scores.append(out.detach().float().cpu())
    return total_loss / max(n, 1), torch.cat(ys), torch.cat(scores)


def _history_row(epoch, phase, loss, y, scores, classes, positive, lr):
    """One row of the learning curves. Integer class codes keep scikit-learn fast here (every epoch)."""
    import sklearn
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    y_true, y_pred = y.numpy(), scores.argmax(1).numpy()
    codes = list(range(len(classes)))
    if positive is not None:
        kwargs = {"average": "binary", "pos_label": classes.index(positive)}
    else:
        kwargs = {"average": "macro", "labels": codes}
    with sklearn.config_context(skip_parameter_validation=True):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, zero_division=0, **kwargs)
        acc = accuracy_score(y_true, y_pred)
    return {"epoch": epoch, "phase": phase, "loss": loss, "accuracy": float(acc),
            "precision": float(p), "recall": float(r), "f1": float(f), "lr": lr}


def _is_better(row, best, select):
    if best is None:
        return True
    if select == "accuracy":
        return (row["accuracy"], -row["loss"]) > (best["accuracy"], -best["loss"])
    return row["loss"] < best["loss"]


def _fit(module, train_batches, eval_batches, criterion, opt, scheduler, scaler, dev, epochs, select,
         patience, classes, positive):
    """The epoch loop. Leaves ``module`` holding the best epoch's weights; returns ``(history, best_row)``."""
    history, best, best_state, stale = [], None, None, 0
    for epoch in epochs:
        current_lr = opt.param_groups[0]["lr"]
        loss, yt, sc = _run_epoch(module, train_batches(), criterion, dev, opt, scaler)
        history.append(_history_row(epoch, "train", loss, yt, sc, classes, positive, current_lr))
        scheduler.step()
        loss, yt, sc = _run_epoch(module, eval_batches("val"), criterion, dev)
        row = _history_row(epoch, "val", loss, yt, sc, classes, positive, current_lr)
        history.append(row)
        epochs.set_postfix(val_loss=f"{row['loss']:.3f}", val_acc=f"{row['accuracy']:.3f}")
        if _is_better(row, best, select):
            best, stale = row, 0
            best_state = copy.deepcopy(module.state_dict())  # a copy, not a live reference
        else:
            stale += 1
            if patience is not None and stale >= int(patience):
                break
    epochs.close()
    module.load_state_dict(best_state)
    return history, best


# --- the public entry points ------------------------------------------------------------

def train(data, out=None, *, backbone=DEFAULT_BACKBONE, weights="imagenet", mode="auto", epochs=25,
          lr=0.001, momentum=0.9, batch_size=4, step_size=7, gamma=0.1, dropout=0.0, optimizer="sgd",
          weight_decay=0.0, resize=None, image_size=None, normalize="backbone", augment=True,
          select="loss", patience=None, seed=0, device="auto", num_workers=0, progress=True,
          split=(0.8, 0.1, 0.1), positive=None):
    """Fine-tune a pretrained backbone on labelled images and report held-out metrics.

    ``data`` is a dataset folder, a CSV, or a table from
    :func:`imgasdata.datasets.load_dataset`. The defaults follow the book
    (SGD, lr 0.001, momentum 0.9, batch size 4, StepLR every 7 epochs by 0.1).
    ``augment`` (full mode only) is ``True`` (random crops and flips), ``False``,
    or a list of ``"crop"``/``"flip"``. The epoch with the best validation loss
    (or accuracy, ``select``) is kept; ``patience`` stops early after that many
    epochs without improvement.
    ``positive`` names the class whose precision/recall/F1 are reported for a
    binary task (default: ``positive`` when the classes are ``negative``/``positive``;
    otherwise macro averages).

    With ``out``, writes the run folder: ``model.safetensors``,
    ``manifest.json``, ``history.csv``, ``metrics.json``, ``predictions.csv``
    (validation and test images), ``dataset.csv`` (every file with its SHA-256)
    and ``curves.png``. Returns a :class:`Run`.
    """
    _check_args(mode, epochs, lr, momentum, batch_size, step_size, gamma, dropout, optimizer,
                weight_decay, select, patience, normalize, resize, image_size)
    augmentations(augment)  # raises on an unknown augmentation before any work
    started = time.perf_counter()
    df = data.copy() if isinstance(data, pd.DataFrame) else load_dataset(data, split=split, seed=seed)
    classes = classes_of(df)
    if positive is None:
        positive = positive_class(classes)
    elif positive not in classes or len(classes) != 2:
        raise ValueError(f"positive={positive!r} must be one of the two classes of a binary task; found {classes}")
    dev = pick_device(device)
    mode = _resolve_mode(mode, dev)
    pre = _preprocessing(backbone, resize, image_size)
    if normalize == "dataset":
        pre["mean"], pre["std"] = compute_normalization(df.loc[df["split"] == "train", "path"], pre)
    pre["normalize"] = normalize

    set_seed(seed)
    model = build_model(backbone, len(classes), weights, dropout).to(dev)
    target = {c: i for i, c in enumerate(classes)}
    df["target"] = df["label"].map(target)

    if mode == "head":
        feats, errors = _cached_features(model, backbone, weights, list(df["path"]), pre, dev, progress)
    else:
        from .images import check_images

        checked = check_images(df["path"], progress=progress)
        errors = {i: e for i, e in enumerate(checked["error"]) if e}
    skipped = pd.DataFrame({"path": [df["path"].iloc[i] for i in errors], "error": list(errors.values())})
    if len(skipped):
        warnings.warn(f"{len(skipped)} unreadable image(s) left out of training and evaluation, "
                      f"e.g. {skipped['error'].iloc[0]}", stacklevel=2)
    keep = np.ones(len(df), dtype=bool)
    keep[list(errors)] = False
    parts = {s: np.flatnonzero(keep & (df["split"] == s).to_numpy()) for s in ("train", "val", "test")}
    for s in ("train", "val"):
        if len(parts[s]) == 0:
            raise ValueError(f"No readable {s} images left")

    criterion = nn.CrossEntropyLoss()
    if mode == "head":
        model.backbone.requires_grad_(False)
        module = model.head
        X = feats.to(dev)
        y = torch.tensor(df["target"].to_numpy(), dtype=torch.long, device=dev)
        gen = torch.Generator().manual_seed(seed)

        def train_batches():
            order = torch.from_numpy(parts["train"])[torch.randperm(len(parts["train"]), generator=gen)]
            return ((X[idx], y[idx]) for idx in order.split(int(batch_size)))

        def eval_batches(split_name):
            idx = torch.from_numpy(parts[split_name])
            return ((X[i], y[i]) for i in idx.split(1024))
    else:
        module = model
        train_tf = build_transform(pre, train=True, augment=augment)
        eval_tf = build_transform(pre, train=False)
        gen = torch.Generator().manual_seed(seed)

        def loader(split_name, tf, shuffle):
            rows = df.iloc[parts[split_name]]
            ds = ImageDataset(rows["path"], rows["target"], tf)
            return torch.utils.data.DataLoader(ds, batch_size=int(batch_size), shuffle=shuffle,
                                               num_workers=num_workers, generator=gen,
                                               pin_memory=dev.type == "cuda")

        def train_batches():
            return loader("train", train_tf, True)

        def eval_batches(split_name):
            return loader(split_name, eval_tf, False)

    params = [p for p in module.parameters() if p.requires_grad]
    opt = _make_optimizer(params, optimizer, float(lr), float(momentum), float(weight_decay))
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=int(step_size), gamma=float(gamma))
    scaler = torch.amp.GradScaler("cuda") if dev.type == "cuda" else None

    from tqdm import tqdm

    bar = tqdm(range(1, int(epochs) + 1), desc=f"training ({mode})", unit="epoch", disable=not progress)
    # The head's matrices are tiny: extra CPU threads only add hand-over costs, which
    # grow many-fold on a busy laptop. One thread keeps head-mode epochs at milliseconds.
    threads = torch.get_num_threads()
    if mode == "head" and dev.type == "cpu":
        torch.set_num_threads(1)
    try:
        history, best = _fit(module, train_batches, eval_batches, criterion, opt, scheduler, scaler,
                             dev, bar, select, patience, classes, positive)
    finally:
        torch.set_num_threads(threads)
    model.eval()

    # Final numbers: validation (used for choosing) and test (never looked at until now).
    metrics, pred_frames = {}, []
    for split_name in ("val", "test"):
        if len(parts[split_name]) == 0:
            metrics[split_name] = None
            continue
        _, yt, sc = _run_epoch(module, eval_batches(split_name), criterion, dev)
        probs = torch.softmax(sc, dim=1)
        rows = df.iloc[parts[split_name]]
        pred = [classes[i] for i in probs.argmax(1).tolist()]
        metrics[split_name] = classification_metrics(rows["label"], pred, labels=classes, positive=positive)
        frame = pd.DataFrame({"path": rows["path"].to_numpy(), "split": split_name,
                              "label": rows["label"].to_numpy(), "pred": pred})
        for i, c in enumerate(classes):
            frame[f"prob_{c}"] = probs[:, i].numpy().round(6)
        frame["correct"] = frame["label"] == frame["pred"]
        pred_frames.append(frame)
    if metrics["test"] is None:
        warnings.warn("This dataset has no test images: only validation metrics are reported, and "
                      "they are optimistic because the same images chose the epoch.", stacklevel=2)

    hyper = dict(epochs=int(epochs), lr=float(lr), momentum=float(momentum), batch_size=int(batch_size),
                 step_size=int(step_size), gamma=float(gamma), dropout=float(dropout), optimizer=optimizer,
                 weight_decay=float(weight_decay),
                 augment=_recorded_augment(augment, mode),
                 select=select, patience=patience)
    manifest = {
        "imgasdata_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task": "binary" if len(classes) == 2 else "multiclass",
        "classes": classes,
        "positive": positive,
        "backbone": backbone,
        "weights": str(weights),
        "mode": mode,
        "preprocessing": pre,
        "hyperparameters": hyper,
        "seed": int(seed),
        "device": str(dev),
        "best_epoch": int(best["epoch"]),
        "epochs_run": int(history[-1]["epoch"]),
        "selection": f"best validation {select}; the test images played no part in choosing",
        "seconds": round(time.perf_counter() - started, 2),
        "dataset": {"source": None if isinstance(data, pd.DataFrame) else str(data),
                    "n": {s: int(len(parts[s])) for s in parts}, "skipped": int(len(skipped))},
        "versions": package_versions(),
    }
    run = Run(model=model, manifest=manifest, history=pd.DataFrame(history), metrics=metrics,
              predictions=pd.concat(pred_frames, ignore_index=True), skipped=skipped)
    if out is not None:
        run.run_dir = save_run(run, out, df)
    return run


def load_run(run_dir, device="cpu"):
    """Read a saved run folder back into a :class:`Run`: model, manifest, history, metrics, predictions."""
    from .models import load_model

    run_dir = Path(run_dir)
    model, manifest = load_model(run_dir, device)

    def table(name, **kwargs):
        path = run_dir / name
        return pd.read_csv(path, **kwargs) if path.is_file() else pd.DataFrame()

    metrics_path = run_dir / "metrics.json"
    return Run(model=model, manifest=manifest, history=table("history.csv"),
               metrics=json.loads(metrics_path.read_text()) if metrics_path.is_file() else {},
               predictions=table("predictions.csv"), run_dir=run_dir,
               skipped=table("skipped.csv") if (run_dir / "skipped.csv").is_file()
               else pd.DataFrame(columns=["path", "error"]))


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


def save_run(run, out, df):
    """Write a run folder (weights, manifest, history, metrics, predictions, dataset, curves)."""
    from .plots import plot_history

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table, digest = fingerprint(df[[c for c in ("path", "label", "split", "sha256") if c in df.columns]])
    run.manifest["dataset"]["sha256"] = digest
    save_model(out, run.model, run.manifest)
    table.to_csv(out / "dataset.csv", index=False)
    run.history.to_csv(out / "history.csv", index=False)
    (out / "metrics.json").write_text(json.dumps(run.metrics, indent=2) + "\n")
    run.predictions.to_csv(out / "predictions.csv", index=False)
    if len(run.skipped):
        run.skipped.to_csv(out / "skipped.csv", index=False)
    else:
        (out / "skipped.csv").unlink(missing_ok=True)  # from an earlier run in the same folder
    fig = plot_history(run.history, select=run.manifest["hyperparameters"]["select"])
    fig.savefig(out / "curves.png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out


def _run_name(params):
    return "_".join(f"{k}={v}" for k, v in params.items())


def _grid_row(params, manifest, metrics, history, run_dir):
    best_val = history[(history["phase"] == "val") & (history["epoch"] == manifest["best_epoch"])].iloc[0]
    row = dict(params)
    row.update(best_epoch=manifest["best_epoch"], epochs_run=manifest["epochs_run"],
               val_loss=round(float(best_val["loss"]), 4))
    for split in ("val", "test"):
        for k in ("accuracy", "precision", "recall", "f1"):
            row[f"{split}_{k}"] = None if metrics.get(split) is None else round(metrics[split][k], 4)
    row.update(seconds=manifest["seconds"], run=None if run_dir is None else str(Path(run_dir).resolve()))
    return row


def grid(data, out=None, param_grid=None, resume=True, progress=True, **train_kwargs):
    """Train one model per combination of hyperparameters (the book's Table 6).

    ``param_grid`` maps hyperparameter names to lists of values, e.g.
    ``{"lr": [0.0005, 0.001, 0.005], "momentum": [0.7, 0.9], "batch_size": [1, 4]}``
    (the default). Other keyword arguments go to :func:`train` unchanged. In
    head mode the features are computed once for the whole grid.

    With ``out``, each combination gets its own run folder and the table is
    written to ``out/results.csv``; with ``resume=True`` combinations whose run
    folder is complete are read back instead of retrained. Returns the table,
    one row per combination, with the best epoch, validation and test metrics
    and seconds; rows are in grid order (choose on ``val_*`` columns, not ``test_*``).
    """
    from tqdm import tqdm

    param_grid = dict(param_grid or {"lr": [0.0005, 0.001, 0.005], "momentum": [0.7, 0.9], "batch_size": [1, 4]})
    unknown = set(param_grid) - set(HYPERPARAMETERS) - {"resize", "image_size", "mode", "seed", "normalize"}
    if unknown:
        raise ValueError(f"cannot grid over {sorted(unknown)}; choose from {sorted(HYPERPARAMETERS)}")
    for name, values in param_grid.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            param_grid[name] = [values]
    seed = train_kwargs.get("seed", 0)
    split = train_kwargs.pop("split", (0.8, 0.1, 0.1))
    df = data if isinstance(data, pd.DataFrame) else load_dataset(data, split=split, seed=seed)
    # hashed once: every run records it, and resume only reuses runs made on these exact files
    df, digest = fingerprint(df)
    names = list(param_grid)
    combos = [dict(zip(names, values)) for values in itertools.product(*param_grid.values())]
    rows = []
    for params in tqdm(combos, desc="grid", unit="run", disable=not progress):
        run_dir = Path(out) / _run_name(params) if out is not None else None
        if resume and run_dir is not None and _complete(run_dir, {**train_kwargs, **params}, digest):
            manifest = json.loads((run_dir / "manifest.json").read_text())
            metrics = json.loads((run_dir / "metrics.json").read_text())
            history = pd.read_csv(run_dir / "history.csv")
        else:
            run = train(df, run_dir, progress=False, **{**train_kwargs, **params})
            manifest, metrics, history = run.manifest, run.metrics, run.history
        rows.append(_grid_row(params, manifest, metrics, history, run_dir))
    results = pd.DataFrame(rows)
    if out is not None:
        results.to_csv(Path(out) / "results.csv", index=False)
        _save_grid_curves(results, Path(out))
    return results


def _save_grid_curves(results, out):
    """Loss and accuracy curves of every combination, as ``curves_loss.png`` and ``curves_accuracy.png``."""
    import matplotlib.pyplot as plt

    from .plots import plot_grid_curves

    for metric in ("loss", "accuracy"):
        fig = plot_grid_curves(results, metric)
        fig.savefig(out / f"curves_{metric}.png", dpi=100, bbox_inches="tight")
        plt.close(fig)


def _complete(run_dir, settings, dataset_sha256=None):
    """True when ``run_dir`` holds a finished run made with these settings (and on these files)."""
    needed = ("manifest.json", "metrics.json", "history.csv", "model.safetensors")
    if not all((run_dir / n).is_file() for n in needed):
        return False
    manifest = json.loads((run_dir / "manifest.json").read_text())
    if dataset_sha256 is not None and manifest.get("dataset", {}).get("sha256") != dataset_sha256:
        return False
    pre = manifest.get("preprocessing", {})
    recorded = {**manifest.get("hyperparameters", {}), "backbone": manifest.get("backbone"),
                "seed": manifest.get("seed"), "weights": manifest.get("weights"), "mode": manifest.get("mode"),
                "resize": pre.get("resize"), "image_size": pre.get("image_size"),
                "normalize": pre.get("normalize", "backbone")}
    # Settings left out mean train()'s defaults, and None/"auto" what train() makes of them:
    # a run made with other epochs, image size or mode is not the run asked for.
    defaults = {k: p.default for k, p in inspect.signature(train).parameters.items()
                if p.default is not inspect.Parameter.empty}
    wanted = {**defaults, **settings, "weights": str(settings.get("weights", defaults["weights"]))}
    wanted["mode"] = _resolve_mode(wanted["mode"], pick_device(wanted["device"]))
    pre_wanted = _preprocessing(wanted["backbone"], wanted["resize"], wanted["image_size"])
    wanted.update(resize=pre_wanted["resize"], image_size=pre_wanted["image_size"],
                  augment=_recorded_augment(wanted["augment"], wanted["mode"]))
    return all(recorded[k] == v for k, v in wanted.items() if k in recorded)


def evaluate(run, data, device="auto", batch_size=32, progress=True):
    """Score a saved run on labelled images it has not seen.

    ``data`` is a folder with one sub-folder per class (e.g. ``DATA/test``) or
    a dataset folder/CSV (its ``test`` split is used). Returns ``(metrics,
    predictions)``; unreadable files are reported in the predictions' ``error``
    column and left out of the metrics.
    """
    from .datasets import _read_class_folders
    from .models import load_model
    from .predict import predict

    data = Path(data)
    if data.is_dir() and not any((data / s).is_dir() for s in ("train", "val", "test")):
        df = _read_class_folders(data, "test")
    else:
        df = load_dataset(data)
        df = df[df["split"] == "test"]
    model, manifest = load_model(run, device="cpu")
    classes = manifest["classes"]
    extra = sorted(set(df["label"]) - set(classes))
    if extra:
        raise ValueError(f"{data} has classes {extra} that the model in {run} was not trained on ({classes})")
    preds = predict((model, manifest), list(df["path"]), batch_size=batch_size, device=device, progress=progress)
    preds.insert(1, "true", df["label"].to_numpy())
    ok = preds["error"] == ""
    metrics = classification_metrics(preds.loc[ok, "true"], preds.loc[ok, "label"], labels=classes,
                                     positive=manifest.get("positive"))
    return metrics, preds
