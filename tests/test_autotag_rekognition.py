"""Rekognition path: preflight, tidy tables, botocore retries, the result store, and a SIGKILLed run that resumes.

Operations moto does not implement (RecognizeCelebrities, DetectFaces, DetectModerationLabels
raise NotImplementedError there) are tested with botocore's Stubber; throttling goes through
botocore's real retry handler by answering at the ``before-send`` event; the end-to-end run uses a
local moto server (DetectLabels) in a subprocess, with dummy credentials in the environment.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

boto3 = pytest.importorskip("boto3")
from botocore.awsrequest import AWSResponse
from botocore.stub import ANY, Stubber

from imgasdata.autotag import rekognition as rk
from imgasdata.autotag.store import ResultStore
from imgasdata.autotag.tidy import tidy_celebrities, tidy_labels

ROOT = Path(__file__).resolve().parents[1]
SECRET = "dummySecretThatMustNeverBeStored0123"

LABELS = {"Labels": [{"Name": "Crowd", "Confidence": 91.5, "Instances": [],
                      "Parents": [{"Name": "Person"}], "Aliases": [], "Categories": [{"Name": "Events"}]},
                     {"Name": "Person", "Confidence": 99.1, "Instances": [{"BoundingBox": {}, "Confidence": 99.1}],
                      "Parents": [], "Aliases": [{"Name": "Human"}], "Categories": []}],
          "LabelModelVersion": "3.0"}
CELEBS = {"CelebrityFaces": [{"Urls": ["www.imdb.com/name/nm1775466"], "Name": "John Legend", "Id": "3Ir0du6",
                              "Face": {"BoundingBox": {"Width": 0.2, "Height": 0.3, "Left": 0.4, "Top": 0.1},
                                       "Confidence": 99.9},
                              "MatchConfidence": 98.0, "KnownGender": {"Type": "Male"}}],
          "UnrecognizedFaces": []}


@pytest.fixture
def aws_env(monkeypatch):
    """Dummy credentials through the environment, as boto3's chain reads them; no profile files."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE",
                "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")


def noise_images(folder, n, size=(120, 100), fmt="png"):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        arr = np.random.default_rng(i).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        path = folder / f"img_{i:03d}.{fmt}"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------- tidy


def test_tidy_labels_one_row_per_label_and_empty_images_kept():
    df = tidy_labels("a.jpg", LABELS)
    assert df[["label", "confidence", "parents", "aliases", "instances", "model_version"]].values.tolist() == [
        ["Crowd", 91.5, "Person", "", 0, "3.0"], ["Person", 99.1, "", "Human", 1, "3.0"]]
    empty = tidy_labels("b.jpg", {"Labels": [], "LabelModelVersion": "3.0"})
    assert len(empty) == 1 and empty["label"].iloc[0] == "" and empty["model_version"].iloc[0] == "3.0"


def test_tidy_celebrities():
    df = tidy_celebrities("a.jpg", CELEBS)
    row = df.iloc[0]
    assert (row["name"], row["id"], row["known_gender"], row["urls"]) == \
        ("John Legend", "3Ir0du6", "Male", "www.imdb.com/name/nm1775466")
    assert row["match_confidence"] == pytest.approx(98.0) and row["box_left"] == pytest.approx(0.4)
    assert row["model_version"] == "unreported"
    assert len(tidy_celebrities("b.jpg", {"CelebrityFaces": [], "UnrecognizedFaces": []})) == 1


# ------------------------------------------------------------------------- preflight


def test_preflight_tiny_image_refused(tmp_path):
    (tiny,) = noise_images(tmp_path, 1, size=(79, 300))
    _, error = rk.inspect_image(tiny, "labels")
    assert "smaller than Rekognition's minimum of 80 px" in error
    with pytest.raises(rk.PreflightError):
        rk.prepare_bytes(tiny, "labels")


