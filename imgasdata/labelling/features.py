"""Image embeddings and the small classifier this chapter fits on them (head mode).

Every image goes through the package's one feature path: the frozen backbone and
:data:`imgasdata.batches.feature_cache`, as ``train``'s head mode does, so images whose
features were computed once (by a grid, a previous round, notebook cells) are not decoded
again in the same session. Given a ``cache`` file (``--cache`` of ``suggest`` and
``label-issues``), features also outlive the process: they are kept per image in
:class:`imgasdata.file_cache.HashCache`, the file ``dedup --method cnn`` keeps its embeddings
in (the same numbers), so the next round of ``suggest`` on a large pool decodes only the
images that are new or changed. On those features a scikit-learn logistic regression plays the
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


#: Features already computed in this process, per image:
#: ``(backbone, weights, path key, file stamp) -> vector`` (stamps of :mod:`imgasdata.file_cache`).
#: ``batches.feature_cache`` keys whole image lists; this per-image layer lets a later call on another
#: list (the pool of the next round, a subset for label issues) reuse every image it shares.
_per_image = {}
MAX_IMAGES = 100_000  # about 0.5 GB of 1280-d features
#: With a disk cache, up to this many images it does not hold are first checked for readability.
FEW = 32


def _remember(key, vector):
    """Keep one image's features in :data:`_per_image`, dropping the oldest past :data:`MAX_IMAGES`."""
    if key not in _per_image and len(_per_image) >= MAX_IMAGES:
        _per_image.pop(next(iter(_per_image)))
    _per_image[key] = vector


def embed(paths, backbone=DEFAULT_BACKBONE, weights="imagenet", device="auto", progress=True, cache=None):
    """Backbone features of ``paths``. Returns ``(features, errors)``.

    ``paths`` may be files or a table's path texts (:func:`imgasdata.paths.path_text`).
    ``features`` is an ``N x D`` float32 array whose rows of unreadable images are NaN;
    ``errors`` maps positions in ``paths`` to the reason an image could not be read (unreadable
    images are tried again on every call, so a repaired file is picked up).

    ``cache`` is an SQLite file (created when missing; :class:`imgasdata.file_cache.HashCache`)
    that keeps the features between processes: images whose file stamp is in it are not
    decoded again, the others are computed and stored (never an unreadable one). It is the
    file ``dedup --method cnn --cache`` writes, whose embeddings are these features, and so
    holds ImageNet features only: other ``weights`` with a cache raise :class:`SettingsError`.
    """
    from .. import file_cache
    from ..errors import DataError, SettingsError
    from ..paths import path_key, real_path

    if cache is not None and str(weights) != "imagenet":
        raise SettingsError(f"The feature cache holds ImageNet features only; leave out the cache to use the "
                            f"weights {weights}")
    # a table names a file whose name is not UTF-8 by its \xNN text (pandas cannot hold the real
    # name): real_path finds the file again
    paths = [str(real_path(p)) for p in paths]
    # the stamp is taken before the image is read: a file changed meanwhile is computed again next time
    keys = [(backbone, str(weights), path_key(p), file_cache.file_stamp(p)) for p in paths]
    todo = [i for i, k in enumerate(keys) if k not in _per_image]
    errors = {}
    if todo and cache is not None:
        method = file_cache.embedding_key(backbone)
        with file_cache.HashCache(cache) as store:
            known = store.get(method, {keys[i][2]: keys[i][3] for i in todo})
            hits = [i for i in todo if keys[i][2] in known]
            for i, vector in zip(hits, file_cache.text_vectors([known[keys[i][2]] for i in hits])):
                _remember(keys[i], vector)
            todo = [i for i in todo if keys[i][2] not in known]
            if 0 < len(todo) <= FEW:
                # a round whose only misses are a few unreadable files (tried again every time, in
                # case they were repaired) need not load torch and the model to find that out
                from ..images import check_images

                checked = check_images([paths[i] for i in todo], progress=False)["error"]
                errors = {i: msg for i, msg in zip(todo, checked) if msg}
                todo = [i for i in todo if i not in errors]
            if todo:
                def save(fresh):  # unreadable images are not stored: they are tried again next time
                    store.put(method, [(keys[i][2], keys[i][3], file_cache.vector_text(v))
                                       for i, v in fresh.items() if keys[i][3] is not None])

                errors.update(_compute(paths, keys, todo, backbone, str(weights), device, progress, save))
    elif todo:
        errors = _compute(paths, keys, todo, backbone, str(weights), device, progress)
    if len(errors) == len(paths):
        raise DataError(f"None of the {len(paths)} images could be read; first error: {errors[0]}")
    dim = len(next(_per_image[k] for i, k in enumerate(keys) if i not in errors))
    out = np.full((len(paths), dim), np.nan, dtype=np.float32)
    for i, k in enumerate(keys):
        if i not in errors:
            out[i] = _per_image[k]
    return out, errors


#: With a disk cache, features are computed and stored this many images at a time, so a run
#: stopped by Ctrl-C keeps what it computed and the next one resumes from there.
SAVE_EVERY = 256


def _compute(paths, keys, todo, backbone, weights, device, progress, save=None):
    """Compute the features of the images at positions ``todo`` of ``paths`` into :data:`_per_image`.

    Without ``save`` all go through :data:`imgasdata.batches.feature_cache` at once; with it,
    :data:`SAVE_EVERY` at a time (one progress bar), ``save({position: features})`` after each
    block. Returns the reasons of the unreadable images by position.
    """
    from ..batches import extract_features, feature_cache
    from ..errors import DataError
    from ..images import check_images
    from ..models import pick_device
    from ..progress import progress as progress_bar

    module, pre = _backbone(backbone, weights)
    device = pick_device(device)
    blocks = [todo] if save is None else [todo[s:s + SAVE_EVERY] for s in range(0, len(todo), SAVE_EVERY)]
    bar = progress_bar(total=len(todo), desc="computing features", unit="img", enabled=progress and save is not None)
    errors = {}
    for block in blocks:
        files = [paths[i] for i in block]
        try:
            if save is None:
                feats, errs = feature_cache.features(module, backbone, weights, files, pre, device, progress)
            else:  # blocks of one list would only crowd out the list cache's useful entries
                feats, errs = extract_features(module, files, pre, device, progress=False)
        except DataError:
            if len(block) == len(paths):
                raise
            # every image of the block is unreadable (known images may follow): rows with reasons
            checked = check_images(files, progress=False)["error"]
            errs = {j: msg or f"{files[j]}: could not be read" for j, msg in enumerate(checked)}
        fresh = {}
        for j, i in enumerate(block):
            if j in errs:
                errors[i] = errs[j]
            else:
                fresh[i] = feats[j].numpy().astype(np.float32)
                _remember(keys[i], fresh[i])
        if save is not None:
            save(fresh)
        bar.update(len(block))
    bar.close()
    return errors


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
