"""Celery entry points: task bodies called directly, enqueueing on commit, and a real worker end to end."""

import subprocess
import threading
import time

import pytest

from demo_app import pipeline
from demo_app.catalog import TASKS
from demo_app.server import serve_in_thread
from experiments_app import actions, runs, tasks
from experiments_app.models import DeliveryAttempt, Experiment, InferenceStep, Role, Run, RunStatus, Task, Test
from experiments_app.models import TestStatus as Status
from experiments_app.states import State
from tests.api_fixtures import client_for
from tests.engine_fixtures import Reply, start_baseline, wait_for
from tests.factories import make_application, make_token


@pytest.mark.django_db
def test_starting_a_run_enqueues_dispatch_on_commit(receiver, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        start_baseline(receiver.url, n_tasks=1)
    assert len(callbacks) == 1


def test_runs_wake_the_dispatch_task_by_its_registered_name():
    assert tasks.dispatch_application.name == runs.start.DISPATCH_TASK


@pytest.mark.django_db
def test_the_dispatch_task_body_sends_due_tests(receiver, fast_engine):
    run = start_baseline(receiver.url, n_tasks=2)
    assert tasks.dispatch_application(str(run.experiment.application_id)) is None
    assert len(receiver.requests) == 2
    assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED


@pytest.mark.django_db
def test_the_dispatch_task_ignores_a_deleted_application():
    assert tasks.dispatch_application("6f1c0000-0000-4000-8000-000000000000") is None


@pytest.mark.django_db
def test_the_sweep_task_body_runs_a_sweep(receiver, fast_engine):
    run = start_baseline(receiver.url, n_tasks=1)
    Test.objects.filter(run=run).update(status=Status.PASSED)
    tasks.sweep_tests()
    assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED


# --- a real worker -------------------------------------------------------------


def run_finished(run_id):
    return Run.objects.filter(pk=run_id).exclude(status__in=(RunStatus.QUEUED, RunStatus.RUNNING)).first()


def demo_setup(url, n_tasks=12):
    application = make_application(webhook_url=url, max_concurrency=5, timeout_seconds=5, result_timeout_seconds=30)
    from experiments_app.management.commands.load_demo import STEPS

    for external_id, fields in STEPS.items():
        InferenceStep.objects.create(application=application, external_id=external_id, **fields)
    chosen = TASKS[:: max(1, len(TASKS) // n_tasks)][:n_tasks]
    task_rows = [Task.objects.create(application=application, **task) for task in chosen]
    experiment = actions.create_experiment(application, name="End to end")
    actions.set_scope(experiment, steps=list(STEPS), tasks=task_rows)
    actions.update_experiment(experiment, evaluators=[{"type": "exact_match", "name": "correct"}])
    return application, Experiment.objects.get(pk=experiment.pk)


def expected_passes(run):
    """How many tests pass when the demo pipeline answers with the run's config."""
    passes = 0
    for test in Test.objects.filter(run=run):
        result = pipeline.answer(
            {"externalId": test.task_external_id, "input": test.task_input}, run.config, test.repetition, run.variant.name
        )
        passes += result["output"] == test.task_expected
    return passes


def check_outputs_match_the_application(run):
    for test in Test.objects.filter(run=run):
        result = pipeline.answer(
            {"externalId": test.task_external_id, "input": test.task_input}, run.config, test.repetition, run.variant.name
        )
        assert test.output == result["output"]
        assert test.metrics == result["metrics"]
        assert test.trace_id == result["traceId"]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_runs_a_baseline_and_a_branch_of_variants_end_to_end(celery_worker_process, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    server = serve_in_thread(port=0, async_fraction=0.4, speed=0.01, callback_delay=0.05)
    try:
        application, experiment = demo_setup(f"http://127.0.0.1:{server.server_address[1]}/webhook")
        server.app.fixed_secret = application.webhook_secret
        baseline_run = runs.start_baseline_run(experiment)
        baseline_run = wait_for(
            lambda: run_finished(baseline_run.pk), 60, message=f"the baseline run\n{celery_worker_process.log()[-2000:]}"
        )
        assert baseline_run.status == RunStatus.SUCCEEDED
        check_outputs_match_the_application(baseline_run)
        assert baseline_run.passed == expected_passes(baseline_run)
        assert Experiment.objects.get(pk=experiment.pk).status == State.BASELINE_COMPLETE
        assert DeliveryAttempt.objects.filter(test__run=baseline_run, status_code=202).exists()

        experiment.refresh_from_db()
        cooler = actions.create_variant(experiment, parent=experiment.baseline, inference_step="answer", parameter="temperature", value=0.2)
        stronger = actions.create_variant(experiment, parent=cooler, inference_step="answer", parameter="model", value="gpt-4o")
        finished = []
        for variant in (cooler, stronger):
            started = runs.start_variant_run(variant)
            run = wait_for(lambda started=started: run_finished(started.pk), 60, message="a variant run")
            assert Experiment.objects.get(pk=experiment.pk).status == State.IDLE
            check_outputs_match_the_application(run)
            assert run.passed == expected_passes(run)
            finished.append(run)
        assert finished[1].config["answer"]["temperature"] == 0.2 and finished[1].config["answer"]["model"] == "gpt-4o"
        assert baseline_run.passed <= finished[0].passed <= finished[1].passed
        assert finished[1].aggregates["metrics"]["latency_ms"]["count"] == finished[1].total
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_retries_a_503_and_records_the_200(celery_worker_process, receiver):
    receiver.handler = lambda received, count: Reply(503) if count == 1 else Reply(200, {"output": "ok", "passed": True})
    run = start_baseline(receiver.url, n_tasks=1)
    run = wait_for(lambda: run_finished(run.pk), 30, message="the run")
    test = Test.objects.get(run=run)
    assert (test.status, test.attempts) == (Status.PASSED, 2)
    assert list(test.delivery_attempts.values_list("status_code", flat=True)) == [503, 200]
    first, second = receiver.for_test(test.pk)
    assert 0.9 <= second.at - first.at <= 5.5  # the first retry comes within 5 s


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_sweep_errors_a_silent_test(celery_worker_process, receiver):
    receiver.handler = lambda received, count: Reply(202)
    run = start_baseline(receiver.url, n_tasks=1, result_timeout_seconds=1)
    wait_for(lambda: Test.objects.filter(run=run, result_due_at__isnull=False).exists(), 30, message="the 202")
    time.sleep(1.1)
    tasks.sweep_tests.delay()
    run = wait_for(lambda: run_finished(run.pk), 30, message="the sweep")
    assert run.status == RunStatus.FAILED
    assert Test.objects.get(run=run).status == Status.ERRORED
    assert Experiment.objects.get(pk=run.experiment_id).status == State.BASELINE_FAILED


def test_the_sweep_has_its_own_queue_and_dispatch_keeps_the_default():
    from dashboard.celery import app

    assert app.amqp.router.route({}, tasks.sweep_tests.name)["queue"].name == "sweep"
    assert app.amqp.router.route({}, tasks.dispatch_application.name)["queue"].name == "celery"
    assert {"celery", "sweep"} <= set(app.amqp.queues)  # a plain `celery worker` consumes both


def test_the_procfile_runs_a_dedicated_sweeper_and_keeps_dispatchers_off_its_queue():
    from tests.engine_fixtures import BASE_DIR

    lines = dict(line.split(": ", 1) for line in (BASE_DIR / "Procfile").read_text().splitlines() if line.strip())
    assert "--queues celery " in lines["worker"] + " "
    assert "--queues sweep " in lines["sweeper"] + " "


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_on_the_sweep_queue_alone_errors_a_silent_test(receiver, fast_engine, live_server, tmp_path):
    """What the Procfile's sweeper does: a worker consuming only the sweep queue sweeps."""
    from tests.engine_fixtures import database_url, start_worker

    receiver.handler = lambda received, count: Reply(202)
    run = start_baseline(receiver.url, n_tasks=1, result_timeout_seconds=1)
    tasks.dispatch_application(str(run.experiment.application_id))  # the 202, sent from this process
    assert Test.objects.get(run=run).result_due_at is not None
    queue = f"sweep-test-{run.pk.hex[:8]}"  # a queue no other worker of this session consumes
    sweeper = start_worker(database_url(), live_server.url, tmp_path / "sweeper.log", queues=[queue], concurrency=1)
    try:
        time.sleep(1.1)
        tasks.sweep_tests.apply_async(queue=queue)
        run = wait_for(lambda: run_finished(run.pk), 30, message="the sweep")
    finally:
        sweeper.stop()
    assert "sweep_tests" in sweeper.log()
    assert (run.status, Test.objects.get(run=run).status) == (RunStatus.FAILED, Status.ERRORED)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_run_costs_seconds_and_no_test_is_recorded_twice(
    celery_worker_process, receiver, live_server, tmp_path, monkeypatch
):
    """SIGKILL the worker that is sending a run; the sweeper and another worker finish it."""
    from experiments_app.models import Transition
    from tests.engine_fixtures import database_url, start_worker

    # This test decides which worker gets the first wake-up: the doomed one, not the session's.
    monkeypatch.setattr(runs.start, "wake_dispatcher", lambda application_id: None)
    receiver.handler = lambda received, count: Reply(200, {"output": "ok", "passed": True}, delay=1.0)
    run = start_baseline(receiver.url, n_tasks=12, max_concurrency=4, timeout_seconds=2)
    queue = f"doomed-{run.pk.hex[:8]}"
    doomed = start_worker(
        database_url(), live_server.url, tmp_path / "doomed.log", queues=[queue], pool="solo",
        env={"DISPATCH_LEASE_SECONDS": "2", "DISPATCH_TEST_LEASE_MARGIN_SECONDS": "1"},
    )  # fmt: skip
    try:
        tasks.dispatch_application.apply_async(args=[str(run.experiment.application_id)], queue=queue)
        wait_for(lambda: len(receiver.requests) >= 4, 30, message="the doomed worker's first requests")
    finally:
        doomed.process.kill()  # solo pool: the dispatcher dies with the process, mid-request
        doomed.process.wait()
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING
    assert Test.objects.filter(run=run, status=Status.DISPATCHED).exists()  # requests were in flight

    killed_at = time.monotonic()
    while not run_finished(run.pk):  # the beat's job, done here every second
        assert time.monotonic() - killed_at < 60, "the run was not finished after the worker died"
        tasks.sweep_tests.delay()
        time.sleep(1)
    run = Run.objects.get(pk=run.pk)
    assert (run.status, run.total, run.passed, run.errored) == (RunStatus.SUCCEEDED, 12, 12, 0)
    for test in Test.objects.filter(run=run):
        received = receiver.for_test(test.pk)
        assert len({request.headers["webhook-id"] for request in received}) == 1  # retries keep the id
        numbers = list(test.delivery_attempts.order_by("number").values_list("number", flat=True))
        assert numbers == list(range(1, test.attempts + 1))  # the lost attempt is logged, no gaps
    assert len(receiver.requests) > 12  # some tests really were delivered twice
    completions = Transition.objects.filter(experiment_id=run.experiment_id, to_status=State.BASELINE_COMPLETE)
    assert completions.count() == 1


def hold_requests(receiver):
    """Make the receiver hold every request until the returned event is set."""
    release = threading.Event()

    def handler(received, count):
        release.wait(30)
        return Reply(200, {"output": "late"})

    receiver.handler = handler
    return release


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("concurrency", "n_tasks"), [(4, 8), (4, 20)], ids=["4-held-4-queued", "4-held-16-queued"])
def test_no_delivery_starts_after_a_cancel_has_answered(celery_worker_process, receiver, concurrency, n_tasks):
    """SPEC §8: after `cancel/` answers 200 the application receives nothing new, although
    the dispatcher had claimed tests beyond the in-flight cap when the cancel came."""
    release = hold_requests(receiver)
    run = start_baseline(receiver.url, n_tasks=n_tasks, max_concurrency=concurrency, timeout_seconds=30)
    editor = client_for(make_token(run.experiment.team, Role.EDITOR))
    try:
        wait_for(lambda: len(receiver.requests) >= concurrency, 30, message="the first requests in flight")
        # The dispatcher holds `concurrency` requests and has claimed more than that.
        wait_for(lambda: Test.objects.filter(run=run, status=Status.DISPATCHED).count() > concurrency, 10, message="claims")
        response = editor.post(f"/api/v1/runs/{run.pk}/cancel/")
        assert response.status_code == 200 and response.json()["status"] == "cancelled"
        sent_before_the_answer = len(receiver.requests)
    finally:
        release.set()
    time.sleep(3)  # the held requests end and their slots free; nothing may fill them
    assert sent_before_the_answer == concurrency
    assert len(receiver.requests) == sent_before_the_answer
    run.refresh_from_db()
    assert (run.status, run.errored, run.total) == (RunStatus.CANCELLED, n_tasks, n_tasks)
    assert not Test.objects.filter(run=run, status__in=(Status.PENDING, Status.DISPATCHED)).exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_warm_shutdown_finishes_in_flight_deliveries_and_hands_the_rest_to_another_worker(
    celery_worker_process, receiver, live_server, tmp_path, monkeypatch
):
    """SIGTERM to a worker that is sending a long run: it exits within timeout_seconds plus a
    margin, its in-flight answers are recorded, and another worker sends the rest."""
    from tests.engine_fixtures import database_url, start_worker

    monkeypatch.setattr(runs.start, "wake_dispatcher", lambda application_id: None)
    receiver.handler = lambda received, count: Reply(200, {"output": "ok", "passed": True}, delay=1.0)
    run = start_baseline(receiver.url, n_tasks=60, max_concurrency=4, timeout_seconds=3)
    queue = f"leaving-{run.pk.hex[:8]}"
    leaving = start_worker(database_url(), live_server.url, tmp_path / "leaving.log", queues=[queue], concurrency=1)
    tasks.dispatch_application.apply_async(args=[str(run.experiment.application_id)], queue=queue)
    wait_for(lambda: len(receiver.requests) >= 4, 30, message="the leaving worker's first requests")
    leaving.process.terminate()  # SIGTERM: a warm shutdown
    stopped_at = time.monotonic()
    try:
        leaving.process.wait(timeout=3 + 10)
    except subprocess.TimeoutExpired:
        leaving.process.kill()
        pytest.fail(f"the worker was still running 13 s after SIGTERM:\n{leaving.log()[-2000:]}")
    assert time.monotonic() - stopped_at < 3 + 10
    finished = wait_for(lambda: run_finished(run.pk), 90, message=f"the run, finished by the session worker\n{leaving.log()[-2000:]}")
    assert (finished.status, finished.total, finished.passed, finished.errored) == (RunStatus.SUCCEEDED, 60, 60, 0)
    assert len(receiver.requests) == 60  # nothing in flight was lost, nothing was sent twice
    assert all(test.attempts == 1 for test in Test.objects.filter(run=run))
