"""Finding image files and opening them safely.

Real collections of tweets or news photos hold files that are broken, mislabelled
(a PNG called ``.jpg``), enormous, animated, 16-bit, CMYK or transparent. Every
function here turns such a file into a plain 8-bit RGB picture or into a clear,
per-file error message; none of them crashes on one bad file.
"""

from __future__ import annotations

import os
from pathlib import Path

import lazy_loader as lazy
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import MissingFileError, UserError
from .paths import path_text

# pandas loads on first use: building the command line's parser must not wait ~1 s for it.
pd = lazy.load("pandas")

#: File endings treated as images when listing a folder.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp")

#: Pillow's decompression-bomb limit (about 89 megapixels, where Pillow warns): a larger
#: image is reported as an error instead of being decoded into gigabytes of memory.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


class ImageLoadError(UserError):
    """An image file could not be opened; the message says which file and why."""


def list_images(folder, extensions=IMAGE_EXTENSIONS, recursive=True):
    """List the image files under ``folder``, sorted, as ``Path`` objects.

    Hidden files and folders (names starting with ``.``, which includes
    ``.ipynb_checkpoints``) are skipped. Files with other endings are left out;
    use :func:`list_other_files` to see them. Everything *named* like an image is
    listed, also a broken symbolic link or a folder called ``x.jpg``, so that it
    gets an error row downstream instead of vanishing without a word.
    """
    folder = Path(folder)
    if not folder.exists():
        raise MissingFileError(f"Folder not found: {folder}")
    if not folder.is_dir():
        return [folder] if folder.suffix.lower() in extensions else []
    found, visited = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in visited:  # a link back up the tree: list its files once, not forever
            dirs[:] = []
            continue
        visited.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names = files + [d for d in dirs if d.lower().endswith(tuple(extensions))]
        found += [Path(root) / n for n in names
                  if not n.startswith(".") and Path(n).suffix.lower() in extensions]
        if not recursive:
            break
    return sorted(found)


def expand_inputs(inputs, extensions=IMAGE_EXTENSIONS):
    """Files and folders to a sorted, de-duplicated list of paths (folders searched recursively).

    The one place that turns what a user names into the list of files to work on (every
    job of :func:`imgasdata.jobs.run_job` takes its paths from here). A path that does not
    exist, a broken link or an unreadable file is kept, so it gets an error row instead of
    vanishing. A file named twice, also once relatively and once absolutely, is listed once
    (the first spelling; :func:`imgasdata.paths.path_key`).
    """
    from .paths import path_key

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out = []
    for item in inputs:
        item = Path(item)
        out += list_images(item, extensions) if item.is_dir() else [item]
    seen = set()
    return [p for p in out if not (path_key(p) in seen or seen.add(path_key(p)))]


def list_other_files(folder, extensions=IMAGE_EXTENSIONS):
    """List visible files under ``folder`` that :func:`list_images` leaves out."""
    folder = Path(folder)
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.suffix.lower() not in extensions
    )


def _to_rgb(img):
    """Convert any Pillow mode to 8-bit RGB; transparency is laid on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit and 32-bit greyscale: stretch to 0-255 instead of clipping,
        # which would turn most 16-bit photos white.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        arr = np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def load_image(path, min_size=None):
    """Open one image file as an 8-bit RGB ``PIL.Image``.

    EXIF orientation is applied, the first frame of an animation is used, and
    transparency is laid on white. With ``min_size`` (pixels), large JPEGs are
    decoded at a reduced scale whose shorter side is still at least ``min_size``
    (JPEG "draft" mode), which is several times faster for big photos.

    Raises :class:`ImageLoadError` with the path and the reason when the file
    cannot be read (missing, empty, not an image, truncated, or larger than
    Pillow's decompression-bomb limit).
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise ImageLoadError(f"{path}: is a folder, not an image file")
        if path.is_symlink() and not path.exists():
            raise ImageLoadError(f"{path}: broken symbolic link (it points to {os.readlink(path)}, which does not exist)")
        if not path.is_file():
            raise ImageLoadError(f"{path}: file not found")
        if not os.access(path, os.R_OK):
            raise ImageLoadError(f"{path}: no permission to read the file")
        if path.stat().st_size == 0:
            raise ImageLoadError(f"{path}: empty file (0 bytes)")
        # The size is checked from the header before decoding; an explicit check rather
        # than turning Pillow's warning into an error, which is not thread-safe.
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ImageLoadError(
                    f"{path}: {img.width}x{img.height} pixels is over the "
                    f"decompression-bomb limit of {MAX_PIXELS:,} pixels"
                )
            if min_size and img.format == "JPEG" and img.mode in ("RGB", "L", "CMYK"):
                img.draft(img.mode, (min_size, min_size))
            if getattr(img, "is_animated", False):
                img.seek(0)
            img = ImageOps.exif_transpose(img) or img
            img.load()
            return _to_rgb(img)
    except ImageLoadError:
        raise
    except PermissionError:
        raise ImageLoadError(f"{path}: no permission to read the file") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{path}: not a readable image (unknown or damaged format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{path}: too large to open safely ({exc})") from None
    except Exception as exc:  # damaged files raise many types inside Pillow's decoders
        raise ImageLoadError(f"{path}: could not be decoded ({type(exc).__name__}: {exc})") from None


def check_images(paths, progress=False):
    """Try to open every file and return one row per file.

    Returns a DataFrame with columns ``path``, ``ok``, ``width``, ``height``,
    ``mode`` (the file's own mode, e.g. ``CMYK`` or ``I;16``), ``format``,
    ``n_frames`` and ``error`` (empty when the file is fine), so a researcher can
    see at once what will be dropped and why.
    """
    from tqdm import tqdm

    rows = []
    for path in tqdm(list(paths), desc="checking images", disable=not progress):
        row = {"path": path_text(path), "ok": False, "width": None, "height": None,
               "mode": None, "format": None, "n_frames": None, "error": ""}
        try:
            rgb = load_image(path)
            with Image.open(path) as img:  # opened a second time only for its metadata
                row.update(mode=img.mode, format=img.format, n_frames=getattr(img, "n_frames", 1))
            row.update(ok=True, width=rgb.width, height=rgb.height)
        except ImageLoadError as exc:
            row["error"] = path_text(str(exc))  # a name that is not UTF-8 is in the message too
        rows.append(row)
    df = pd.DataFrame(rows, columns=["path", "ok", "width", "height", "mode", "format", "n_frames", "error"])
    # nullable integers, so one unreadable file does not turn the sizes into floats
    return df.astype({"width": "Int64", "height": "Int64", "n_frames": "Int64"})


def to_array(img):
    """Return an image as a ``height x width x 3`` NumPy array of 0-255 intensities."""
    return np.asarray(_to_rgb(img) if not isinstance(img, (str, Path)) else load_image(img))
