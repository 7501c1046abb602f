"""AWS Rekognition on local image files, without ever paying twice for the same answer.

:func:`tag_images` sends each image once per operation, parameters and endpoint,
and keeps every answer in a :class:`~imgasdata.autotag.store.ResultStore` the
moment it arrives, so re-running the same command after a crash, a kill, Ctrl-C
or a lost connection only asks for what is missing. Each image is claimed in the
store just before it is sent, so two runs on one ``--out`` never pay twice.
:func:`dry_run` reports, before any call, how many images there are, how many are
already answered, what will be converted or refused, and what the rest would cost.

Each operation is one record in :data:`OPERATIONS` (API method, parameters, size
limits, tidy table, book columns, price key); the command line builds its choices
and help from it.

Credentials come only from boto3's standard chain (environment variables, a
profile in ``~/.aws``, SSO, an instance role); this module never reads, asks
for or writes them. The region and ``AWS_ENDPOINT_URL`` are honoured, so the
same code runs against a local test endpoint. A failure that no image can fix
(credentials, an expired token or SSO session, no permission, an unreachable
endpoint, a refused parameter) stops the run with one sentence; messages are
stored and printed without account ARNs or IDs.

Preflight follows the documented limits for images sent as bytes: JPEG or PNG,
at most 5 MB, at least 80 pixels per side, and at most 10,000 pixels per side
for labels and moderation. Other formats, CMYK, 16-bit (also 16-bit RGB PNGs),
palettes and alpha channels are converted to 8-bit RGB, too-large images are
downscaled (very large JPEGs by reduced-scale "draft" decoding, so a
100-megapixel phone photo never has to be decoded in full), and the
``preflight`` column says what was done; images that cannot be fixed (too small,
unreadable, a decompression bomb) get an error row and are not sent.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import lazy_loader as lazy

from ..errors import MissingFileError, SettingsError, UserError, require
from ..images import MAX_PIXELS, expand_inputs
from ..outputs import refuse_inside
from ..paths import path_text
from ..progress import progress as progress_bar
from ..settings import Interval
from .store import ResultStore, answer_key, run_ended, run_started, scrub
from .tidy import (
    CELEBRITY_COLUMNS,
    FACE_COLUMNS,
    LABEL_COLUMNS,
    MODERATION_COLUMNS,
    TEXT_COLUMNS,
    book_celebrities,
    book_labels,
    tidy_celebrities,
    tidy_faces,
    tidy_labels,
    tidy_moderation,
    tidy_text,
)

# pandas loads on first use: building the command line's parser must not wait ~1 s for it.
pd = lazy.load("pandas")

MAX_BYTES = 5 * 1024 * 1024  # images passed as bytes (not from S3)
MIN_SIDE = 80
SENDABLE_MODES = {"JPEG": ("RGB", "L"), "PNG": ("RGB", "L")}

# ------------------------------------------------------------------------- the operations


def _no_options(operation):
    def params(min_confidence=None, max_labels=None):
        if min_confidence is not None:
            raise SettingsError(f"{operation} takes no minimum confidence (only labels, moderation and text do)")
        if max_labels is not None:
            raise SettingsError(f"max_labels applies to labels only, not to {operation}")
        return {"Attributes": ["ALL"]} if operation == "faces" else {}
    return params


def _labels_params(min_confidence=None, max_labels=None):
    params = {}
    if min_confidence is not None:
        params["MinConfidence"] = float(min_confidence)
    if max_labels is not None:
        params["MaxLabels"] = int(max_labels)
    return params


def _moderation_params(min_confidence=None, max_labels=None):
    if max_labels is not None:
        raise SettingsError("max_labels applies to labels only, not to moderation")
    return {} if min_confidence is None else {"MinConfidence": float(min_confidence)}


def _text_params(min_confidence=None, max_labels=None):
    if max_labels is not None:
        raise SettingsError("max_labels applies to labels only, not to text")
    return {} if min_confidence is None else {"Filters": {"WordFilter": {"MinConfidence": float(min_confidence)}}}


@dataclass(frozen=True)
class Operation:
    """Everything about one Rekognition operation, in one place.

    ``name`` is ours (the CLI choice and the file names), ``api`` the service's and
    ``method`` boto3's; ``params(min_confidence, max_labels)`` builds the request's
    parameters besides the image (part of each answer's key); ``max_side`` is the
    documented largest side in pixels (``None``: no such limit); ``tidy``/``columns``
    make the tidy table; ``book`` writes the book scripts' columns (``None``: the book
    has none); ``version_key`` names the response's model-version field; ``price_key``
    is the key looked up in price tables.
    """

    name: str
    api: str
    method: str
    help: str
    params: Callable
    tidy: Callable
    columns: tuple
    max_side: int | None = None
    book: Callable | None = None
    version_key: str | None = None
    price_key: str = ""

    def __post_init__(self):
        if not self.price_key:
            object.__setattr__(self, "price_key", self.name)


OPERATIONS = {op.name: op for op in (
    Operation("labels", "DetectLabels", "detect_labels", "objects, scenes and concepts (the book's labels)",
              _labels_params, tidy_labels, tuple(LABEL_COLUMNS), max_side=10_000, book=book_labels,
              version_key="LabelModelVersion"),
    Operation("celebrities", "RecognizeCelebrities", "recognize_celebrities", "names of well-known people",
              _no_options("celebrities"), tidy_celebrities, tuple(CELEBRITY_COLUMNS), book=book_celebrities),
    Operation("faces", "DetectFaces", "detect_faces", "faces with age range, emotions and other attributes",
              _no_options("faces"), tidy_faces, tuple(FACE_COLUMNS)),
    Operation("text", "DetectText", "detect_text", "words and lines of text in the image",
              _text_params, tidy_text, tuple(TEXT_COLUMNS), version_key="TextModelVersion"),
    Operation("moderation", "DetectModerationLabels", "detect_moderation_labels",
              "unsafe or sensitive content (nudity, violence, ...)", _moderation_params, tidy_moderation,
              tuple(MODERATION_COLUMNS), max_side=10_000, version_key="ModerationModelVersion"),
)}


def get_operation(operation):
    """The :class:`Operation` named ``operation`` (or ``operation`` itself); refuses unknown names."""
    if isinstance(operation, Operation):
        return operation
    if operation not in OPERATIONS:
        raise SettingsError(f"unknown Rekognition operation {operation!r}; choose one of {', '.join(OPERATIONS)}")
    return OPERATIONS[operation]


# ------------------------------------------------------------------------- options, checked up front

#: What each numeric option may be (scikit-learn-style constraints, checked before any work).
CONSTRAINTS = {
    "min_confidence": Interval(float, 0, 100),
    "max_labels": Interval(int, 1),
    "max_calls": Interval(int, 0),
    "concurrency": Interval(int, 1, 64),
    "rate": Interval(float, 0, None, "neither"),
    "max_attempts": Interval(int, 1, 20),
    "stop_after_errors": Interval(int, 1),
}
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")


def check_options(**options):
    """Raise :class:`SettingsError` (one sentence) for the first option outside :data:`CONSTRAINTS`.

    ``None`` means "not set" and is always allowed; ``region``, when given, must look
    like ``us-east-1``.
    """
    for name, value in options.items():
        if value is None:
            continue
        if name == "region":
            if not _REGION.match(str(value)):
                raise SettingsError(f"{value!r} is not an AWS region name; regions look like us-east-1 or "
                                    "eu-west-2 (see the region list of Rekognition in the AWS documentation)")
            continue
        constraint = CONSTRAINTS[name]
        if not constraint.check(value):
            raise SettingsError(f"{name} must be {constraint}, got {value!r}")


def operation_params(operation, min_confidence=None, max_labels=None):
    """The API parameters (besides the image) for ``operation``; part of each answer's store key."""
    op = get_operation(operation)
    check_options(min_confidence=min_confidence, max_labels=max_labels)
    return op.params(min_confidence, max_labels)


