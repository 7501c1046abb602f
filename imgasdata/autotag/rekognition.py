"""AWS Rekognition on local image files, without ever paying twice for the same answer.

:func:`tag_images` sends each image once per operation and parameters, and
keeps every answer in a :class:`~imgasdata.autotag.store.ResultStore` the moment
it arrives, so re-running the same command after a crash, a kill or a lost
connection only asks for what is missing. :func:`dry_run` reports, before any
call, how many images there are, how many are already answered, what will be
converted or refused, and what the rest would cost.

Credentials come only from boto3's standard chain (environment variables, a
profile in ``~/.aws``, SSO, an instance role); this module never reads, asks
for or writes them. The region and ``AWS_ENDPOINT_URL`` are honoured, so the
same code runs against a local test endpoint (moto).

Preflight follows the documented limits for images sent as bytes: JPEG or PNG,
at most 5 MB, at least 80 pixels per side, and at most 10,000 pixels per side
for labels and moderation. Other formats, CMYK, 16-bit, palettes and alpha
channels are converted to 8-bit RGB, too-large images are downscaled, and the
``preflight`` column says what was done; images that cannot be fixed (too small,
unreadable) get an error row and are not sent.
"""

from __future__ import annotations

import io
import json
import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import SettingsError, UserError, require
from ..images import expand_inputs, load_image
from ..progress import progress as progress_bar
from ..datasets import file_sha256
from .store import ResultStore, answer_key
from .tidy import COLUMNS, TIDIERS, book_columns

#: Our operation names, the API's, and boto3's method names.
OPERATIONS = {"labels": "DetectLabels", "celebrities": "RecognizeCelebrities", "faces": "DetectFaces",
              "text": "DetectText", "moderation": "DetectModerationLabels"}
METHODS = {"labels": "detect_labels", "celebrities": "recognize_celebrities", "faces": "detect_faces",
           "text": "detect_text", "moderation": "detect_moderation_labels"}

MAX_BYTES = 5 * 1024 * 1024  # images passed as bytes (not from S3)
MIN_SIDE = 80
MAX_SIDE = {"labels": 10_000, "moderation": 10_000}
SENDABLE_MODES = {"JPEG": ("RGB", "L"), "PNG": ("RGB", "L")}

#: Published Rekognition Image prices (US East, N. Virginia) in US dollars per 1,000 images,
#: as ``(images in the tier, price)`` with ``None`` for "all the rest". These change and differ
#: by region: CHECK THEM against https://aws.amazon.com/rekognition/pricing/ before relying on
#: an estimate, and pass your own table as ``prices=``. Tiers count images per month and account;
#: the estimate applies them to this run alone.
DEFAULT_PRICES = {op: [(1_000_000, 1.00), (9_000_000, 0.80), (90_000_000, 0.60), (None, 0.25)]
                  for op in OPERATIONS}
PRICE_NOTE = ("estimate from the default price table (US East, per 1,000 images); check it against "
              "https://aws.amazon.com/rekognition/pricing/ and your region before relying on it")

#: Error codes that no retry will fix and that would fail for every image: stop at once.
FATAL_CODES = {"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
               "ExpiredTokenException", "InvalidClientTokenId", "UnauthorizedOperation"}


class PreflightError(Exception):
    """An image that cannot be made acceptable to the service (the message says why)."""


def _check_operation(operation):
    if operation not in OPERATIONS:
        raise SettingsError(f"unknown Rekognition operation {operation!r}; choose one of {', '.join(OPERATIONS)}")


def operation_params(operation, min_confidence=None, max_labels=None, attributes=None):
    """The API parameters (besides the image) for ``operation``; part of each answer's store key."""
    _check_operation(operation)
    if min_confidence is not None and not 0 <= float(min_confidence) <= 100:
        raise SettingsError(f"min_confidence must be between 0 and 100 (Rekognition's scale), not {min_confidence}")
    params = {}
    if operation in ("labels", "moderation") and min_confidence is not None:
        params["MinConfidence"] = float(min_confidence)
    if operation == "labels" and max_labels is not None:
        params["MaxLabels"] = int(max_labels)
    if operation == "text" and min_confidence is not None:
        params["Filters"] = {"WordFilter": {"MinConfidence": float(min_confidence)}}
    if operation == "faces":
        params["Attributes"] = list(attributes or ["ALL"])
    return params


