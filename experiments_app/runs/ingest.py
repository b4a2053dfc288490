"""Result ingestion (SPEC §5): validating a result body and recording it exactly once."""

import logging
import uuid

from django.db import connection, transaction
from django.utils import timezone

from experiments_app import jsonlimits, step_detail
from experiments_app.errors import Conflict, NotFound, ValidationFailed
from experiments_app.models import ACTIVE_RUN_STATUSES, RUN_LARGE_FIELDS, DeliveryAttempt, RunStatus, Test
from experiments_app.runs import live, state
from experiments_app.runs.complete import complete_if_done

logger = logging.getLogger(__name__)

TRACE_ID_MAX = 500
ERROR_MAX = 10_000
METRIC_NAME_MAX = 100


def parse_result(data):
    """Validate a §5 result body; return {output, passed, metrics, error, trace_id, steps}.

    Raises ValidationFailed naming each bad field (`output`, `passed`, `metrics.<name>`,
    `error`, `traceId`, `steps.<step>.<field>`).
    """
    if not isinstance(data, dict):
        raise ValidationFailed({"non_field_errors": "The result must be a JSON object."})
    errors = {}
    if "output" not in data:
        errors["output"] = "This field is required (it may be null)."
    else:
        errors.update(jsonlimits.field_errors("output", data["output"]))
    passed = data.get("passed")
    if passed is not None and not isinstance(passed, bool):
        errors["passed"] = "Must be true or false."
    metrics = data.get("metrics")
    if metrics is None:
        metrics = {}
    elif not isinstance(metrics, dict):
        errors["metrics"] = "Must be an object mapping metric names to numbers."
    else:
        for name, value in metrics.items():
            if not name or len(name) > METRIC_NAME_MAX:
                errors[f"metrics.{name}"] = f"Metric names must have 1 to {METRIC_NAME_MAX} characters."
            elif jsonlimits.finite_number(value) is None:
                errors[f"metrics.{name}"] = "Must be a finite number (at most about 1.8e308)."
    error = data.get("error")
    if error is not None and not isinstance(error, str):
        errors["error"] = "Must be a string."
    elif isinstance(error, str) and len(error) > ERROR_MAX:
        errors["error"] = f"Must have at most {ERROR_MAX} characters."
    trace_id = data.get("traceId")
    if trace_id is not None and not isinstance(trace_id, str):
        errors["traceId"] = "Must be a string."
    elif isinstance(trace_id, str) and len(trace_id) > TRACE_ID_MAX:
        errors["traceId"] = f"Must have at most {TRACE_ID_MAX} characters."
    steps, step_errors = step_detail.parse_steps(data.get("steps"))
    errors.update(step_errors)
    if errors:
        raise ValidationFailed(errors)
    return {
        "output": data["output"],
        "passed": passed,
        "metrics": metrics,
        "error": error or "",
        "trace_id": trace_id or "",
        "steps": steps,
    }


def is_same_result(test, parsed):
    """True when `test` already holds exactly this result (a duplicate delivery)."""
    return (
        test.has_output
        and test.output == parsed["output"]
        and test.reported_passed == parsed["passed"]
        and (test.metrics or {}) == parsed["metrics"]
        and test.error == parsed["error"]
        and test.trace_id == parsed["trace_id"]
        and (test.steps or {}) == parsed["steps"]
    )


# The run's columns that grow with its tests, which recording a result never reads (its config,
# the steps in scope, it does): a repeated result for a closed run of 100,000 tests would
# otherwise decode megabytes of outcomes per post.
UNREAD_RUN_FIELDS = tuple(f"run__{name}" for name in RUN_LARGE_FIELDS if name != "config")


def only_row(queryset):
    """The row of a lookup by primary key, or None; without the ORDER BY that first() adds
    (compiling it was a tenth of a result post's CPU)."""
    return next(iter(queryset.order_by()), None)


def record_result(test_id, data, *, source="callback"):
    """Record a result for a test; return the Test.

    Idempotent: the same result again returns the test unchanged. Raises NotFound for
    an unknown test, Conflict for a different result on a finished test or for a test
    of a cancelled run, ValidationFailed for a malformed body.
    """
    parsed = parse_result(data)
    try:
        test_uuid = uuid.UUID(str(test_id))
    except ValueError:
        raise NotFound("No such test.") from None
    with transaction.atomic():
        tests = Test.objects.select_for_update(of=("self",)).select_related("run__experiment").defer(*UNREAD_RUN_FIELDS)
        test = only_row(tests.filter(pk=test_uuid))
        if test is None:
            raise NotFound("No such test.")
        run = test.run
        if run.status == RunStatus.CANCELLED:
            raise Conflict("The run of this test was cancelled; its results are ignored.", status=run.status)
        if test.is_terminal():
            if is_same_result(test, parsed):
                return test
            raise Conflict(f"The test already has a different result ({test.status}).", status=test.status)
        if run.status not in ACTIVE_RUN_STATUSES:
            raise Conflict(f"The run has ended ({run.status}).", status=run.status)
        now = timezone.now()
        leased = test.lease_until is not None  # a puller's lease, or a push attempt still in flight
        status = state.finish_with_result(test, parsed, run.experiment.evaluators, now)
        state.save_tests([test], count=False)
        if leased:
            state.log_answered_lease(test, now)
    state.add_counts_apart(run.pk, [status])
    logger.info("result for test %s recorded from %s: %s", test.pk, source, status)
    flagged = step_detail.out_of_scope(parsed["steps"], run.config)
    if flagged:
        logger.warning("result for test %s reports steps outside the run's scope (kept, flagged): %s", test.pk, ", ".join(flagged))
    if run.stop_when_decided:
        live.note_progress([run.pk])  # it may stop now
    complete_if_done(run.pk)
    return test


ATTEMPT_FIELDS = ("id", "number", "started_at", "status_code", "duration_ms", "error", "retry_at", "pulled")
TEST_ID = DeliveryAttempt._meta.get_field("test").target_field


def attempts_of(test_id):
    """A test's delivery attempts in order, for the answer to its result post: one fixed statement
    (the related manager's query was compiled anew for every post, ~8% of its CPU)."""
    table = connection.ops.quote_name(DeliveryAttempt._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(DeliveryAttempt._meta.get_field(name).column) for name in ATTEMPT_FIELDS)
    sql = f"SELECT {columns} FROM {table} WHERE {connection.ops.quote_name('test_id')} = %s ORDER BY {connection.ops.quote_name('number')}"
    return list(DeliveryAttempt.objects.raw(sql, [TEST_ID.get_db_prep_value(test_id, connection)]))