# ------------------------------------------------------------------------- prices

#: When the default prices were last compared with the published page.
PRICES_AS_OF = "2026-11-30"

#: Rekognition Image prices (US East, N. Virginia) in US dollars per 1,000 images, as
#: ``(images in the tier, price)`` with ``None`` for "all the rest". The tiers are the
#: published per-month ones (first 1 million images, next 4 million, next 30 million, over
#: 35 million); the five operations here are all in the page's "Group 2" APIs. On
#: 2026-11-30 the first three prices ($1.00, $0.80, $0.60) agreed with the page's worked
#: examples as transcribed on 2026-10-07; the last ($0.25 over 35 million) could not be
#: re-read that day. Prices change and differ by region: CHECK THEM against
#: https://aws.amazon.com/rekognition/pricing/
#: before relying on an estimate, and pass your own table (``prices=`` or ``--prices``).
#: Tiers count images per month and account; the estimate applies them to this run alone.
DEFAULT_PRICES = {op.price_key: [(1_000_000, 1.00), (4_000_000, 0.80), (30_000_000, 0.60), (None, 0.25)]
                  for op in OPERATIONS.values()}
PRICE_NOTE = (f"estimate from the default price table of {PRICES_AS_OF} (US East, per 1,000 images, tiers per "
              "month); it must be checked against https://aws.amazon.com/rekognition/pricing/ and your region "
              "before relying on it")