def estimate_cost(n_calls, operation="labels", prices=None):
    """Estimated US dollars for ``n_calls`` images from a tiered price table (see :data:`DEFAULT_PRICES`)."""
    tiers = (prices or DEFAULT_PRICES)
    tiers = tiers.get(operation, tiers) if isinstance(tiers, dict) else tiers
    left, cost = int(n_calls), 0.0
    for size, per_1000 in tiers:
        take = left if size is None else min(left, int(size))
        cost += take * float(per_1000) / 1000
        left -= take
        if left <= 0:
            break
    return round(cost, 4)


# ------------------------------------------------------------------------- preflight


@dataclass
class Item:
    """One input file: its identity, its store key and what preflight found from the header."""

    image: str
    sha256: str = ""
    key: str = ""
    plan: str = ""  # "" (send as is), a note of what will be converted, or ...
    error: str = ""  # ... why it cannot be sent


def inspect_image(path, operation):
    """Preflight from the file header: ``("", "")`` to send as is, ``(note, "")`` to convert, ``("", error)``."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as img:
            fmt, mode, (w, h) = img.format, img.mode, img.size
            animated = getattr(img, "is_animated", False)
    except Exception:  # noqa: BLE001 - any header Pillow cannot read is worded by load_image below
        try:
            load_image(path)  # the one place that words why a file cannot be read
        except UserError as exc:
            return "", str(exc)
        return "", f"{path}: not a readable image"
    if min(w, h) < MIN_SIDE:
        return "", (f"{path}: {w}x{h} px is smaller than Rekognition's minimum of {MIN_SIDE} px per side "
                    "(not sent; enlarging would invent detail)")
    notes = []
    if fmt not in SENDABLE_MODES:
        notes.append(f"converted {fmt} to JPEG")
    elif mode not in SENDABLE_MODES[fmt]:
        notes.append(f"converted {fmt} mode {mode} to 8-bit RGB")
    if animated:
        notes.append("first frame only")
    top = MAX_SIDE.get(operation)
    if top and max(w, h) > top:
        s = top / max(w, h)
        if min(w, h) * s < MIN_SIDE:
            return "", (f"{path}: {w}x{h} px cannot be brought under {top} px per side without a side "
                        f"falling under {MIN_SIDE} px (not sent)")
        notes.append(f"downscaled from {w}x{h} px to fit {top} px per side")
    if path.stat().st_size > MAX_BYTES:
        notes.append(f"re-encoded: {path.stat().st_size / 1e6:.1f} MB is over the 5 MB limit")
    return "; ".join(notes), ""


def prepare_bytes(path, operation, plan=None):
    """The bytes to send for one image and a note of any change made; raises :class:`PreflightError`.

    ``plan`` is the note :func:`plan_images` already made for this file (its header is then
    not read again); without it the file is inspected here.
    """
    from PIL import Image

    if plan is None:
        plan, error = inspect_image(path, operation)
        if error:
            raise PreflightError(error)
    if not plan:
        return Path(path).read_bytes(), ""
    try:
        img = load_image(path)  # 8-bit RGB, EXIF rotation applied, alpha on white
    except UserError as exc:
        raise PreflightError(str(exc)) from None
    notes = [plan]
    top = MAX_SIDE.get(operation)
    if top and max(img.size) > top:
        s = top / max(img.size)
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.LANCZOS)
    for _ in range(8):
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        data = buf.getvalue()
        if len(data) <= MAX_BYTES:
            break
        s = math.sqrt(MAX_BYTES / len(data)) * 0.95
        new = (max(1, int(img.width * s)), max(1, int(img.height * s)))
        if min(new) < MIN_SIDE:
            raise PreflightError(f"{path}: cannot fit under 5 MB without a side falling under {MIN_SIDE} px")
        notes.append(f"downscaled to {new[0]}x{new[1]} px to fit 5 MB")
        img = img.resize(new, Image.LANCZOS)
    else:
        raise PreflightError(f"{path}: could not be encoded under 5 MB")
    return data, "; ".join(notes) + "; sent as JPEG (quality 90)"


def plan_images(operation, inputs, params):
    """Hash and preflight every input (headers only) into a list of :class:`Item`."""
    items = []
    for path in expand_inputs(inputs):
        item = Item(image=str(path))
        try:
            item.sha256 = file_sha256(path)
        except OSError:
            try:
                load_image(path)
                item.error = f"{path}: could not be read"
            except UserError as exc:
                item.error = str(exc)
            items.append(item)
            continue
        item.key = answer_key(item.sha256, operation, params)
        item.plan, item.error = inspect_image(path, operation)
        items.append(item)
    return items


# ------------------------------------------------------------------------- the client


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
    if int(max_attempts) < 1:
        raise SettingsError(f"max_attempts must be at least 1 (the first try), not {max_attempts}")
    # botocore's "max_attempts" counts retries only; "total_max_attempts" counts the first try too.
    config = Config(retries={"mode": retry_mode, "total_max_attempts": int(max_attempts)},
                    max_pool_connections=max(10, int(concurrency)))
    try:
        return boto3.session.Session().client("rekognition", region_name=region, endpoint_url=endpoint_url,
                                              config=config)
    except NoRegionError:
        raise SettingsError("no AWS region is set: pass --region (e.g. us-east-1) or set AWS_DEFAULT_REGION") from None


def check_credentials(client):
    """Raise a :class:`UserError` when boto3's chain finds no credentials (nothing is printed or stored)."""
    # What the client will sign with, as boto3's chain resolved it (private in botocore, hence getattr).
    creds = getattr(getattr(client, "_request_signer", None), "_credentials", "unknown")
    if creds is None:
        raise UserError("no AWS credentials found: boto3 looks in the environment (AWS_ACCESS_KEY_ID, "
                        "AWS_SECRET_ACCESS_KEY), in ~/.aws (a profile, chosen with AWS_PROFILE), SSO and "
                        "instance roles; set one up (aws configure) and run again")


