"""GPU check: full-mode fine-tuning with mixed precision, then predict, on a CUDA machine.

Trains notebook 03's task (the binary sample data) with every layer unfrozen and
automatic mixed precision for a few epochs, labels the held-out and new images,
and prints a table: images/s of training and of predict, peak GPU memory, and
the test accuracy reached. Run it where ``torch.cuda.is_available()``::

    python benchmarks/gpu_check.py                 # builds the sample data into a temp folder
    python benchmarks/gpu_check.py --data data --epochs 5 --batch-size 32

On a machine without CUDA it says so and exits with status 1: the GPU path is
only checked where a GPU is.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_header, sample_data  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="sample-data root (default: build it into a temp folder)")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--num-workers", type=int, default=4)
    args = p.parse_args(argv)

    import pandas as pd
    import torch

    if not torch.cuda.is_available():
        print("No CUDA device here: the GPU check needs one (torch.cuda.is_available() is False).")
        return 1
    from imgasdata.datasets import load_dataset
    from imgasdata.predict import predict
    from imgasdata.train import train

    print(machine_header("GPU check: full mode with mixed precision, then predict"))
    print(f"device: {torch.cuda.get_device_name(0)}")
    root = sample_data(args.data)
    data = root / "binary"
    n_train = int((load_dataset(data)["split"] == "train").sum())
    out = Path(tempfile.mkdtemp(prefix="imgasdata_gpu_check_"))
    rows = []

    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = train(data, out / "run", mode="full", device="cuda", epochs=args.epochs, batch_size=args.batch_size,
                    lr=args.lr, backbone=args.backbone, num_workers=args.num_workers, progress=False)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    rows.append({"step": f"train, full mode + AMP, {args.epochs} epochs", "images": n_train * args.epochs,
                 "seconds": round(seconds, 2), "img/s": round(n_train * args.epochs / seconds, 1),
                 "peak GPU MiB": round(torch.cuda.max_memory_allocated() / 2**20),
                 "test accuracy": round(run.metrics["test"]["accuracy"], 3)})

    from imgasdata.images import expand_inputs

    paths = [str(p) for p in expand_inputs([root / "binary", root / "new_images"])]
    predict(out / "run", paths[:16], device="cuda", progress=False)  # warm-up outside the clock
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    df = predict(out / "run", paths, device="cuda", batch_size=64, progress=False)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    rows.append({"step": "predict (batch 64)", "images": len(df), "seconds": round(seconds, 2),
                 "img/s": round(len(df) / seconds, 1),
                 "peak GPU MiB": round(torch.cuda.max_memory_allocated() / 2**20), "test accuracy": None})
    with pd.option_context("display.width", 200):
        print(pd.DataFrame(rows).to_string(index=False))
    print(f"run folder: {out / 'run'} (mode {run.manifest['mode']}, device {run.manifest['device']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
