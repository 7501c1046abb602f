"""Training benchmark: the book's hyperparameter grid in head mode, and head mode vs. the book's loop.

Prints plain-text tables; asserts nothing about time (this is not a test).

(a) ``imgasdata.grid.grid`` over the book's 12 combinations (lr 0.0005/0.001/0.005 x
    momentum 0.7/0.9 x batch size 1/4) x ``--epochs`` epochs in head mode, starting
    from an empty feature cache, with the wall time split into feature extraction,
    model building, saving run folders and the training loops themselves.
    Target from the issue: whole grid within 60 s.

(b) One run (``--lr``, ``--momentum``, ``--batch-size``, ``--naive-epochs`` epochs) in
    head mode vs. a naive torchvision-style loop that re-decodes every image and re-runs
    the frozen backbone every epoch, training only the new last layer (the book's
    approach). Same split, seed, initial weights, shuffling order, StepLR schedule and
    best-epoch selection on validation loss. Target: head mode >= 20x faster per run at
    equal test accuracy (within 2 points).

Run:  .venv/bin/python benchmarks/bench_training.py [--data data/binary] [--epochs 50] [--naive-epochs 5]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from _common import Timer, loadavg, machine_header, patched, sample_data  # noqa: E402

BOOK_GRID = {"lr": [0.0005, 0.001, 0.005], "momentum": [0.7, 0.9], "batch_size": [1, 4]}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="binary dataset folder (train/val/test/<class>/...); default: "
                                  "the sample data's binary task built into a temporary folder")
    p.add_argument("--out", help="folder for the grid's run folders (default: a temporary folder)")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=224, help="input size in pixels (default 224)")
    p.add_argument("--epochs", type=int, default=50, help="epochs per grid combination (book: 50)")
    p.add_argument("--naive-epochs", type=int, default=5,
                   help="epochs for the head-vs-naive comparison, both measured at this N (default 5)")
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--naive-workers", type=int, default=0,
                   help="DataLoader workers of the naive loop (default 0: decode in the main process)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads for the whole benchmark (default: torch's own choice)")
    p.add_argument("--skip-grid", action="store_true", help="skip part (a)")
    p.add_argument("--skip-naive", action="store_true", help="skip part (b)")
    p.add_argument("--no-diagnose", dest="diagnose", action="store_false",
                   help="skip part (c): extract_features at batch sizes 32/8/4")
    return p.parse_args(argv)


# --- (a) the grid -------------------------------------------------------------------------

def bench_grid(df, args, out, cold=True):
    """Time ``grid`` over the book's 12 combinations; returns (results, split table, total seconds)."""
    import imgasdata.batches as B
    import imgasdata.grid as G
    import imgasdata.train as T

    if cold:
        B.feature_cache.clear()
    timer = Timer()
    kwargs = dict(mode="head", epochs=args.epochs, backbone=args.backbone, image_size=args.image_size,
                  seed=args.seed, device="cpu")
    with patched(B, extract_features=timer.wrap("feature extraction", B.extract_features)), \
            patched(T, build_model=timer.wrap("build model (x12)", T.build_model),
                    save_run=timer.wrap("save run folders (x12)", T.save_run),
                    save_curves=timer.wrap("run curves png (x12)", T.save_curves)), \
            patched(G, save_grid_curves=timer.wrap("grid curves png", G.save_grid_curves)):
        t = time.perf_counter()
        results = G.grid(df, out, param_grid=BOOK_GRID, resume=False, progress=False, **kwargs)
        total = time.perf_counter() - t
    parts = dict(timer.seconds)
    parts["training loops + evaluation (rest)"] = total - sum(parts.values())
    split = pd.DataFrame({"part": list(parts), "seconds": [round(v, 2) for v in parts.values()],
                          "share": [f"{v / total:.0%}" for v in parts.values()]})
    split.loc[len(split)] = ["TOTAL", round(total, 2), "100%"]
    return results, split, total


# --- (b) the naive loop ---------------------------------------------------------------

class _Files(torch.utils.data.Dataset):
    def __init__(self, paths, targets, transform, min_size):
        self.paths, self.targets, self.transform, self.min_size = list(paths), list(targets), transform, min_size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from imgasdata.images import load_image

        return self.transform(load_image(self.paths[i], min_size=self.min_size)), self.targets[i]


class _SameOrder(torch.utils.data.Sampler):
    """The shuffling ``imgasdata.train.train`` uses in head mode: one randperm per epoch from a seeded generator."""

    def __init__(self, n, seed):
        self.n, self.gen = n, torch.Generator().manual_seed(seed)

    def __len__(self):
        return self.n

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=self.gen).tolist())


