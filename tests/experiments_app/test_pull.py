"""Pull mode (SPEC §8): leasing through applications/{id}/pending-tests/, expiry, races, the cap and isolation."""

import json
import threading
import time
from datetime import timedelta

import httpx
import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from experiments_app import actions, runs, webhooks
from experiments_app.errors import Conflict
from experiments_app.models import Delivery, DeliveryAttempt, Role, Run, RunStatus, Test, new_webhook_secret
from experiments_app.models import TestStatus as Status
from experiments_app.runs import pull, state
from tests.api_fixtures import client_for, experiment_with_baseline, ready_experiment
from tests.engine_fixtures import wait_for
from tests.factories import make_application, make_team, make_token, make_user

pytestmark = pytest.mark.django_db


def pending_url(application):
    return reverse("api:application-pending-tests", kwargs={"id": application.pk})


def result_url(test_id):
    return reverse("api:test-result", kwargs={"id": test_id})


def pull_app(team=None, **fields):
    fields.setdefault("webhook_url", "")
    return make_application(team or make_team(), delivery=Delivery.PULL, **fields)


def started(application, n_tasks=3):
    """A baseline run of a fresh experiment of `application`."""
    return runs.start_baseline_run(ready_experiment(application, n_tasks))


def lease(application, limit=10, lease_seconds=30):
    return pull.lease_tests(application.pk, limit, lease_seconds)


def expire(tests):
    Test.objects.filter(pk__in=[test.pk for test in tests]).update(lease_until=timezone.now() - timedelta(seconds=1))


def signed(client, url, payload, secret, msg_id="msg_pull_1"):
    body = json.dumps(payload).encode()
    headers = webhooks.signed_headers(secret, msg_id, body)
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items() if name.startswith("webhook-")}
    return client.post(url, body, content_type="application/json", **extra)


# ------------------------------------------------------------------ leasing


def test_pulling_leases_due_tests_as_the_webhook_data_with_overrides(team):
    application = pull_app(team)
    run = started(application, n_tasks=2)
    answer = runs.pull_tests(application.pk, limit=10, lease_seconds=30)
    assert len(answer["tests"]) == 2 and answer["lease_until"] is not None
    item = answer["tests"][0]
    assert set(item) == {"testId", "repetition", "callbackUrl", "task", "experiment"}
    assert item["experiment"]["overrides"] == run.config and item["experiment"]["variant"]["isBaseline"] is True
    assert item["callbackUrl"].endswith(f"/api/v1/tests/{item['testId']}/result/")
    test = Test.objects.get(pk=item["testId"])
    assert test.status == Status.DISPATCHED and test.attempts == 1 and test.lease_until == answer["lease_until"]
    attempt = DeliveryAttempt.objects.get(test=test)
    assert attempt.pulled and attempt.number == 1 and attempt.error == "" and attempt.duration_ms is None
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


def test_a_leased_test_is_not_offered_again_while_its_lease_runs(team):
    application = pull_app(team)
    started(application, n_tasks=3)
    first = lease(application, limit=2)
    second = lease(application)
    assert len(first) == 2 and len(second) == 1
    assert {test.pk for test in first}.isdisjoint({test.pk for test in second})
    assert lease(application) == []


def test_max_concurrency_caps_the_leased_tests_of_every_puller(team):
    application = pull_app(team, max_concurrency=3)
    started(application, n_tasks=5)
    assert len(lease(application, limit=2)) == 2
    held = lease(application, limit=10)
    assert len(held) == 1  # 3 leased in all
    assert lease(application) == []
    runs.record_result(held[0].pk, {"output": "x"})  # a result frees a slot
    assert len(lease(application)) == 1


def test_an_expired_lease_is_offered_again_with_one_more_attempt(team):
    application = pull_app(team)
    started(application, n_tasks=1)
    (test,) = lease(application, lease_seconds=5)
    expire([test])
    (again,) = lease(application)
    assert again.pk == test.pk and again.attempts == 2
    attempts = list(DeliveryAttempt.objects.filter(test=test).order_by("number").values_list("number", "pulled", "error"))
    assert attempts == [(1, True, state.LEASE_EXPIRED_ERROR), (2, True, "")]


