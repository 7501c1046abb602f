"""A CNN and its preprocessing as a function from image paths to its outputs, batch by batch.

The one home of "decode a batch, run the model, keep the order, report the files that
could not be read" for every job that runs a CNN over images: labelling with a saved run
(:mod:`imgasdata.predict`), the ImageNet tagger (:mod:`imgasdata.autotag.local`) and
dedup's CNN embeddings (:mod:`imgasdata.prepare.dedup`).
"""

from __future__ import annotations

import torch

from .batches import decode_threads, for_inference, forward, load_batches
from .models import pick_device
from .transforms import build_transform, decode_size


class ImageModel:
    """A model loaded once on ``device``: :meth:`outputs` turns paths into its outputs, batch by batch.

    ``preprocessing`` is a run's preprocessing dict (what :func:`imgasdata.transforms.build_transform`
    takes). ``threads`` decode the next batch while the model works on this one (default: half
    the CPU cores, at least two).
    """

    def __init__(self, model, preprocessing, device="auto", batch_size=32, threads=None):
        self.device = pick_device(device)
        self.model = for_inference(model, self.device)
        self.pre = preprocessing
        self.transform = build_transform(preprocessing, train=False)
        self.batch_size = int(batch_size)
        self.threads = decode_threads() if threads is None else int(threads)

    @torch.no_grad()
    def outputs(self, paths, softmax=False):
        """Yield, one batch at a time and in input order, ``[(path, output or None, error)]``.

        ``output`` is the model's output row for the image as a CPU float tensor (the class
        probabilities with ``softmax``); an unreadable file has ``None`` and the reason.
        """
        paths = list(paths)
        for positions, batch, errors in load_batches(paths, self.transform, self.batch_size,
                                                     decode_size(self.pre), self.threads):
            found = {j: (paths[j], None, msg) for j, msg in errors.items()}
            if batch is not None:
                out = forward(self.model, batch, self.device).float()
                out = (torch.softmax(out, dim=1) if softmax else out).cpu()
                for j, row in zip(positions, out):
                    found[j] = (paths[j], row, "")
            yield [found[j] for j in sorted(found)]
