"""Runs, tests, comparison, results and result ingestion through the API."""

import json
import threading
import uuid

import pytest
from django.urls import reverse
from django.utils import timezone

from experiments_app import actions, runs, webhooks
from experiments_app.models import DeliveryAttempt, Role, Run, RunStatus, Test, new_webhook_secret
from experiments_app.states import State
from tests.api_fixtures import client_for, experiment_with_baseline, finish_run, ready_experiment
from tests.factories import make_application, make_team, make_token, make_user


def url(name, **kwargs):
    return reverse(f"api:{name}", kwargs=kwargs)


def variant_run(world, passed):
    run = runs.start_variant_run(world.variant)
    return finish_run(run, passed=passed)


# ------------------------------------------------------------------ runs


def test_reading_a_run_shows_its_counts(viewer, world):
    response = viewer.get(url("run-detail", id=world.run.pk))
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "succeeded" and body["total"] == 3 and body["passed"] == 3
    assert body["experiment"] == str(world.experiment.pk) and body["completed_at"]


def test_runs_of_an_experiment_are_listed_and_filtered(viewer, world):
    runs.start_variant_run(world.variant)
    listed = viewer.get(url("experiment-runs", id=world.experiment.pk)).json()
    assert listed["count"] == 2
    running = viewer.get(url("experiment-runs", id=world.experiment.pk), {"status": "queued"}).json()
    assert [row["variant"] for row in running["results"]] == [str(world.variant.pk)]
    assert viewer.get(url("experiment-runs", id=world.experiment.pk), {"status": "done"}).status_code == 400


def test_the_tests_of_a_run_are_listed_and_filtered_by_status(viewer, world):
    run = variant_run(world, passed=False)
    listed = viewer.get(url("run-tests", id=run.pk)).json()
    assert listed["count"] == 3
    assert {row["status"] for row in listed["results"]} == {"failed"}
    assert viewer.get(url("run-tests", id=run.pk), {"status": "passed"}).json()["count"] == 0


def test_an_unknown_test_status_filter_is_400(viewer, world):
    response = viewer.get(url("run-tests", id=world.run.pk), {"status": "great"})
    assert response.status_code == 400
    assert "status" in response.json()["errors"]


def test_tests_list_pages_with_page_size(viewer, world):
    response = viewer.get(url("run-tests", id=world.run.pk), {"page_size": 2, "page": 2})
    body = response.json()
    assert body["count"] == 3 and len(body["results"]) == 1 and body["previous"]


def test_a_test_shows_its_delivery_attempts_and_evaluations(viewer, world):
    DeliveryAttempt.objects.create(
        test=world.test, number=1, started_at=timezone.now(), status_code=503, duration_ms=12.5, error="HTTP 503"
    )
    response = viewer.get(url("test-detail", id=world.test.pk))
    assert response.status_code == 200
    body = response.json()
    assert body["delivery_attempts"] == [
        {
            "number": 1,
            "started_at": body["delivery_attempts"][0]["started_at"],
            "status_code": 503,
            "duration_ms": 12.5,
            "error": "HTTP 503",
            "retry_at": None,
            "pulled": False,
        }
    ]
    assert body["evaluations"] and body["evaluations"][0]["passed"] is True
    assert body["input"] == world.test.task_input and body["status"] == "passed"


# ------------------------------------------------------------------ cancel


def test_cancelling_an_active_run_answers_200_with_the_cancelled_run(editor, world):
    run = runs.start_variant_run(world.variant)
    response = editor.post(url("run-cancel", id=run.pk))
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled" and response.json()["errored"] == 3
    world.experiment.refresh_from_db()
    assert world.experiment.status == State.IDLE


def test_cancelling_an_ended_run_is_409(editor, world):
    response = editor.post(url("run-cancel", id=world.run.pk))
    assert response.status_code == 409
    assert response.json()["status"] == "succeeded"


# ------------------------------------------------------------------ compare and results


def test_comparing_two_runs_of_one_experiment(viewer, world):
    new = variant_run(world, passed=False)
    response = viewer.get(url("run-compare", new=new.pk, old=world.run.pk))
    assert response.status_code == 200
    body = response.json()
    assert body["new_run"] == str(new.pk) and body["old_run"] == str(world.run.pk)
    assert body["common"] == 3 and body["new_only"] == 0 and len(body["regressed"]) == 3 and body["improved"] == []


def test_comparing_runs_of_two_experiments_is_400(viewer, world):
    other = ready_experiment(world.application)
    other_run = runs.start_baseline_run(other)
    response = viewer.get(url("run-compare", new=other_run.pk, old=world.run.pk))
    assert response.status_code == 400
    assert "old" in response.json()["errors"]


def test_results_list_the_baseline_and_each_variant(viewer, world):
    variant_run(world, passed=False)
    response = viewer.get(url("experiment-results", id=world.experiment.pk))
    assert response.status_code == 200
    body = response.json()
    assert body["baseline"]["pass_rate"] == 1.0 and body["baseline"]["is_baseline"] is True
    (row,) = body["variants"]
    assert row["variant"] == str(world.variant.pk) and row["pass_rate"] == 0.0 and row["delta_pp"] == -100.0
    assert row["change"] == {"step": "main", "parameter": "temperature", "value": 0.3}


# ------------------------------------------------------------------ result ingestion


def result_url(test):
    return url("test-result", id=test.pk)