def check_prices(prices, operation, source="the price table"):
    """The tier list for ``operation`` from ``prices`` (a dict by operation, or one list for all), checked.

    Each tier is ``(images, US$ per 1,000)`` with ``images`` a positive whole number or
    ``None`` (the rest), the last being ``None``. Raises :class:`SettingsError` with one
    sentence otherwise, naming the operation when it is missing.
    """
    key = get_operation(operation).price_key
    if isinstance(prices, dict):
        if key not in prices:
            raise SettingsError(f"{source} has no prices for {key!r} (it has {', '.join(map(str, prices)) or 'none'})"
                                f"; add e.g. \"{key}\": [[1000000, 1.0], [null, 0.8]]")
        tiers = prices[key]
    else:
        tiers = prices
    ok = isinstance(tiers, (list, tuple)) and len(tiers) > 0
    for i, tier in enumerate(tiers if ok else []):
        last = i == len(tiers) - 1
        if not (isinstance(tier, (list, tuple)) and len(tier) == 2):
            ok = False
            break
        size, price = tier
        size_ok = (size is None) if last else Interval(int, 1).check(size)
        if not (size_ok and Interval(float, 0).check(price)):
            ok = False
            break
    if not ok:
        raise SettingsError(f"{source}: the prices for {key!r} must be a list of [images, US$ per 1,000] "
                            "with positive whole image counts and the last count null (all the rest), "
                            f"e.g. [[1000000, 1.0], [null, 0.8]]; got {tiers!r}")
    return [(None if s is None else int(s), float(p)) for s, p in tiers]


def read_prices(path):
    """A price table from a JSON file: ``{"labels": [[1000000, 1.0], [null, 0.8]], ...}`` or one list for all."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"price file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path} is not valid JSON ({exc})") from None


def estimate_cost(n_calls, operation="labels", prices=None):
    """Estimated US dollars for ``n_calls`` images from a tiered price table (see :data:`DEFAULT_PRICES`)."""
    tiers = check_prices(DEFAULT_PRICES if prices is None else prices, operation)
    left, cost = int(n_calls), 0.0
    for size, per_1000 in tiers:
        take = left if size is None else min(left, size)
        cost += take * per_1000 / 1000
        left -= take
        if left <= 0:
            break
    return round(cost, 4)


# ------------------------------------------------------------------------- preflight


class PreflightError(Exception):
    """An image that cannot be made acceptable to the service (the message says why)."""


@dataclass
class Item:
    """One input file: its path, its name as written in tables, its file hash and store key, and preflight."""

    path: Path
    image: str = ""  # the path as written in tables (imgasdata.paths.path_text)
    sha256: str = ""  # of the file's bytes as read for planning
    key: str = ""  # the key of those bytes (the "source key"); an answer is found by it
    plan: str = ""  # "" (send as is) or a note of what will be converted, or ...
    error: str = ""  # ... why it cannot be sent

    def __post_init__(self):
        self.image = self.image or path_text(self.path)


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _open(data, name):
    """Open image bytes with Pillow, as ``(image, scale, full size)``; very large JPEGs at a reduced scale.

    Pillow's decompression-bomb guard refuses images over :data:`~imgasdata.images.MAX_PIXELS`
    from their header. A JPEG can be decoded at 1/2, 1/4 or 1/8 scale without ever holding
    the full image, so a large JPEG is opened past the guard, set to the smallest such scale
    that brings it under the limit, and only then held to the guard. Every other format
    keeps the guard as is (a PNG claiming absurd dimensions is refused).
    """
    from PIL import Image, JpegImagePlugin

    if data[:3] == b"\xff\xd8\xff":
        try:
            img = JpegImagePlugin.JpegImageFile(io.BytesIO(data))  # no guard yet: only the header is read
        except Exception as exc:  # noqa: BLE001 - damaged headers raise many types; the file gets a row
            raise PreflightError(f"{name}: not a readable JPEG ({type(exc).__name__}: {exc})") from None
        w, h = img.size
        scale = next((k for k in (1, 2, 4, 8) if (w / k) * (h / k) <= MAX_PIXELS), None)
        if scale is None:
            raise PreflightError(f"{name}: {w}x{h} px is too large to decode safely even at 1/8 scale "
                                 f"(over {MAX_PIXELS:,} pixels); not sent")
        if scale > 1:
            img.draft(img.mode, (math.ceil(w / scale), math.ceil(h / scale)))
        return img, scale, (w, h)
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise PreflightError(f"{name}: refused by Pillow's decompression-bomb guard ({exc}); not sent") from None
    except Exception as exc:  # noqa: BLE001 - unreadable or damaged files raise many types; the file gets a row
        raise PreflightError(f"{name}: not a readable image ({type(exc).__name__}: {exc})") from None
    if img.width * img.height > MAX_PIXELS:
        raise PreflightError(f"{name}: {img.width}x{img.height} px is over the decompression-bomb limit of "
                             f"{MAX_PIXELS:,} pixels; not sent")
    return img, 1, img.size


def _sixteen_bit(img):
    """Whether a file stores 16 bits per channel (Pillow shows a 16-bit RGB PNG as mode RGB)."""
    return img.mode.startswith("I;16") or any(";16" in str(t.args) for t in getattr(img, "tile", []) or [])


def inspect_bytes(data, name, operation):
    """Preflight from the image header: ``("", "")`` to send as is, ``(note, "")`` to convert, ``("", error)``."""
    op = get_operation(operation)
    if not data:
        return "", f"{name}: empty file (0 bytes)"
    try:
        img, scale, (w, h) = _open(data, name)
    except PreflightError as exc:
        return "", str(exc)
    with img:
        fmt, mode, (dw, dh) = img.format, img.mode, img.size  # (dw, dh): the size as decoded
        animated = getattr(img, "is_animated", False)
        deep = _sixteen_bit(img)
    if min(w, h) < MIN_SIDE:
        return "", (f"{name}: {w}x{h} px is smaller than Rekognition's minimum of {MIN_SIDE} px per side "
                    "(not sent; enlarging would invent detail)")
    notes = []
    if fmt not in SENDABLE_MODES:
        notes.append(f"converted {fmt} to JPEG")
    elif deep:
        notes.append(f"converted 16-bit {fmt} to 8-bit")
    elif mode not in SENDABLE_MODES[fmt]:
        notes.append(f"converted {fmt} mode {mode} to 8-bit RGB")
    if animated:
        notes.append("first frame only")
    if scale > 1:
        notes.append(f"decoded at 1/{scale} scale ({dw}x{dh} px): {w}x{h} px is over Pillow's "
                     "decompression-bomb limit")
    top = op.max_side
    if top and max(dw, dh) > top:
        s = top / max(dw, dh)
        if min(dw, dh) * s < MIN_SIDE:
            return "", (f"{name}: {w}x{h} px cannot be brought under {top} px per side without a side "
                        f"falling under {MIN_SIDE} px (not sent)")
        notes.append(f"downscaled from {dw}x{dh} px to fit {top} px per side")
    if len(data) > MAX_BYTES:
        notes.append(f"re-encoded: {len(data) / 1e6:.1f} MB is over the 5 MB limit")
    return "; ".join(notes), ""


def inspect_image(path, operation):
    """:func:`inspect_bytes` for a file (read whole; the bytes are what would be sent)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return "", f"{path_text(path)}: could not be read ({exc.strerror or exc})"
    return inspect_bytes(data, path_text(path), operation)


