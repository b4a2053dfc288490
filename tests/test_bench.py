"""The benchmark harness keeps working: each subcommand of bench/run.py once, at a small size.

Behaviour and query counts only, never timings: the figures are in BENCHMARKS.md. The harness
starts its own worker, application stub and web server, on this run's database server (a
database of its own) and broker (its own key prefix, so the suite's worker never takes its wake-ups).
"""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.worker


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """Run `bench/run.py ARGS`; returns its last line, parsed."""
    var_dir = tmp_path_factory.mktemp("bench")
    url = os.environ.get("DATABASE_URL", "")
    database = f"test_bench_{uuid.uuid4().hex[:8]}" if url.startswith("postgres") else None
    env = {**os.environ, "CELERY_BROKER_KEY_PREFIX": f"bench-{uuid.uuid4().hex[:8]}:", "LOG_LEVEL": "WARNING"}

    def run(*args):
        command = [sys.executable, str(BASE_DIR / "bench" / "run.py"), "--var-dir", str(var_dir)]
        if database:
            command += ["--database", database]
        done = subprocess.run([*command, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    yield run
    if database:
        import psycopg

        with psycopg.connect(urlunsplit(urlsplit(url)._replace(path="/postgres")), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_dispatch_sends_every_test_through_a_real_worker_and_closes_the_run(bench):
    figures = bench("dispatch", "--tests", "120", "--concurrency", "20")

    assert figures["tests"] == figures["passed"] == 120
    assert figures["cores"] == os.cpu_count()
    assert {"seconds", "tests_per_s", "engine_cpu_ms_per_test", "worker_peak_rss_mb", "worker_rss_while_sending_mb"} <= set(figures)


def test_slow_app_reports_its_efficiency_against_the_ideal(bench):
    figures = bench("slow-app", "--tests", "40", "--latency-ms", "50", "--concurrency", "20")

    assert figures["passed"] == 40
    assert figures["ideal_seconds"] == 0.1
    assert 0 < figures["efficiency"] <= 1


def test_ingest_records_every_signed_callback_posted_to_gunicorn(bench):
    figures = bench("ingest", "--results", "60", "--clients", "4", "--web-workers", "1", "--web-threads", "4")

    assert figures["results"] + figures["warm_up_results"] == 60
    assert figures["p95_ms"] >= figures["p50_ms"] > 0
    assert figures["client_cpu_ms_per_result"] > 0 and figures["web_cpu_ms_per_result"] > 0


def test_results_pages_run_the_same_queries_whatever_the_number_of_tasks_and_variants(bench):
    small = bench("results", "--variants", "1", "--tasks", "10", "--repeat", "1")
    large = bench("results", "--variants", "3", "--tasks", "40", "--repeat", "1")

    assert large["tests"] == 160
    assert small["api"]["queries"] == large["api"]["queries"]
    assert small["page"]["queries"] == large["page"]["queries"]
    # --reuse measures the experiment built above (the same answer) instead of building another
    again = bench("results", "--variants", "3", "--tasks", "40", "--repeat", "1", "--reuse")
    assert again["build_seconds"] is None
    assert (again["api"]["bytes"], again["api"]["queries"]) == (large["api"]["bytes"], large["api"]["queries"])


@pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="statements measures PostgreSQL's statements")
def test_statements_records_every_result_and_names_each_statement_once_per_result(bench):
    figures = bench("statements", "--results", "30")

    assert figures["results"] == 30
    once = {"SELECT test locked": 1.0, "UPDATE test": 1.0, "UPDATE run": 1.0, "SELECT attempts": 1.0, "SET": 1.0}
    assert figures["statements_per_result"] == {**once, "BEGIN": 2.0, "COMMIT": 2.0}
    assert set(figures["by_statement_ms_per_result"]) == set(figures["statements_per_result"])
    assert figures["database_cpu_ms_per_result"] >= 0