def test_a_result_after_its_lease_expired_is_still_accepted_once(team, editor):
    application = pull_app(team)
    started(application, n_tasks=1)
    (test,) = lease(application, lease_seconds=5)
    expire([test])
    first = editor.post(result_url(test.pk), {"output": test.task_expected}, format="json")
    assert first.status_code == 200 and first.json()["status"] == "passed"
    assert editor.post(result_url(test.pk), {"output": test.task_expected}, format="json").status_code == 200
    assert editor.post(result_url(test.pk), {"output": "another"}, format="json").status_code == 409
    assert lease(application) == []  # answered: never offered again


def test_a_late_result_from_the_first_puller_wins_over_the_re_leased_one(team, editor):
    application = pull_app(team)
    started(application, n_tasks=1)
    (test,) = lease(application, lease_seconds=5)
    expire([test])
    (again,) = lease(application)  # a second puller has it now
    assert editor.post(result_url(test.pk), {"output": "first"}, format="json").status_code == 200
    assert editor.post(result_url(again.pk), {"output": "second"}, format="json").status_code == 409
    test.refresh_from_db()
    assert test.output == "first" and test.status == Status.FAILED


def test_a_result_records_how_long_the_lease_took(team):
    application = pull_app(team)
    started(application, n_tasks=1)
    (test,) = lease(application)
    runs.record_result(test.pk, {"output": "x"})
    attempt = DeliveryAttempt.objects.get(test=test)
    assert attempt.duration_ms is not None and attempt.duration_ms >= 0 and attempt.error == ""


def test_the_sweeper_errors_a_test_whose_last_lease_expired(team, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    application = pull_app(team)
    run = started(application, n_tasks=1)
    for _ in range(2):
        tests = lease(application)
        assert len(tests) == 1
        expire(tests)
    assert lease(application) == []  # no third attempt
    runs.sweep_tests(wake=lambda application_id: pytest.fail("a pull application is never woken"))
    test = run.tests.get()
    assert test.status == Status.ERRORED and "last of 2 attempts" in test.error
    run.refresh_from_db()
    assert run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)
    assert list(DeliveryAttempt.objects.filter(test=test).values_list("error", flat=True)) == [state.LEASE_EXPIRED_ERROR] * 2


def test_cancel_errors_leased_tests_and_ignores_their_results(team, editor):
    application = pull_app(team)
    run = started(application, n_tasks=2)
    (test,) = lease(application, limit=1)
    runs.cancel_run(run)
    assert lease(application) == []
    assert editor.post(result_url(test.pk), {"output": "x"}, format="json").status_code == 409
    assert set(run.tests.values_list("status", flat=True)) == {Status.ERRORED}


def test_a_test_of_an_ended_run_is_handed_back_not_offered(team):
    application = pull_app(team)
    run = started(application, n_tasks=1)
    claimed = list(run.tests.all())
    Run.objects.filter(pk=run.pk).update(status=RunStatus.CANCELLED)  # ended between claim and offer
    assert pull.offerable(claimed) == []


def test_dry_runs_of_a_pull_application_are_leased_too(team):
    application = pull_app(team)
    experiment = experiment_with_baseline(application)
    dry = runs.start_dry_run(experiment.baseline, tasks=2)
    assert {test.run_id for test in lease(application)} == {dry.pk}


# ------------------------------------------------------------------ nothing is pushed to a pull application


def test_the_dispatcher_and_the_sweeper_never_push_to_a_pull_application(team, receiver, fast_engine, django_capture_on_commit_callbacks):
    application = pull_app(team, webhook_url=receiver.url)
    with django_capture_on_commit_callbacks() as callbacks:
        run = started(application, n_tasks=2)
    assert callbacks == []  # no dispatcher woken
    assert runs.dispatch_application(application.pk) == 0
    woken = []
    runs.sweep_tests(wake=woken.append)
    assert woken == [] and receiver.requests == []
    assert set(run.tests.values_list("status", flat=True)) == {Status.PENDING}


