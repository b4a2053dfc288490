"""`make run` as a user starts it: the Makefile, honcho and the Procfile, every process on
spare ports, a fresh VAR_DIR, against this test run's databases (PostgreSQL + Redis when
DATABASE_URL / CELERY_BROKER_URL are set, else SQLite and the filesystem broker).

In-process tests cannot see what the process manager, the environment and the ports do to
the product; these can. They start the whole product, so they take tens of seconds each.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import standardwebhooks
from django.conf import settings

from tests.engine_fixtures import Receiver, Reply

pytestmark = pytest.mark.make_run

BASE_DIR = Path(__file__).resolve().parent.parent
LOGIN_LINE = re.compile(r"Dashboard: (http://\S+?)/? .*sign in as demo / (\S+)\)")
STARTUP_SECONDS = 240  # a venv without the runtime stamp is installed first


def spare_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_admin_connection():
    import psycopg

    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db.get("HOST") or "127.0.0.1",
        port=db.get("PORT") or 5432,
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    )


@pytest.fixture
def make_run_env(tmp_path):
    """The environment `make run` gets: spare ports, a fresh VAR_DIR, this run's databases.

    With PostgreSQL, a database of its own next to the test database; with Redis, this run's
    Redis database under a key prefix of its own, so a worker of the test session never takes
    this product's messages (and the other way round)."""
    env = {key: value for key, value in os.environ.items() if key not in {"PUBLIC_URL", "PORT", "DEMO_PORT", "TEST_DATABASE_NAME"}}
    env.update(
        VAR_DIR=str(tmp_path / "var"),
        PORT=str(spare_port()),
        DEMO_PORT=str(spare_port()),
        PYTHONUNBUFFERED="1",
    )
    db = settings.DATABASES["default"]
    database = None
    if db["ENGINE"] != "django.db.backends.sqlite3":
        database = f"{db['TEST']['NAME'] or 'test_' + db['NAME']}_make_run"
        with postgres_admin_connection() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{database}"')
        parts = urlsplit(os.environ["DATABASE_URL"])
        env["DATABASE_URL"] = parts._replace(path=f"/{database}").geturl()
    prefix = f"make-run-{uuid.uuid4().hex[:8]}:"
    if settings.CELERY_BROKER_URL.startswith("redis"):
        env["CELERY_BROKER_KEY_PREFIX"] = prefix
    yield env
    if database:
        with postgres_admin_connection() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    if settings.CELERY_BROKER_URL.startswith("redis"):
        import redis

        client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


def processes_with(var_dir):
    """Pids of every process whose environment carries this VAR_DIR: all of this product's processes."""
    marker = f"VAR_DIR={var_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


class MakeRun:
    """`make run` in its own process group, as a terminal's foreground job; its output is collected."""

    def __init__(self, env):
        self.env = env
        self.lines = []
        self.process = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"VENV={sys.prefix}", f"PYTHON={sys.executable}"],
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self):
        for raw in self.process.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def output(self):
        return "\n".join(self.lines)

    def wait_for_line(self, pattern, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, line in enumerate(self.lines):
                match = pattern.search(line)
                if match:
                    return index, match
            if self.process.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.2)
        pytest.fail(f"`make run` printed no line matching {pattern.pattern!r}:\n{self.output[-6000:]}")

    def interrupt(self, timeout=60):
        """Ctrl-C: SIGINT to the whole foreground group; returns make's exit status."""
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill_leftovers(self):
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in processes_with(self.env["VAR_DIR"]):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)
        self.reader.join(timeout=10)


@pytest.fixture
def product(make_run_env):
    """`make run` up to its login line; stopped with Ctrl-C afterwards (and anything left killed)."""
    run = MakeRun(make_run_env)
    run.login_index, match = run.wait_for_line(LOGIN_LINE, STARTUP_SECONDS)
    run.url, run.password = match.group(1), match.group(2)
    yield run
    if run.process.poll() is None:
        run.interrupt()
    run.kill_leftovers()


def wait_until_serving(url, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/accounts/login/", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} does not serve the login page")


