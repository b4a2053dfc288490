"""Emitting events: the body of SPEC §4 and one EventDelivery per interested endpoint.

Called inside the transaction of the change that caused the event (a run closing or being
cancelled, an experiment completing); deliveries are sent by a Celery task that is woken
only once that transaction commits, so a rolled-back change sends nothing.
"""

import json

from celery import current_app
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from experiments_app import decisions, results
from experiments_app.models import Event, EventDelivery, EventEndpoint, EventType

# Named, not imported: tasks.py is the top floor.
DELIVER_TASK = "experiments_app.tasks.deliver_event"
VERSION = 1


def plain(value):
    """`value` as JSON-ready data (datetimes as ISO 8601 strings)."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def experiment_part(experiment):
    return {"id": str(experiment.pk), "name": experiment.name, "status": experiment.status}


def variant_part(variant):
    if variant is None:
        return None
    return {
        "id": str(variant.pk),
        "name": variant.name,
        "is_baseline": variant.is_baseline,
        "is_control": bool(getattr(variant, "is_control", False)),
    }


def run_part(run):
    if run is None:
        return None
    return {
        "id": str(run.pk),
        "status": run.status,
        "total": run.total,
        "passed": run.passed,
        "failed": run.failed,
        "errored": run.errored,
        "skipped": run.skipped,  # counted apart: `total` leaves them out (SPEC §3)
        "stopped_early": run.stopped_early,
        "completed_at": run.completed_at,
    }


def result_of(experiment, variant, run=None):
    """R of SPEC §8 for `variant` when `run` is (or, without a run, whatever is) its latest result; else None."""
    table = results.experiment_results(experiment)
    rows = [table["baseline"], *table["variants"]] if table["baseline"] else table["variants"]
    row = next((row for row in rows if row["variant"] == str(variant.pk)), None)
    if row is None or row["run"] is None or (run is not None and row["run"] != str(run.pk)):
        return None
    return row


def build_event(event_type, experiment, variant=None, run=None, result=None):
    """The event body of SPEC §4 (`"version"` added so consumers can tell shapes apart)."""
    return plain(
        {
            "type": event_type,
            "timestamp": timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "version": VERSION,
            "data": {
                "experiment": experiment_part(experiment),
                "variant": variant_part(variant),
                "run": run_part(run),
                "result": result,
            },
        }
    )


def listening(team_id, application_id, event_types):
    """{event type: [enabled endpoints that want it]} for the team's endpoints."""
    endpoints = EventEndpoint.objects.filter(team_id=team_id, disabled_at__isnull=True)
    return {kind: [e for e in endpoints if e.wants(kind, application_id)] for kind in event_types}


def record(experiment, bodies):
    """Store each event that some endpoint wants, with one delivery per such endpoint, and wake
    the sender for each delivery once the transaction commits. Returns the deliveries."""
    wanted = listening(experiment.team_id, experiment.application_id, [body["type"] for body in bodies])
    deliveries = []
    now = timezone.now()
    for body in bodies:
        endpoints = wanted[body["type"]]
        if not endpoints:
            continue
        event = Event.objects.create(team_id=experiment.team_id, type=body["type"], payload=body)
        deliveries += EventDelivery.objects.bulk_create(
            [EventDelivery(event=event, endpoint=endpoint, next_attempt_at=now) for endpoint in endpoints]
        )
    for delivery in deliveries:
        wake_sender(delivery.pk)
    return deliveries


def wake_sender(delivery_id, countdown=None):
    options = {"countdown": countdown} if countdown else {}
    transaction.on_commit(lambda: current_app.send_task(DELIVER_TASK, args=[str(delivery_id)], **options))


def run_ended(run):
    """Emit the events of a run that has just ended (closed or cancelled): `run.completed`
    always; for a result (succeeded or failed) also `baseline.completed` or `variant.completed`,
    and `variant.regressed` when the judge finds it significantly worse than the baseline.
    Call inside the transaction that ended the run. Returns the deliveries made."""
    experiment, variant = run.experiment, run.variant
    types = [EventType.RUN_COMPLETED]
    if run.status in results.RESULT_STATUSES:
        types.append(EventType.BASELINE_COMPLETED if variant.is_baseline else EventType.VARIANT_COMPLETED)
        types.append(EventType.VARIANT_REGRESSED)
    if not any(listening(experiment.team_id, experiment.application_id, types).values()):
        return []
    experiment.refresh_from_db(fields=["status"])
    result = result_of(experiment, variant, run) if run.status in results.RESULT_STATUSES else None
    bodies = []
    for kind in types:
        if kind == EventType.VARIANT_REGRESSED:
            regressed = result is not None and not variant.is_baseline
            if not (regressed and decisions.judge(result, default_alpha=decisions.experiment_alpha(experiment)).regressed):
                continue
        bodies.append(build_event(kind, experiment, variant, run, result))
    return record(experiment, bodies)


def experiment_completed(experiment):
    """Emit `experiment.completed` (variant, run and result are the winner's, null without one).
    Call inside the transaction that completed the experiment. Returns the deliveries made."""
    if not any(listening(experiment.team_id, experiment.application_id, [EventType.EXPERIMENT_COMPLETED]).values()):
        return []
    winner = experiment.winner
    result = result_of(experiment, winner) if winner is not None else None
    run = winner.runs.filter(pk=result["run"]).first() if result else None
    return record(experiment, [build_event(EventType.EXPERIMENT_COMPLETED, experiment, winner, run, result)])