def _to_rgb8(img):
    """8-bit RGB (or L) for JPEG: 16-bit scaled down, alpha laid on white, palettes expanded."""
    from ..images import _to_rgb

    if _sixteen_bit(img) and img.mode == "RGB":
        return img  # Pillow already decoded the 16-bit channels to 8 bits (their high bytes)
    return _to_rgb(img)


def prepare(data, name, operation):
    """The bytes to send for one image (given as the file's bytes) and a note of any change made.

    Returns ``(bytes, note)``; the note is empty when the file is sent as it is. Raises
    :class:`PreflightError` when the image cannot be made acceptable.
    """
    from PIL import Image, ImageOps

    op = get_operation(operation)
    plan, error = inspect_bytes(data, name, op)
    if error:
        raise PreflightError(error)
    if not plan:
        return data, ""
    img, _, _ = _open(data, name)
    try:
        if getattr(img, "is_animated", False):
            img.seek(0)
        img = ImageOps.exif_transpose(img) or img  # the re-encoded JPEG carries no EXIF orientation
        img.load()
        img = _to_rgb8(img)
    except PreflightError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated or damaged data raise many types in decoders
        raise PreflightError(f"{name}: could not be decoded ({type(exc).__name__}: {exc})") from None
    notes = [plan]
    top = op.max_side
    if top and max(img.size) > top:
        s = top / max(img.size)
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.LANCZOS)
    for _ in range(8):
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out = buf.getvalue()
        if len(out) <= MAX_BYTES:
            break
        s = math.sqrt(MAX_BYTES / len(out)) * 0.95
        new = (max(1, int(img.width * s)), max(1, int(img.height * s)))
        if min(new) < MIN_SIDE:
            raise PreflightError(f"{name}: cannot fit under 5 MB without a side falling under {MIN_SIDE} px")
        notes.append(f"downscaled to {new[0]}x{new[1]} px to fit 5 MB")
        img = img.resize(new, Image.LANCZOS)
    else:
        raise PreflightError(f"{name}: could not be encoded under 5 MB")
    return out, "; ".join(notes) + "; sent as JPEG (quality 90)"


