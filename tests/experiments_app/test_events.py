"""Events out of the product (SPEC §4): emitted on commit by completion and the actions,
signed like test deliveries (verified with the independent `standardwebhooks` library),
retried by the delivery policy, logged, redelivered by hand, and disabled when failing."""

from datetime import timedelta

import pytest
import standardwebhooks
from django.utils import timezone

from experiments_app import actions, runs
from experiments_app.events import deliver, emit, endpoints
from experiments_app.models import DeliveryStatus, Event, EventDelivery, EventEndpoint, Run, Test
from tests.api_fixtures import experiment_with_baseline, finish_run, ready_experiment
from tests.engine_fixtures import Reply
from tests.factories import make_application, make_team

pytestmark = pytest.mark.django_db

ALL = ["run.completed", "baseline.completed", "variant.completed", "variant.regressed", "experiment.completed"]


@pytest.fixture
def fast_retries(settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0.01
    settings.WEBHOOK_RETRY_MAX_SECONDS = 0.02
    settings.EVENT_TIMEOUT_SECONDS = 2
    return settings


def endpoint_for(app, url, events=ALL, **fields):
    return endpoints.create_endpoint(app.team, {"url": url, "events": events, **fields})


def send_all(endpoint=None):
    """Deliver every pending delivery now (what the woken task does), retries included."""
    for _ in range(10):
        pending = EventDelivery.objects.filter(status=DeliveryStatus.PENDING)
        if endpoint is not None:
            pending = pending.filter(endpoint=endpoint)
        if not pending.exists():
            return
        pending.update(next_attempt_at=timezone.now())
        for delivery_id in pending.values_list("pk", flat=True):
            deliver.deliver(delivery_id)


def types_received(receiver):
    return [request.json["type"] for request in receiver.requests]


def test_baseline_run_emits_run_and_baseline_completed_signed_for_standardwebhooks(receiver, django_capture_on_commit_callbacks):
    application = make_application()
    endpoint = endpoint_for(application, receiver.url)
    experiment = ready_experiment(application)
    with django_capture_on_commit_callbacks() as callbacks:
        run = finish_run(runs.start_baseline_run(experiment))
    assert len(callbacks) >= 2  # the dispatcher's wake-up plus one per delivery
    send_all()
    assert sorted(types_received(receiver)) == ["baseline.completed", "run.completed"]
    for request in receiver.requests:
        body = standardwebhooks.Webhook(endpoint.secret).verify(request.body, request.headers)
        assert body["data"]["run"]["id"] == str(run.pk)
        assert body["data"]["experiment"] == {"id": str(experiment.pk), "name": experiment.name, "status": "baseline_complete"}
        assert body["data"]["variant"]["is_baseline"] is True
        assert body["data"]["result"]["pass_rate"] == 1.0
        assert body["data"]["run"]["skipped"] == 0
        assert request.headers["webhook-id"].startswith("msg_")


def test_nothing_is_recorded_without_an_endpoint(db):
    experiment = ready_experiment(make_application())
    finish_run(runs.start_baseline_run(experiment))
    assert not EventDelivery.objects.exists()


def test_deliveries_are_woken_only_when_the_change_commits(receiver, django_capture_on_commit_callbacks):
    application = make_application()
    endpoint_for(application, receiver.url, events=["run.completed"])
    experiment = ready_experiment(application)
    run = runs.start_baseline_run(experiment)
    with django_capture_on_commit_callbacks() as callbacks:
        runs.cancel_run(run)
    assert EventDelivery.objects.count() == 1
    assert len(callbacks) == 1
    assert receiver.requests == []  # nothing is sent inside the transaction


def test_endpoints_get_only_their_event_types_and_application(receiver):
    application = make_application()
    other = make_application(application.team)
    endpoint_for(application, receiver.url, events=["baseline.completed"])
    endpoint_for(other, receiver.url, events=ALL, application=other.pk)
    finish_run(runs.start_baseline_run(ready_experiment(application)))
    send_all()
    assert types_received(receiver) == ["baseline.completed"]


def test_a_cancelled_run_emits_run_completed_only(receiver):
    application = make_application()
    endpoint_for(application, receiver.url)
    run = runs.start_baseline_run(ready_experiment(application))
    runs.cancel_run(run)
    send_all()
    assert types_received(receiver) == ["run.completed"]
    body = receiver.requests[0].json
    assert body["data"]["run"]["status"] == "cancelled"
    assert body["data"]["result"] is None


def variant_run(experiment, passed):
    baseline = experiment.variants.get(parent__isnull=True)
    variant = actions.create_variant(experiment, parent=baseline, inference_step="main", parameter="temperature", value=0.1)
    return variant, finish_run(runs.start_variant_run(variant), passed=passed)


def test_a_significantly_worse_variant_emits_variant_regressed(receiver):
    application = make_application()
    experiment = experiment_with_baseline(application, n_tasks=12)
    endpoint_for(application, receiver.url, events=["variant.completed", "variant.regressed"])
    variant, run = variant_run(experiment, passed=False)
    send_all()
    assert sorted(types_received(receiver)) == ["variant.completed", "variant.regressed"]
    regressed = next(r.json for r in receiver.requests if r.json["type"] == "variant.regressed")
    assert regressed["data"]["variant"]["id"] == str(variant.pk)
    assert regressed["data"]["result"]["delta_pp"] == -100.0
    assert regressed["data"]["result"]["p_value"] < 0.05


def test_a_variant_as_good_as_the_baseline_does_not_emit_variant_regressed(receiver):
    application = make_application()
    experiment = experiment_with_baseline(application, n_tasks=12)
    endpoint_for(application, receiver.url, events=["variant.completed", "variant.regressed"])
    variant_run(experiment, passed=True)
    send_all()
    assert types_received(receiver) == ["variant.completed"]


def test_completing_emits_experiment_completed_with_the_winner(receiver):
    application = make_application()
    experiment = experiment_with_baseline(application, n_tasks=3)
    variant, _ = variant_run(experiment, passed=True)
    endpoint_for(application, receiver.url, events=["experiment.completed"])
    experiment.refresh_from_db()
    actions.complete_experiment(experiment, winner=variant)
    send_all()
    (request,) = receiver.requests
    data = request.json["data"]
    assert request.json["type"] == "experiment.completed"
    assert data["experiment"]["status"] == "completed"
    assert data["variant"]["id"] == str(variant.pk)
    assert data["result"]["variant"] == str(variant.pk)


def test_a_failing_attempt_is_retried_with_the_same_webhook_id_and_every_attempt_logged(receiver, fast_retries):
    receiver.handler = lambda received, count: Reply(503) if count < 3 else Reply(200)
    # A retry far enough away that "not due yet" holds however slow the machine is (send_all makes it due).
    fast_retries.WEBHOOK_RETRY_BASE_SECONDS, fast_retries.WEBHOOK_RETRY_MAX_SECONDS = 30, 60
    application = make_application()
    endpoint_for(application, receiver.url, events=["run.completed"])
    runs.cancel_run(runs.start_baseline_run(ready_experiment(application)))
    delivery = EventDelivery.objects.get()
    assert deliver.deliver(delivery.pk) == DeliveryStatus.PENDING
    assert deliver.deliver(delivery.pk) is None  # not due yet: the retry waits for its time
    send_all()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert [(a.number, a.status_code, bool(a.retry_at)) for a in delivery.attempt_log.all()] == [
        (1, 503, True),
        (2, 503, True),
        (3, 200, False),
    ]
    assert len({request.headers["webhook-id"] for request in receiver.requests}) == 1


def test_a_4xx_is_not_retried(receiver, fast_retries):
    receiver.handler = lambda received, count: Reply(410)
    application = make_application()
    endpoint = endpoint_for(application, receiver.url, events=["run.completed"])
    runs.cancel_run(runs.start_baseline_run(ready_experiment(application)))
    send_all()
    delivery = EventDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 1
    assert "HTTP 410" in delivery.last_error and "Not retried" in delivery.last_error
    endpoint.refresh_from_db()
    assert endpoint.failed_deliveries == 1 and endpoint.failing_since is not None


def test_an_endpoint_is_disabled_after_failures_in_a_row_and_the_reason_kept(receiver, fast_retries):
    fast_retries.EVENT_DISABLE_AFTER_FAILURES = 2
    receiver.handler = lambda received, count: Reply(500)
    application = make_application()
    endpoint = endpoint_for(application, receiver.url, events=["run.completed"])
    experiment = ready_experiment(application)
    for _ in range(2):
        runs.cancel_run(runs.start_baseline_run(experiment))
        experiment.refresh_from_db()
        send_all()
    endpoint.refresh_from_db()
    assert not endpoint.is_enabled
    assert endpoint.disabled_reason == "Disabled after 2 failed deliveries in a row."
    sent = len(receiver.requests)
    runs.cancel_run(runs.start_baseline_run(experiment))
    send_all()
    assert len(receiver.requests) == sent  # a disabled endpoint gets no new events


def test_an_endpoint_failing_for_days_is_disabled(receiver, fast_retries):
    receiver.handler = lambda received, count: Reply(404)
    application = make_application()
    endpoint = endpoint_for(application, receiver.url, events=["run.completed"])
    EventEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(days=6), failed_deliveries=7)
    runs.cancel_run(runs.start_baseline_run(ready_experiment(application)))
    send_all()
    endpoint.refresh_from_db()
    assert endpoint.disabled_at is not None
    assert "failing for 5 days" in endpoint.disabled_reason