def test_preflight_downscales_too_wide_and_converts_formats(tmp_path):
    wide = tmp_path / "wide.png"
    Image.new("RGB", (12000, 900), (10, 200, 30)).save(wide)
    data, note = rk.prepare_bytes(wide, "labels")
    sent = Image.open(__import__("io").BytesIO(data))
    assert sent.format == "JPEG" and sent.size == (10000, 750)
    assert "downscaled from 12000x900" in note
    # Text detection has no 10,000 px limit in the documentation: the file is sent as it is.
    assert rk.prepare_bytes(wide, "text") == (wide.read_bytes(), "")
    rgba = tmp_path / "alpha.png"
    Image.new("RGBA", (100, 100), (255, 0, 0, 0)).save(rgba)
    data, note = rk.prepare_bytes(rgba, "labels")
    assert "mode RGBA" in note and Image.open(__import__("io").BytesIO(data)).getpixel((5, 5))[0] > 240
    webp = tmp_path / "pic.webp"
    Image.new("RGB", (100, 100), (0, 0, 255)).save(webp)
    assert "converted WEBP to JPEG" in rk.prepare_bytes(webp, "labels")[1]


def test_preflight_over_5_mb_is_reencoded(tmp_path):
    (big,) = noise_images(tmp_path, 1, size=(1800, 1500))  # random noise PNG: about 8 MB
    assert big.stat().st_size > rk.MAX_BYTES
    data, note = rk.prepare_bytes(big, "labels")
    assert len(data) <= rk.MAX_BYTES and "over the 5 MB limit" in note


def test_dry_run_counts_and_cost(tmp_path):
    noise_images(tmp_path / "imgs", 3)
    noise_images(tmp_path / "imgs", 1, size=(50, 50), fmt="jpg")
    s = rk.dry_run("labels", [tmp_path / "imgs"], tmp_path / "out", max_calls=2,
                   prices={"labels": [(1, 10.0), (None, 1.0)]})
    assert (s["images"], s["cannot_send"], s["to_call"], s["calls"]) == (4, 1, 3, 2)
    assert s["estimated_cost_usd"] == pytest.approx(0.011)  # 1 image at $10/1000 + 1 at $1/1000
    assert rk.estimate_cost(2_000_000, "labels") == pytest.approx(1000 + 800)


# ------------------------------------------------------------------------- Stubber and retries


def stubbed_client():
    return boto3.client("rekognition", region_name="us-east-1")


def test_celebrities_with_stubber_then_no_second_call(tmp_path, aws_env):
    paths = noise_images(tmp_path / "imgs", 2)
    (tiny,) = noise_images(tmp_path / "small", 1, size=(40, 40))
    client = stubbed_client()
    with Stubber(client) as stub:
        stub.add_response("recognize_celebrities", CELEBS, {"Image": {"Bytes": ANY}})
        stub.add_response("recognize_celebrities", {"CelebrityFaces": [], "UnrecognizedFaces": []},
                          {"Image": {"Bytes": ANY}})
        table = rk.tag_images("celebrities", [*paths, tiny], tmp_path / "out", client=client, concurrency=1,
                              book=True, progress=False)
        stub.assert_no_pending_responses()
    assert table["image"].nunique() == 3
    assert sorted(table["name"].fillna("").tolist()) == ["", "", "John Legend"]
    err = pd.read_csv(tmp_path / "out" / "errors.csv")
    assert err["image"].tolist() == [str(tiny)] and "80 px" in err["error"].iloc[0]
    book = pd.read_csv(tmp_path / "out" / "celebrities_book.csv")
    assert "celeb_match_conf" in book.columns and "John Legend" in book["celeb_name"].tolist()
    # Second run: the Stubber has no answers queued, so any call would raise; none is made.
    with Stubber(client):
        again = rk.tag_images("celebrities", [*paths, tiny], tmp_path / "out", client=client, progress=False)
    assert again.attrs["calls"] == 0 and sorted(again["name"].fillna("").tolist()) == ["", "", "John Legend"]