def create_token(env):
    done = subprocess.run(
        [sys.executable, "manage.py", "create_api_token", "--team", "demo", "--role", "admin"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


class CallbackApplication:
    """A stand-in application: verifies each delivery, answers 202, then posts its result to the
    callbackUrl it received, signed with its secret as SPEC §5 allows."""

    def __init__(self):
        self.secret = None
        self.receiver = Receiver()
        self.receiver.handler = self.handle
        self.callback_urls = []
        self.callback_answers = []
        self.lock = threading.Lock()

    def handle(self, received, count):
        payload = received.verify(self.secret)
        data = payload["data"]
        with self.lock:
            self.callback_urls.append(data["callbackUrl"])
        result = {"output": f"answer to {data['task']['externalId']}", "passed": True, "metrics": {"latency_ms": 12}}
        threading.Thread(target=self.call_back, args=(data["callbackUrl"], received.headers["webhook-id"], result), daemon=True).start()
        return Reply(202, {"accepted": True})

    def call_back(self, url, msg_id, result):
        time.sleep(0.2)
        body = json.dumps(result)
        now = datetime.now(tz=UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": standardwebhooks.Webhook(self.secret).sign(msg_id, now, body),
        }
        try:
            answer = httpx.post(url, content=body, headers=headers, timeout=10).status_code
        except httpx.HTTPError as error:
            answer = f"{type(error).__name__}: {error}"
        with self.lock:
            self.callback_answers.append(answer)


@pytest.fixture
def callback_application():
    application = CallbackApplication()
    application.receiver.start()
    yield application
    application.receiver.stop()


def test_callback_results_reach_the_dashboard_under_make_run(product, callback_application):
    wait_until_serving(product.url)
    api = httpx.Client(base_url=f"{product.url}/api/v1", headers={"Authorization": f"Bearer {create_token(product.env)}"}, timeout=30)
    created = api.post(
        "/applications/",
        json={"name": "Calls back", "webhook_url": callback_application.receiver.url, "result_timeout_seconds": 5},
    )
    assert created.status_code == 201, created.text
    application = created.json()
    callback_application.secret = application["webhook_secret"]
    step = api.post(f"/applications/{application['id']}/inference-steps/", json={"external_id": "answer", "config": {"model": "m"}})
    assert step.status_code == 201, step.text
    tasks = [{"external_id": f"task-{n}", "input": {"n": n}} for n in range(3)]
    assert api.post(f"/applications/{application['id']}/tasks/bulk/", json=tasks).status_code == 201
    task_ids = [task["id"] for task in api.get(f"/applications/{application['id']}/tasks/").json()["results"]]
    experiment = api.post("/experiments/", json={"application": application["id"], "name": "Round trip"}).json()
    scoped = api.patch(f"/experiments/{experiment['id']}/", json={"inference_steps": ["answer"], "tasks": task_ids})
    assert scoped.status_code == 200, scoped.text
    started = api.post(f"/experiments/{experiment['id']}/run-baseline/")
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]

    deadline = time.monotonic() + 90
    while (run := api.get(f"/runs/{run_id}/").json())["status"] not in {"succeeded", "failed", "cancelled"}:
        assert time.monotonic() < deadline, f"run still {run['status']}:\n{product.output[-4000:]}"
        time.sleep(0.5)

    assert callback_application.callback_urls, "the application received no delivery"
    for url in callback_application.callback_urls:
        assert url.startswith(f"{product.url}/api/v1/tests/"), f"callbackUrl {url} is not where the dashboard serves ({product.url})"
    assert callback_application.callback_answers == [200, 200, 200]
    assert (run["status"], run["passed"], run["errored"]) == ("succeeded", 3, 0)
    outputs = sorted(test["output"] for test in api.get(f"/runs/{run_id}/tests/").json()["results"])
    assert outputs == ["answer to task-0", "answer to task-1", "answer to task-2"]


def test_make_run_prints_the_login_last_and_ctrl_c_stops_every_process(product):
    # Printed once everything is up: the dashboard answers at once, and while idle (two
    # sweeps pass) nothing follows the line.
    assert httpx.get(f"{product.url}/accounts/login/", timeout=5).status_code == 200
    time.sleep(12)
    assert product.lines[product.login_index + 1 :] == [], "the login line is not the last one while idle"
    running = processes_with(product.env["VAR_DIR"])
    assert len(running) >= 10, running  # make, honcho and its 5 runners, gunicorn, both workers, the demo, ...

    status = product.interrupt(timeout=60)

    assert status is not None, f"make run still runs 60 s after Ctrl-C:\n{product.output[-3000:]}"
    deadline = time.monotonic() + 10
    while (left := processes_with(product.env["VAR_DIR"])) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left]
    stopping = product.lines[product.login_index + 1 :]
    assert [line for line in stopping if re.search(r"ERROR|Traceback|SIGKILL|make: \*\*\*", line)] == [], "\n".join(stopping)
    # every process ended by itself after honcho's SIGTERM
    assert "worker.1 stopped (rc=0)" in product.output and "sweeper.1 stopped (rc=0)" in product.output
    assert "web.1 stopped (rc=0)" in product.output
