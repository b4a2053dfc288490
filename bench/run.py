"""The benchmark harness: the engine end to end, with real processes. `make bench` runs every subcommand.

    python bench/run.py dispatch --tests 10000            # an application that answers at once
    python bench/run.py slow-app --tests 2000 --latency-ms 500 --concurrency 100
    python bench/run.py ingest --results 5000 --clients 16
    python bench/run.py results --variants 20 --tasks 100000
    python bench/run.py statements --results 5000          # PostgreSQL only: a result's statements

Each subcommand sets up what it needs: a database (PostgreSQL and Redis when DATABASE_URL /
CELERY_BROKER_URL are set, created if missing; else SQLite and the filesystem broker in a
fresh directory), a real Celery worker process (one pool process, as `make run` starts it
per core), and the application under test in its own process (bench/slow_app.py, asyncio,
its CPU measured and printed so it is seen never to be the bottleneck). Each prints one JSON
line last, with the machine's core count.

- dispatch / slow-app: seconds from the start request (the run and its tests written, the
  dispatcher woken through the broker) until the run is closed with its aggregates stored;
  the worker's CPU (every process of its tree, from /proc) per test, and its peak RSS (VmHWM).
- ingest: signed callback results posted over HTTP by --clients threads (keep-alive) to
  gunicorn started as docker-compose starts it; tests accepted (202) beforehand. The clients
  share the machine's cores with the server: their CPU is printed beside the web's and the
  database's.
- results: one experiment, baseline + --variants runs of --tasks tests each, built by bulk
  writes (not the engine: 2 million deliveries would take an hour) and closed by the engine's
  `complete_if_done`, which stores their aggregates; then the API results and the experiment
  page requested in-process (django.test.Client, as bench/pages.py), p50/p95 and queries.

- statements (PostgreSQL): --results callback results recorded in this process with
  record_result, each statement of its query strings sent alone, and the PostgreSQL backend's
  CPU (/proc, by pg_backend_pid()) summed per statement: where a result's database time goes.

These are benchmarks: the test suite runs each once at a small size and checks behaviour and
query counts, never timings (tests/test_bench.py).
"""

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- processes ------------------------------------------------------------------


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_tree(pid):
    """`pid` and its descendants (from /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def cpu_seconds(pid):
    """User + system CPU of `pid` and its live descendants."""
    total = 0
    for each in process_tree(pid):
        try:
            with open(f"/proc/{each}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / CLOCK_TICKS


def database_cpu_seconds():
    """CPU of this machine's PostgreSQL server processes (0 when it runs elsewhere, or SQLite)."""
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    name, fields = stat.read().split(" (", 1)[1].rsplit(")", 1)
                if name.startswith("postgres"):
                    fields = fields.split()
                    total += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                pass
    return total / CLOCK_TICKS