@pytest.mark.parametrize("operation,method,response,expected", [
    ("faces", "detect_faces", {"FaceDetails": [{"BoundingBox": {"Left": 0.1}, "Confidence": 99.0,
                                                "AgeRange": {"Low": 30, "High": 40},
                                                "Emotions": [{"Type": "CALM", "Confidence": 80.0}]}]},
     {"label": "face", "age_low": 30, "top_emotion": "CALM"}),
    ("moderation", "detect_moderation_labels",
     {"ModerationLabels": [{"Name": "Violence", "ParentName": "", "Confidence": 70.0, "TaxonomyLevel": 1}],
      "ModerationModelVersion": "7.0"}, {"label": "Violence", "model_version": "7.0"}),
])
def test_operations_moto_lacks_with_stubber(tmp_path, aws_env, operation, method, response, expected):
    paths = noise_images(tmp_path / "imgs", 1)
    client = stubbed_client()
    mc = 60 if operation == "moderation" else None
    params = {"Image": {"Bytes": ANY}, **rk.operation_params(operation, min_confidence=mc)}
    with Stubber(client) as stub:
        stub.add_response(method, response, params)
        table = rk.tag_images(operation, paths, tmp_path / "out", client=client, min_confidence=mc, progress=False)
    for k, v in expected.items():
        assert table[k].iloc[0] == v


class _Raw:
    def __init__(self, body):
        self.body = body

    def stream(self, **kwargs):
        yield self.body


