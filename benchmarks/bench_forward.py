"""The model's forward pass alone, in every configuration worth considering on a CPU.

Prints one table: images per second of EfficientNet-Lite0 (ImageNet backbone + a 2-class head,
as a saved run holds it) on pre-decoded 224 px tensors of real images, and the largest absolute
difference of its softmax probabilities from the reference (PyTorch, NCHW, one call per image
batch) — so "faster" and "same outputs" are read off the same row.

Configurations: micro-batch size (how many images per model call), memory format (NCHW or
channels-last), torch intra-op threads (1 or 2), TorchScript frozen with ``optimize_for_inference``,
ONNX Runtime (fp32) and ONNX Runtime with dynamic int8 quantization. Each is measured in turn,
``--rounds`` times, and the best round is kept, so that a burst of load from other processes
does not land on one configuration only. Asserts nothing about time.

Run:  .venv/bin/python benchmarks/bench_forward.py [--data data] [--n 96] [--rounds 3]
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

import numpy as np
import pandas as pd
import torch
from _common import loadavg, machine_header, sample_data


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="sample-data root (default: built offline into a temporary folder)")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--n", type=int, default=96, help="images per measurement (default 96)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best is kept")
    p.add_argument("--no-onnx", dest="onnx", action="store_false", help="skip ONNX Runtime")
    p.add_argument("--no-jit", dest="jit", action="store_false", help="skip TorchScript")
    return p.parse_args(argv)


def images(root, n, pre):
    """``n`` real images (Twemoji and photos of the sample data) decoded and preprocessed."""
    from imgasdata.images import list_images, load_image
    from imgasdata.transforms import build_transform, decode_size

    files = list_images(root / "photos") + list_images(root / "multiclass")
    tf = build_transform(pre, train=False)
    return torch.stack([tf(load_image(files[i % len(files)], decode_size(pre))) for i in range(n)])


def torch_runner(model, chunk, channels_last, threads):
    if channels_last:
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)

    @torch.no_grad()
    def run(x):
        torch.set_num_threads(threads)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return torch.cat([torch.softmax(model(part), dim=1) for part in x.split(chunk)])
    return run


def jit_runner(model, chunk, threads):
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.zeros(chunk, 3, 224, 224))
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))

    @torch.no_grad()
    def run(x):
        torch.set_num_threads(threads)
        return torch.cat([torch.softmax(frozen(part), dim=1) for part in x.split(chunk)])
    return run


def onnx_runner(model, chunk, threads, folder, quantize=False):
    import onnxruntime as ort

    path = Path(folder) / "model.onnx"
    if not path.is_file():
        torch.onnx.export(model, (torch.zeros(chunk, 3, 224, 224),), str(path), input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=17,
                          dynamo=False)
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        qpath = Path(folder) / "model_int8.onnx"
        if not qpath.is_file():
            import logging

            logging.getLogger().setLevel(logging.ERROR)  # one warning per tensor it leaves in float
            quantize_dynamic(str(path), str(qpath), weight_type=QuantType.QUInt8)
        path = qpath
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(x):
        out = [sess.run(None, {"x": part.numpy()})[0] for part in x.split(chunk)]
        return torch.softmax(torch.from_numpy(np.concatenate(out)), dim=1)
    return run


def main(argv=None):
    args = parse_args(argv)
    warnings.simplefilter("ignore")
    from imgasdata.backbones import default_preprocessing
    from imgasdata.models import build_model

    root = sample_data(args.data)
    pre = default_preprocessing(args.backbone)
    torch.manual_seed(0)
    model = build_model(args.backbone, 2, "imagenet").eval()
    x = images(root, args.n, pre)
    print(machine_header("bench_forward"))
    print(f"model       {args.backbone} + 2-class head, {args.n} images of 224 px, best of {args.rounds} rounds\n")

    configs = [("torch NCHW, one call per 32", torch_runner(model, 32, False, 2), 32, "torch", 2),
               ("torch NCHW, micro-batch 8 (predict today)", torch_runner(model, 8, False, 2), 8, "torch", 2),
               ("torch NCHW, micro-batch 4", torch_runner(model, 4, False, 2), 4, "torch", 2)]
    for chunk in (32, 16, 8, 4, 2, 1):
        configs.append((f"torch channels-last, micro-batch {chunk}", torch_runner(model, chunk, True, 2),
                        chunk, "torch", 2))
    configs.append(("torch channels-last, micro-batch 4, 1 thread", torch_runner(model, 4, True, 1), 4, "torch", 1))
    if args.jit:
        configs.append(("TorchScript frozen + optimize_for_inference, batch 4", jit_runner(model, 4, 2),
                        4, "jit", 2))
    if args.onnx:
        folder = tempfile.mkdtemp(prefix="imgasdata_bench_forward_")
        for chunk in (32, 8, 4):
            configs.append((f"ONNX Runtime fp32, batch {chunk}", onnx_runner(model, chunk, 2, folder), chunk, "ort", 2))
        configs.append(("ONNX Runtime fp32, batch 4, 1 thread", onnx_runner(model, 4, 1, folder), 4, "ort", 1))
        configs.append(("ONNX Runtime dynamic int8, batch 4", onnx_runner(model, 4, 2, folder, quantize=True),
                        4, "ort", 2))

    reference = configs[0][1](x)
    best, diff = {}, {}
    for label, run, *_ in configs:  # warm-up and output check
        run(x[:8])
        diff[label] = float((run(x) - reference).abs().max())
    for _ in range(args.rounds):
        for label, run, *_ in configs:
            t = time.perf_counter()
            for batch in x.split(32):
                run(batch)
            best[label] = max(best.get(label, 0.0), len(x) / (time.perf_counter() - t))
    torch.set_num_threads(2)
    table = pd.DataFrame([{"forward pass": label, "img/s": round(best[label], 1),
                           "max |prob diff|": f"{diff[label]:.1e}"} for label, *_ in configs])
    print(table.to_string(index=False))
    print(f"\nload avg now {loadavg()}")


if __name__ == "__main__":
    main()
