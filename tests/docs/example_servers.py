"""The copy-ready receivers of docs/examples/ served as real HTTP servers, as their users run them.

Flask through werkzeug's server in a thread, FastAPI through uvicorn in a thread, Django
through `runserver` in a subprocess with a settings module of its own. Each context
manager yields the server's base URL.
"""

import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from werkzeug.serving import make_server

from tests.engine_fixtures import BASE_DIR

EXAMPLES = BASE_DIR / "docs" / "examples"
SECRET_VARIABLE = "EXPERIMENTS_WEBHOOK_SECRET"


def load_module(path, secret, monkeypatch):
    """Import a receiver file afresh with `secret` in its environment variable."""
    monkeypatch.setenv(SECRET_VARIABLE, secret)
    spec = importlib.util.spec_from_file_location(f"receiver_{uuid.uuid4().hex}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def werkzeug_server(wsgi_app):
    server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@contextmanager
def flask_server(secret, monkeypatch, path=EXAMPLES / "flask_app.py"):
    module = load_module(path, secret, monkeypatch)
    with werkzeug_server(module.app) as url:
        yield url


@contextmanager
def fastapi_server(secret, monkeypatch):
    module = load_module(EXAMPLES / "fastapi_app.py", secret, monkeypatch)
    server = uvicorn.Server(uvicorn.Config(module.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start the FastAPI example")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def django_server(secret, monkeypatch, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.docs.django_example_settings",
        SECRET_VARIABLE: secret,
        "PYTHONPATH": os.pathsep.join([str(EXAMPLES), str(BASE_DIR)]),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path / "django-example.log"
    with open(log_path, "wb") as log:
        command = [sys.executable, "-m", "django", "runserver", f"127.0.0.1:{port}", "--noreload"]
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/experiments"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"The Django example did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