def naive_run(df, *, backbone, image_size, epochs, lr, momentum, batch_size, seed, workers,
              step_size=7, gamma=0.1):
    """The book's approach: every epoch re-decodes each image and re-runs the frozen backbone.

    A plain torchvision-style loop: DataLoader over files with the eval transform, backbone in
    eval mode under ``no_grad``, only the new last layer trained (SGD + StepLR), the epoch with
    the lowest validation loss kept, test accuracy computed once with it.
    """
    from imgasdata.datasets import classes_of
    from imgasdata.backbones import default_preprocessing
    from imgasdata.fit import set_seed
    from imgasdata.models import build_model
    from imgasdata.transforms import build_transform, decode_size

    started = time.perf_counter()
    classes = classes_of(df)
    target = {c: i for i, c in enumerate(classes)}
    pre = default_preprocessing(backbone)
    pre["image_size"] = image_size
    pre["normalize"] = "backbone"
    set_seed(seed)
    model = build_model(backbone, len(classes), "imagenet")
    net, head = model.backbone.eval(), model.head
    net.requires_grad_(False)
    tf = build_transform(pre, train=False)

    def dataset(split):
        rows = df[df["split"] == split]
        return _Files(rows["path"], rows["label"].map(target), tf, decode_size(pre))

    train_ds, val_ds, test_ds = dataset("train"), dataset("val"), dataset("test")
    train_dl = torch.utils.data.DataLoader(train_ds, batch_size=batch_size, num_workers=workers,
                                           sampler=_SameOrder(len(train_ds), seed))
    val_dl = torch.utils.data.DataLoader(val_ds, batch_size=batch_size, num_workers=workers)
    test_dl = torch.utils.data.DataLoader(test_ds, batch_size=batch_size, num_workers=workers)
    criterion = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)

    def scores(loader, train):
        head.train(train)
        total, n, correct = 0.0, 0, 0
        for x, y in loader:
            with torch.no_grad():
                f = net(x)
            with torch.set_grad_enabled(train):
                out = head(f)
                loss = criterion(out, y)
            if train:
                opt.zero_grad()
                loss.backward()
                opt.step()
            total += float(loss) * len(y)
            n += len(y)
            correct += int((out.argmax(1) == y).sum())
        return total / n, correct / n

    best_loss, best_state, best_epoch = None, None, 0
    epoch_seconds = []
    for epoch in range(1, epochs + 1):
        t = time.perf_counter()
        scores(train_dl, True)
        sched.step()
        val_loss, _ = scores(val_dl, False)
        if best_loss is None or val_loss < best_loss:
            best_loss, best_state, best_epoch = val_loss, copy.deepcopy(head.state_dict()), epoch
        epoch_seconds.append(time.perf_counter() - t)
    head.load_state_dict(best_state)
    _, test_acc = scores(test_dl, False)
    return {"seconds": time.perf_counter() - started, "test_accuracy": test_acc, "best_epoch": best_epoch,
            "seconds_per_epoch": sum(epoch_seconds) / len(epoch_seconds)}


def head_run(df, args, epochs, cold):
    import imgasdata.batches as B
    import imgasdata.train as T

    if cold:
        B.feature_cache.clear()
    t = time.perf_counter()
    run = T.train(df, None, mode="head", backbone=args.backbone, image_size=args.image_size, epochs=epochs,
                  lr=args.lr, momentum=args.momentum, batch_size=args.batch_size, seed=args.seed,
                  device="cpu", progress=False)
    return {"seconds": time.perf_counter() - t, "test_accuracy": run.metrics["test"]["accuracy"],
            "best_epoch": run.best_epoch}


# --- (c) diagnosis: feature extraction vs. its batch size -------------------------------------

def extraction_batch_sizes(df, args, sizes=(32, 8, 4), rounds=2):
    """``imgasdata.batches.extract_features`` over all images at several of its ``batch_size`` values.

    ``train`` calls it with the default 32. The features must come out identical (eval mode).
    Sizes are measured in turn, ``rounds`` times over; the best round of each is kept.
    """
    import resource

    import imgasdata.batches as B
    from imgasdata.backbones import default_preprocessing
    from imgasdata.models import build_model

    pre = default_preprocessing(args.backbone)
    pre["image_size"] = args.image_size
    pre["normalize"] = "backbone"
    torch.manual_seed(args.seed)
    backbone = build_model(args.backbone, 2, "imagenet").backbone
    paths = list(df["path"])
    B.extract_features(backbone, paths[:8], pre, "cpu", batch_size=4, progress=False)  # warm-up
    best, feats = {}, {}
    for _ in range(rounds):
        for bs in sizes:
            r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            f, _ = B.extract_features(backbone, paths, pre, "cpu", batch_size=bs, progress=False)
            wall, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
            feats[bs] = f
            row = {"batch_size": bs, "seconds": round(wall, 2), "img/s": round(len(paths) / wall, 1),
                   "sys CPU s": round(r1.ru_stime - r0.ru_stime, 2),
                   "page faults": r1.ru_minflt - r0.ru_minflt}
            if bs not in best or row["seconds"] < best[bs]["seconds"]:
                best[bs] = row
    table = pd.DataFrame(list(best.values()))
    ref = feats[sizes[0]]
    table["max |diff| vs 32"] = [float((feats[bs] - ref).abs().max()) for bs in sizes]
    return table