def prepare_bytes(path, operation):
    """:func:`prepare` for a file: ``(bytes to send, note)``; raises :class:`PreflightError`."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PreflightError(f"{path_text(path)}: could not be read ({exc.strerror or exc})") from None
    return prepare(data, path_text(path), operation)


def plan_images(operation, inputs, params, endpoint):
    """Hash and preflight every input into a list of :class:`Item` (each file read once here)."""
    items = []
    for path in expand_inputs(inputs):
        item = Item(path=Path(path))
        try:
            if Path(path).is_dir():
                raise IsADirectoryError(21, "is a folder, not an image file")
            data = Path(path).read_bytes()
        except OSError as exc:
            item.error = f"{item.image}: could not be read ({exc.strerror or exc})"
            items.append(item)
            continue
        item.sha256 = _sha256(data)
        item.key = answer_key(item.sha256, get_operation(operation).name, params, endpoint)
        item.plan, item.error = inspect_bytes(data, item.image, operation)
        items.append(item)
    return items


# ------------------------------------------------------------------------- the client and its failures


def make_client(region=None, retry_mode="standard", max_attempts=5, concurrency=4, endpoint_url=None):
    """A boto3 Rekognition client using botocore's retry modes; credentials from boto3's chain only.

    ``retry_mode`` is ``"standard"`` (exponential backoff with jitter on throttling
    and transient errors) or ``"adaptive"`` (also slows the client down when it is
    throttled); ``max_attempts`` counts the first try. ``region`` defaults to the
    profile's or ``AWS_DEFAULT_REGION``; ``endpoint_url`` to ``AWS_ENDPOINT_URL``.
    """
    boto3 = require("boto3", "aws", "AWS Rekognition")
    from botocore.config import Config
    from botocore.exceptions import NoRegionError

    if retry_mode not in ("standard", "adaptive", "legacy"):
        raise SettingsError(f"retry_mode must be 'standard' or 'adaptive', not {retry_mode!r}")
    check_options(region=region, max_attempts=max_attempts, concurrency=concurrency)
    # botocore's "max_attempts" counts retries only; "total_max_attempts" counts the first try too.
    config = Config(retries={"mode": retry_mode, "total_max_attempts": int(max_attempts)},
                    max_pool_connections=max(10, int(concurrency)))
    try:
        client = boto3.session.Session().client("rekognition", region_name=region, endpoint_url=endpoint_url,
                                                config=config)
    except NoRegionError:
        raise SettingsError("no AWS region is set: pass --region (e.g. us-east-1) or set AWS_DEFAULT_REGION") from None
    check_options(region=client.meta.region_name)  # from the profile or the environment
    return client


def check_credentials(client):
    """Raise a :class:`UserError` when boto3's chain finds no credentials (nothing is printed or stored)."""
    # What the client will sign with, as boto3's chain resolved it (private in botocore, hence getattr).
    creds = getattr(getattr(client, "_request_signer", None), "_credentials", "unknown")
    if creds is None:
        raise UserError(NO_CREDENTIALS)


NO_CREDENTIALS = ("no AWS credentials found: boto3 looks in the environment (AWS_ACCESS_KEY_ID, "
                  "AWS_SECRET_ACCESS_KEY), in ~/.aws (a profile, chosen with AWS_PROFILE), SSO and "
                  "instance roles; set one up (aws configure, or aws sso login) and run again")

#: Error codes that no retry and no other image will fix, with the sentence that says what to do.
FATAL_CODES = {
    **dict.fromkeys(("ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"),
                    "the AWS session token has expired ({code}): refresh your temporary credentials "
                    "(aws sso login, or a new STS session) and run again"),
    **dict.fromkeys(("AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                     "UnauthorizedException", "OptInRequired", "SubscriptionRequiredException"),
                    "AWS refused access ({code}): the credentials in use may not call rekognition:{api}; "
                    "ask your AWS administrator to allow it, or use another profile (AWS_PROFILE)"),
    **dict.fromkeys(("UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException",
                     "SignatureDoesNotMatch", "IncompleteSignature", "InvalidAccessKeyId",
                     "MissingAuthenticationToken", "AuthFailure"),
                    "AWS did not accept the credentials ({code}): the access key is wrong, disabled or "
                    "expired, or the secret does not match it; check AWS_ACCESS_KEY_ID or your profile "
                    "(aws configure list) and run again"),
}

#: Error codes about one image: its row says so and the run goes on.
IMAGE_CODES = {"InvalidImageFormatException", "ImageTooLargeException", "InvalidParameterException",
               "InvalidS3ObjectException"}


class _Stopped(Exception):
    """Raised at botocore's before-send event once the run was told to stop: the request is not sent."""


def classify(exc, api="", endpoint=""):
    """How a failure of one request counts: ``(kind, code, message)``.

    ``kind`` is ``"fatal"`` (no image can succeed: stop the run; ``message`` is one
    sentence naming cause and fix), ``"image"`` (about this image only) or ``"other"``
    (transient or unknown; many in a row stop the run). Messages carry no account ARN or ID.
    """
    from botocore import exceptions as bx

    if isinstance(exc, bx.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code") or "ClientError")
        text = scrub(f"{code}: {err.get('Message') or exc}")
        if code in FATAL_CODES:
            return "fatal", code, FATAL_CODES[code].format(code=code, api=api)
        return ("image" if code in IMAGE_CODES else "other"), code, text
    code = type(exc).__name__
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError)):
        return "fatal", code, NO_CREDENTIALS.replace("no AWS credentials found", f"no usable AWS credentials ({code})")
    sso = tuple(getattr(bx, n) for n in ("UnauthorizedSSOTokenError", "SSOTokenLoadError", "TokenRetrievalError",
                                          "SSOError") if hasattr(bx, n))
    if isinstance(exc, sso):
        return "fatal", code, (f"your AWS SSO session has expired or was never started ({code}): run "
                               "aws sso login (with --profile if you use one) and run again")
    if isinstance(exc, bx.EndpointConnectionError):
        return "fatal", code, (f"could not connect to the Rekognition endpoint {endpoint} ({code}): check the "
                               "network, the region (--region, e.g. us-east-1; Rekognition is not in every "
                               "region) and AWS_ENDPOINT_URL, and run again")
    if isinstance(exc, bx.ParamValidationError):
        return "fatal", code, (f"the request's parameters were refused before sending ({scrub(exc)}); check "
                               "--min-confidence and --max-labels")
    if isinstance(exc, (bx.NoRegionError,)):
        return "fatal", code, "no AWS region is set: pass --region (e.g. us-east-1) or set AWS_DEFAULT_REGION"
    return "other", code, scrub(f"{code}: {exc}")


