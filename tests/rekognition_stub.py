"""A small Rekognition stand-in on 127.0.0.1 for tests: answers JSON, counts what it receives.

It speaks the service's JSON protocol (``POST /`` with ``X-Amz-Target:
RekognitionService.<Operation>``), so boto3 pointed at it with ``endpoint_url`` and
dummy credentials runs its real code path: signing, retries, parsing. Each request is
counted per SHA-256 of the image bytes received, so a test can assert that no image
was sent twice, and how many requests arrived after a given moment. ``delay`` slows
every answer; ``error`` (an error code) makes every answer that error.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWERS = {
    "DetectLabels": {"Labels": [{"Name": "Stub", "Confidence": 90.0, "Parents": [], "Aliases": [],
                                 "Categories": [], "Instances": []}], "LabelModelVersion": "3.0"},
    "DetectText": {"TextDetections": [{"DetectedText": "=HYPERLINK(\"http://x\")", "Type": "LINE", "Id": 0,
                                       "Confidence": 99.0}], "TextModelVersion": "3.0"},
    "DetectFaces": {"FaceDetails": []},
    "RecognizeCelebrities": {"CelebrityFaces": [], "UnrecognizedFaces": []},
    "DetectModerationLabels": {"ModerationLabels": [], "ModerationModelVersion": "7.0"},
}


class StubRekognition:
    """Start with :meth:`start` (or as a context manager); ``url`` is the endpoint to give boto3."""

    def __init__(self, delay=0.0, error=None, message="stub error", status=400):
        self.delay, self.error, self.message, self.status = delay, error, message, status
        self.lock = threading.Lock()
        self.counts = collections.Counter()  # sha256 of the image bytes -> requests received
        self.received = []  # (monotonic time, sha256), in order of arrival
        self._server = None

    @property
    def total(self):
        with self.lock:
            return len(self.received)

    def start(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                target = self.headers.get("X-Amz-Target", "").split(".")[-1]
                data = base64.b64decode(body.get("Image", {}).get("Bytes", ""))
                sha = hashlib.sha256(data).hexdigest()
                with stub.lock:
                    stub.counts[sha] += 1
                    stub.received.append((time.monotonic(), sha))
                if stub.delay:
                    time.sleep(stub.delay)
                if stub.error:
                    status, answer = stub.status, {"__type": stub.error, "message": stub.message}
                else:
                    status, answer = 200, ANSWERS.get(target, {})
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("x-amzn-RequestId", "stub")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