def answer_at_send(client, script):
    """Answer requests at botocore's ``before-send`` event, so its real retry handler sees each answer."""
    def respond(request, **kwargs):
        status, body = script.pop(0) if script else (200, LABELS)
        headers = {"x-amzn-RequestId": "test", "Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, status, headers, _Raw(json.dumps(body).encode()))

    client.meta.events.register_last("before-send.rekognition", respond)


THROTTLE = (400, {"__type": "ThrottlingException", "message": "Rate exceeded"})


def test_throttling_retried_by_botocore_then_success(tmp_path, aws_env):
    (path,) = noise_images(tmp_path / "imgs", 1)
    client = rk.make_client("us-east-1", retry_mode="standard", max_attempts=4)
    answer_at_send(client, [THROTTLE, (400, {"__type": "ProvisionedThroughputExceededException",
                                             "message": "slow down"})])
    table = rk.tag_images("labels", [path], tmp_path / "out", client=client, progress=False)
    assert table["label"].tolist() == ["Crowd", "Person"] and (table["error"] == "").all()
    with ResultStore(tmp_path / "out" / "results.sqlite") as store:
        assert len(store.calls()) == 3  # two throttled attempts, then the answer
        assert store.count("answers") == 1


def test_throttling_that_persists_is_an_error_row_not_an_answer(tmp_path, aws_env):
    (path,) = noise_images(tmp_path / "imgs", 1)
    client = rk.make_client("us-east-1", retry_mode="standard", max_attempts=2)
    answer_at_send(client, [THROTTLE, THROTTLE])
    table = rk.tag_images("labels", [path], tmp_path / "out", client=client, progress=False)
    assert table["error"].iloc[0].startswith("ThrottlingException")
    with ResultStore(tmp_path / "out" / "results.sqlite") as store:
        assert store.count("answers") == 0 and store.count("errors") == 1
    # The error was not cached: the next run asks again and gets the answer.
    table = rk.tag_images("labels", [path], tmp_path / "out", client=client, progress=False)
    assert table["label"].tolist() == ["Crowd", "Person"]


def test_max_calls_caps_and_resumes(tmp_path, aws_env):
    paths = noise_images(tmp_path / "imgs", 3)
    client = rk.make_client("us-east-1")
    answer_at_send(client, [])
    first = rk.tag_images("labels", paths, tmp_path / "out", client=client, max_calls=2, progress=False)
    assert first.attrs["calls"] == 2
    assert first.loc[first["error"] != "", "error"].str.startswith("not sent yet").sum() == 1
    second = rk.tag_images("labels", paths, tmp_path / "out", client=client, max_calls=2, progress=False)
    assert second.attrs["calls"] == 1 and (second["error"] == "").all()


def test_missing_credentials_is_a_user_error(tmp_path, monkeypatch, aws_env):
    from imgasdata.errors import UserError

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    paths = noise_images(tmp_path / "imgs", 1)
    client = rk.make_client("us-east-1", max_attempts=1)
    client.meta.events.register("before-send.rekognition", lambda **kw: pytest.fail("nothing may be sent"))
    with pytest.raises(UserError, match="no AWS credentials"):
        rk.tag_images("labels", paths, tmp_path / "out", client=client, progress=False)


# ------------------------------------------------------------------------- end to end: moto server and SIGKILL


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def moto_endpoint():
    server_mod = pytest.importorskip("moto.server")
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def answered_keys(db):
    if not db.exists():
        return set()
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {r[0] for r in con.execute("SELECT key FROM answers")}
    except sqlite3.OperationalError:  # the run has not created the table yet
        return set()
    finally:
        con.close()


def test_end_to_end_sigkill_then_resume_without_repeated_calls(tmp_path, moto_endpoint):
    n = 16
    noise_images(tmp_path / "imgs", n)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1",
               AWS_ENDPOINT_URL=moto_endpoint, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1",
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    cmd = [sys.executable, "-m", "imgasdata", "autotag", "rekognition", "labels", str(tmp_path / "imgs"),
           "--out", str(out)]
    db = out / "results.sqlite"
    # Run 1: 3 calls per second, killed with SIGKILL once a few answers are stored.
    proc = subprocess.Popen(cmd + ["--rate", "3", "--concurrency", "1"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(answered_keys(db)) < 4:
        time.sleep(0.05)
    assert proc.poll() is None, "the first run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = answered_keys(db)
    assert 4 <= len(before) < n
    with ResultStore(db) as store:
        first_calls = store.calls()
    # Run 2: the same command, no rate limit, to the end.
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    with ResultStore(db) as store:
        second_calls = store.calls()[len(first_calls):]
        assert store.count("answers") == n
    called_again = {key for key, _, _ in second_calls} & before
    assert called_again == set()  # not one image answered before the kill was sent again
    assert len(second_calls) == n - len(before)
    table = pd.read_csv(out / "labels.csv", keep_default_na=False)
    assert table["image"].nunique() == n and set(table["label"]) == {"Mobile Phone"}
    assert (table["model_version"].astype(str) == "3.0").all()
    # Run 3: nothing left to ask.
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0 and "0 sent in this run" in again.stdout
    with ResultStore(db) as store:
        assert len(store.calls()) == len(first_calls) + len(second_calls)
    # The secret key is in none of the files written.
    for f in out.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


def test_cli_dry_run_calls_nothing(tmp_path, capsys, aws_env):
    from imgasdata.cli import main

    noise_images(tmp_path / "imgs", 2)
    noise_images(tmp_path / "imgs", 1, size=(60, 60), fmt="jpg")
    assert main(["autotag", "rekognition", "labels", str(tmp_path / "imgs"), "--out", str(tmp_path / "out"),
                 "--dry-run", "--max-calls", "1"]) == 0
    printed = capsys.readouterr().out
    assert "images: 3" in printed and "cannot_send: 1" in printed and "calls: 1" in printed
    assert not (tmp_path / "out" / "results.sqlite").exists()
    assert main(["autotag", "rekognition", "labels", str(tmp_path / "imgs"), "--out", str(tmp_path / "o2"),
                 "--min-confidence", "120", "--dry-run"]) == 2
    assert "min_confidence must be a number in [0, 100]" in capsys.readouterr().err
