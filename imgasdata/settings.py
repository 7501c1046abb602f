"""Every training setting, declared once: its default, what it may be, and what it means.

:class:`TrainSettings` is the one list. ``train()`` and ``grid()`` take its
fields as keyword arguments, grid resume compares resolved settings with the
ones a run folder recorded, the manifest records them, and the command line's
options are generated from the fields (help text included). A new setting is
one field here, plus the code that uses it.

Settings are checked the moment they are made, one clear sentence per mistake
(scikit-learn's parameter validation in spirit), before any data is read.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
from dataclasses import dataclass, field

from .backbones import DEFAULT_BACKBONE, default_preprocessing
from .errors import SettingsError

RESIZE_METHODS = ("squish", "crop", "pad", "rescale-crop")
AUGMENTATIONS = ("crop", "flip")


# --- constraints ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    """A number of ``kind`` (int or float) between ``low`` and ``high``; ``None`` means unbounded."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"  # which ends are allowed: both, left, right, neither

    def check(self, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.kind is int and float(value) != int(value):
            return False
        low_ok = self.low is None or (value >= self.low if self.closed in ("both", "left") else value > self.low)
        high_ok = self.high is None or (value <= self.high if self.closed in ("both", "right") else value < self.high)
        return low_ok and high_ok

    def __str__(self):
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        name = "an integer" if self.kind is int else "a number"
        if self.high is None:
            return f"{name} {'>=' if left == '[' else '>'} {self.low}"
        return f"{name} in {left}{self.low}, {self.high}{right}"


@dataclass(frozen=True)
class Options:
    """One of a fixed set of strings."""

    values: tuple

    def check(self, value):
        return value in self.values

    def __str__(self):
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class Text:
    """Any non-empty string (a name or a path)."""

    def check(self, value):
        return isinstance(value, str) and value != ""

    def __str__(self):
        return "a non-empty string"


def setting(default, constraint, help, *, optional=False, searched=False, record=True, cli=None):
    """A field of :class:`TrainSettings` with what the checks, the CLI and the manifest need.

    ``optional``: ``None`` is allowed (meaning "the backbone's own" or "off").
    ``searched``: the command-line ``grid`` takes several values for it (the book's grid).
    ``record``: the setting shapes the model, so the manifest records it and grid
    resume compares it (device and worker count do not change results; how the
    data was split is recorded with the dataset, see ``load_dataset``).
    ``cli``: extra argparse keywords (``nargs``, ``metavar``).
    """
    return field(default=default, metadata={"constraint": constraint, "help": help, "optional": optional,
                                            "searched": searched, "record": record,
                                            "cli": cli or {}})


# --- the settings -------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainSettings:
    """Every setting of a training run, with the book's defaults (SGD, lr 0.001, momentum 0.9, batch 4, StepLR 7/0.1)."""

    backbone: str = setting(DEFAULT_BACKBONE, Text(),
                            "pretrained CNN: efficientnet_lite0/1/2 (weights ship with pip), a torchvision "
                            "model such as resnet18 (the book's), or timm/NAME")
    weights: str = setting("imagenet", Text(), "imagenet, none, or a path to a local weights file")
    mode: str = setting("auto", Options(("auto", "head", "full")),
                        "head: train the new last layer on cached features (fast, CPU); full: train every "
                        "layer (GPU); auto: full on a GPU, head otherwise")
    epochs: int = setting(25, Interval(int, 1), "passes over the training images")
    lr: float = setting(0.001, Interval(float, 0, None, "neither"), "learning rate", searched=True)
    momentum: float = setting(0.9, Interval(float, 0, 1, "left"), "SGD momentum", searched=True)
    batch_size: int = setting(4, Interval(int, 1), "images per weight update", searched=True)
    step_size: int = setting(7, Interval(int, 1), "epochs between learning-rate drops (StepLR)")
    gamma: float = setting(0.1, Interval(float, 0, 1, "right"), "factor of each learning-rate drop")
    dropout: float = setting(0.0, Interval(float, 0, 1, "left"), "dropout before the new last layer",
                             searched=True)
    optimizer: str = setting("sgd", Options(("sgd", "adam")), "optimizer (the book uses sgd)")
    weight_decay: float = setting(0.0, Interval(float, 0), "L2 penalty on the weights")
    resize: str | None = setting(None, Options(RESIZE_METHODS),
                                 "resizing strategy (default: the backbone's own, rescale-crop)", optional=True)
    image_size: int | None = setting(None, Interval(int, 16), "input size in pixels (default: the backbone's)",
                                     optional=True)
    normalize: str = setting("backbone", Options(("backbone", "dataset")),
                             "normalize with the backbone's ImageNet statistics or the training images'")
    augment: tuple = setting(AUGMENTATIONS, Options(AUGMENTATIONS),
                             "random changes to training images in full mode (default: crop flip)",
                             cli={"nargs": "+"})
    select: str = setting("loss", Options(("loss", "accuracy")), "validation figure that picks the best epoch")
    patience: int | None = setting(None, Interval(int, 1), "stop after this many epochs without improvement",
                                   optional=True)
    positive: str | None = setting(None, Text(),
                                   "the positive class of a binary task (default: 'positive' when the classes "
                                   "are negative/positive)", optional=True)
    seed: int = setting(0, Interval(int, 0), "seed of the split, initialisation and batch order")
    split: tuple = setting((0.8, 0.1, 0.1), Interval(float, 0, 1),
                           "train/val/test fractions for a dataset that is not split into folders yet",
                           cli={"nargs": 3, "metavar": ("TRAIN", "VAL", "TEST")}, record=False)
    device: str = setting("auto", Text(), "auto, cpu, cuda, cuda:1 or mps", record=False)
    num_workers: int = setting(0, Interval(int, 0), "DataLoader processes in full mode", record=False)

    def __post_init__(self):
        # Normalise what Python callers may pass loosely (True for augment, lists for tuples,
        # numpy numbers), then check every field against its constraint.
        augment = self.augment
        if augment is True:
            augment = AUGMENTATIONS
        elif not augment:
            augment = ()
        elif isinstance(augment, str):
            augment = (augment,)
        object.__setattr__(self, "augment", tuple(augment))
        object.__setattr__(self, "split", tuple(self.split))
        object.__setattr__(self, "weights", str(self.weights))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            _check(f, value)
            constraint = f.metadata["constraint"]
            if isinstance(constraint, Interval) and value is not None:  # 4.0 -> 4, numpy -> Python
                cast = constraint.kind
                object.__setattr__(self, f.name, tuple(map(cast, value)) if isinstance(value, tuple) else cast(value))
        # keep the canonical order of the augmentations, so (flip, crop) and (crop, flip) are one setting
        object.__setattr__(self, "augment", tuple(a for a in AUGMENTATIONS if a in self.augment))
        if abs(sum(self.split) - 1.0) > 1e-6:
            raise SettingsError(f"split fractions must add up to 1, got {self.split}")

    # --- construction ------------------------------------------------------------------------

    @classmethod
    def names(cls):
        """The setting names, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_kwargs(cls, **kwargs):
        """Settings from keyword arguments, naming any unknown ones (with the closest known name)."""
        unknown = sorted(set(kwargs) - set(cls.names()))
        if unknown:
            hints = [difflib.get_close_matches(u, cls.names(), n=1) for u in unknown]
            hint = "; did you mean " + ", ".join(h[0] for h in hints if h) + "?" if any(hints) else "."
            raise SettingsError(f"unknown setting(s) {unknown}{hint} Known settings: {', '.join(cls.names())}")
        return cls(**kwargs)

    def replace(self, **changes):
        """A copy with some settings changed (and checked)."""
        return dataclasses.replace(self, **changes)

    # --- what depends on the machine and the backbone ----------------------------------------

    def resolve(self, device):
        """The settings as a run really applies them on ``device`` (a ``torch.device``).

        ``mode="auto"`` becomes ``full`` on a GPU and ``head`` otherwise; ``resize``
        and ``image_size`` left at ``None`` become the backbone's own; head mode
        applies no augmentation, so none is recorded. Resolving twice changes nothing.
        """
        mode = self.mode if self.mode != "auto" else ("full" if device.type == "cuda" else "head")
        own = default_preprocessing(self.backbone)
        return self.replace(mode=mode, resize=self.resize or own["resize"],
                            image_size=self.image_size or own["image_size"],
                            augment=self.augment if mode == "full" else ())

    def preprocessing(self):
        """The preprocessing dict of these settings: the backbone's own, with resize and size overridden."""
        pre = default_preprocessing(self.backbone)
        pre.update({k: v for k, v in (("resize", self.resize), ("image_size", self.image_size)) if v is not None})
        pre["normalize"] = self.normalize
        return pre

    def recorded(self):
        """The settings that shape a model, as a JSON-ready dict (what a manifest records)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self) if f.metadata["record"]}


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def _check(f, value):
    constraint, optional = f.metadata["constraint"], f.metadata["optional"]
    if value is None:
        if optional:
            return
        raise SettingsError(f"{f.name} must be {constraint}, got None")
    if isinstance(value, tuple):  # augment, split: every element
        bad = [v for v in value if not constraint.check(v)]
        if bad:
            raise SettingsError(f"{f.name} may only hold values that are {constraint}; got {list(value)}")
        return
    if not constraint.check(value):
        raise SettingsError(f"{f.name} must be {constraint}, got {value!r}")


def settings_table():
    """Every setting with its default and what it may be, as a DataFrame (for the docs and notebooks)."""
    import pandas as pd  # not at the top: the command line's options come from this module

    return pd.DataFrame([{"setting": f.name, "default": f.default, "allowed": str(f.metadata["constraint"])
                          + (" or None" if f.metadata["optional"] else ""), "meaning": f.metadata["help"]}
                         for f in dataclasses.fields(TrainSettings)])


def add_arguments(parser, grid=False):
    """Add one command-line option per setting to ``parser`` (``--batch-size`` for ``batch_size``).

    In ``grid`` mode the searched settings (learning rate, momentum, batch size,
    dropout) take several values each. Types, choices, defaults and help come
    from the field, so the command line cannot drift from :class:`TrainSettings`.
    """
    for f in dataclasses.fields(TrainSettings):
        meta = f.metadata
        constraint = meta["constraint"]
        default = _jsonable(f.default)
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        kwargs = {"help": f"{meta['help']} (default: {shown})" if shown is not None else meta["help"],
                  "default": default}
        if isinstance(constraint, Interval):
            kwargs["type"] = constraint.kind
        if isinstance(constraint, Options):
            kwargs["choices"] = list(constraint.values)
        kwargs.update(meta["cli"])
        if grid and meta["searched"]:
            kwargs.update(nargs="+", default=[f.default])
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kwargs)
    parser.add_argument("--no-augment", action="store_true", help="no random crops or flips in full mode")


def searched():
    """Names of the settings the command-line ``grid`` searches (several values each)."""
    return [f.name for f in dataclasses.fields(TrainSettings) if f.metadata["searched"]]


def from_arguments(args):
    """The settings given on the command line, as keyword arguments (grid lists kept as lists)."""
    kwargs = {name: getattr(args, name) for name in TrainSettings.names()}
    if getattr(args, "no_augment", False):
        kwargs["augment"] = ()
    return kwargs
