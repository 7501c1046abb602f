"""The classifier: a pretrained backbone with its last layer replaced.

A model here is a :class:`Classifier`: an ImageNet-pretrained ``backbone`` that
turns an image into a feature vector, and a new ``head`` (dropout + one linear
layer with one output per class) that replaces the backbone's 1000-way
ImageNet layer, as in the book's chapter 4.4. Where backbones come from is
:mod:`imgasdata.backbones`; reading weights files is :mod:`imgasdata.weights`;
saving and loading run folders is :mod:`imgasdata.runs`.

``weights`` is ``"imagenet"``, a path to a local weights file (safetensors; a
``.pt``/``.pth`` state dict only with ``allow_pt=True``), or ``"none"`` (random
initialisation).
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import DEFAULT_BACKBONE, find_source
from .errors import SettingsError, WeightsError
from .weights import load_state_dict_file


class Classifier(nn.Module):
    """A pretrained backbone (image -> features) followed by a new head (features -> class scores)."""

    def __init__(self, backbone, num_features, num_classes, dropout=0.0):
        super().__init__()
        self.backbone = backbone
        self.head = new_head(num_features, num_classes, dropout)

    def forward(self, x):
        return self.head(self.backbone(x))


def new_head(num_features, num_classes, dropout=0.0):
    """Dropout + a linear layer, weights drawn from N(0, 0.01^2) and zero bias as in the book."""
    linear = nn.Linear(num_features, num_classes)
    nn.init.normal_(linear.weight, mean=0.0, std=0.01)
    nn.init.zeros_(linear.bias)
    return nn.Sequential(nn.Dropout(p=float(dropout)), linear)


def imagenet_model(backbone=DEFAULT_BACKBONE, weights="imagenet", allow_pt=False):
    """The backbone with its original ImageNet layer, pretrained weights loaded.

    ``allow_pt=True`` lets ``weights`` be a ``.pt``/``.pth`` file (a pickle, read with
    ``weights_only=True``); see :func:`imgasdata.weights.load_state_dict_file`.
    """
    source = find_source(backbone)
    weights = str(weights)
    model = source.build(backbone)
    if weights == "imagenet":
        model.load_state_dict(source.imagenet_state(backbone, model), strict=True)
    elif weights != "none":
        _load_into(model, load_state_dict_file(weights, allow_pt=allow_pt), weights)
    return model.eval()


def _load_into(model, state, source):
    """Load a user's weights file; only the final ImageNet layer may be missing or differ."""
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    # BatchNorm's num_batches_tracked counters are absent from checkpoints saved before
    # PyTorch 0.4.1 and do not affect predictions, so they may be missing.
    missing = [k for k in own if k not in usable and not k.endswith(".num_batches_tracked")]
    last = _last_linear_name(model)
    if any(not k.startswith(last + ".") for k in missing) or not usable:
        raise WeightsError(
            f"Weights in {source} do not match this backbone: {len(missing)} of {len(own)} tensors "
            f"missing or of another shape (first: {missing[:3]})"
        )
    # Tensors the model has no place for mean another architecture (e.g. resnet34 weights
    # for resnet18 hold all of resnet18's tensors and more); loading would silently mix them.
    extra = [k for k in state if k not in own and not k.startswith(last + ".")]
    if extra:
        raise WeightsError(
            f"Weights in {source} do not match this backbone: {len(extra)} tensors in the file "
            f"have no place in it (first: {extra[:3]})"
        )
    model.load_state_dict(usable, strict=False)


def _last_linear_name(model):
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise SettingsError(f"{type(model).__name__} has no final linear layer to replace")
    return names[-1]


def _strip_last_layer(model):
    """Replace the final linear layer by an identity; return its number of input features."""
    name = _last_linear_name(model)
    parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    child = name.rsplit(".", 1)[-1]
    num_features = getattr(parent, child).in_features
    setattr(parent, child, nn.Identity())
    return num_features


def build_model(backbone=DEFAULT_BACKBONE, num_classes=2, weights="imagenet", dropout=0.0, allow_pt=False):
    """A :class:`Classifier`: the pretrained backbone with a new ``num_classes``-way last layer."""
    if int(num_classes) < 2:
        raise SettingsError(f"num_classes must be at least 2, got {num_classes}")
    model = imagenet_model(backbone, weights, allow_pt)
    num_features = _strip_last_layer(model)
    return Classifier(model, num_features, int(num_classes), dropout)


def pick_device(device="auto"):
    """``cuda`` when a GPU is there, else Apple's ``mps``, else ``cpu``; or the device asked for."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")