def test_a_push_application_refuses_pulls_with_409(team, editor):
    application = make_application(team)
    started(application)
    response = editor.post(pending_url(application), {}, format="json")
    assert response.status_code == 409
    assert "pull" in response.json()["detail"]


# ------------------------------------------------------------------ the API: shape, validation, authentication


def test_post_pending_tests_with_a_token_answers_the_leased_tests(team, editor):
    application = pull_app(team)
    started(application, n_tasks=3)
    response = editor.post(pending_url(application), {"max": 2, "lease_seconds": 60}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert len(body["tests"]) == 2 and body["lease_until"]
    leased = Test.objects.get(pk=body["tests"][0]["testId"])
    assert 55 <= (leased.lease_until - leased.dispatched_at).total_seconds() <= 60


def test_an_empty_body_leases_up_to_ten_for_the_applications_timeout(team, editor):
    application = pull_app(team, timeout_seconds=45)
    started(application, n_tasks=12)
    body = editor.post(pending_url(application)).json()
    leased = Test.objects.get(pk=body["tests"][0]["testId"])
    assert len(body["tests"]) == 10 and (leased.lease_until - leased.dispatched_at).total_seconds() == pytest.approx(45, abs=1)


def test_no_due_test_answers_an_empty_list_at_once_without_wait(team, editor):
    application = pull_app(team)
    started_at = time.monotonic()
    assert editor.post(pending_url(application), {}, format="json").json() == {"tests": [], "lease_until": None}
    assert time.monotonic() - started_at < 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max": 0}, "max"),
        ({"max": 101}, "max"),
        ({"wait": 31}, "wait"),
        ({"wait": -1}, "wait"),
        ({"lease_seconds": 0}, "lease_seconds"),
        ({"max": "many"}, "max"),
    ],
)
def test_bad_pull_options_are_400_naming_the_field(team, editor, body, field):
    application = pull_app(team)
    response = editor.post(pending_url(application), body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_a_pull_signed_with_the_application_secret_is_accepted(team):
    application = pull_app(team)
    started(application, n_tasks=1)
    response = signed(client_for(), pending_url(application), {"max": 5}, application.webhook_secret)
    assert response.status_code == 200 and len(response.json()["tests"]) == 1


def test_a_pull_signed_with_another_secret_or_over_another_body_is_401(team):
    application = pull_app(team)
    started(application, n_tasks=1)
    assert signed(client_for(), pending_url(application), {}, new_webhook_secret()).status_code == 401
    body = json.dumps({"max": 1}).encode()
    headers = webhooks.signed_headers(application.webhook_secret, "msg_x", b'{"max": 100}')
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items() if name.startswith("webhook-")}
    assert client_for().post(pending_url(application), body, content_type="application/json", **extra).status_code == 401
    assert Test.objects.filter(status=Status.DISPATCHED).count() == 0


def test_a_pull_without_credentials_is_401_and_a_session_is_not_enough(team, client):
    application = pull_app(team)
    assert client_for().post(pending_url(application), {}, format="json").status_code == 401
    client.force_login(make_user(team, Role.ADMIN))
    assert client.post(pending_url(application), {}, content_type="application/json").status_code == 401


def test_a_viewer_token_cannot_lease(team, viewer):
    application = pull_app(team)
    started(application, n_tasks=1)
    assert viewer.post(pending_url(application), {}, format="json").status_code == 403
    assert Test.objects.filter(status=Status.DISPATCHED).count() == 0


def test_a_puller_of_one_team_can_never_see_or_change_another_teams_tests(team, editor):
    theirs = pull_app(make_team())
    their_run = started(theirs, n_tasks=2)
    mine = pull_app(team)
    my_run = started(mine, n_tasks=1)
    # Our token on their application: 404, nothing leased.
    assert editor.post(pending_url(theirs), {}, format="json").status_code == 404
    # Our secret signing a pull of their application: 401.
    assert signed(client_for(), pending_url(theirs), {}, mine.webhook_secret).status_code == 401
    assert set(their_run.tests.values_list("status", flat=True)) == {Status.PENDING}
    # Our pull only ever sees our own tests.
    body = editor.post(pending_url(mine), {"max": 100}, format="json").json()
    assert {item["testId"] for item in body["tests"]} == {str(pk) for pk in my_run.tests.values_list("pk", flat=True)}
    # Their tests cannot be answered with our token or our secret.
    their_test = their_run.tests.first()
    assert editor.post(result_url(their_test.pk), {"output": 1}, format="json").status_code == 404
    signed_result = signed(client_for(), result_url(their_test.pk), {"output": 1}, mine.webhook_secret, msg_id=their_test.webhook_id)
    assert signed_result.status_code == 401
    assert set(their_run.tests.values_list("status", flat=True)) == {Status.PENDING}


