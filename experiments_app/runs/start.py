"""Starting and cancelling runs: the first step of a run's life."""

from celery import current_app
from django.db import IntegrityError, transaction
from django.utils import timezone

from experiments_app import overrides, states, webhooks
from experiments_app.actions.experiments import apply_transition, variant_effective_config
from experiments_app.errors import Conflict, ValidationFailed
from experiments_app.events import emit
from experiments_app.models import ACTIVE_RUN_STATUSES, OPEN_TEST_STATUSES, Experiment, Run, RunStatus, Test, Variant
from experiments_app.runs.state import error_tests
from experiments_app.states import State

# The Celery task that sends an application's due tests. It is named, not imported:
# tasks.py is the top floor and imports this package, never the other way round.
DISPATCH_TASK = "experiments_app.tasks.dispatch_application"


def create_run(experiment, variant, config, *, by=None, webhook_url=""):
    """Insert the run and its tests (tasks × repetitions, with task snapshots) in bulk.

    The partial unique constraint on active runs turns a lost race into Conflict; a disabled
    application takes no runs (Conflict) until it is re-enabled.
    """
    application = experiment.application
    if application.is_disabled():
        raise Conflict(f"The application {application.name!r} is disabled: {application.disabled_reason} Re-enable it first.")
    try:
        with transaction.atomic():
            run = Run.objects.create(
                experiment=experiment,
                variant=variant,
                config=config,
                webhook_url=webhook_url or "",
                created_by=by if getattr(by, "pk", None) else None,
            )
    except IntegrityError:
        raise states.InvalidTransition(experiment.status, experiment.status, "Another run of this experiment is already active.") from None
    tasks = list(experiment.tasks.values_list("pk", "external_id", "input", "expected"))
    tests = [
        Test(run=run, task_id=pk, repetition=repetition, task_external_id=external_id, task_input=task_input, task_expected=expected)
        for pk, external_id, task_input, expected in tasks
        for repetition in range(1, experiment.repetitions + 1)
    ]
    Test.objects.bulk_create(tests, batch_size=2000)
    run.total = len(tests)
    run.save(update_fields=["total"])
    return run


def wake_dispatcher(application_id):
    """Have a worker send the application's due tests once the current transaction commits."""
    transaction.on_commit(lambda: current_app.send_task(DISPATCH_TASK, args=[str(application_id)]))


def start_baseline_run(experiment, *, by=None):
    """Run the baseline: baseline_pending/baseline_failed → running_baseline, locking
    scope and config. Returns the queued run. Raises InvalidTransition (409) when the
    experiment is not ready or another request started a run first."""
    with transaction.atomic():
        experiment = Experiment.objects.select_related("application").get(pk=experiment.pk)
        states.check(experiment.status, State.RUNNING_BASELINE)
        baseline = experiment.variants.get(parent__isnull=True)
        steps = set(experiment.inference_steps.values_list("external_id", flat=True))
        overrides.validate_config(baseline.config or {}, steps)
        if not steps or not experiment.tasks.exists():
            raise ValidationFailed({"tasks": "Select at least one inference step and one task before running the baseline."})
        apply_transition(experiment, State.RUNNING_BASELINE, by=by, locked_at=experiment.locked_at or timezone.now())
        run = create_run(experiment, baseline, baseline.config or {}, by=by)
        wake_dispatcher(experiment.application_id)
    return run


def start_variant_run(variant, *, by=None, webhook_url=""):
    """Run a variant (never the baseline): baseline_complete/idle → running_variant.
    `webhook_url`, when given, replaces the application's for this run only (a preview
    deployment), under the same SSRF rules. Returns the queued run; raises InvalidTransition
    (409) otherwise, ValidationFailed naming `webhook_url` for a refused URL."""
    if webhook_url:
        webhooks.check_webhook_url(webhook_url)
    with transaction.atomic():
        variant = Variant.objects.select_related("experiment__application", "inference_step").get(pk=variant.pk)
        experiment = variant.experiment
        if variant.is_baseline:
            raise states.InvalidTransition(experiment.status, State.RUNNING_VARIANT, "The baseline runs only through run-baseline.")
        apply_transition(experiment, State.RUNNING_VARIANT, by=by)
        run = create_run(experiment, variant, variant_effective_config(variant), by=by, webhook_url=webhook_url)
        wake_dispatcher(experiment.application_id)
    return run


def cancel_run(run, *, by=None):
    """Cancel an active run: no delivery starts after it, results still in flight are
    ignored, unfinished tests are errored. The experiment leaves its running state
    (a cancelled baseline fails). Returns the run; raises Conflict once it has ended."""
    with transaction.atomic():
        now = timezone.now()
        updated = Run.objects.filter(pk=run.pk, status__in=ACTIVE_RUN_STATUSES).update(status=RunStatus.CANCELLED, completed_at=now)
        if not updated:
            run.refresh_from_db()
            raise Conflict(f"The run has already ended ({run.status}).", status=run.status)
        # Not skipping locked rows: a dispatcher recording outcomes of this run is waited for.
        error_tests(Test.objects.filter(run=run, status__in=OPEN_TEST_STATUSES), "Run cancelled.", now, skip_locked=False)
        experiment = Experiment.objects.get(pk=run.experiment_id)
        target = State.BASELINE_FAILED if experiment.status == State.RUNNING_BASELINE else State.IDLE
        if experiment.status in states.RUNNING:
            apply_transition(experiment, target, by=by)
        run.refresh_from_db()
        emit.run_ended(run)
    return run