class _RateLimit:
    """At most ``rate`` calls per second across threads (Rekognition quotas are per second)."""

    def __init__(self, rate):
        self.gap = 1.0 / float(rate) if rate else 0.0
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self):
        if not self.gap:
            return
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next)
            self.next = at + self.gap
        if at > now:
            time.sleep(at - now)


# ------------------------------------------------------------------------- dry run and run


def _store_path(out_dir):
    return Path(out_dir) / "results.sqlite"


def dry_run(operation, inputs, out_dir, min_confidence=None, max_labels=None, max_calls=None, prices=None):
    """What a run would do, without calling the service: a dict of counts and the estimated cost.

    Keys: ``operation``, ``images``, ``already_answered``, ``cannot_send``
    (preflight errors), ``to_convert``, ``to_call`` (unanswered unique images),
    ``calls`` (after ``max_calls``), ``estimated_cost_usd`` and ``price_note``.
    """
    params = operation_params(operation, min_confidence, max_labels)
    items = plan_images(operation, inputs, params)
    path = _store_path(out_dir)
    done = set()
    if path.exists():
        with ResultStore(path) as store:
            done = store.answered({i.key for i in items if i.key})
    todo = {i.key for i in items if i.key and not i.error and i.key not in done}
    calls = len(todo) if max_calls is None else min(len(todo), int(max_calls))
    return {"operation": operation, "images": len(items),
            "already_answered": sum(i.key in done for i in items if i.key),
            "cannot_send": sum(bool(i.error) for i in items),
            "to_convert": sum(bool(i.plan) and not i.error for i in items),
            "to_call": len(todo), "calls": calls,
            "estimated_cost_usd": estimate_cost(calls, operation, prices), "price_note": PRICE_NOTE}


