"""Preprocessing: resizing, normalization and augmentation (the book's chapter 4.2).

A CNN wants every image at one fixed size. The four ways of getting there in
the book's Figure 14 are one option, ``resize``:

* ``squish`` — stretch the whole picture to a square (keeps everything, distorts shapes);
* ``crop`` — cut the central square out of the picture at its own scale (no distortion,
  but a big photo loses most of its content; small pictures are padded);
* ``pad`` — shrink the longer side to fit and fill the rest with black (keeps everything
  undistorted, wastes pixels on borders);
* ``rescale-crop`` — shrink the shorter side to fit, then cut the central square (what
  ImageNet models were trained with; loses the edges of wide pictures).

Preprocessing settings travel as a plain dict (saved in every run's manifest):
``{"resize", "image_size", "crop_pct", "interpolation", "mean", "std"}``.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

from .errors import SettingsError
from .images import ImageLoadError, load_image
from .settings import AUGMENTATIONS, RESIZE_METHODS

_INTERPOLATION = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


def check_preprocessing(pre):
    """Raise :class:`SettingsError` naming the first bad setting in a preprocessing dict."""
    if pre["resize"] not in RESIZE_METHODS:
        raise SettingsError(f"resize must be one of {RESIZE_METHODS}, got {pre['resize']!r}")
    if pre["interpolation"] not in _INTERPOLATION:
        raise SettingsError(f"interpolation must be one of {sorted(_INTERPOLATION)}, got {pre['interpolation']!r}")
    if int(pre["image_size"]) < 16:
        raise SettingsError(f"image_size must be at least 16 pixels, got {pre['image_size']}")
    if not 0 < float(pre.get("crop_pct", 1.0)) <= 1:
        raise SettingsError(f"crop_pct must be in (0, 1], got {pre['crop_pct']}")
    return pre


class Resize:
    """Bring a PIL image to ``size x size`` pixels with one of the four strategies."""

    def __init__(self, size, method="rescale-crop", crop_pct=1.0, interpolation="bilinear"):
        self.size = int(size)
        self.method = method
        self.crop_pct = float(crop_pct)
        self.interpolation = _INTERPOLATION[interpolation]

    def __call__(self, img):
        s = self.size
        w, h = img.size
        if self.method == "squish":
            return F.resize(img, [s, s], interpolation=self.interpolation, antialias=True)
        if self.method == "crop":
            return F.center_crop(img, [s, s])  # pads with black where the picture is smaller
        if self.method == "pad":
            scale = s / max(w, h)
            nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
            img = F.resize(img, [nh, nw], interpolation=self.interpolation, antialias=True)
            left, top = (s - nw) // 2, (s - nh) // 2
            return F.pad(img, [left, top, s - nw - left, s - nh - top], fill=0)
        # rescale-crop: ImageNet style, shorter side to size / crop_pct, then the centre
        short = int(s / self.crop_pct)
        img = F.resize(img, short, interpolation=self.interpolation, antialias=True)
        return F.center_crop(img, [s, s])

    def __repr__(self):
        return f"Resize(size={self.size}, method={self.method!r}, crop_pct={self.crop_pct})"


def decode_size(pre):
    """The smallest shorter side an image needs before resizing (for JPEG draft decoding)."""
    return int(pre["image_size"] / float(pre.get("crop_pct", 1.0))) + 1


def augmentations(augment):
    """Normalize an ``augment`` setting (True, False, or some of ``"crop"``/``"flip"``) to a tuple."""
    if augment is True:
        return AUGMENTATIONS
    if not augment:
        return ()
    chosen = (augment,) if isinstance(augment, str) else tuple(augment)
    unknown = set(chosen) - set(AUGMENTATIONS)
    if unknown:
        raise SettingsError(f"augment may hold {AUGMENTATIONS}, got {sorted(unknown)}")
    return tuple(a for a in AUGMENTATIONS if a in chosen)


def build_transform(pre, train=False, augment=True):
    """A torchvision transform from PIL image to a normalized ``3 x size x size`` tensor.

    For training images (``train=True``) ``augment`` adds random changes so the
    model sees a slightly different picture each epoch (the book's Figure 15):
    ``"crop"``, a random 50-100% of the resized picture stretched back to size,
    and ``"flip"``, a left-right mirror half of the time. ``True`` means both,
    ``False`` neither.
    """
    check_preprocessing(pre)
    size = int(pre["image_size"])
    steps = [Resize(size, pre["resize"], pre.get("crop_pct", 1.0), pre["interpolation"])]
    chosen = augmentations(augment) if train else ()
    if "crop" in chosen:
        steps.append(T.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True,
                                         interpolation=_INTERPOLATION[pre["interpolation"]]))
    if "flip" in chosen:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(pre["mean"], pre["std"])]
    return T.Compose(steps)


def compute_normalization(images, pre):
    """Per-channel mean and standard deviation of resized training images.

    ``images`` is a list of PIL images or paths. Returns ``(mean, std)`` as
    lists of three floats, to use instead of the backbone's ImageNet statistics.
    Files that cannot be read are skipped (training reports them in ``skipped.csv``).
    """
    resize = Resize(int(pre["image_size"]), pre["resize"], pre.get("crop_pct", 1.0), pre["interpolation"])
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for item in images:
        try:
            img = load_image(item, min_size=decode_size(pre)) if not hasattr(item, "size") else item
        except ImageLoadError:
            continue
        arr = np.asarray(resize(img), dtype=np.float64) / 255.0
        total += arr.sum(axis=(0, 1))
        total_sq += (arr ** 2).sum(axis=(0, 1))
        count += arr.shape[0] * arr.shape[1]
    if count == 0:
        raise SettingsError("compute_normalization needs at least one image")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 1e-12))
    return [round(float(m), 4) for m in mean], [round(float(s), 4) for s in std]


def to_display(tensor, pre):
    """Undo normalization: a ``3 x H x W`` tensor back to an ``H x W x 3`` array in [0, 1]."""
    mean = torch.tensor(pre["mean"]).view(3, 1, 1)
    std = torch.tensor(pre["std"]).view(3, 1, 1)
    return (tensor.detach().cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
