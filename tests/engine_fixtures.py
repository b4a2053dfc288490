"""Fixtures for engine tests: a real HTTP receiver in the test process and a real Celery worker process."""

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import standardwebhooks

BASE_DIR = Path(__file__).resolve().parent.parent


@dataclass
class Reply:
    status: int = 200
    body: object = None  # dict/list -> JSON, bytes as is, None -> empty
    headers: dict = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    headers: dict
    body: bytes
    at: float

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def test_id(self):
        return self.json["data"]["testId"]

    def verify(self, secret):
        """The body as the independent `standardwebhooks` library verifies it (raises if invalid)."""
        return standardwebhooks.Webhook(secret).verify(self.body, self.headers)


def request_test_id(request):
    """The testId of a received request; None for a body cut short (its sender was killed mid-request)."""
    try:
        return request.test_id
    except (ValueError, KeyError, TypeError):
        return None


class Receiver:
    """An HTTP server standing in for the application under test.

    `handler(received, count)` returns a Reply; `count` is how many requests this test id
    has sent so far (1 on the first). Tracks the highest number of requests in flight.
    """

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.per_test = {}
        self.handler = lambda received, count: Reply(200, {"output": "ok"})
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                received = Received(headers={key.lower(): value for key, value in self.headers.items()}, body=body, at=time.monotonic())
                with receiver.lock:
                    receiver.requests.append(received)
                    receiver.in_flight += 1
                    receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
                    try:
                        key = received.test_id
                    except (ValueError, KeyError, TypeError):
                        key = None
                    receiver.per_test[key] = count = receiver.per_test.get(key, 0) + 1
                try:
                    reply = receiver.handler(received, count)
                    if reply.delay:
                        time.sleep(reply.delay)
                finally:
                    with receiver.lock:
                        receiver.in_flight -= 1
                if isinstance(reply.body, (dict, list)):
                    payload = json.dumps(reply.body).encode()
                else:
                    payload = reply.body or b""
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # the default backlog of 5 drops bursts of connects
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def for_test(self, test_id):
        return [request for request in self.requests if request_test_id(request) == str(test_id)]


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def fast_engine(settings):
    """Short backoffs so retry tests take milliseconds, not minutes."""
    settings.WEBHOOK_MAX_ATTEMPTS = 4
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0.05
    settings.WEBHOOK_RETRY_MAX_SECONDS = 0.2
    settings.WEBHOOK_RETRY_AFTER_MAX_SECONDS = 1.5
    settings.DISPATCH_IDLE_SECONDS = 5
    settings.PUBLIC_URL = "https://dashboard.example"
    return settings


def database_url():
    """A DATABASE_URL for the test database the test process is using."""
    from django.db import connection

    params = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{params['NAME']}"
    user = params.get("USER") or ""
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    port = f":{params['PORT']}" if params.get("PORT") else ""
    return f"postgres://{auth}{params.get('HOST') or '127.0.0.1'}{port}/{params['NAME']}"


class WorkerProcess:
    def __init__(self, process, log_path):
        self.process = process
        self.log_path = log_path

    def log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_worker(url, public_url, log_path, *, queues=None, concurrency=2, pool=None, env=None):
    """Start a real `celery worker` subprocess on the test broker and `url`; wait until it is ready."""
    env = {
        **os.environ,
        **(env or {}),
        "DATABASE_URL": url,
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PUBLIC_URL": public_url,
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable, "-m", "celery", "-A", "dashboard", "worker",
        "--loglevel", "INFO", "--concurrency", str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--hostname", f"test-{uuid.uuid4().hex[:8]}@%h",
    ]  # fmt: skip
    if queues:
        command += ["--queues", ",".join(queues)]
    if pool:
        command += ["--pool", pool]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    worker = WorkerProcess(process, log_path)
    deadline = time.monotonic() + 60
    while "ready." not in worker.log():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"The Celery worker did not start:\n{worker.log()[-3000:]}")
        time.sleep(0.2)
    return worker


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, live_server, tmp_path_factory):
    """A real `celery worker` subprocess on the same broker and the test database, consuming
    every queue; the callbackUrl it sends points at the live server of this test process."""
    with django_db_blocker.unblock():
        url = database_url()
    worker = start_worker(url, live_server.url, tmp_path_factory.mktemp("worker") / "worker.log")
    yield worker
    worker.stop()


def wait_for(predicate, timeout=30.0, interval=0.1, message="condition"):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"Timed out after {timeout}s waiting for {message}.")


def start_baseline(url, *, n_tasks=3, evaluators=None, repetitions=1, max_error_rate=0.2, **app_fields):
    """A ready experiment on an application at `url` with its baseline run started; returns the run."""
    from experiments_app import actions, runs
    from tests.factories import make_application, make_ready_experiment

    application = make_application(webhook_url=url, **app_fields)
    experiment = make_ready_experiment(n_tasks=n_tasks, application=application)
    changes = {"repetitions": repetitions, "max_error_rate": max_error_rate}
    if evaluators is not None:
        changes["evaluators"] = evaluators
    actions.update_experiment(experiment, **changes)
    return runs.start_baseline_run(experiment)
