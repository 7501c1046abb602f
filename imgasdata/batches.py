"""Turning image files into batches of tensors: the one path from file to model input.

Training in both modes, prediction, evaluation and the ImageNet tagger all read
images here, so every image is decoded the same way (``images.load_image`` with
JPEG draft decoding down to what the preprocessing needs) wherever it is used.
Head mode's features are kept in a :class:`FeatureCache`, so a grid of many
runs computes them once.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from .errors import DataError
from .images import ImageLoadError, load_image
from .progress import progress as progress_bar
from .transforms import build_transform, decode_size


def load_one(path, transform, min_size):
    """Decode and transform one file. Returns ``(tensor, "")`` or ``(None, error message)``.

    Only a file that cannot be read as an image (:class:`~imgasdata.images.ImageLoadError`:
    missing, damaged, not an image, too large) becomes an error message; anything else,
    such as a bug in ``transform``, raises with its traceback instead of costing rows silently.
    """
    try:
        image = load_image(path, min_size=min_size)
    except ImageLoadError as exc:  # one bad file becomes an error row, never a crash
        msg = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
        return None, msg
    return transform(image), ""


def load_batches(paths, transform, batch_size=32, min_size=None, workers=2):
    """Decode and transform images in batches, the next batch loading while this one is used.

    Yields ``(positions, tensor, errors)``: the positions in ``paths`` of the
    images that loaded, their stacked tensor (or ``None`` if none loaded), and
    ``{position: message}`` for those that did not. Pillow releases the GIL
    while decoding, so worker threads overlap decoding with the model's work.
    """
    paths = list(paths)
    chunks = [range(i, min(i + batch_size, len(paths))) for i in range(0, len(paths), batch_size)]
    if not chunks:
        return
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        def submit(chunk):
            return [pool.submit(load_one, paths[j], transform, min_size) for j in chunk]

        pending = submit(chunks[0])
        for k, chunk in enumerate(chunks):
            results = [f.result() for f in pending]
            if k + 1 < len(chunks):
                pending = submit(chunks[k + 1])
            good = [(j, t) for j, (t, _) in zip(chunk, results) if t is not None]
            errors = {j: e for j, (t, e) in zip(chunk, results) if t is None}
            tensor = torch.stack([t for _, t in good]) if good else None
            yield [j for j, _ in good], tensor, errors


def decode_threads():
    """How many threads decode images beside the model on a CPU: half the cores, at least two.

    Large photos cost about as much CPU to decode as the model's forward pass, so two
    threads keep a 2-core machine's model fed; on bigger machines half the cores decode
    while torch's intra-op threads run the model.
    """
    return max(2, (os.cpu_count() or 2) // 2)


def for_inference(model, device):
    """Prepare ``model`` for :func:`forward` on ``device``: eval mode, and channels-last memory on a CPU.

    Channels-last (NHWC) lets oneDNN run the convolutions without reordering every
    activation; outputs change only in the last float digits (~1e-7). Converts in place
    and returns the model.
    """
    model = model.to(device).eval()
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    return model


def forward(model, batch, device, chunk=4):
    """Run ``model`` on a batch, in micro-batches of ``chunk`` channels-last images on a CPU.

    At 224 px the intermediate buffers of 32 images are too large for PyTorch's
    CPU allocator to reuse, so every pass maps fresh memory from the system;
    micro-batches of 4 stay in reused memory and, in channels-last format (see
    :func:`for_inference`), ran about 5 times faster than one call on 32 images in
    NCHW on a 2-core CPU (benchmarks/bench_forward.py). GPUs take the whole batch.
    """
    if device.type != "cpu":
        return model(batch.to(device, non_blocking=True))
    batch = batch.contiguous(memory_format=torch.channels_last)
    return torch.cat([model(part) for part in batch.split(chunk)])


@torch.no_grad()
def extract_features(backbone, paths, pre, device="cpu", batch_size=32, progress=True, workers=None):
    """Run a frozen backbone once over images. Returns ``(features, errors)``.

    ``features`` is an ``N x D`` float tensor (rows of unreadable images are
    NaN) and ``errors`` maps positions in ``paths`` to the reason they failed.
    """
    device = torch.device(device)
    backbone = for_inference(backbone, device)
    workers = decode_threads() if workers is None else workers
    transform = build_transform(pre, train=False)
    feats, errors = None, {}
    bar = progress_bar(total=len(paths), desc="computing features", unit="img", enabled=progress)
    for positions, batch, errs in load_batches(paths, transform, batch_size, decode_size(pre), workers):
        errors.update(errs)
        if batch is not None:
            out = forward(backbone, batch, device).float().cpu()
            if feats is None:
                feats = torch.full((len(paths), out.shape[1]), float("nan"))
            feats[positions] = out
        bar.update(len(positions) + len(errs))
    bar.close()
    if feats is None:
        raise DataError(f"None of the {len(paths)} images could be read; first error: "
                        f"{next(iter(errors.values()), '')}")
    return feats, errors


def file_stamp(path):
    """``(path, size, modification time)``, or ``(path, None, None)`` for a missing file."""
    try:
        st = Path(path).stat()
    except OSError:
        return (str(path), None, None)
    return (str(path), st.st_size, st.st_mtime_ns)


class FeatureCache:
    """Backbone features of image lists, kept in memory for head-mode training.

    Keyed on the backbone, its weights, the preprocessing, the device and every
    file's size and modification time, so an image edited in place gets new
    features. Holds at most ``max_entries`` image lists (features of 10,000
    images are about 50 MB); the oldest is dropped first. ``clear()`` empties it.
    """

    def __init__(self, max_entries=4):
        self.max_entries = int(max_entries)
        self._store = {}

    def __len__(self):
        return len(self._store)

    def clear(self):
        """Forget every cached feature matrix."""
        self._store.clear()

    def features(self, backbone_module, backbone_name, weights, paths, pre, device, progress=True):
        """``(features, errors)`` for ``paths``, computed with :func:`extract_features` on a miss."""
        key = (backbone_name, str(weights), json.dumps(pre, sort_keys=True), str(device),
               tuple(file_stamp(p) for p in paths))
        if key not in self._store:
            if len(self._store) >= self.max_entries:
                self._store.pop(next(iter(self._store)))
            self._store[key] = extract_features(backbone_module, list(paths), pre, device, progress=progress)
        return self._store[key]


#: The cache head-mode training uses; ``feature_cache.clear()`` frees its memory.
feature_cache = FeatureCache()


class ImageDataset(torch.utils.data.Dataset):
    """Images and integer targets for a DataLoader (full mode), decoded like everywhere else.

    Files go through :func:`load_one` (the same decoding, JPEG draft included,
    as head mode and prediction); an unreadable file raises here, so full mode
    checks every file before training (see ``train``).
    """

    def __init__(self, paths, targets, transform, min_size=None):
        self.paths, self.targets, self.transform, self.min_size = list(paths), list(targets), transform, min_size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(load_image(self.paths[i], min_size=self.min_size)), self.targets[i]
