"""The ready-to-copy pull worker (demo_app/pull_worker.py) and `python -m demo_app --pull`, against a live dashboard."""

import ast
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.core.signals import request_finished, request_started

from demo_app import pull_worker
from demo_app.__main__ import demo_answer
from demo_app.catalog import TASKS
from demo_app.pipeline import DEFAULT_CONFIG
from experiments_app import actions, runs, webhooks
from experiments_app.models import Delivery, DeliveryAttempt, InferenceStep, Role, Run, RunStatus, Task, Test
from tests.engine_fixtures import wait_for
from tests.factories import make_application, make_team, make_token

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = Path(pull_worker.__file__)
REPO = WORKER.parent.parent


def test_the_pull_worker_depends_only_on_httpx_and_the_standard_library():
    tree = ast.parse(WORKER.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported - set(sys.stdlib_module_names) == {"httpx"}


def test_the_pull_worker_signs_exactly_like_the_dashboard():
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert pull_worker.sign(secret, "msg_1", 1700000000, b'{"max":1}') == webhooks.sign(secret, "msg_1", 1700000000, b'{"max":1}')


def demo_experiment(application, n_tasks=6):
    """The demo's two steps and first tasks on `application`, its baseline run started."""
    for external_id, config in DEFAULT_CONFIG.items():
        InferenceStep.objects.create(application=application, external_id=external_id, config=config)
    tasks = [Task.objects.create(application=application, **task) for task in TASKS[:n_tasks]]
    experiment = actions.create_experiment(application, name="Pulled")
    actions.set_scope(experiment, steps=list(DEFAULT_CONFIG), tasks=tasks)
    experiment.refresh_from_db()
    return experiment


def finished(run):
    return wait_for(
        lambda: Run.objects.filter(pk=run.pk).exclude(status__in=(RunStatus.QUEUED, RunStatus.RUNNING)).first(), 60, message="the run"
    )


@pytest.fixture
def working(live_server):
    """Start a PullWorker in a thread; stopped and closed at the end of the test."""
    started = []

    def start(application, **options):
        options.setdefault("secret", application.webhook_secret)
        worker = pull_worker.PullWorker(live_server.url, str(application.pk), demo_answer(0.0), wait=1, concurrency=3, **options)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread))
        return worker

    yield start
    for worker, thread in started:
        worker.stop()
        thread.join(10)
        worker.close()


def test_a_pull_worker_runs_a_baseline_and_a_variant_with_its_overrides_applied(working):
    application = make_application(make_team(), delivery=Delivery.PULL, webhook_url="")
    experiment = demo_experiment(application)
    working(application)
    baseline = finished(runs.start_baseline_run(experiment))
    assert baseline.status == RunStatus.SUCCEEDED and baseline.errored == 0
    test = Test.objects.filter(run=baseline).first()
    assert set(test.steps) == {"router", "answer"} and test.steps["answer"]["model"] == "gpt-4o-mini" and test.attempts == 1
    attempt = DeliveryAttempt.objects.get(test=test)
    assert attempt.pulled and attempt.duration_ms is not None and attempt.error == ""
    experiment.refresh_from_db()
    variant = actions.create_variant(experiment, parent=experiment.baseline, inference_step="answer", parameter="model", value="gpt-4o")
    run = finished(runs.start_variant_run(variant))
    assert run.status == RunStatus.SUCCEEDED
    assert set(Test.objects.filter(run=run).values_list("steps__answer__model", flat=True)) == {"gpt-4o"}
    assert run.aggregates["steps"]["answer"]["models"] == {"gpt-4o": 6}


def test_a_pull_worker_with_a_token_answers_a_dry_run(working):
    team = make_team()
    application = make_application(team, delivery=Delivery.PULL, webhook_url="")
    experiment = demo_experiment(application)
    working(application, secret=None, token=make_token(team, Role.EDITOR))
    dry = finished(runs.start_dry_run(experiment.baseline, tasks=2))
    assert dry.status == RunStatus.SUCCEEDED and dry.total == 2
    experiment.refresh_from_db()
    assert experiment.status == "baseline_pending"


def test_a_failing_pipeline_is_reported_as_the_result_error(live_server):
    application = make_application(make_team(), delivery=Delivery.PULL, webhook_url="")
    run = runs.start_baseline_run(demo_experiment(application, n_tasks=1))

    def broken(test):
        raise RuntimeError("the model provider is down")

    worker = pull_worker.PullWorker(live_server.url, str(application.pk), broken, secret=application.webhook_secret, wait=0)
    try:
        assert worker.run_once() == 1
    finally:
        worker.close()
    test = Test.objects.get(run=run)
    assert test.status == "failed" and test.error == "RuntimeError: the model provider is down"


@pytest.fixture
def requests_in_flight():
    """How many requests the live server is answering now (its threads run in this process).

    A puller killed mid long-poll leaves its request polling on the server; emptying the
    database under it can deadlock with the poll's transaction, so a test waits for 0 first."""
    count = [0]
    lock = threading.Lock()

    def started(**kwargs):
        with lock:
            count[0] += 1

    def ended(**kwargs):
        with lock:
            count[0] -= 1

    request_started.connect(started, weak=False)
    request_finished.connect(ended, weak=False)
    yield lambda: count[0]
    request_started.disconnect(started)
    request_finished.disconnect(ended)


def test_python_m_demo_app_pull_answers_a_run(live_server, tmp_path, requests_in_flight):
    application = make_application(make_team(), delivery=Delivery.PULL, webhook_url="")
    experiment = demo_experiment(application)
    env = {
        **os.environ,
        "DEMO_WEBHOOK_SECRET": application.webhook_secret,
        "DEMO_APPLICATION_ID": str(application.pk),
        "VAR_DIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "demo.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "demo_app", "--pull", "--dashboard", live_server.url, "--speed", "0", "--wait", "1"],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        run = finished(runs.start_baseline_run(experiment))
    finally:
        process.terminate()
        process.wait(10)
        wait_for(lambda: requests_in_flight() <= 0, 15, message="the live server to answer the killed puller's last request")
    assert run.status == RunStatus.SUCCEEDED, log.read_text()
    assert "pulling its tests" in log.read_text()
    assert all(set(steps) == {"router", "answer"} for steps in Test.objects.filter(run=run).values_list("steps", flat=True))