class _RateLimit:
    """At most ``rate`` calls per second across threads (Rekognition quotas are per second)."""

    def __init__(self, rate, stop):
        self.gap = 1.0 / float(rate) if rate else 0.0
        self.next = time.monotonic()
        self.lock = threading.Lock()
        self.stop = stop

    def wait(self):
        if not self.gap:
            return
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next)
            self.next = at + self.gap
        if at > now:
            self.stop.wait(at - now)  # wakes at once when the run is told to stop


# ------------------------------------------------------------------------- dry run and run


def _store_path(out_dir):
    return Path(out_dir) / "results.sqlite"


def _endpoint(client):
    return str(client.meta.endpoint_url)


def dry_run(operation, inputs, out_dir, min_confidence=None, max_labels=None, max_calls=None, prices=None,
            region=None, endpoint_url=None):
    """What a run would do, without calling the service: a dict of counts and the estimated cost.

    Keys: ``operation``, ``images``, ``already_answered``, ``cannot_send``
    (preflight errors), ``to_convert``, ``to_call`` (unanswered unique images),
    ``calls`` (after ``max_calls``), ``estimated_cost_usd`` and ``price_note``.
    Answers are matched at the endpoint the run would use when a region is known,
    otherwise at any endpoint.
    """
    op = get_operation(operation)
    check_options(max_calls=max_calls, region=region)
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    refuse_inside(out_dir, inputs)  # the run itself would be refused: say so in the dry run already
    params = operation_params(op, min_confidence, max_labels)
    if prices is not None:
        check_prices(prices, op)
    try:
        endpoint = _endpoint(make_client(region, endpoint_url=endpoint_url))
    except UserError:  # no region known, or boto3 not installed: count answers from any endpoint
        endpoint = None
    items = plan_images(op, inputs, params, endpoint or "")
    path = _store_path(out_dir)
    done = set()
    if path.exists():
        with ResultStore(path) as store:
            if endpoint is None:
                shas = store.answered_anywhere({i.sha256 for i in items if i.sha256}, op.name, params)
                done = {i.key for i in items if i.sha256 in shas}
            else:
                done = store.answered({i.key for i in items if i.key})
    todo = {i.key for i in items if i.key and not i.error and i.key not in done}
    calls = len(todo) if max_calls is None else min(len(todo), int(max_calls))
    return {"operation": op.name, "images": len(items),
            "already_answered": sum(i.key in done for i in items if i.key),
            "cannot_send": sum(bool(i.error) for i in items),
            "to_convert": sum(bool(i.plan) and not i.error for i in items),
            "to_call": len(todo), "calls": calls,
            "estimated_cost_usd": estimate_cost(calls, op, prices),
            "price_note": PRICE_NOTE if prices is None else "estimate from the price table given (per 1,000 images)"}


class RunStopped(UserError):
    """The run stopped before the end (a fatal error, or too many errors in a row); answers so far are kept."""