def main(argv=None):
    args = parse_args(argv)
    warnings.simplefilter("ignore")  # tqdm/sklearn chatter would break the tables
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from imgasdata.datasets import load_dataset

    data = Path(args.data) if args.data else sample_data() / "binary"
    df = load_dataset(data, seed=args.seed)
    counts = df.groupby("split").size().to_dict()
    print(machine_header("bench_training"))
    print(f"data        {data}: {len(df)} images, {df['label'].nunique()} classes, "
          f"train/val/test {counts.get('train', 0)}/{counts.get('val', 0)}/{counts.get('test', 0)}, "
          f"backbone {args.backbone} at {args.image_size} px")
    pd.set_option("display.width", 200)

    if not args.skip_grid:
        out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="imgasdata_bench_grid_"))
        print(f"\n--- (a) book's grid: 12 combinations x {args.epochs} epochs, head mode, "
              f"features computed once (cache cleared first); run folders in {out}")
        results, split, total = bench_grid(df, args, out)
        cols = ["lr", "momentum", "batch_size", "best_epoch", "val_loss", "val_accuracy", "test_accuracy", "seconds"]
        print(results[cols].to_string(index=False))
        print("\nwall-time split:")
        print(split.to_string(index=False))
        verdict = "MET" if total <= 60 else "MISSED"
        print(f"\ngrid total {total:.1f} s; target <= 60 s: {verdict} ({total / 60:.2f}x the budget); "
              f"load avg now {loadavg()}")

    if not args.skip_naive:
        n = args.naive_epochs
        print(f"\n--- (b) one run, lr {args.lr}, momentum {args.momentum}, batch size {args.batch_size}, "
              f"{n} epochs: head mode vs. the naive loop (re-decode + frozen backbone every epoch)")
        rows = []
        naive = naive_run(df, backbone=args.backbone, image_size=args.image_size, epochs=n, lr=args.lr,
                          momentum=args.momentum, batch_size=args.batch_size, seed=args.seed,
                          workers=args.naive_workers)
        rows.append({"method": f"naive loop, {n} epochs", **naive})
        cold = head_run(df, args, n, cold=True)
        rows.append({"method": f"head mode, {n} epochs, cold (computes features)", **cold})
        warm = head_run(df, args, n, cold=False)
        rows.append({"method": f"head mode, {n} epochs, warm (cached, as in a grid)", **warm})
        if args.epochs != n:
            warm_full = head_run(df, args, args.epochs, cold=False)
            rows.append({"method": f"head mode, {args.epochs} epochs, warm (cached)", **warm_full})
        table = pd.DataFrame(rows)
        table["speedup_vs_naive"] = (naive["seconds"] / table["seconds"]).round(1)
        table["acc_diff_points"] = ((table["test_accuracy"] - naive["test_accuracy"]) * 100).round(1)
        table["seconds"] = table["seconds"].round(2)
        table["seconds_per_epoch"] = table["seconds_per_epoch"].round(2)
        table["test_accuracy"] = table["test_accuracy"].round(4)
        print(table.to_string(index=False))
        n_test = int((df["split"] == "test").sum())
        print(f"(test set: {n_test} images, so one image is {100 / n_test:.1f} points)")
        per_epoch = naive["seconds_per_epoch"]
        naive_full = naive["seconds"] + per_epoch * (args.epochs - n)
        if args.epochs != n:
            print(f"naive loop: {per_epoch:.2f} s per epoch -> EXTRAPOLATED (not measured) to {args.epochs} "
                  f"epochs: ~{naive_full:.0f} s per run")
            print(f"  vs. head mode {args.epochs} epochs warm (measured {warm_full['seconds']:.2f} s): "
                  f"~{naive_full / warm_full['seconds']:.0f}x; vs. cold (~{cold['seconds'] - warm['seconds'] + warm_full['seconds']:.1f} s, "
                  f"derived: cold {n}-epoch run - warm {n}-epoch run + warm {args.epochs}-epoch run): "
                  f"~{naive_full / (cold['seconds'] - warm['seconds'] + warm_full['seconds']):.0f}x  (EXTRAPOLATED)")
        same = abs(cold["test_accuracy"] - naive["test_accuracy"]) * 100 <= 2 and \
            abs(warm["test_accuracy"] - naive["test_accuracy"]) * 100 <= 2
        for label, r in (("cold", cold), ("warm", warm)):
            ratio = naive["seconds"] / r["seconds"]
            print(f"head {label} vs naive at {n} epochs: {ratio:.1f}x faster; target >= 20x at equal "
                  f"accuracy: {'MET' if ratio >= 20 and same else 'MISSED'}")
        print(f"load avg now {loadavg()}")

    if args.diagnose:
        print(f"\n--- (c) diagnosis: imgasdata.batches.extract_features over the {len(df)} images at "
              f"batch sizes 32 (what train() uses), 8 and 4 (best of 2 interleaved rounds)")
        print(extraction_batch_sizes(df, args).to_string(index=False))
        print(f"load avg now {loadavg()}")


if __name__ == "__main__":
    main()
