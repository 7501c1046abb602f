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

from ..settings import DEFAULT_BACKBONE


@lru_cache(maxsize=2)
def _backbone(backbone, weights):
    """The frozen backbone (ImageNet layer removed) and its preprocessing, built once per process."""
    from ..backbones import default_preprocessing
    from ..models import build_model

    return build_model(backbone, 2, weights).backbone.eval(), default_preprocessing(backbone)


def embed(paths, backbone=DEFAULT_BACKBONE, weights="imagenet", device="auto", progress=True):
    """Backbone features of ``paths``. Returns ``(features, errors)``.

    ``features`` is an ``N x D`` float32 array whose rows of unreadable images are NaN;
    ``errors`` maps positions in ``paths`` to the reason an image could not be read.
    """
    from ..batches import feature_cache
    from ..models import pick_device

    module, pre = _backbone(backbone, str(weights))
    feats, errors = feature_cache.features(module, backbone, str(weights), [str(p) for p in paths], pre,
                                           pick_device(device), progress)
    return feats.numpy().astype(np.float32), dict(errors)


def head(seed=0, C=1.0):
    """The classifier fitted on features: standardised inputs, multinomial logistic regression.

    Standardising puts every backbone's features on one scale, so one ``C`` suits them all.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))