def peak_rss_mb(pid):
    """The largest peak resident set (VmHWM) among `pid` and its descendants."""
    peak = 0
    for each in process_tree(pid):
        try:
            with open(f"/proc/{each}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
    return round(peak / 1024, 1)


class Process:
    """A child process with its log in a file; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, command, env, log_path, ready=None, timeout=60):
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while ready and ready not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"{command[:4]} did not start:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    @property
    def pid(self):
        return self.process.pid

    def log(self):
        return Path(self.log_path).read_text(errors="replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- setup ------------------------------------------------------------------------


def configure(args):
    """Environment for this process and its children; the database created and migrated."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ["WEBHOOK_ALLOWED_HOSTS"] = "127.0.0.1,localhost"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["RATE_LIMIT_RESULTS"] = "100000000/60"  # the harness measures ingestion, not the limiter
    os.environ["VAR_DIR"] = args.var_dir or tempfile.mkdtemp(prefix=f"bench-{args.command}-")
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        parts = urlsplit(url)
        name = args.database or parts.path.lstrip("/")
        os.environ["DATABASE_URL"] = url = urlunsplit(parts._replace(path="/" + name))
        create_database(urlunsplit(parts._replace(path="/postgres")), name)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    vacuum()
    return url


def vacuum():
    """What autovacuum would have done (it is off on some servers, this one's included): dead rows
    and stale statistics of what came before would slow the measured part down."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE)")


def create_database(maintenance_url, name):
    import psycopg

    with psycopg.connect(maintenance_url, autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            connection.execute(f'CREATE DATABASE "{name}"')


def describe_setup():
    from django.conf import settings
    from django.db import connection

    return {
        "database": connection.vendor,
        "broker": settings.CELERY_BROKER_URL.split(":", 1)[0],
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
    }


def child_env(**extra):
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def start_worker(log_dir):
    """A real Celery worker consuming the dispatch queue with one pool process."""
    from celery import current_app

    current_app.control.purge()  # wake-ups left by an earlier round (Redis outlives the harness)
    command = [
        sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--queues", "celery", "--concurrency", "1",
        "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--hostname", f"bench-{uuid.uuid4().hex[:8]}@%h",
    ]  # fmt: skip
    return Process(command, child_env(), Path(log_dir) / "worker.log", ready="ready.")


def start_app(log_dir, latency_ms, status=200):
    port = free_port()
    command = [sys.executable, str(ROOT / "bench" / "slow_app.py"), str(port), str(latency_ms / 1000), str(status)]
    return Process(command, child_env(), Path(log_dir) / "app.log", ready="ready"), port


def start_profiler(path, pid):
    """py-spy sampling the worker's processes (the `bench` extra) into `path`, collapsed stacks."""
    if not path:
        return None
    beside = Path(sys.executable).parent / "py-spy"  # the venv's, when its bin is not on PATH
    command = [
        str(beside) if beside.exists() else "py-spy",
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--format",
        "raw",
        "--rate",
        "200",
        "--output",
        path,
    ]
    if os.environ.get("BENCH_PROFILE_IDLE"):
        command.append("--idle")  # waiting threads too: where the wall time goes
    if os.environ.get("BENCH_PROFILE_GIL"):
        command.append("--gil")  # only the thread holding the GIL: where the Python CPU goes
    profiler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the run starts
    return profiler


def stop_profiler(profiler):
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(timeout=60)


def make_team():
    from django.contrib.auth import get_user_model

    from experiments_app.models import Membership, Role, Team

    stamp = time.time_ns()
    team = Team.objects.create(name="bench", slug=f"bench-{stamp}")
    user = get_user_model().objects.create_user(username=f"bench-{stamp}", password="x")
    Membership.objects.create(team=team, user=user, role=Role.ADMIN)
    return team, user


def make_experiment(application, n_tasks, user=None, steps=("main",)):
    """Tasks written in bulk, an experiment over all of them, ready for its baseline run."""
    from experiments_app import actions
    from experiments_app.models import InferenceStep, Task

    for step in steps:
        InferenceStep.objects.create(application=application, external_id=step, config={"model": "m", "temperature": 0.5})
    Task.objects.bulk_create(
        [
            Task(application=application, external_id=f"task-{i:07d}", input={"question": f"What is {i} + {i}?"}, expected=str(2 * i))
            for i in range(n_tasks)
        ],
        batch_size=5000,
    )
    experiment = actions.create_experiment(application, name="bench", by=user)
    task_ids = list(Task.objects.filter(application=application).values_list("pk", flat=True))
    actions.set_scope(experiment, steps=list(steps), tasks=task_ids, by=user)
    experiment.refresh_from_db()
    return experiment


def rss_mb(pid):
    """The largest resident set now (VmRSS) among `pid` and its descendants."""
    largest = 0
    for each in process_tree(pid):
        try:
            with open(f"/proc/{each}/status") as status:
                largest = max([largest, *(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))])
        except OSError:
            pass
    return largest / 1024