def tag_images(operation, inputs, out_dir, *, region=None, min_confidence=None, max_labels=None,
               max_calls=None, concurrency=4, rate=None, retry_mode="standard", max_attempts=5,
               client=None, book=False, progress=True, endpoint_url=None, stop_after_errors=10,
               excel_safe=False):
    """Send images to one Rekognition operation, resuming from the store; returns the tidy table.

    Writes into ``out_dir``: ``<operation>.csv`` (tidy, one row per image and
    label/face, with ``preflight`` and ``error`` columns), ``errors.csv`` (the
    images without an answer, and why), ``raw/<operation>.jsonl`` (each image's
    raw response) and ``results.sqlite`` (the store: answers, errors, every call
    sent). With ``book=True`` also ``<operation>_book.csv`` in the columns of the
    book authors' scripts; with ``excel_safe=True`` the CSVs' text cells that a
    spreadsheet would run as formulas are prefixed with ``'``
    (:func:`imgasdata.outputs.excel_safe`). ``max_calls`` caps the images sent in this
    run; images left over get the error "not sent yet" and a re-run continues with
    them. ``concurrency`` threads send at most ``rate`` calls per second;
    throttling is retried by botocore (``retry_mode``, ``max_attempts``).

    Ctrl-C (or any exception) stops sending at once: queued images are not sent,
    answers already stored are kept, the CSVs are written from the store, and the
    number of images left is printed; running again continues. A fatal failure
    (credentials, token, permission, endpoint, parameters) or ``stop_after_errors``
    identical errors in a row that are not about an image raise :class:`RunStopped`
    after the CSVs are written.

    An ``out_dir`` that is one of the input files, or is (or lies inside) an input folder,
    raises :class:`~imgasdata.errors.SettingsError` before any client is built or file written.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    op = get_operation(operation)
    check_options(max_calls=max_calls, concurrency=concurrency, rate=rate, max_attempts=max_attempts,
                  stop_after_errors=stop_after_errors, region=region)
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    refuse_inside(out_dir, inputs)  # before a client is built, a call is paid or a file is written
    params = operation_params(op, min_confidence, max_labels)
    if book and op.book is None:
        raise SettingsError(f"the book's scripts cover {', '.join(o.name for o in OPERATIONS.values() if o.book)} "
                            f"only, not {op.name!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    client = client or make_client(region, retry_mode, max_attempts, concurrency, endpoint_url)
    endpoint = _endpoint(client)
    run_id = uuid.uuid4().hex
    owner = run_id  # claims are made in the store's name of this run
    store = ResultStore(_store_path(out_dir))  # before planning: an unusable store is said at once
    items = None
    run_started(owner)
    local = threading.local()
    stop = threading.Event()
    lock = threading.Lock()
    errors = {}  # source key or image name -> message (this run)

    def before_send(**kwargs):  # every request that would go over the network, retries included
        if stop.is_set():
            raise _Stopped()
        store.log_call(getattr(local, "key", None), op.name, run_id)

    handler_id = f"imgasdata-send-{run_id}"
    client.meta.events.register("before-send.rekognition", before_send, unique_id=handler_id)

    def note_error(item, msg, key=None):
        msg = scrub(msg, keep=item.image)
        with lock:
            errors[item.key or item.image] = msg
        store.log_error(key or item.key, op.name, item.image, msg)

    def ask(item):
        """Send one image unless stopped or answered; returns ``(kind, code, message)``; never raises."""
        key = None
        try:
            if stop.is_set():
                return "stopped", "", ""
            data = item.path.read_bytes()  # read once: hashed, converted and sent from these bytes
            source_key = answer_key(_sha256(data), op.name, params, endpoint)
            if source_key != item.key:  # the file changed since planning: its answer is found by the new key
                item.key = source_key
            if store.has(source_key):
                return "answered", "", ""
            sent, note = prepare(data, item.image, op)
            sha = _sha256(sent)
            key = answer_key(sha, op.name, params, endpoint)
            state = store.claim(key, source_key, owner)
            if state == "answered":
                return "answered", "", ""
            if state == "busy":
                with lock:
                    errors[item.key] = ("not sent: another run on this folder is sending it; run again to "
                                        "collect its answer")
                return "busy", "", ""
            sent_ok = False
            try:
                limit.wait()
                if stop.is_set():
                    return "stopped", "", ""
                local.key = key
                try:
                    response = getattr(client, op.method)(Image={"Bytes": sent}, **params)
                finally:
                    local.key = None
                version = response.get(op.version_key) if op.version_key else None
                store.put(key, source_key, sha, op.name, params, endpoint, item.image, response, version, note)
                sent_ok = True
                return "ok", "", ""
            finally:
                if not sent_ok:
                    store.release(key, owner)
        except _Stopped:
            return "stopped", "", ""
        except PreflightError as exc:
            note_error(item, str(exc))
            return "image", "preflight", str(exc)
        except OSError as exc:  # deleted, unmounted or unreadable since planning
            msg = f"{item.image}: could not be read ({exc.strerror or exc})"
            note_error(item, msg)
            return "image", "OSError", msg
        except (ClientError, BotoCoreError) as exc:
            if isinstance(getattr(exc, "__context__", None), _Stopped):
                return "stopped", "", ""
            kind, code, msg = classify(exc, op.api, endpoint)
            if kind == "fatal":
                stop.set()  # here, not in the results loop: no other worker may send in between
            note_error(item, msg, key)
            return kind, code, msg
        except Exception as exc:  # noqa: BLE001 - anything else about this image: its row, not a lost run
            msg = f"{type(exc).__name__}: {exc}"
            note_error(item, msg, key)
            return "other", type(exc).__name__, msg

    limit = _RateLimit(rate, stop)
    todo, left_over, stopped = [], [], None
    try:
        items = plan_images(op, inputs, params, endpoint)
        done = store.answered({i.key for i in items if i.key})
        seen = set()
        for item in items:
            if item.error:
                errors[item.image] = item.error
            elif item.key not in done and item.key not in seen:
                seen.add(item.key)
                todo.append(item)
        cap = len(todo) if max_calls is None else min(len(todo), int(max_calls))
        left_over, todo = todo[cap:], todo[:cap]
        if todo:
            check_credentials(client)
        pool = ThreadPoolExecutor(max_workers=int(concurrency))
        try:
            futures = [pool.submit(ask, item) for item in todo]
            bar = progress_bar(total=len(futures), desc=f"Rekognition {op.name}", unit="img", enabled=progress)
            streak = (None, 0)
            for fut in as_completed(futures):
                kind, code, msg = fut.result()
                bar.update(1)
                if kind == "fatal":
                    stopped = msg
                    break
                if kind == "other":
                    streak = (code, streak[1] + 1) if streak[0] == code else (code, 1)
                    if streak[1] >= int(stop_after_errors):
                        stopped = (f"stopped after {streak[1]} '{code}' errors in a row, which are not about "
                                   f"the images (last: {msg}); fix the cause and run again")
                        break
                elif kind == "ok":
                    streak = (None, 0)
            bar.close()
        finally:
            stop.set()  # nothing queued is sent after this (Ctrl-C, a fatal error or the end)
            pool.shutdown(wait=True, cancel_futures=True)  # in-flight requests finish and are stored
        for item in left_over:
            errors[item.key] = "not sent yet: the --max-calls cap was reached; run again to continue"
    finally:
        # Ctrl-C or a bug (not a mistake already worded for the user): say what is kept and what is left
        interrupted = sys.exc_info()[0] is not None and not isinstance(sys.exc_info()[1], UserError)
        try:
            if items is None:  # stopped while planning: yesterday's CSVs stay as they are
                left, answered, table = "all", store.count("answers"), None
            else:
                table = _write_outputs(op, items, store, errors, out_dir, book, excel_safe)
                left = sum(1 for i in items if not i.error and store.find(i.key) is None)
                answered = store.count("answers")
        finally:
            client.meta.events.unregister("before-send.rekognition", unique_id=handler_id)
            store.release_all(owner)
            run_ended(owner)
            store.close()
        if interrupted:
            what = ("while reading the images, before sending any" if items is None
                    else f"{left} image(s) left without an answer")
            print(f"stopped: {what}; {answered} answer(s) are kept in {store.path}; run the same command "
                  "again to continue", file=sys.stderr)
    if stopped:
        raise RunStopped(f"{stopped} ({left} image(s) left; answers so far are kept in {store.path})")
    table.attrs["run_id"] = run_id
    table.attrs["calls"] = len(todo)
    table.attrs["left"] = left
    return table


def _write_outputs(op, items, store, errors, out_dir, book, excel_safe=False):
    """The tidy CSV, errors CSV, raw JSONL and (optionally) the book's columns, for every input image."""
    from ..outputs import write_csv, write_through

    frames, book_frames, error_rows, raw_lines = [], [], [], []
    raw_dir = out_dir / "raw"
    raw_dir.mkdir(exist_ok=True)
    for item in items:
        found = store.find(item.key) if item.key else None
        if found is None:
            msg = (errors.get(item.key) or errors.get(item.image)
                   or "not sent yet: the run stopped before this image; run again to continue")
            error_rows.append({"image": item.image, "operation": op.name, "error": msg})
            frame = pd.DataFrame([{"image": item.image, "label": "", "confidence": float("nan")}])
            frame["error"] = msg
            frames.append(frame)
            continue
        response, note = found
        raw_lines.append(json.dumps({"image": item.image, "sha256": item.sha256, "response": response},
                                    default=str) + "\n")
        frame = op.tidy(item.image, response)
        frame["preflight"] = note
        frame["error"] = ""
        frames.append(frame)
        if book and op.book is not None:
            book_frames.append(op.book(item.image, response))
    columns = list(op.columns) + ["preflight", "error"]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    table = table.reindex(columns=columns)
    table["preflight"] = table["preflight"].astype(object).fillna("")
    write_csv(table, out_dir / f"{op.name}.csv", excel=excel_safe)
    write_csv(pd.DataFrame(error_rows, columns=["image", "operation", "error"]), out_dir / "errors.csv",
              excel=excel_safe)
    write_through(raw_dir / f"{op.name}.jsonl", lambda fh: fh.writelines(raw_lines))
    if book and book_frames:
        write_csv(pd.concat(book_frames, ignore_index=True), out_dir / f"{op.name}_book.csv", excel=excel_safe)
    return table
