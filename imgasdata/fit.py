"""The training loop: epochs of SGD (or Adam) with a StepLR schedule, keeping the best epoch.

One explicit loop in the spirit of torchvision's reference ``train.py``. Each
epoch trains on the training batches, steps the schedule, and scores the
validation batches; the epoch with the best validation figure is kept as a
*copy* of its weights (not a live reference), and training can stop early
after ``patience`` epochs without improvement.
"""

from __future__ import annotations

import copy
import random

import numpy as np
import sklearn
import torch
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from .metrics import averaging


def set_seed(seed):
    """Seed Python, NumPy and PyTorch so a run on the same machine repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(params, settings):
    """SGD with momentum (the book's) or Adam, from a :class:`~imgasdata.settings.TrainSettings`."""
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    return torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)


def run_epoch(module, batches, criterion, device, optimizer=None, scaler=None):
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


def history_row(epoch, phase, loss, y, scores, classes, positive, lr):
    """One row of the learning curves. Integer class codes keep scikit-learn fast here (every epoch)."""
    y_true, y_pred = y.numpy(), scores.argmax(1).numpy()
    average, kwargs = averaging(range(len(classes)), None if positive is None else classes.index(positive))
    with sklearn.config_context(skip_parameter_validation=True):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, zero_division=0, average=average, **kwargs)
        acc = accuracy_score(y_true, y_pred)
    return {"epoch": epoch, "phase": phase, "loss": loss, "accuracy": float(acc),
            "precision": float(p), "recall": float(r), "f1": float(f), "lr": lr}


def selection_key(row, select):
    """Sort key of a validation row: smaller is better. Accuracy ties go to the lower loss."""
    if select == "accuracy":
        return (-row["accuracy"], row["loss"])
    return (row["loss"],)


def best_epoch(history, select="loss"):
    """The epoch a run keeps, from its history table (the earliest of equally good epochs)."""
    val = history[history["phase"] == "val"]
    if not len(val):
        return None
    rows = [r for _, r in val.iterrows()]
    return int(min(rows, key=lambda r: (selection_key(r, select), r["epoch"]))["epoch"])


def fit(module, train_batches, eval_batches, criterion, optimizer, scheduler, scaler, device, epochs, select,
        patience, classes, positive):
    """The epoch loop. Leaves ``module`` holding the best epoch's weights; returns ``(history, best_row)``.

    ``train_batches()`` and ``eval_batches("val")`` make a fresh iterable of
    ``(x, y)`` batches; ``epochs`` is an iterable of epoch numbers (a progress bar).
    """
    history, best, best_state, stale = [], None, None, 0
    for epoch in epochs:
        current_lr = optimizer.param_groups[0]["lr"]
        loss, yt, sc = run_epoch(module, train_batches(), criterion, device, optimizer, scaler)
        history.append(history_row(epoch, "train", loss, yt, sc, classes, positive, current_lr))
        scheduler.step()
        loss, yt, sc = run_epoch(module, eval_batches("val"), criterion, device)
        row = history_row(epoch, "val", loss, yt, sc, classes, positive, current_lr)
        history.append(row)
        if hasattr(epochs, "set_postfix"):
            epochs.set_postfix(val_loss=f"{row['loss']:.3f}", val_acc=f"{row['accuracy']:.3f}",
                               refresh=False)  # shown at the next redraw, which the bar times itself
        if best is None or selection_key(row, select) < selection_key(best, select):
            best, stale = row, 0
            best_state = copy.deepcopy(module.state_dict())  # a copy, not a live reference
        else:
            stale += 1
            if patience is not None and stale >= int(patience):
                break
    if hasattr(epochs, "close"):
        epochs.close()
    module.load_state_dict(best_state)
    return history, best
