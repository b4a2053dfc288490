"""Starting and cancelling runs: the first step of a run's life."""

import random

from celery import current_app
from django.db import IntegrityError, transaction
from django.utils import timezone

from experiments_app import overrides, states, webhooks
from experiments_app.actions.experiments import apply_transition, variant_effective_config
from experiments_app.errors import Conflict, ValidationFailed
from experiments_app.events import emit
from experiments_app.models import (
    ACTIVE_RUN_STATUSES,
    OPEN_TEST_STATUSES,
    Application,
    Delivery,
    Experiment,
    Run,
    RunStatus,
    Task,
    Test,
    Variant,
)
from experiments_app.runs.state import error_tests
from experiments_app.states import State

# The Celery task that sends an application's due tests. It is named, not imported:
# tasks.py is the top floor and imports this package, never the other way round.
DISPATCH_TASK = "experiments_app.tasks.dispatch_application"


def create_run(
    experiment, variant, config, *, by=None, webhook_url="", tasks=None, repetitions=None, dry_run=False, stop_when_decided=False
):
    """Insert the run and its tests (tasks × repetitions, with task snapshots) in bulk: the
    experiment's selected tasks and repetitions unless `tasks` ((pk, external_id, input,
    expected) rows) and `repetitions` are given. `webhook_url` replaces the application's for this run.

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
                dry_run=dry_run,
                stop_when_decided=stop_when_decided,
                created_by=by if getattr(by, "pk", None) else None,
            )
    except IntegrityError:
        raise states.InvalidTransition(experiment.status, experiment.status, "Another run of this experiment is already active.") from None
    repetitions = repetitions or experiment.repetitions
    # A variant's tasks go out in random order (a task's repetitions together): the live
    # confidence sequence covers the mean difference when tasks arrive in random order.
    shuffle = not variant.is_baseline
    if tasks is None and transaction.get_connection().vendor == "postgresql":
        run.total = insert_selected_tests(run, experiment, repetitions, shuffle=shuffle)
    else:
        if tasks is None:
            tasks = list(experiment.tasks.values_list("pk", "external_id", "input", "expected"))
            if shuffle:
                random.shuffle(tasks)
        tests = [
            Test(run=run, task_id=pk, repetition=repetition, task_external_id=external_id, task_input=task_input, task_expected=expected)
            for pk, external_id, task_input, expected in tasks
            for repetition in range(1, repetitions + 1)
        ]
        Test.objects.bulk_create(tests, batch_size=2000)
        run.total = len(tests)
    run.save(update_fields=["total"])
    return run


def insert_selected_tests(run, experiment, repetitions, shuffle):
    """PostgreSQL: make the run's tests from the experiment's selected tasks inside the database
    (`INSERT … SELECT` over tasks × generate_series), the task snapshots never passing through
    Python. bulk_create built, adapted and sent every row (1 s at 10,000 tests on a 2-core
    machine, the start of every run). Returns the count."""
    connection = transaction.get_connection()
    columns, select, params = selected_tests_query(run, experiment, repetitions, shuffle)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {connection.ops.quote_name(Test._meta.db_table)} ({', '.join(columns)}) {select}", params)
        return cursor.rowcount


def selected_tests_query(run, experiment, repetitions, shuffle):
    """(columns, SELECT, params) of the run's test rows, every column not made from the task at
    its field's default, in the order they are written: by task external id, or when `shuffle`
    by a hash of the task with a salt for this run, the same for each of the task's repetitions
    whatever the plan (a volatile random() may be evaluated again per row of the cross join), so
    they stay together. Claims read a run's tests in physical order, which is this order while
    new pages are filled."""
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    made = {
        "id": ("gen_random_uuid()", []),
        "run_id": ("%s::uuid", [run.pk.hex]),
        "task_id": ("task.id", []),
        "repetition": ("r.n", []),
        "task_external_id": ("task.external_id", []),
        "task_input": ("task.input", []),
        "task_expected": ("task.expected", []),
    }
    now = timezone.now()
    columns, values, params = [], [], []
    for field in Test._meta.concrete_fields:
        columns.append(quote(field.column))
        if field.attname in made:
            sql, field_params = made[field.attname]
        else:
            default = now if field.attname == "created_at" else field.get_default()
            sql, field_params = f"%s::{field.db_type(connection)}", [field.get_db_prep_save(default, connection=connection)]
        values.append(sql)
        params.extend(field_params)
    through = Experiment.tasks.through._meta
    order = "task.shuffle, r.n" if shuffle else "task.external_id, r.n"
    select = (
        f"SELECT {', '.join(values)} FROM ("
        f"SELECT t.id, t.external_id, t.input, t.expected, md5(t.id::text || %s) AS shuffle FROM {quote(Task._meta.db_table)} t "
        f"JOIN {quote(through.db_table)} s ON s.{quote(through.get_field('task').column)} = t.id "
        f"WHERE s.{quote(through.get_field('experiment').column)} = %s::uuid"
        f") task CROSS JOIN generate_series(1, %s) AS r(n) ORDER BY {order}"
    )
    return columns, select, [*params, f"{random.getrandbits(64):x}", experiment.pk.hex, repetitions]


def wake_dispatcher(application_id):
    """Have a worker send the application's due tests once the current transaction commits
    (a pull application's pullers find them by themselves: nothing to wake)."""
    if Application.objects.filter(pk=application_id, delivery=Delivery.PULL).exists():
        return
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


def start_variant_run(variant, *, by=None, webhook_url="", stop_when_decided=False):
    """Run a variant (never the baseline): baseline_complete/idle → running_variant.
    `webhook_url`, when given, replaces the application's for this run only (a preview
    deployment), under the same SSRF rules; with `stop_when_decided` the run stops sending
    once its live verdict is settled (SPEC §3). Returns the queued run; raises
    InvalidTransition (409) otherwise, ValidationFailed naming `webhook_url` for a refused URL."""
    if webhook_url:
        webhooks.check_webhook_url(webhook_url)
    with transaction.atomic():
        variant = Variant.objects.select_related("experiment__application", "inference_step").get(pk=variant.pk)
        experiment = variant.experiment
        if variant.is_baseline:
            raise states.InvalidTransition(experiment.status, State.RUNNING_VARIANT, "The baseline runs only through run-baseline.")
        apply_transition(experiment, State.RUNNING_VARIANT, by=by)
        run = create_run(
            experiment, variant, variant_effective_config(variant), by=by, webhook_url=webhook_url, stop_when_decided=stop_when_decided
        )
        wake_dispatcher(experiment.application_id)
    return run


def dry_run_tasks(experiment, k, task_ids, rng):
    """The (pk, external_id, input, expected) rows a dry run tries: the tasks named by
    `task_ids` (tasks of the experiment's application), else `k` chosen at random among the
    selected tasks (all of them when fewer are selected). Raises ValidationFailed."""
    columns = ("pk", "external_id", "input", "expected")
    if task_ids is not None:
        wanted = list(dict.fromkeys(task_ids))
        found = {row[0]: row for row in Task.objects.filter(application_id=experiment.application_id, pk__in=wanted).values_list(*columns)}
        missing = [str(pk) for pk in wanted if pk not in found]
        if missing:
            raise ValidationFailed({"task_ids": f"Not tasks of this experiment's application: {', '.join(missing[:5])}."})
        return [found[pk] for pk in wanted]
    selected = list(experiment.tasks.values_list("pk", flat=True))
    if not selected:
        raise ValidationFailed({"tasks": "Select at least one task first, or name tasks in task_ids."})
    chosen = rng.sample(selected, min(k, len(selected)))
    rows = {row[0]: row for row in Task.objects.filter(pk__in=chosen).values_list(*columns)}
    return [rows[pk] for pk in chosen]


def start_dry_run(variant, *, tasks=None, task_ids=None, by=None, rng=random):
    """Try a variant — or the baseline, also before it has run — on a few tasks (SPEC §8
    dry-run/): `tasks` (k, default 1) chosen at random among the selected ones, or the tasks
    named by `task_ids`, once each. Allowed in every status but archived and beside another
    run; it never moves the lifecycle and is never a result.

    Returns the queued run (`dry_run` true). Raises Conflict for an archived experiment and
    ValidationFailed for both or neither usable tasks/task_ids or an unsendable config.
    """
    if tasks is not None and task_ids is not None:
        raise ValidationFailed({"task_ids": "Give tasks (how many) or task_ids (which ones), not both."})
    with transaction.atomic():
        variant = Variant.objects.select_related("experiment__application", "inference_step").get(pk=variant.pk)
        experiment = variant.experiment
        if experiment.is_archived():
            raise Conflict("The experiment is archived and read-only.", status=experiment.status)
        if variant.is_baseline:
            config = variant.config or {}
            overrides.validate_config(config, set(experiment.inference_steps.values_list("external_id", flat=True)))
        else:
            config = variant_effective_config(variant)
        rows = dry_run_tasks(experiment, tasks or 1, task_ids, rng)
        run = create_run(experiment, variant, config, by=by, tasks=rows, repetitions=1, dry_run=True)
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
        run.refresh_from_db()
        if not run.dry_run:  # a dry run never moves the lifecycle and sends no event
            if experiment.status in states.RUNNING:
                apply_transition(experiment, target, by=by)
            emit.run_ended(run)
    return run