def wait_closed(run_id, timeout, watch_pid=None):
    """When the run closed (perf_counter), and the worker's resident set sampled every ~0.25 s
    while it ran: [(time.time(), MB)]."""
    from experiments_app.models import ACTIVE_RUN_STATUSES, Run

    deadline = time.monotonic() + timeout
    samples, sampled_at = [], 0.0
    while time.monotonic() < deadline:
        if watch_pid and time.monotonic() - sampled_at >= 0.25:
            samples.append((time.time(), rss_mb(watch_pid)))
            sampled_at = time.monotonic()
        run = Run.objects.only("status").get(pk=run_id)
        if run.status not in ACTIVE_RUN_STATUSES:
            return time.perf_counter(), samples
        time.sleep(0.02)
    raise SystemExit(f"run {run_id} did not close within {timeout:.0f} s")


# --- dispatch and slow-app --------------------------------------------------------------


def run_dispatch(args, latency_ms, concurrency):
    from django.db.models import Max

    from experiments_app import runs
    from experiments_app.models import Application, Run

    log_dir = os.environ["VAR_DIR"]
    app, port = start_app(log_dir, latency_ms)
    worker = start_worker(log_dir)
    try:
        team, user = make_team()
        application = Application.objects.create(
            team=team,
            name="bench",
            webhook_url=f"http://127.0.0.1:{port}/hook",
            max_concurrency=concurrency,
            timeout_seconds=30,
        )
        experiment = make_experiment(application, args.tests, user)
        profiler = start_profiler(args.profile, worker.pid)
        worker_cpu, app_cpu, database_cpu = cpu_seconds(worker.pid), cpu_seconds(app.pid), database_cpu_seconds()
        started, wall_started = time.perf_counter(), time.time()
        run = runs.start_baseline_run(experiment, by=user)
        started_in = time.perf_counter() - started
        ended, rss_samples = wait_closed(
            run.pk, timeout=max(120, args.tests / 20 + latency_ms / 1000 * args.tests / concurrency * 3), watch_pid=worker.pid
        )
        seconds, seen_closed = ended - started, time.time()
        worker_cpu, app_cpu = cpu_seconds(worker.pid) - worker_cpu, cpu_seconds(app.pid) - app_cpu
        database_cpu = database_cpu_seconds() - database_cpu
        stop_profiler(profiler)
        run = Run.objects.get(pk=run.pk)
        if run.status != "succeeded" or run.passed != args.tests or not run.aggregates:
            raise SystemExit(f"the run ended {run.status} with {run.passed} of {args.tests} passed:\n{worker.log()[-3000:]}")
        rss = peak_rss_mb(worker.pid)
        # Where the time outside sending goes: until the first claim (tests written, the wake-up
        # through the broker), and from the last delivery's end to the run seen closed (its
        # summary committed: `completed_at` is stamped before the summary is made).
        last_answer = run.tests.aggregate(at=Max("completed_at"))["at"]
        first_claim_s = run.started_at.timestamp() - wall_started
        close_s = seen_closed - last_answer.timestamp()
        # The peak while tests were being sent, apart from the close (which summarises the run).
        sending_rss = max((mb for at, mb in rss_samples if at < last_answer.timestamp()), default=0.0)
    finally:
        worker.stop()
        app.stop()
    return {
        "tests": args.tests,
        "passed": run.passed,
        "seconds": round(seconds, 2),
        "start_seconds": round(started_in, 2),
        "first_claim_after_s": round(first_claim_s, 2),
        "closed_after_last_answer_s": round(close_s, 2),
        "tests_per_s": round(args.tests / seconds, 1),
        "engine_cpu_ms_per_test": round(worker_cpu * 1000 / args.tests, 3),
        "worker_peak_rss_mb": rss,
        "worker_rss_while_sending_mb": round(sending_rss, 1),
        "app_cpu_ms_per_test": round(app_cpu * 1000 / args.tests, 3),
        "database_cpu_ms_per_test": round(database_cpu * 1000 / args.tests, 3),
        "concurrency": concurrency,
    }


def command_dispatch(args):
    return run_dispatch(args, latency_ms=0, concurrency=args.concurrency)