def tag_images(operation, inputs, out_dir, *, region=None, min_confidence=None, max_labels=None,
               max_calls=None, concurrency=4, rate=None, retry_mode="standard", max_attempts=5,
               client=None, book=False, progress=True):
    """Send images to one Rekognition operation, resuming from the store; returns the tidy table.

    Writes into ``out_dir``: ``<operation>.csv`` (tidy, one row per image and
    label/face, with ``preflight`` and ``error`` columns), ``errors.csv`` (the
    images of this run that got no answer, and why), ``raw/<operation>.jsonl``
    (each image's raw response) and ``results.sqlite`` (the store: answers,
    errors, every call sent). With ``book=True`` also ``<operation>_book.csv`` in
    the columns of the book authors' scripts. ``max_calls`` caps the images sent
    in this run; images left over get the error "not sent yet" and a re-run
    continues with them. ``concurrency`` threads send at most ``rate`` calls per
    second; throttling is retried by botocore (``retry_mode``, ``max_attempts``).
    """
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    _check_operation(operation)
    if int(concurrency) < 1:
        raise SettingsError(f"concurrency must be at least 1, not {concurrency}")
    if max_calls is not None and int(max_calls) < 0:
        raise SettingsError(f"max_calls must be 0 or more, not {max_calls}")
    params = operation_params(operation, min_confidence, max_labels)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = plan_images(operation, inputs, params)
    client = client or make_client(region, retry_mode, max_attempts, concurrency)
    run_id = uuid.uuid4().hex
    store = ResultStore(_store_path(out_dir))
    local = threading.local()
    method = METHODS[operation]

    def count_call(**kwargs):  # every request that goes over the network, retries included
        store.log_call(getattr(local, "key", None), operation, run_id)

    handler_id = f"imgasdata-count-{run_id}"
    client.meta.events.register("before-send.rekognition", count_call, unique_id=handler_id)
    errors = {}  # key or image -> message
    try:
        done = store.answered({i.key for i in items if i.key})
        todo, seen = [], set()
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
        limit = _RateLimit(rate)
        fatal = threading.Event()

        def ask(item):
            if fatal.is_set():
                return item, "not sent: the run stopped after an authorisation error"
            try:
                data, note = prepare_bytes(item.image, operation, item.plan)
            except PreflightError as exc:
                return item, str(exc)
            limit.wait()
            local.key = item.key
            try:
                response = getattr(client, method)(Image={"Bytes": data}, **params)
            except ClientError as exc:
                err = exc.response.get("Error", {})
                if err.get("Code") in FATAL_CODES:
                    fatal.set()
                return item, f"{err.get('Code', 'ClientError')}: {err.get('Message', exc)}"
            except NoCredentialsError:
                fatal.set()
                return item, "no AWS credentials found"
            except BotoCoreError as exc:  # connection errors and timeouts, after botocore's retries
                return item, f"{type(exc).__name__}: {exc}"
            finally:
                local.key = None
            version = (response.get("LabelModelVersion") or response.get("TextModelVersion")
                       or response.get("ModerationModelVersion"))
            store.put(item.key, item.sha256, operation, params, item.image, response, version, note)
            return item, ""

        with ThreadPoolExecutor(max_workers=int(concurrency)) as pool:
            futures = [pool.submit(ask, item) for item in todo]
            bar = progress_bar(total=len(futures), desc=f"Rekognition {operation}", unit="img", enabled=progress)
            for fut in as_completed(futures):
                item, msg = fut.result()
                if msg:
                    errors[item.key] = msg
                    store.log_error(item.key, operation, item.image, msg)
                bar.update(1)
            bar.close()
        if fatal.is_set():
            first = next((m for m in errors.values() if m.split(":")[0] in FATAL_CODES), "authorisation error")
            raise UserError(f"Rekognition refused the credentials ({first}); answers so far are kept in "
                            f"{store.path}")
        for item in left_over:
            errors[item.key] = "not sent yet: the --max-calls cap was reached; run again to continue"
        table = _write_outputs(operation, items, store, errors, out_dir, book)
    finally:
        client.meta.events.unregister("before-send.rekognition", unique_id=handler_id)
        store.close()
    table.attrs["run_id"] = run_id
    table.attrs["calls"] = len(todo)
    return table


def _write_outputs(operation, items, store, errors, out_dir, book):
    """The tidy CSV, errors CSV, raw JSONL and (optionally) the book's columns, for every input image."""
    tidy = TIDIERS[operation]
    frames, book_frames, error_rows = [], [], []
    raw_dir = out_dir / "raw"
    raw_dir.mkdir(exist_ok=True)
    notes = {}
    with store._lock:
        for key, note in store._db.execute("SELECT key, preflight FROM answers"):
            notes[key] = note
    with open(raw_dir / f"{operation}.jsonl", "w", encoding="utf-8") as raw:
        for item in items:
            response = store.get(item.key) if item.key else None
            if response is None:
                msg = errors.get(item.key) or errors.get(item.image) or "no answer"
                error_rows.append({"image": item.image, "operation": operation, "error": msg})
                frame = pd.DataFrame([{"image": item.image, "label": "", "confidence": float("nan")}])
                frame["error"] = msg
                frames.append(frame)
                continue
            raw.write(json.dumps({"image": item.image, "sha256": item.sha256, "response": response},
                                 default=str) + "\n")
            frame = tidy(item.image, response)
            frame["preflight"] = notes.get(item.key, "")
            frame["error"] = ""
            frames.append(frame)
            if book:
                book_frames.append(book_columns(operation, item.image, response))
    columns = COLUMNS[operation] + ["preflight", "error"]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    table = table.reindex(columns=columns)
    table["preflight"] = table["preflight"].astype(object).fillna("")
    table.to_csv(out_dir / f"{operation}.csv", index=False)
    pd.DataFrame(error_rows, columns=["image", "operation", "error"]).to_csv(out_dir / "errors.csv", index=False)
    if book and book_frames:
        pd.concat(book_frames, ignore_index=True).to_csv(out_dir / f"{operation}_book.csv", index=False)
    return table