# ------------------------------------------------------------------ switching delivery


def test_an_application_is_switched_to_pull_and_back_through_the_api(team, admin):
    application = make_application(team)
    url = reverse("api:application-detail", kwargs={"id": application.pk})
    response = admin.patch(url, {"delivery": "pull"}, format="json")
    assert response.status_code == 200 and response.json()["delivery"] == "pull"
    assert admin.patch(url, {"delivery": "push"}, format="json").json()["delivery"] == "push"
    assert admin.patch(url, {"delivery": "carrier pigeon"}, format="json").status_code == 400


def test_a_pull_application_needs_no_webhook_url_but_a_push_one_does(team, admin):
    created = admin.post(reverse("api:application-list"), {"name": "Notebook", "delivery": "pull"}, format="json")
    assert created.status_code == 201 and created.json()["webhook_url"] == "" and created.json()["delivery"] == "pull"
    url = reverse("api:application-detail", kwargs={"id": created.json()["id"]})
    back = admin.patch(url, {"delivery": "push"}, format="json")
    assert back.status_code == 400 and "webhook_url" in back.json()["errors"]
    refused = admin.post(reverse("api:application-list"), {"name": "No address"}, format="json")
    assert refused.status_code == 400 and "webhook_url" in refused.json()["errors"]


def test_switching_delivery_during_an_active_run_is_409(team, admin):
    application = make_application(team)
    run = started(application)
    url = reverse("api:application-detail", kwargs={"id": application.pk})
    assert admin.patch(url, {"delivery": "pull"}, format="json").status_code == 409
    assert admin.patch(url, {"name": "Renamed", "delivery": "push"}, format="json").status_code == 200  # no switch: fine
    runs.cancel_run(run)
    assert admin.patch(url, {"delivery": "pull"}, format="json").status_code == 200