def pending_test(world):
    run = runs.start_variant_run(world.variant)
    return run.tests.first()


def test_a_result_with_a_team_token_answers_200(editor, world):
    test = pending_test(world)
    response = editor.post(result_url(test), {"output": test.task_expected, "metrics": {"latency_ms": 12}}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "passed" and response.json()["metrics"] == {"latency_ms": 12.0}


def test_the_answer_to_a_result_is_the_test_as_reading_it_shows(editor, viewer, world):
    """The result post's answer (its attempts read by one fixed statement) is the test's own
    representation: the same body GET tests/{id}/ gives, attempts in number order."""
    test = pending_test(world)
    started = timezone.now()
    for number, code in ((2, 202), (1, 503)):  # stored out of order
        DeliveryAttempt.objects.create(test=test, number=number, started_at=started, status_code=code, duration_ms=3.25)
    answer = editor.post(result_url(test), {"output": "x", "steps": {"main": {"latency_ms": 5}}}, format="json")
    assert answer.status_code == 200
    body = answer.json()
    assert [attempt["number"] for attempt in body["delivery_attempts"]] == [1, 2]
    assert body == viewer.get(url("test-detail", id=test.pk)).json()
    again = editor.post(result_url(test), {"output": "x", "steps": {"main": {"latency_ms": 5}}}, format="json")
    assert again.status_code == 200 and again.json() == body


def test_the_same_result_again_answers_200_and_changes_nothing(editor, world):
    test = pending_test(world)
    first = editor.post(result_url(test), {"output": "x"}, format="json")
    again = editor.post(result_url(test), {"output": "x"}, format="json")
    assert first.status_code == again.status_code == 200
    assert again.json()["completed_at"] == first.json()["completed_at"]


def test_a_different_result_for_a_finished_test_is_409(editor, world):
    test = pending_test(world)
    editor.post(result_url(test), {"output": "x"}, format="json")
    response = editor.post(result_url(test), {"output": "y"}, format="json")
    assert response.status_code == 409


def test_a_result_for_a_cancelled_run_is_409(editor, world):
    test = pending_test(world)
    runs.cancel_run(test.run)
    assert editor.post(result_url(test), {"output": "x"}, format="json").status_code == 409


def test_a_malformed_result_names_the_field(editor, world):
    test = pending_test(world)
    response = editor.post(result_url(test), {"output": 1, "passed": "yes", "metrics": {"cost": "high"}}, format="json")
    assert response.status_code == 400
    assert {"passed", "metrics.cost"} <= set(response.json()["errors"])


def test_a_result_for_an_unknown_test_is_404(editor, world):
    assert editor.post(url("test-result", id=uuid.uuid4()), {"output": 1}, format="json").status_code == 404


def signed_post(client, test, payload, secret):
    body = json.dumps(payload).encode()
    headers = webhooks.signed_headers(secret, test.webhook_id, body)
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items() if name.startswith("webhook-")}
    return client.post(result_url(test), body, content_type="application/json", **extra)


def test_a_result_signed_with_the_application_secret_answers_200(world):
    test = pending_test(world)
    response = signed_post(client_for(), test, {"output": test.task_expected}, world.application.webhook_secret)
    assert response.status_code == 200
    assert response.json()["status"] == "passed"


def test_a_result_signed_with_another_secret_is_401(world):
    test = pending_test(world)
    response = signed_post(client_for(), test, {"output": 1}, new_webhook_secret())
    assert response.status_code == 401
    test.refresh_from_db()
    assert test.status == "pending"


def test_a_signed_result_for_an_unknown_test_is_404(world):
    test = Test(id=uuid.uuid4())
    response = signed_post(client_for(), test, {"output": 1}, world.application.webhook_secret)
    assert response.status_code == 404


def test_a_browser_session_cannot_post_results(client, team, world):
    test = pending_test(world)
    client.force_login(make_user(team, Role.ADMIN))
    response = client.post(result_url(test), {"output": 1}, content_type="application/json")
    assert response.status_code == 401


# ------------------------------------------------------------------ racing starts


@pytest.mark.django_db(transaction=True)
def test_racing_run_requests_give_one_202_and_409s():
    team = make_team()
    token = make_token(team, Role.EDITOR)
    experiment = ready_experiment(make_application(team))
    statuses, barrier = [], threading.Barrier(8)

    def start():
        from django.db import connections

        try:
            barrier.wait()
            statuses.append(client_for(token).post(url("experiment-run-baseline", id=experiment.pk)).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [202] + [409] * 7
    assert Run.objects.filter(experiment=experiment).count() == 1


@pytest.mark.django_db(transaction=True)
def test_racing_variant_runs_give_one_202_and_409s():
    team = make_team()
    token = make_token(team, Role.EDITOR)
    experiment = experiment_with_baseline(make_application(team))
    baseline = experiment.variants.get(parent__isnull=True)
    variants = [
        actions.create_variant(experiment, parent=baseline, inference_step="main", parameter="temperature", value=value)
        for value in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
    ]
    statuses, barrier = [], threading.Barrier(len(variants))

    def start(variant):
        from django.db import connections

        try:
            barrier.wait()
            statuses.append(client_for(token).post(url("variant-run", id=variant.pk)).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=start, args=(variant,)) for variant in variants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [202] + [409] * (len(variants) - 1)
    assert Run.objects.filter(experiment=experiment, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).count() == 1
