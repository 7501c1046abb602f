"""Rekognition runs that stop when told and never pay twice, against a local stub endpoint.

The stub (``rekognition_stub.StubRekognition``) is a threaded ``http.server`` on 127.0.0.1
that speaks Rekognition's JSON protocol and counts every request per SHA-256 of the image
bytes it received; boto3 reaches it through ``endpoint_url`` with dummy credentials, so its
real signing, retry and parsing code runs. The command line runs in a subprocess where a
signal or a second process is part of the test.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

pytest.importorskip("boto3")

from rekognition_stub import StubRekognition  # noqa: E402

from imgasdata.autotag import rekognition as rk  # noqa: E402
from imgasdata.autotag.store import ResultStore, scrub  # noqa: E402
from imgasdata.outputs import excel_safe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def noise_images(folder, n, size=(100, 90), fmt="png", start=0):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        arr = np.random.default_rng(i).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        path = folder / f"img_{i:03d}.{fmt}"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def aws_environ(tmp_path, endpoint=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testingsecret", AWS_DEFAULT_REGION="us-east-1",
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    for k, v in aws_environ(tmp_path).items():
        if k.startswith("AWS_"):
            monkeypatch.setenv(k, v)


def cli(tmp_path, *args):
    return [sys.executable, "-m", "imgasdata", "autotag", "rekognition", *map(str, args)]


def answered(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    finally:
        con.close()


# ------------------------------------------------------------------------- Ctrl-C


def test_sigint_stops_sending_and_a_second_run_completes_the_rest(tmp_path):
    n, concurrency = 40, 2
    noise_images(tmp_path / "imgs", n)
    out = tmp_path / "out"
    with StubRekognition(delay=0.25) as stub:
        env = aws_environ(tmp_path, stub.url)
        cmd = cli(tmp_path, "labels", tmp_path / "imgs", "--out", out, "--concurrency", concurrency)
        # A shell that starts a job in the background (a CI runner may) makes it ignore SIGINT, and
        # Python keeps an ignored SIGINT ignored: give the run the default, as a terminal would.
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 120
        while stub.total < 6 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        at_interrupt = stub.total
        _, err = proc.communicate(timeout=120)
        after = stub.total - at_interrupt
        print(f"\nrequests received after SIGINT: {after} (concurrency {concurrency}; "
              f"{at_interrupt} before it)")
        assert proc.returncode == 130, err
        assert after <= concurrency  # at most the requests that were already on their way
        assert "left without an answer" in err and "run the same command again" in err
        first = answered(out / "results.sqlite")
        assert at_interrupt <= first + concurrency and first < n  # every request received was stored
        table = pd.read_csv(out / "labels.csv", keep_default_na=False)
        assert table["image"].nunique() == n  # the CSVs were written from the store on the way out
        assert (table["error"] != "").sum() == n - first
        # The second run sends the rest, and no image twice.
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        assert len(stub.counts) == n and set(stub.counts.values()) == {1}
    table = pd.read_csv(out / "labels.csv", keep_default_na=False)
    assert (table["error"] == "").all() and set(table["label"]) == {"Stub"}


# ------------------------------------------------------------------------- fatal errors


@pytest.mark.parametrize("code,expected", [
    ("ExpiredTokenException", "session token has expired"),
    ("ExpiredToken", "session token has expired"),
    ("AccessDeniedException", "refused access"),
    ("UnrecognizedClientException", "did not accept the credentials"),
])
def test_credential_errors_stop_the_run_with_one_sentence(tmp_path, aws_env, capsys, code, expected):
    from imgasdata.cli import main

    noise_images(tmp_path / "imgs", 30)
    message = "User: arn:aws:iam::123456789012:user/alice is not authorized (account 123456789012)"
    with StubRekognition(error=code, message=message) as stub:
        status = main(["autotag", "rekognition", "labels", str(tmp_path / "imgs"), "--out", str(tmp_path / "out"),
                       "--concurrency", "4", "--endpoint-url", stub.url])
        sent = stub.total
    err = capsys.readouterr().err
    assert status == 2
    assert sent <= 8  # the requests in flight when the first answer came, not the other 22+
    lines = [line for line in err.splitlines() if line.startswith("imgasdata")]
    assert len(lines) == 1 and expected in lines[0] and "30 image(s) left" in lines[0]
    written = b"".join(f.read_bytes() for f in (tmp_path / "out").rglob("*") if f.is_file())
    assert b"123456789012" not in written and b"arn:aws" not in written and "123456789012" not in err


def test_unreachable_endpoint_and_region_typo_stop_at_once(tmp_path, aws_env, capsys):
    from imgasdata.cli import main

    noise_images(tmp_path / "imgs", 5)
    base = ["autotag", "rekognition", "labels", str(tmp_path / "imgs"), "--out", str(tmp_path / "out")]
    assert main(base + ["--region", "us-east1"]) == 2
    assert "not an AWS region name" in capsys.readouterr().err
    with StubRekognition() as stub:
        url = stub.url  # a port that nothing listens on once the stub is gone
    assert main(base + ["--endpoint-url", url, "--max-attempts", "2", "--concurrency", "1"]) == 2
    err = capsys.readouterr().err
    assert "could not connect to the Rekognition endpoint" in err and "5 image(s) left" in err


def test_repeated_identical_errors_stop_the_run(tmp_path, aws_env, capsys):
    from imgasdata.cli import main

    noise_images(tmp_path / "imgs", 30)
    with StubRekognition(error="InternalServerError", status=500) as stub:
        status = main(["autotag", "rekognition", "labels", str(tmp_path / "imgs"), "--out", str(tmp_path / "out"),
                       "--endpoint-url", stub.url, "--max-attempts", "1", "--concurrency", "2",
                       "--stop-after-errors", "3"])
        sent = stub.total
    assert status == 2 and sent <= 3 + 2
    assert "3 'InternalServerError' errors in a row" in capsys.readouterr().err


def test_bad_numbers_are_refused_before_anything_is_sent(tmp_path, aws_env, capsys):
    from imgasdata.cli import main

    noise_images(tmp_path / "imgs", 3)
    base = ["autotag", "rekognition", "labels", str(tmp_path / "imgs"), "--out", str(tmp_path / "out")]
    with StubRekognition() as stub:
        for extra, words in [(["--max-labels", "-1"], "max_labels must be an integer >= 1, got -1"),
                             (["--concurrency", "0"], "concurrency must be"),
                             (["--rate", "0"], "rate must be a number > 0"),
                             (["--max-attempts", "0"], "max_attempts must be"),
                             (["--max-calls", "-2"], "max_calls must be")]:
            assert main(base + ["--endpoint-url", stub.url] + extra) == 2
            assert words in capsys.readouterr().err
        assert stub.total == 0
    assert not (tmp_path / "out" / "results.sqlite").exists()


def test_prices_file_is_checked(tmp_path, aws_env, capsys):
    from imgasdata.cli import main

    noise_images(tmp_path / "imgs", 2)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"text": [[None, 1.5]]}))
    base = ["autotag", "rekognition", "labels", str(tmp_path / "imgs"), "--out", str(tmp_path / "out"), "--dry-run"]
    assert main(base + ["--prices", str(prices)]) == 2
    err = capsys.readouterr().err
    assert "has no prices for 'labels'" in err and len(err.strip().splitlines()) == 1
    prices.write_text(json.dumps({"labels": [[1000, 2.0], [-5, 1.0]]}))
    assert main(base + ["--prices", str(prices)]) == 2
    assert "last count null" in capsys.readouterr().err
    prices.write_text(json.dumps({"labels": [[1, 10.0], [None, 1.0]]}))
    assert main(base + ["--prices", str(prices)]) == 0
    assert "estimated_cost_usd: 0.011" in capsys.readouterr().out


def test_default_price_tiers_are_the_published_monthly_ones():
    tiers = rk.DEFAULT_PRICES["labels"]
    assert [size for size, _ in tiers] == [1_000_000, 4_000_000, 30_000_000, None]
    assert rk.estimate_cost(5_000_000, "labels") == pytest.approx(1000 + 4000 * 0.8)
    assert "must be checked" in rk.PRICE_NOTE and rk.PRICES_AS_OF in rk.PRICE_NOTE


# ------------------------------------------------------------------------- one payer per store


def test_two_runs_on_one_store_send_each_image_once(tmp_path):
    n = 24
    noise_images(tmp_path / "imgs", n)
    out = tmp_path / "out"
    with StubRekognition(delay=0.1) as stub:
        env = aws_environ(tmp_path, stub.url)
        cmd = cli(tmp_path, "labels", tmp_path / "imgs", "--out", out, "--concurrency", 2)
        runs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
        results = [p.communicate(timeout=300) for p in runs]
        assert [p.returncode for p in runs] == [0, 0], results
        # A third run collects any image the other run was sending when one of them looked.
        assert subprocess.run(cmd, env=env, capture_output=True, timeout=300, check=False).returncode == 0
        assert len(stub.counts) == n and set(stub.counts.values()) == {1}
    with ResultStore(out / "results.sqlite") as store:
        assert store.count("answers") == n


def test_a_dead_runs_claim_is_taken_over_and_a_live_one_is_not(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        assert store.claim("k1", "s1", "run-a") == "mine"
        # run-a is not registered as live in this process: as if it had crashed
        assert store.claim("k1", "s1", "run-b") == "mine"
        from imgasdata.autotag.store import run_ended, run_started

        run_started("run-b")
        try:
            assert store.claim("k1", "s1", "run-c") == "busy"
        finally:
            run_ended("run-b")
        store.put("k1", "s1", "sha", "labels", {}, "http://x", "a.png", {"Labels": []})
        assert store.claim("k1", "s1", "run-c") == "answered"


def test_key_is_the_bytes_sent_and_the_endpoint(tmp_path, aws_env):
    webp = tmp_path / "imgs" / "pic.webp"
    webp.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(webp)
    out = tmp_path / "out"
    with StubRekognition() as a, StubRekognition() as b:
        rk.tag_images("labels", [webp], out, endpoint_url=a.url, progress=False)
        (sent_sha,) = a.counts
        with ResultStore(out / "results.sqlite") as store:
            assert store.count("answers") == 1
        con = sqlite3.connect(out / "results.sqlite")
        assert con.execute("SELECT sha256, endpoint FROM answers").fetchone() == (sent_sha, a.url)
        con.close()
        # The same folder at another endpoint: not served from the first endpoint's answer.
        rk.tag_images("labels", [webp], out, endpoint_url=b.url, progress=False)
        rk.tag_images("labels", [webp], out, endpoint_url=a.url, progress=False)
        assert sum(a.counts.values()) == 1 and sum(b.counts.values()) == 1


# ------------------------------------------------------------------------- bad files


def test_non_utf8_name_is_stored_and_written(tmp_path, aws_env):
    folder = tmp_path / "imgs"
    noise_images(folder, 1)
    latin = os.path.join(os.fsencode(folder), b"Bj\xf6rk.png")
    with open(latin, "wb") as fh:
        Image.fromarray(np.random.default_rng(9).integers(0, 256, (90, 100, 3), dtype=np.uint8)).save(fh, "PNG")
    out = tmp_path / "out"
    with StubRekognition() as stub:
        table = rk.tag_images("labels", [folder], out, endpoint_url=stub.url, progress=False)
        assert (table["error"] == "").all() and table["image"].nunique() == 2
        again = rk.tag_images("labels", [folder], out, endpoint_url=stub.url, progress=False)
        assert again.attrs["calls"] == 0 and stub.total == 2
    written = pd.read_csv(out / "labels.csv", keep_default_na=False)
    assert any(name.endswith("Bj\\xf6rk.png") for name in written["image"])


def test_any_exception_for_one_image_is_its_error_row(tmp_path, aws_env, monkeypatch):
    paths = noise_images(tmp_path / "imgs", 3)
    real = rk.prepare

    def flaky(data, name, operation):
        if name.endswith("img_001.png"):
            raise RuntimeError("disk vanished")
        return real(data, name, operation)

    monkeypatch.setattr(rk, "prepare", flaky)
    gone = paths[2]
    with StubRekognition() as stub:
        real_read = Path.read_bytes

        def read_bytes(self):  # the third file disappears after planning
            if self == gone and getattr(read_bytes, "planned", False):
                raise FileNotFoundError(2, "No such file or directory")
            return real_read(self)

        monkeypatch.setattr(rk, "plan_images", _planned_then(rk.plan_images, read_bytes))
        monkeypatch.setattr(Path, "read_bytes", read_bytes)
        table = rk.tag_images("labels", paths, tmp_path / "out", endpoint_url=stub.url, concurrency=1,
                              progress=False)
        assert stub.total == 1
    errors = dict(zip(table["image"], table["error"]))
    assert errors[str(paths[0])] == ""
    assert errors[str(paths[1])] == "RuntimeError: disk vanished"
    assert "could not be read (No such file or directory)" in errors[str(paths[2])]
    assert len(pd.read_csv(tmp_path / "out" / "errors.csv")) == 2


def _planned_then(plan, reader):
    def wrapped(*args, **kwargs):
        items = plan(*args, **kwargs)
        reader.planned = True
        return items
    return wrapped


def png_16bit_rgb(path, w=100, h=90):
    """A 16-bit-per-channel RGB PNG, written by hand (Pillow writes RGB at 8 bits)."""
    arr = np.random.default_rng(1).integers(0, 65535, (h, w, 3)).astype(">u2")
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return arr


def test_16_bit_rgb_png_is_sent_as_8_bit(tmp_path):
    arr = png_16bit_rgb(tmp_path / "deep.png")
    data, note = rk.prepare_bytes(tmp_path / "deep.png", "labels")
    assert "converted 16-bit PNG to 8-bit" in note
    sent = Image.open(io.BytesIO(data))
    assert sent.format == "JPEG" and sent.mode == "RGB" and sent.size == (100, 90)
    # the 8-bit values are the 16-bit ones scaled (JPEG is lossy: compare the means)
    assert np.asarray(sent).mean() == pytest.approx((arr >> 8).mean(), abs=3)


def test_large_jpeg_is_draft_decoded_and_a_png_bomb_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(rk, "MAX_PIXELS", 1_000_000)  # stands for Pillow's ~89 megapixels
    big = tmp_path / "phone.jpg"
    Image.new("RGB", (1600, 1200), (200, 30, 30)).save(big, quality=95)  # 1.9 MP: over the stand-in limit
    data, note = rk.prepare_bytes(big, "labels")
    assert "decoded at 1/2 scale" in note
    assert Image.open(io.BytesIO(data)).size == (800, 600)
    png = tmp_path / "big.png"
    Image.new("RGB", (1600, 1200)).save(png)
    with pytest.raises(rk.PreflightError, match="decompression-bomb limit"):
        rk.prepare_bytes(png, "labels")


def test_png_claiming_absurd_dimensions_is_refused(tmp_path):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    plan, error = rk.inspect_image(bomb, "text")
    assert plan == "" and "decompression-bomb" in error


# ------------------------------------------------------------------------- spreadsheets


def test_excel_safe_prefixes_formula_cells_only():
    frame = pd.DataFrame({"label": ["=1+1", "+x", "-y", "@SUM(A1)", "\tz", "plain", "a=b"],
                          "confidence": [-1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]})
    safe = excel_safe(frame)
    assert safe["label"].tolist() == ["'=1+1", "'+x", "'-y", "'@SUM(A1)", "'\tz", "plain", "a=b"]
    assert safe["confidence"].tolist() == frame["confidence"].tolist()  # numbers stay numbers
    assert frame["label"].iloc[0] == "=1+1"  # the input is not changed


def test_excel_safe_is_opt_in_for_rekognition_outputs(tmp_path, aws_env):
    paths = noise_images(tmp_path / "imgs", 1)
    with StubRekognition() as stub:
        rk.tag_images("text", paths, tmp_path / "exact", endpoint_url=stub.url, progress=False)
        rk.tag_images("text", paths, tmp_path / "safe", endpoint_url=stub.url, progress=False, excel_safe=True)
    exact = pd.read_csv(tmp_path / "exact" / "text.csv", keep_default_na=False)
    safe = pd.read_csv(tmp_path / "safe" / "text.csv", keep_default_na=False)
    assert exact["label"].iloc[0] == '=HYPERLINK("http://x")'
    assert safe["label"].iloc[0] == '\'=HYPERLINK("http://x")'


def test_scrub_removes_arns_and_account_ids():
    text = "User: arn:aws:sts::123456789012:assumed-role/R/s is not authorized; account 123456789012."
    assert scrub(text) == "User: <arn> is not authorized; account <account-id>."


def test_every_operation_is_one_record():
    for name, op in rk.OPERATIONS.items():
        assert op.name == name and op.price_key in rk.DEFAULT_PRICES
        assert callable(op.params) and callable(op.tidy) and op.columns[:3] == ("image", "label", "confidence")
    assert rk.operation_params("labels", 50, 10) == {"MinConfidence": 50.0, "MaxLabels": 10}
    with pytest.raises(rk.SettingsError, match="labels only"):
        rk.operation_params("faces", max_labels=3)


def test_scrub_keeps_an_image_name_that_looks_like_an_account():
    name = "/photos/201901011230.jpg"
    assert scrub(f"{name}: 40x40 px, account 123456789012", keep=name) == f"{name}: 40x40 px, account <account-id>"


def test_classify_credential_sso_and_parameter_failures_as_fatal():
    from botocore import exceptions as bx

    for exc in (bx.NoCredentialsError(), bx.UnauthorizedSSOTokenError(), bx.ParamValidationError(report="x"),
                bx.EndpointConnectionError(endpoint_url="https://rekognition.us-east1.amazonaws.com")):
        kind, _, message = rk.classify(exc, "DetectLabels", "https://rekognition.us-east1.amazonaws.com")
        assert kind == "fatal" and message.count(";") <= 2, (exc, message)
    assert "aws sso login" in rk.classify(bx.UnauthorizedSSOTokenError())[2]
    err = bx.ClientError({"Error": {"Code": "InvalidImageFormatException", "Message": "bad"}}, "DetectLabels")
    assert rk.classify(err)[0] == "image"
    err = bx.ClientError({"Error": {"Code": "AccessDenied", "Message": "arn:aws:iam::123456789012:user/a"}},
                         "DetectLabels")
    kind, code, message = rk.classify(err, "DetectLabels")
    assert (kind, code) == ("fatal", "AccessDenied") and "123456789012" not in message


def test_stubbed_expired_token_stops_after_one_call(tmp_path, aws_env):
    from botocore.stub import ANY, Stubber

    paths = noise_images(tmp_path / "imgs", 5)
    client = rk.make_client("us-east-1")
    calls = []
    client.meta.events.register("provide-client-params.rekognition.DetectLabels", lambda **kw: calls.append(1))
    with Stubber(client) as stub:
        stub.add_client_error("detect_labels", "ExpiredToken", "The security token included in the request is "
                              "expired", expected_params={"Image": {"Bytes": ANY}})
        with pytest.raises(rk.RunStopped, match="session token has expired"):
            rk.tag_images("labels", paths, tmp_path / "out", client=client, concurrency=1, progress=False)
        stub.assert_no_pending_responses()
    assert len(calls) == 1  # the other four images were never sent
    assert len(pd.read_csv(tmp_path / "out" / "errors.csv")) == 5


def test_a_store_from_before_the_bytes_sent_key_is_refused(tmp_path):
    from imgasdata.errors import DataError

    db = tmp_path / "results.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE answers (key TEXT PRIMARY KEY, sha256 TEXT, operation TEXT, params TEXT, image TEXT, "
                "response TEXT, model_version TEXT, preflight TEXT, answered_at REAL)")
    con.close()
    with pytest.raises(DataError, match="use a new --out"):
        ResultStore(db)


def test_ctrl_c_while_planning_leaves_the_last_csvs_alone(tmp_path, aws_env, monkeypatch):
    paths = noise_images(tmp_path / "imgs", 2)
    out = tmp_path / "out"
    with StubRekognition() as stub:
        rk.tag_images("labels", paths, out, endpoint_url=stub.url, progress=False)
        before = (out / "labels.csv").read_bytes()

        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(rk, "plan_images", interrupted)
        with pytest.raises(KeyboardInterrupt):
            rk.tag_images("labels", paths, out, endpoint_url=stub.url, progress=False)
    assert (out / "labels.csv").read_bytes() == before
