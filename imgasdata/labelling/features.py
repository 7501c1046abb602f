"""Image embeddings and the small classifier this chapter fits on them (head mode).

Every image goes through the package's one feature path: the frozen backbone and
:data:`imgasdata.batches.feature_cache`, as ``train``'s head mode does, so images whose
features were computed once (by a grid, a previous round, notebook cells) are not decoded
again in the same session. On those features a scikit-learn logistic regression plays the
part of the head: it fits in well under a second, which is what lets ``suggest`` refit after
every round and ``label-issues`` fit one model per fold.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..backbones import DEFAULT_BACKBONE


@lru_cache(maxsize=2)
def _backbone(backbone, weights):
    """The frozen backbone (ImageNet layer removed) and its preprocessing, built once per process."""
    from ..backbones import default_preprocessing
    from ..models import build_model

    return build_model(backbone, 2, weights).backbone.eval(), default_preprocessing(backbone)


#: Features already computed in this process, per image: ``(backbone, weights, file stamp) -> vector``.
#: ``batches.feature_cache`` keys whole image lists; this per-image layer lets a later call on another
#: list (the pool of the next round, a subset for label issues) reuse every image it shares.
_per_image = {}
MAX_IMAGES = 100_000  # about 0.5 GB of 1280-d features


def embed(paths, backbone=DEFAULT_BACKBONE, weights="imagenet", device="auto", progress=True):
    """Backbone features of ``paths``. Returns ``(features, errors)``.

    ``features`` is an ``N x D`` float32 array whose rows of unreadable images are NaN;
    ``errors`` maps positions in ``paths`` to the reason an image could not be read (unreadable
    images are tried again on every call, so a repaired file is picked up).
    """
    from ..batches import feature_cache, file_stamp
    from ..errors import DataError
    from ..models import pick_device

    paths = [str(p) for p in paths]
    keys = [(backbone, str(weights), file_stamp(p)) for p in paths]
    todo = [i for i, k in enumerate(keys) if k not in _per_image]
    errors = {}
    if todo:
        from ..images import check_images

        module, pre = _backbone(backbone, str(weights))
        try:
            feats, errs = feature_cache.features(module, backbone, str(weights), [paths[i] for i in todo], pre,
                                                 pick_device(device), progress)
        except DataError:
            if len(todo) == len(paths):
                raise
            # every image not seen before is unreadable, the others are known: rows with reasons
            checked = check_images([paths[i] for i in todo], progress=False)["error"]
            errs = {j: msg or f"{paths[todo[j]]}: could not be read" for j, msg in enumerate(checked)}
        errors = {todo[j]: msg for j, msg in errs.items()}
        for j, i in enumerate(todo):
            if j not in errs:
                if len(_per_image) >= MAX_IMAGES:
                    _per_image.pop(next(iter(_per_image)))
                _per_image[keys[i]] = feats[j].numpy().astype(np.float32)
    if len(errors) == len(paths):
        raise DataError(f"None of the {len(paths)} images could be read; first error: {errors[0]}")
    dim = len(next(_per_image[k] for i, k in enumerate(keys) if i not in errors))
    out = np.full((len(paths), dim), np.nan, dtype=np.float32)
    for i, k in enumerate(keys):
        if i not in errors:
            out[i] = _per_image[k]
    return out, errors


def one_thread():
    """A context in which NumPy's and scikit-learn's BLAS use one thread (threadpoolctl).

    The matrices here are small: with two BLAS threads on a busy 2-core laptop each thread
    waits for the other at every product, and one logistic-regression fit was measured taking
    1.8 s instead of 0.3 s; one thread also gives the same sums on every run.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


#: Inverse strength of the head's L2 penalty. Strong, because a few dozen labels face 1280
#: features: on the sample data's planted label errors (benchmarks/bench_labelling.py), C=0.01
#: raised label-issues' precision from 0.48 to 0.62 (binary) at the same recall as C=1.
C = 0.01


def head(seed=0, C=C):
    """The classifier fitted on features: standardised inputs, multinomial logistic regression.

    Standardising puts every backbone's features on one scale, so one ``C`` suits them all.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))