def test_a_success_resets_the_failure_streak(receiver):
    application = make_application()
    endpoint = endpoint_for(application, receiver.url, events=["run.completed"])
    EventEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now(), failed_deliveries=7)
    runs.cancel_run(runs.start_baseline_run(ready_experiment(application)))
    send_all()
    endpoint.refresh_from_db()
    assert (endpoint.failed_deliveries, endpoint.failing_since) == (0, None)


def test_redelivery_by_hand_sends_the_same_event_again(receiver):
    application = make_application()
    endpoint = endpoint_for(application, receiver.url, events=["run.completed"])
    runs.cancel_run(runs.start_baseline_run(ready_experiment(application)))
    send_all()
    first = EventDelivery.objects.get()
    again = endpoints.redeliver(first)
    send_all()
    again.refresh_from_db()
    assert again.manual and again.status == DeliveryStatus.DELIVERED
    assert [r.headers["webhook-id"] for r in receiver.requests] == [first.event.webhook_id] * 2
    assert receiver.requests[0].body == receiver.requests[1].body
    standardwebhooks.Webhook(endpoint.secret).verify(receiver.requests[1].body, receiver.requests[1].headers)


def test_a_delivery_claimed_twice_is_sent_once(receiver):
    application = make_application()
    endpoint_for(application, receiver.url, events=["run.completed"])
    runs.cancel_run(runs.start_baseline_run(ready_experiment(application)))
    delivery = EventDelivery.objects.get()
    assert deliver.deliver(delivery.pk) == DeliveryStatus.DELIVERED
    assert deliver.deliver(delivery.pk) is None
    assert len(receiver.requests) == 1


