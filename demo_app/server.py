"""The demo application under test: an HTTP server that receives experiment webhooks.

It verifies every signature with the `standardwebhooks` library, applies the
overrides to the simulated pipeline, and answers some tests synchronously (200 with
the result) and others with 202, posting the result to `callbackUrl` shortly after,
signed the same way with the shared secret.
"""

import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import standardwebhooks

from demo_app import pipeline

logger = logging.getLogger("demo_app")

REPO_DIR = Path(__file__).resolve().parent.parent


def secret_file():
    return Path(os.environ.get("VAR_DIR", REPO_DIR / "var")) / "demo_app.secret"


def application_file():
    return Path(os.environ.get("VAR_DIR", REPO_DIR / "var")) / "demo_app.application"


def load_application_id():
    """The demo application's id for pull mode: $DEMO_APPLICATION_ID, else the file load_demo writes."""
    if os.environ.get("DEMO_APPLICATION_ID"):
        return os.environ["DEMO_APPLICATION_ID"]
    path = application_file()
    return path.read_text().strip() if path.exists() else ""


def load_secret():
    """The webhook secret: $DEMO_WEBHOOK_SECRET, else the file load_demo writes."""
    if os.environ.get("DEMO_WEBHOOK_SECRET"):
        return os.environ["DEMO_WEBHOOK_SECRET"]
    path = secret_file()
    return path.read_text().strip() if path.exists() else ""


class DemoApplication:
    """What the server does with a verified delivery; holds settings and the dedupe memory."""

    def __init__(self, *, secret=None, async_fraction=0.3, speed=0.1, callback_delay=0.2):
        self.fixed_secret = secret
        self.async_fraction = async_fraction
        self.speed = speed  # fraction of the simulated latency actually slept
        self.callback_delay = callback_delay
        self.seen = OrderedDict()  # webhook-id -> answer, for at-least-once deliveries
        self.lock = threading.Lock()
        self.client = httpx.Client(timeout=10)

    def secret(self):
        return self.fixed_secret or load_secret()

    def verify(self, body, headers):
        secret = self.secret()
        if not secret:
            raise standardwebhooks.WebhookVerificationError("No webhook secret configured.")
        return standardwebhooks.Webhook(secret).verify(body, headers)

    def is_async(self, test_id):
        return int(hashlib.sha256(test_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < self.async_fraction

    def handle(self, payload, msg_id):
        """Return (status, body) for a verified delivery."""
        if payload.get("type") == "webhook.ping":
            return 200, {"ok": True}
        if payload.get("type") != "experiment.test":
            return 400, {"detail": "Unknown event type."}
        with self.lock:
            if msg_id in self.seen:
                return self.seen[msg_id]
        data = payload["data"]
        experiment = data["experiment"]
        variant = (experiment.get("variant") or {}).get("name", "")
        result = pipeline.answer(data["task"], experiment.get("overrides"), data.get("repetition", 1), variant)
        sleep = result["metrics"]["latency_ms"] / 1000 * self.speed
        if self.is_async(data["testId"]):
            answer = (202, {"accepted": True})
            threading.Thread(target=self.post_callback, args=(data["callbackUrl"], msg_id, result, sleep), daemon=True).start()
        else:
            time.sleep(sleep)
            answer = (200, result)
        with self.lock:
            self.seen[msg_id] = answer
            while len(self.seen) > 50_000:
                self.seen.popitem(last=False)
        return answer

    def post_callback(self, url, msg_id, result, sleep):
        time.sleep(self.callback_delay + sleep)
        body = json.dumps(result).encode()
        webhook = standardwebhooks.Webhook(self.secret())
        for attempt in range(5):
            now = time.time()
            signature = webhook.sign(msg_id, datetime.fromtimestamp(now, tz=UTC), body.decode())
            headers = {
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(int(now)),
                "webhook-signature": signature,
            }
            try:
                response = self.client.post(url, content=body, headers=headers)
                if response.status_code < 500:
                    if response.status_code >= 400:
                        logger.warning("callback %s answered %s: %s", url, response.status_code, response.text[:200])
                    return
            except httpx.HTTPError as error:
                logger.warning("callback %s failed: %s", url, error)
            time.sleep(2**attempt)


def make_server(host="127.0.0.1", port=8100, **options):
    """A ThreadingHTTPServer running the demo application (not yet serving)."""
    app = DemoApplication(**options)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):
            logger.debug(format, *args)

        def reply(self, status, body):
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self):
            self.reply(200, {"name": "demo application under test", "webhook": "/webhook"})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.path.rstrip("/") != "/webhook":
                return self.reply(404, {"detail": "Not found."})
            try:
                payload = app.verify(body, dict(self.headers))
            except standardwebhooks.WebhookVerificationError as error:
                return self.reply(401, {"detail": f"Bad signature: {error}"})
            except ValueError:
                return self.reply(400, {"detail": "Body is not JSON."})
            try:
                status, answer = app.handle(payload, self.headers.get("webhook-id"))
            except (KeyError, TypeError, AttributeError) as error:
                return self.reply(400, {"detail": f"Malformed payload: {error}"})
            self.reply(status, answer)

    class Server(ThreadingHTTPServer):
        request_queue_size = 256
        daemon_threads = True
        allow_reuse_address = True

    server = Server((host, port), Handler)
    server.app = app
    return server


def serve_in_thread(**options):
    """Start a demo server in a background thread; returns it (call .shutdown() to stop)."""
    server = make_server(**options)
    threading.Thread(target=server.serve_forever, name="demo-app", daemon=True).start()
    return server
