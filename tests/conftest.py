"""Shared fixtures: real sample data, one trained run reused everywhere, and a zoo of bad image files.

Expensive things are session-scoped:

* ``sample_data`` builds the Twemoji/photo datasets once (about 2 s);
* ``pair_dir`` is a real two-class task copied from the multiclass set
  (``food_drink`` vs ``smileys_emotion``, book layout train/val/test);
* ``trained_run`` fine-tunes ONE head-mode model on it; predict, evaluate and
  CLI tests all reuse that run folder. Further head-mode trainings on the same
  folder reuse the backbone features that ``imgasdata.train`` caches in-process.
"""

from __future__ import annotations

import shutil
import warnings
import struct
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

#: Sizes for the sample data (the visual multiclass groups have 24 emoji at most).
SAMPLE_SIZES = {"n_per_class": 20, "n_per_group": 24, "n_new": 6, "n_copies": 10}
#: Emoji per Unicode category in the two-class task: 70 gives a 84/28/28 split (60/20/20).
PAIR_SIZE = 70
PAIR = ("food_drink", "smileys_emotion")

#: Settings of the shared acceptance run (head mode, real ImageNet weights, default 224 px).
TRAIN_SETTINGS = {"mode": "head", "epochs": 15, "lr": 0.01, "seed": 0, "device": "cpu", "progress": False}


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory):
    from imgasdata.sample_data import build_sample_data

    out = tmp_path_factory.mktemp("sample_data")
    return build_sample_data(out, seed=0, **SAMPLE_SIZES)


@pytest.fixture(scope="session")
def pair_dir(sample_data, tmp_path_factory):
    """A real two-class dataset in the book's layout: DATA/{train,val,test}/{food_drink,smileys_emotion}."""
    from imgasdata.sample_data import build_unicode_categories

    six = build_unicode_categories(tmp_path_factory.mktemp("categories") / "six", seed=0, n_per_group=PAIR_SIZE)
    dst = tmp_path_factory.mktemp("pair") / "data"
    for split in ("train", "val", "test"):
        for cls in PAIR:
            shutil.copytree(six / split / cls, dst / split / cls)
    return dst


@pytest.fixture(scope="session")
def trained_run(pair_dir, tmp_path_factory):
    """``(run_dir, Run)`` of the one shared head-mode training run."""
    import warnings

    from imgasdata.train import train

    out = tmp_path_factory.mktemp("runs") / "pair_head"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = train(pair_dir, out, **TRAIN_SETTINGS)
    return out, run


@pytest.fixture(scope="session")
def tiny_dir(pair_dir, tmp_path_factory):
    """A very small real two-class dataset (6/2/2 per class) for full-mode and bad-file runs."""
    dst = tmp_path_factory.mktemp("tiny") / "data"
    for split, n in (("train", 6), ("val", 2), ("test", 2)):
        for cls in PAIR:
            (dst / split / cls).mkdir(parents=True)
            for f in sorted((pair_dir / split / cls).glob("*.png"))[:n]:
                shutil.copyfile(f, dst / split / cls / f.name)
    return dst


# --------------------------------------------------------------------- bad / odd files


def run_cli(capsys, *args):
    """``main(args)`` with warnings silenced; returns ``(exit status, stdout, stderr)``."""
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from imgasdata.cli import main

        code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png_bytes(width, height):
    """A tiny PNG whose header claims ``width x height`` RGB pixels (a decompression bomb look-alike)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _noise(w, h, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def make_image_file(kind, folder, name=None):
    """Write one odd or broken image file of the given ``kind`` into ``folder``; returns its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ext = {"text_as_jpg": ".jpg", "png_as_jpg": ".jpg", "cmyk": ".jpg", "exif6": ".jpg", "big_jpeg": ".jpg",
           "truncated_jpeg": ".jpg", "gif_animated": ".gif"}.get(kind, ".png")
    path = folder / (name or f"{kind}{ext}")
    if kind == "rgb":
        Image.fromarray(_noise(32, 24)).save(path)
    elif kind == "corrupt":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    elif kind == "truncated_png":
        buf = path.with_suffix(".full.png")
        Image.fromarray(_noise(200, 200)).save(buf)
        data = buf.read_bytes()
        buf.unlink()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "truncated_jpeg":
        buf = path.with_suffix(".full.jpg")
        Image.fromarray(_noise(300, 200)).save(buf, quality=95)
        data = buf.read_bytes()
        buf.unlink()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "zero":
        path.write_bytes(b"")
    elif kind == "text_as_jpg":
        path.write_text("this is not a picture, it is a text file someone named .jpg\n")
    elif kind == "png_as_jpg":
        Image.new("RGB", (30, 20), (0, 128, 255)).save(path, format="PNG")
    elif kind == "gray":
        Image.new("L", (20, 10), 100).save(path)
    elif kind == "cmyk":
        Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK
    elif kind == "i16":
        ramp = np.linspace(0, 65535, 256).round().astype(np.uint16)
        Image.fromarray(np.tile(ramp, (4, 1))).save(path)  # a 256 x 4 horizontal ramp, mode I;16
    elif kind == "i16_dark":
        Image.fromarray(np.full((4, 8), 1000, dtype=np.uint16)).save(path)  # dark 16-bit grey
    elif kind == "palette_transparent":
        img = Image.new("P", (10, 10), 0)
        img.putpalette([255, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)  # 0 = red, 1 = green
        for x in range(5, 10):
            for y in range(10):
                img.putpixel((x, y), 1)
        img.save(path, transparency=1)  # right half (green) is transparent
    elif kind == "rgba":
        arr = np.zeros((10, 10, 4), dtype=np.uint8)
        arr[:, :5] = (0, 0, 255, 255)  # left: opaque blue
        arr[:, 5:] = (255, 0, 0, 0)  # right: fully transparent red
        Image.fromarray(arr, mode="RGBA").save(path)
    elif kind == "gif_animated":
        frames = [Image.new("RGB", (12, 12), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    elif kind == "exif6":
        arr = np.zeros((20, 40, 3), dtype=np.uint8)  # 40 wide, 20 high
        arr[:, :20] = (255, 0, 0)  # left half red
        arr[:, 20:] = (0, 0, 255)  # right half blue
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
        Image.fromarray(arr).save(path, quality=95, exif=exif.tobytes())
    elif kind == "big_jpeg":
        y, x = np.mgrid[0:1600, 0:2400]
        arr = np.stack([(x % 256), (y % 256), ((x + y) % 256)], axis=-1).astype(np.uint8)
        Image.fromarray(arr).save(path, quality=80)
    elif kind == "huge_header":
        path.write_bytes(huge_png_bytes(30000, 30000))
    elif kind == "big_header":
        # over Pillow's warning limit (89.5 MP) but under its hard limit (179 MP)
        path.write_bytes(huge_png_bytes(12000, 12000))
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return path


@pytest.fixture
def bad_image(tmp_path):
    """Factory: ``bad_image("cmyk")`` writes that kind of file into a fresh folder and returns its path."""

    def make(kind, folder=None, name=None):
        return make_image_file(kind, folder or tmp_path / "zoo", name)

    return make


@pytest.fixture
def write_png():
    """Factory writing a small solid-colour RGB PNG: ``write_png(path, colour=(r, g, b), size=(w, h))``."""

    def write(path, colour=(200, 50, 50), size=(8, 8)):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, colour).save(path)
        return path

    return write