def test_an_endpoint_url_follows_the_ssrf_rules(db, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    with pytest.raises(Exception) as refused:
        endpoints.create_endpoint(make_team(), {"url": "http://127.0.0.1:9/events", "events": ["run.completed"]})
    assert "url" in refused.value.errors
    assert "private, loopback or link-local" in refused.value.errors["url"][0]


def test_a_url_that_became_private_is_refused_when_sending(receiver, fast_retries):
    application = make_application()
    endpoint_for(application, receiver.url, events=["run.completed"])
    fast_retries.WEBHOOK_ALLOWED_HOSTS = []
    runs.cancel_run(runs.start_baseline_run(ready_experiment(application)))
    send_all()
    delivery = EventDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 1
    assert "loopback" in delivery.last_error
    assert receiver.requests == []


def test_the_event_body_has_a_skipped_count_from_the_run(db):
    # `total` leaves skipped tests out: the run counts them apart (runs/state.py skip_pending)
    run = Run(total=7, passed=4, failed=2, errored=1, skipped=3, stopped_early=True, status="succeeded")
    assert (emit.run_part(run)["skipped"], emit.run_part(run)["total"], emit.run_part(run)["stopped_early"]) == (3, 7, True)
    assert Test.objects.count() == 0


def test_a_variant_event_carries_its_verdict_interval_adjusted_p_guardrails_and_ship(receiver):
    application = make_application()
    endpoint_for(application, receiver.url, events=["variant.completed"])
    experiment = experiment_with_baseline(application, n_tasks=8)
    actions.update_experiment(experiment, guardrails=[{"name": "correct", "evaluator": "exact_match", "margin_pp": 20}])
    variant = actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.1)
    finish_run(runs.start_variant_run(variant))
    result = Event.objects.get(type="variant.completed").payload["data"]["result"]
    assert result["verdict"]["code"] == "no_difference" and result["verdict"]["text"].startswith("no detectable difference")
    assert result["delta_ci_low"] <= result["delta_pp"] <= result["delta_ci_high"]
    assert result["p_value_adjusted"] == result["p_value"] == 1.0  # one variant: Holm changes nothing
    assert result["guardrails"][0]["name"] == "correct" and result["ship"] is False
    assert result["warnings"] == [] and result["stopped_early"] is False and result["skipped"] == 0
