"""Issue 14: application-wide backoff (AIMD), stalled dispatchers handed over, and applications
that fail every delivery disabled with the reason and re-enabled with one click."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.urls import reverse
from django.utils import timezone

from experiments_app import runs
from experiments_app.errors import Conflict
from experiments_app.models import Application, Role, Run, RunStatus, Test
from experiments_app.runs import health
from experiments_app.runs.throttle import InFlightLimit
from tests.api_fixtures import client_for, ready_experiment
from tests.engine_fixtures import Reply, start_baseline
from tests.factories import make_application, make_token, make_user
from webui.views.errors import server_error

# ------------------------------------------------------------------ AIMD, pure


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_limit_halves_on_throttling_at_most_once_per_interval():
    clock = Clock()
    limit = InFlightLimit(16, clock=clock)
    for _ in range(8):  # one burst of 429s to requests sent together counts once
        limit.on_throttled()
    assert limit.current == 8
    clock.now = 1.0
    limit.on_throttled()
    assert limit.current == 4
    for step in range(2, 10):
        clock.now = float(step)
        limit.on_throttled()
    assert limit.current == 1  # never below one


def test_the_limit_grows_back_by_about_one_per_round_of_successes():
    limit = InFlightLimit(10, clock=Clock())
    limit.value = 2
    rounds = []
    for _ in range(5):
        for _ in range(limit.current):
            limit.on_success()
        rounds.append(limit.current)
    assert rounds == [3, 4, 5, 6, 7]  # additive: +1 per round, not doubling
    for _ in range(100):
        limit.on_success()
    assert limit.current == 10  # never above max_concurrency


def test_a_retry_after_pauses_every_new_request():
    clock = Clock()
    limit = InFlightLimit(4, clock=clock)
    limit.on_throttled(retry_after=2.0)
    assert limit.free_slots(0) == 0
    clock.now = 2.5
    assert limit.free_slots(0) == 2


# ------------------------------------------------------------------ a storm of 429/503


@pytest.mark.django_db
def test_a_storm_of_429_and_503_backs_off_for_the_whole_application(receiver, fast_engine):
    """For 3 s every answer is 429 or 503; the dispatcher sends fewer at once, then recovers."""
    fast_engine.WEBHOOK_MAX_ATTEMPTS = 20
    seen = []  # (seconds since the first request, requests in flight when this one arrived)
    lock = threading.Lock()
    start = []

    def handler(received, count):
        with lock:
            start.append(start[0] if start else time.monotonic())
            at = time.monotonic() - start[0]
            seen.append((at, receiver.in_flight))
        if at < 3.0:
            return Reply(429 if count % 2 else 503, headers={"Retry-After": "0"}, delay=0.05)
        return Reply(200, {"output": "ok", "passed": True}, delay=0.2)

    receiver.handler = handler
    run = start_baseline(receiver.url, n_tasks=60, max_concurrency=8, timeout_seconds=5)
    runs.dispatch_application(run.experiment.application_id)

    run = Run.objects.get(pk=run.pk)
    assert (run.status, run.passed, run.errored) == (RunStatus.SUCCEEDED, 60, 0)
    assert run.count_tests()["passed"] == 60
    first_round = max(n for at, n in seen if at < 0.3)
    late_storm = max(n for at, n in seen if 2.0 <= at < 3.0)
    recovered = max(n for at, n in seen if at >= 4.0)
    assert first_round == 8
    assert late_storm <= 2, seen  # halved at least twice: 8 → 4 → 2 → 1
    assert recovered > late_storm  # grown back additively
    print(f"in flight: {first_round} at first, {late_storm} late in the storm, {recovered} after it")


@pytest.mark.django_db
def test_the_run_page_shows_the_current_in_flight_limit(client, team):
    application = make_application(team, max_concurrency=8)
    run = runs.start_baseline_run(ready_experiment(application))
    Application.objects.filter(pk=application.pk).update(dispatch_limit=3, dispatch_lease_until=timezone.now() + timedelta(seconds=30))
    client.force_login(make_user(team, Role.VIEWER))
    page = client.get(reverse("webui:run-detail", kwargs={"pk": run.pk})).content.decode()
    assert "3 of 8 requests in flight" in page


# ------------------------------------------------------------------ a stalled dispatcher


@pytest.mark.django_db
def test_a_lease_held_without_progress_is_taken_over_and_shown(client, team, settings):
    application = make_application(team, timeout_seconds=5)
    run = runs.start_baseline_run(ready_experiment(application))
    now = timezone.now()
    still = now - timedelta(seconds=settings.DISPATCH_STALL_SECONDS + 5)
    # A dispatcher that keeps renewing its lease but has not moved since `still`.
    Application.objects.filter(pk=application.pk).update(dispatch_lease_until=now + timedelta(seconds=20), dispatch_progress_at=still)
    woken = []
    runs.sweep_tests(wake=woken.append)
    application.refresh_from_db()
    assert woken == [application.pk]
    assert application.dispatch_lease_until is None  # another worker may take it
    assert application.dispatch_stalled_since == still
    client.force_login(make_user(team, Role.VIEWER))
    page = client.get(reverse("webui:application-detail", kwargs={"pk": application.pk})).content.decode()
    assert "Dispatch stalled since" in page
    assert Run.objects.get(pk=run.pk).status == RunStatus.QUEUED


@pytest.mark.django_db
def test_a_healthy_dispatcher_is_not_stalled_and_clears_the_mark(receiver, fast_engine):
    run = start_baseline(receiver.url, n_tasks=3)
    application_id = run.experiment.application_id
    Application.objects.filter(pk=application_id).update(dispatch_stalled_since=timezone.now() - timedelta(minutes=5))
    Application.objects.filter(pk=application_id).update(
        dispatch_progress_at=timezone.now(), dispatch_lease_until=timezone.now() + timedelta(seconds=20)
    )
    assert health.find_stalled(timezone.now()) == []  # moved just now
    Application.objects.filter(pk=application_id).update(dispatch_lease_until=None)
    runs.dispatch_application(application_id)
    assert Application.objects.get(pk=application_id).dispatch_stalled_since is None


@pytest.mark.django_db
def test_due_tests_nobody_picks_up_mark_the_application_stalled(team, settings):
    application = make_application(team)
    run = runs.start_baseline_run(ready_experiment(application))
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    [(stalled, since)] = health.find_stalled(timezone.now())
    assert stalled.pk == application.pk and since < timezone.now() - timedelta(minutes=9)


# ------------------------------------------------------------------ failing applications


@pytest.mark.django_db
def test_an_application_that_fails_every_delivery_is_disabled_and_re_enabled_with_one_click(receiver, fast_engine, client, team):
    fast_engine.APPLICATION_DISABLE_AFTER_FAILURES = 6
    fast_engine.APPLICATION_DISABLE_AFTER_SECONDS = 0.3
    fast_engine.WEBHOOK_MAX_ATTEMPTS = 10
    receiver.handler = lambda received, count: Reply(500, delay=0.05)
    application = make_application(team, webhook_url=receiver.url, max_concurrency=2)
    run = runs.start_baseline_run(ready_experiment(application, n_tasks=8))
    runs.dispatch_application(application.pk)

    application.refresh_from_db()
    assert application.is_disabled()
    assert "all" in application.disabled_reason and "HTTP 500" in application.disabled_reason
    run = Run.objects.get(pk=run.pk)
    assert (run.status, run.errored, run.total) == (RunStatus.FAILED, 8, 8)
    assert all("the application was disabled" in test.error for test in Test.objects.filter(run=run))
    assert len(receiver.requests) < 8 * 10  # stopped long before every test used its attempts
    sent = len(receiver.requests)
    with pytest.raises(Conflict, match="disabled"):
        runs.start_baseline_run(run.experiment)
    runs.sweep_tests(wake=lambda application_id: runs.dispatch_application(application_id))
    assert len(receiver.requests) == sent

    admin = make_user(team, Role.ADMIN)
    client.force_login(admin)
    page = client.get(reverse("webui:application-detail", kwargs={"pk": application.pk})).content.decode()
    assert application.disabled_reason[:40] in page and "Re-enable" in page
    response = client.post(reverse("webui:application-enable", kwargs={"pk": application.pk}))
    assert response.status_code == 302
    application.refresh_from_db()
    assert not application.is_disabled() and application.consecutive_failures == 0


@pytest.mark.django_db
def test_one_success_resets_the_failure_count(receiver, fast_engine):
    fast_engine.APPLICATION_DISABLE_AFTER_FAILURES = 3
    fast_engine.APPLICATION_DISABLE_AFTER_SECONDS = 0
    receiver.handler = lambda received, count: Reply(500) if count == 1 else Reply(200, {"output": "ok"})
    run = start_baseline(receiver.url, n_tasks=2, max_concurrency=1)
    runs.dispatch_application(run.experiment.application_id)
    application = Application.objects.get(pk=run.experiment.application_id)
    assert not application.is_disabled() and application.consecutive_failures == 0


@pytest.mark.django_db
def test_a_viewer_cannot_re_enable(client, team):
    application = make_application(team)
    Application.objects.filter(pk=application.pk).update(disabled_at=timezone.now(), disabled_reason="x")
    client.force_login(make_user(team, Role.VIEWER))
    assert client.post(reverse("webui:application-enable", kwargs={"pk": application.pk})).status_code == 403
    assert Application.objects.get(pk=application.pk).is_disabled()


@pytest.mark.django_db
def test_the_api_shows_a_disabled_application_and_an_admin_re_enables_it(team):
    application = make_application(team)
    Application.objects.filter(pk=application.pk).update(disabled_at=timezone.now(), disabled_reason="Disabled automatically: …")
    admin = client_for(make_token(team, Role.ADMIN))
    shown = admin.get(reverse("api:application-detail", kwargs={"id": application.pk})).json()
    assert shown["disabled_reason"].startswith("Disabled automatically") and shown["disabled_at"]
    assert (
        client_for(make_token(team, Role.EDITOR)).post(reverse("api:application-enable", kwargs={"id": application.pk})).status_code == 403
    )
    enabled = admin.post(reverse("api:application-enable", kwargs={"id": application.pk}))
    assert enabled.status_code == 200 and enabled.json()["disabled_at"] is None


def test_an_unreachable_database_answers_503_with_retry_after_not_500(rf):
    for path, kind in (("/api/v1/runs/x/", "application/json"), ("/experiments/", "text/html")):
        try:
            raise OperationalError("connection refused")
        except OperationalError:
            response = server_error(rf.get(path))
        assert response.status_code == 503 and response["Retry-After"] == "10" and kind in response["Content-Type"]
    try:
        raise ValueError("a bug")
    except ValueError:
        assert server_error(rf.get("/api/v1/runs/x/")).status_code == 500