def test_switching_is_refused_while_a_dry_run_of_the_application_is_active(team, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    other = experiment_with_baseline(make_application(team))
    runs.start_dry_run(other.baseline)  # another application's run does not count
    own = experiment_with_baseline(pull_app(team, name="own"))
    dry = runs.start_dry_run(own.baseline)
    with pytest.raises(Conflict):
        actions.update_application(own.application, {"delivery": "push", "webhook_url": "http://127.0.0.1:9/hook"})
    runs.cancel_run(dry)
    assert actions.update_application(own.application, {"delivery": "push", "webhook_url": "http://127.0.0.1:9/hook"}).delivery == "push"


# ------------------------------------------------------------------ races and the long poll (real threads, real transactions)


def pull_in_thread(application_id, results, errors, *, limit, rounds, lease_seconds=60):
    try:
        for _ in range(rounds):
            results.append([test.pk for test in pull.lease_tests(application_id, limit, lease_seconds)])
    except Exception as error:  # reported to the test, which fails on it
        errors.append(error)
    finally:
        connection.close()


def race(application, *, threads, limit, rounds):
    results, errors = [], []
    workers = [
        threading.Thread(target=pull_in_thread, args=(application.pk, results, errors), kwargs={"limit": limit, "rounds": rounds})
        for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert errors == []
    return [pk for batch in results for pk in batch]


@pytest.mark.django_db(transaction=True)
def test_racing_pullers_never_get_the_same_test():
    application = pull_app(max_concurrency=1000)
    run = started(application, n_tasks=40)
    leased = race(application, threads=4, limit=3, rounds=6)
    assert len(leased) == len(set(leased)) == 40
    assert set(leased) == set(run.tests.values_list("pk", flat=True))
    assert Test.objects.filter(run=run, attempts=1, status=Status.DISPATCHED).count() == 40


@pytest.mark.django_db(transaction=True)
def test_racing_pullers_together_stay_within_max_concurrency():
    application = pull_app(max_concurrency=5)
    started(application, n_tasks=30)
    leased = race(application, threads=4, limit=4, rounds=3)
    assert len(leased) == len(set(leased)) == 5
    assert Test.objects.filter(status=Status.DISPATCHED).count() == 5


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_answers_as_soon_as_a_test_is_due():
    application = pull_app()
    experiment = ready_experiment(application, n_tasks=1)

    def start_soon():
        time.sleep(0.7)
        runs.start_baseline_run(experiment)
        connection.close()

    starter = threading.Thread(target=start_soon)
    begun = time.monotonic()
    starter.start()
    answer = runs.pull_tests(application.pk, limit=5, wait=10, lease_seconds=30)
    elapsed = time.monotonic() - begun
    starter.join()
    assert len(answer["tests"]) == 1
    assert 0.6 < elapsed < 4  # answered once the run started, long before the end of the 10 s wait


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_without_work_answers_empty_when_the_wait_ends():
    application = pull_app()
    begun = time.monotonic()
    assert runs.pull_tests(application.pk, wait=1, lease_seconds=30) == {"tests": [], "lease_until": None}
    assert 0.95 <= time.monotonic() - begun < 3


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_over_http_is_answered_when_a_run_starts(live_server):
    team = make_team()
    token = make_token(team, Role.EDITOR)
    application = pull_app(team)
    experiment = ready_experiment(application, n_tasks=2)
    threading.Timer(0.5, lambda: (runs.start_baseline_run(experiment), connection.close())).start()
    response = httpx.post(
        f"{live_server.url}{pending_url(application)}", json={"wait": 10}, headers={"Authorization": f"Bearer {token}"}, timeout=20
    )
    assert response.status_code == 200 and len(response.json()["tests"]) == 2
    wait_for(lambda: Run.objects.filter(status=RunStatus.RUNNING).exists(), message="the run to be running")


def test_the_openapi_schema_documents_pull_mode_dry_runs_and_steps(anonymous):
    schema = anonymous.get("/api/schema/?format=json").json()
    pending = schema["paths"]["/api/v1/applications/{id}/pending-tests/"]["post"]
    schemes = [set(item) for item in pending["security"]]
    assert {"bearerAuth"} in schemes and {"webhookSignature"} in schemes
    components = schema["components"]["schemas"]
    assert set(components["PendingTestsInputRequest"]["properties"]) == {"max", "wait", "lease_seconds"}
    assert set(components["PendingTest"]["properties"]) == {"testId", "repetition", "callbackUrl", "task", "experiment"}
    assert "/api/v1/variants/{id}/dry-run/" in schema["paths"]
    assert set(components["DryRunRequest"]["properties"]) == {"tasks", "task_ids"}
    assert "steps" in components["ResultInputRequest"]["properties"] and "steps" in components["Test"]["properties"]
    assert {"cost_per_test", "cost_per_passed", "steps"} <= set(components["Result"]["properties"])
    assert "delivery" in components["Application"]["properties"] and "dry_run" in components["Run"]["properties"]


@pytest.mark.django_db(transaction=True)
def test_beyond_pull_max_waiters_a_pull_without_work_answers_at_once(settings):
    settings.PULL_MAX_WAITERS = 1
    application = pull_app()
    waiting = threading.Thread(target=lambda: (runs.pull_tests(application.pk, wait=2, lease_seconds=30), connection.close()))
    waiting.start()
    time.sleep(0.3)  # the first puller holds the only place
    begun = time.monotonic()
    assert runs.pull_tests(application.pk, wait=2, lease_seconds=30)["tests"] == []
    assert time.monotonic() - begun < 1
    waiting.join()
    begun = time.monotonic()
    runs.pull_tests(application.pk, wait=0.5, lease_seconds=30)  # the place is free again: this one waits
    assert time.monotonic() - begun >= 0.45
