"""Processes a fault test owns: its own redis-server, a TCP proxy in front of PostgreSQL that can be
cut, a worker with its own beat (the sweeper), a web server. Nothing shared is ever stopped:
other people's tests use the shared PostgreSQL and Redis."""

import os
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from experiments_app.models import DeliveryAttempt, Run, RunStatus, Test, TestStatus
from experiments_app.results import summarize_run
from tests.engine_fixtures import BASE_DIR, WorkerProcess

FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


def check_invariant(run_id, receiver=None):
    """Every test terminal exactly once; the stored counts equal a recount; one attempt row per attempt."""
    run = Run.objects.get(pk=run_id)
    assert run.status in FINISHED
    recount = run.count_tests()
    assert {"total": run.total, "passed": run.passed, "failed": run.failed, "errored": run.errored, "skipped": run.skipped} == recount
    if run.status != RunStatus.CANCELLED:
        summary = summarize_run(run, alpha=run.experiment.alpha)
        assert run.outcomes == summary.pop("outcomes")
        assert {key: run.aggregates.get(key) for key in summary} == summary  # the stored aggregates equal a recount
    assert not Test.objects.filter(run=run).exclude(status__in=(TestStatus.PASSED, TestStatus.FAILED, TestStatus.ERRORED)).exists()
    for test in Test.objects.filter(run=run):
        numbers = list(DeliveryAttempt.objects.filter(test=test).order_by("number").values_list("number", flat=True))
        assert numbers == list(range(1, test.attempts + 1)), f"attempt log of {test} has gaps or repeats: {numbers}"
        if receiver is not None:
            assert len({request.headers["webhook-id"] for request in receiver.for_test(test.pk)}) <= 1
    return run


def spare_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class RedisServer:
    """A redis-server of this test alone, on a spare port, without persistence."""

    def __init__(self, directory):
        self.port = spare_port()
        self.directory = directory
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        command = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not answers(self.port):
            if time.monotonic() > deadline:
                pytest.fail("our redis-server did not start")
            time.sleep(0.05)
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, down_seconds=1.0):
        """Kill it (SIGKILL: nothing is saved) and start an empty one on the same port."""
        self.stop()
        time.sleep(down_seconds)
        return self.start()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `cut()` drops every connection and refuses new ones
    (closes them at once) until `restore()`: an unreachable database, for the processes behind it."""

    def __init__(self, target_port, target_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_off = threading.Event()
        self.lock = threading.Lock()
        self.pairs = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.accept, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def accept(self):
        self.listener.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.cut_off.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, upstream))
            threading.Thread(target=self.pipe, args=(client, upstream), daemon=True).start()

    def pipe(self, client, upstream):
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        try:
            while not self.cut_off.is_set() and not self.stopped.is_set():
                for key, _ in selector.select(timeout=0.2):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            pass
        finally:
            selector.close()
            for sock in (client, upstream):
                try:
                    sock.close()
                except OSError:
                    pass

    def cut(self):
        self.cut_off.set()
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def restore(self):
        self.cut_off.clear()

    def stop(self):
        self.stopped.set()
        self.cut()
        self.listener.close()


def start_process(command, log_path, env, ready, timeout=60):
    """Start `command` with `env`, logging to `log_path`; wait until `ready(log text)` holds."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    handle = WorkerProcess(process, log_path)
    deadline = time.monotonic() + timeout
    while not ready(handle.log()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{command[2:5]} did not start:\n{handle.log()[-3000:]}")
        time.sleep(0.2)
    return handle


def service_env(database_url, broker_url, var_dir, public_url, extra=None):
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "VAR_DIR": str(var_dir),
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PUBLIC_URL": public_url,
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        "SWEEP_INTERVAL_SECONDS": "1",
        **(extra or {}),
    }


def start_worker_with_beat(env, log_path, concurrency=2):
    """A worker consuming every queue with its own beat (-B): it sweeps every SWEEP_INTERVAL_SECONDS
    and wakes its own dispatchers, like `make run`'s worker, sweeper and scheduler together."""
    command = [
        sys.executable, "-m", "celery", "-A", "dashboard", "worker", "-B", "--loglevel", "INFO",
        "--concurrency", str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--hostname", f"fault-{uuid.uuid4().hex[:8]}@%h",
    ]  # fmt: skip
    return start_process(command, log_path, env, lambda text: "ready." in text)


def start_web(env, log_path):
    """The dashboard under gunicorn on a spare port; returns (process, base url)."""
    port = spare_port()
    command = [sys.executable, "-m", "gunicorn", "dashboard.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4"]
    handle = start_process(command, log_path, env, lambda text: "Booting worker" in text)
    deadline = time.monotonic() + 20
    while not answers(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    return handle, f"http://127.0.0.1:{port}"