def command_slow_app(args):
    figures = run_dispatch(args, latency_ms=args.latency_ms, concurrency=args.concurrency)
    ideal = args.tests * args.latency_ms / 1000 / args.concurrency
    return {**figures, "latency_ms": args.latency_ms, "ideal_seconds": round(ideal, 2), "efficiency": round(ideal / figures["seconds"], 3)}


# --- ingest -------------------------------------------------------------------------


def accepted_run(application, n_tests, user):
    """A running baseline whose tests were all delivered and accepted (202): awaiting callbacks."""
    from django.utils import timezone

    from experiments_app import runs
    from experiments_app.models import Run, RunStatus, Test, TestStatus

    experiment = make_experiment(application, n_tests, user)
    run = runs.start_baseline_run(experiment, by=user)
    now = timezone.now()
    Test.objects.filter(run=run).update(
        status=TestStatus.DISPATCHED, attempts=1, dispatched_at=now, accepted_at=now, result_due_at=now + timedelta(hours=1)
    )
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, started_at=now)
    return run


def post_results(port, secret, test_ids, clients):
    """Post one signed result per test from `clients` threads; returns (seconds, latencies, non-200 answers)."""
    import http.client

    from experiments_app import webhooks

    pending = list(test_ids)
    lock = threading.Lock()
    latencies, failures = [], []

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port)
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            with lock:
                if not pending:
                    break
                test_id = pending.pop()
            body = json.dumps({"output": f"answer for {test_id}", "passed": True, "metrics": {"latency_ms": 12.5}}).encode()
            headers = webhooks.signed_headers(secret, f"msg_{test_id}", body)
            started = time.perf_counter()
            connection.request("POST", f"/api/v1/tests/{test_id}/result/", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            latencies.append(time.perf_counter() - started)
            if response.status != 200:
                failures.append((response.status, answer[:300]))
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies, failures


def command_ingest(args):
    from experiments_app.models import Application, Run

    log_dir = os.environ["VAR_DIR"]
    team, user = make_team()
    application = Application.objects.create(team=team, name="bench", webhook_url="http://127.0.0.1:9/hook", timeout_seconds=30)
    run = accepted_run(application, args.results, user)
    test_ids = [str(pk) for pk in run.tests.values_list("pk", flat=True)]
    port = free_port()
    # As docker-compose runs the web process.
    command = [
        sys.executable, "-m", "gunicorn", "dashboard.wsgi", "--bind", f"127.0.0.1:{port}",
        "--workers", str(args.web_workers), "--threads", str(args.web_threads), "--no-control-socket", "--log-level", "warning",
    ]  # fmt: skip
    web = Process(command, child_env(PUBLIC_URL=f"http://127.0.0.1:{port}"), Path(log_dir) / "web.log")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or web.process.poll() is not None:
                    raise SystemExit(f"gunicorn did not start:\n{web.log()[-3000:]}") from None
                time.sleep(0.1)
        warm = min(len(test_ids), args.web_workers * args.web_threads * 2)  # each gunicorn worker imports lazily
        _, _, refused = post_results(port, application.webhook_secret, test_ids[:warm], args.clients)
        if refused:
            raise SystemExit(f"{len(refused)} warm-up results were refused, first: {refused[0]}\n{web.log()[-3000:]}")
        profiler = start_profiler(args.profile, web.pid)
        web_cpu, database_cpu = cpu_seconds(web.pid), database_cpu_seconds()
        client_cpu = time.process_time()  # this process: the clients' threads, on the same cores
        seconds, latencies, failures = post_results(port, application.webhook_secret, test_ids[warm:], args.clients)
        client_cpu = time.process_time() - client_cpu
        web_cpu, database_cpu = cpu_seconds(web.pid) - web_cpu, database_cpu_seconds() - database_cpu
        stop_profiler(profiler)
    finally:
        web.stop()
    if failures:
        raise SystemExit(f"{len(failures)} results were refused, first: {failures[0]}\n{web.log()[-3000:]}")
    run = Run.objects.get(pk=run.pk)
    if run.status != "succeeded" or run.passed != args.results:
        raise SystemExit(f"the run ended {run.status} with {run.passed} of {args.results} passed")
    latencies.sort()
    measured = len(latencies)
    return {
        "results": measured,
        "warm_up_results": warm,
        "seconds": round(seconds, 2),
        "results_per_s": round(measured / seconds, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p95_ms": round(percentile(latencies, 95) * 1000, 1),
        "web_cpu_ms_per_result": round(web_cpu * 1000 / measured, 2),
        "database_cpu_ms_per_result": round(database_cpu * 1000 / measured, 2),
        "client_cpu_ms_per_result": round(client_cpu * 1000 / measured, 2),
        "clients": args.clients,
        "web": f"gunicorn --workers {args.web_workers} --threads {args.web_threads}",
    }


def percentile(ordered, p):
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# --- results ----------------------------------------------------------------------------


def close_run(run, rng, difficulty, pass_rate):
    """End every test of `run` with bulk updates (a few per outcome and metric bucket), then close it
    with the engine's complete_if_done, which stores the aggregates the results pages read.

    As in bench/pages.py, a task's difficulty stays the same across variants and each run redraws
    ~15% of the outcomes, so a variant improves or regresses a few thousand tasks of 100,000,
    not tens of thousands; 3% of the tests error."""
    from django.utils import timezone

    from experiments_app.models import Test
    from experiments_app.runs.complete import complete_if_done

    now = timezone.now()
    buckets = {}
    for pk, task_id in run.tests.values_list("pk", "task_id").iterator(chunk_size=10_000):
        if rng.random() < 0.03:
            status = "errored"
        else:
            point = difficulty[task_id] if rng.random() > 0.15 else rng.random()
            status = "passed" if point < pass_rate else "failed"
        buckets.setdefault((status, rng.randrange(4)), []).append(pk)
    for (status, bucket), ids in buckets.items():
        fields = {"status": status, "completed_at": now, "attempts": 1, "dispatched_at": now, "lease_until": None}
        if status == "errored":
            fields.update(error="HTTP 500 from the application.")
        else:
            latency, tokens = 300 + 200 * bucket, 400 + 300 * bucket
            fields.update(
                output=f"answer {bucket}",
                has_output=True,
                reported_passed=status == "passed",
                metrics={"latency_ms": latency, "prompt_tokens": tokens, "cost_usd": tokens * 2.5e-6},
            )
        for start in range(0, len(ids), 5000):
            Test.objects.filter(pk__in=ids[start : start + 5000]).update(**fields)
    if not complete_if_done(run.pk):
        raise SystemExit(f"run {run.pk} did not close")


def build_results(n_variants, n_tasks, seed=7):
    from experiments_app import actions, runs
    from experiments_app.models import Application, Delivery, Experiment

    team, user = make_team()
    # Pull delivery: starting a run wakes no dispatcher; the runs are ended by close_run.
    application = Application.objects.create(team=team, name="bench", delivery=Delivery.PULL, timeout_seconds=30)
    experiment = make_experiment(application, n_tasks, user, steps=("retrieve", "answer"))
    plan = [("answer", "temperature"), ("retrieve", "temperature"), ("answer", "model")]
    variants = [experiment.baseline]
    tasks = random.Random(f"{seed}-tasks")
    difficulty = {task_id: tasks.random() for task_id in experiment.tasks.values_list("pk", flat=True)}
    close_run(runs.start_baseline_run(experiment, by=user), random.Random(f"{seed}-0"), difficulty, 0.70)
    for index in range(1, n_variants + 1):
        step, parameter = plan[index % len(plan)]
        value = f"m-{index}" if parameter == "model" else round(0.01 * index, 2)
        experiment.refresh_from_db()
        parent = variants[random.Random(f"{seed}-parent-{index}").randrange(len(variants))]
        variant = actions.create_variant(
            experiment, parent=parent, inference_step=step, parameter=parameter, value=value, name=f"v{index}", by=user
        )
        variants.append(variant)
        pass_rate = 0.70 + random.Random(f"{seed}-rate-{index}").uniform(-0.08, 0.08)
        close_run(runs.start_variant_run(variant, by=user), random.Random(f"{seed}-{index}"), difficulty, pass_rate)
    return Experiment.objects.get(pk=experiment.pk), user


def measure_page(client, url, repeat):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def fetch():
        started = time.perf_counter()
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        if response.status_code != 200:
            raise SystemExit(f"GET {url} answered {response.status_code}:\n{body[:2000].decode(errors='replace')}")
        return time.perf_counter() - started, len(body)

    fetch()  # warm-up: templates compiled, caches filled
    times = sorted(fetch()[0] for _ in range(repeat))
    with CaptureQueriesContext(connection) as captured:
        _, size = fetch()
    return {
        "p50_ms": round(percentile(times, 50) * 1000, 1),
        "p95_ms": round(percentile(times, 95) * 1000, 1),
        "queries": len(captured.captured_queries),
        "bytes": size,
    }


def built_results(n_variants, n_tasks):
    """The latest experiment an earlier `results` built in this database at these sizes, and its user."""
    from django.db.models import Count

    from experiments_app.models import Experiment

    found = (
        Experiment.objects.filter(name="bench", application__team__name="bench", application__inference_steps__external_id="retrieve")
        .annotate(n_variants=Count("variants", distinct=True))
        .filter(n_variants=n_variants + 1)
        .order_by("-created_at")
    )
    for experiment in found:
        if experiment.task_count() == n_tasks:
            return experiment, experiment.application.team.memberships.get().user
    raise SystemExit(f"--reuse: no experiment of {n_variants} variants × {n_tasks} tasks built in this database")


def command_results(args):
    from django.test import Client

    started = time.perf_counter()
    experiment, user = built_results(args.variants, args.tasks) if args.reuse else build_results(args.variants, args.tasks)
    built = time.perf_counter() - started
    # The pages are read long after the runs closed: by then autovacuum has analysed 2 million new
    # rows (without it the planner's estimates are those of empty tables).
    vacuum()
    client = Client()
    client.force_login(user)
    return {
        "variants": args.variants,
        "tasks": args.tasks,
        "tests": (args.variants + 1) * args.tasks,
        "build_seconds": None if args.reuse else round(built, 1),
        "api": measure_page(client, f"/api/v1/experiments/{experiment.pk}/results/", args.repeat),
        "page": measure_page(client, f"/experiments/{experiment.pk}/", args.repeat),
        "requests": args.repeat,
    }


# --- statements -------------------------------------------------------------------------


def statement_kind(sql):
    """A statement's name for the per-statement table: its verb and what it reads or writes."""
    from experiments_app.models import DeliveryAttempt, Run, Test

    sql = sql.strip()
    verb = sql.split(None, 1)[0].upper()
    if verb == "SELECT":
        if "FOR UPDATE" in sql:
            return "SELECT test locked"
        return f"SELECT {'attempts' if DeliveryAttempt._meta.db_table in sql else 'tests' if Test._meta.db_table in sql else 'other'}"
    if verb == "UPDATE":
        return "UPDATE run" if f'"{Run._meta.db_table}"' in sql.split(" SET ", 1)[0] else "UPDATE test"
    return verb


def command_statements(args):
    from django.db import connection

    from experiments_app.models import Application
    from experiments_app.runs import state
    from experiments_app.runs.ingest import record_result

    if connection.vendor != "postgresql":
        raise SystemExit("statements measures PostgreSQL's statements: set DATABASE_URL to a PostgreSQL database")
    team, user = make_team()
    application = Application.objects.create(team=team, name="bench", webhook_url="http://127.0.0.1:9/hook", timeout_seconds=30)
    run = accepted_run(application, args.results, user)
    test_ids = [str(pk) for pk in run.tests.values_list("pk", flat=True)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()
    costs, counts = {}, {}
    stat_path = f"/proc/{backend}/stat"

    def backend_cpu():
        """The backend's user + system CPU seconds (its process alone: no walk of /proc)."""
        with open(stat_path) as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def one_at_a_time(wrapper, statements):
        """state.send_string, each statement sent alone (the same transactions): CPU per statement."""
        rows = []
        with wrapper.cursor() as cursor:
            for statement in statements:
                before = backend_cpu()
                cursor.execute(statement.sql, statement.params)
                kind = statement_kind(statement.sql)
                costs[kind] = costs.get(kind, 0.0) + backend_cpu() - before
                counts[kind] = counts.get(kind, 0) + 1
                if statement.read:
                    rows.append(cursor.fetchall())
        return rows

    send_string = state.send_string
    state.send_string = one_at_a_time
    try:
        for test_id in test_ids:
            record_result(test_id, {"output": f"answer for {test_id}", "passed": True, "metrics": {"latency_ms": 12.5}})
    finally:
        state.send_string = send_string
    run.refresh_from_db()
    if run.status != "succeeded" or run.passed != args.results:
        raise SystemExit(f"the run ended {run.status} with {run.passed} of {args.results} passed")
    per_result = {kind: round(seconds * 1000 / args.results, 3) for kind, seconds in sorted(costs.items(), key=lambda item: -item[1])}
    return {
        "results": args.results,
        "database_cpu_ms_per_result": round(sum(costs.values()) * 1000 / args.results, 3),
        "by_statement_ms_per_result": per_result,
        "statements_per_result": {kind: round(counts[kind] / args.results, 3) for kind in per_result},
        "clock_ticks_per_s": CLOCK_TICKS,
    }


# --- command line -------------------------------------------------------------------------


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--var-dir", help="VAR_DIR for every process (default: a fresh temporary directory)")
    parser.add_argument("--database", help="PostgreSQL database name (default: DATABASE_URL's)")
    parser.add_argument("--profile", help="write py-spy's collapsed stacks of the worker (web server for ingest) to this file")
    commands = parser.add_subparsers(dest="command", required=True)
    dispatch = commands.add_parser("dispatch", help="an application that answers at once")
    dispatch.add_argument("--tests", type=int, default=10_000)
    dispatch.add_argument("--concurrency", type=int, default=100, help="the application's max_concurrency")
    slow = commands.add_parser("slow-app", help="an application that answers after --latency-ms")
    slow.add_argument("--tests", type=int, default=2000)
    slow.add_argument("--latency-ms", type=float, default=500)
    slow.add_argument("--concurrency", type=int, default=100)
    ingest = commands.add_parser("ingest", help="callback results over HTTP to gunicorn")
    ingest.add_argument("--results", type=int, default=5000)
    ingest.add_argument("--clients", type=int, default=16)
    ingest.add_argument("--web-workers", type=int, default=4, help="gunicorn --workers (docker-compose: 4)")
    ingest.add_argument("--web-threads", type=int, default=8, help="gunicorn --threads (docker-compose: 8)")
    results = commands.add_parser("results", help="API results and experiment page over many tasks and variants")
    results.add_argument("--variants", type=int, default=20)
    results.add_argument("--tasks", type=int, default=100_000)
    results.add_argument("--repeat", type=int, default=20)
    results.add_argument("--reuse", action="store_true", help="measure what an earlier run built in --database instead of building")
    statements = commands.add_parser("statements", help="a callback result's PostgreSQL statements, their CPU each (PostgreSQL only)")
    statements.add_argument("--results", type=int, default=5000)
    return parser.parse_args(argv)


COMMANDS = {
    "dispatch": command_dispatch,
    "slow-app": command_slow_app,
    "ingest": command_ingest,
    "results": command_results,
    "statements": command_statements,
}


def main(argv=None):
    args = parse(argv)
    configure(args)
    figures = COMMANDS[args.command](args)
    print(json.dumps({"bench": args.command, **figures, **describe_setup()}), flush=True)


if __name__ == "__main__":
    main()
