"""Result ingestion (SPEC §5): validating a result body and recording it exactly once."""

import functools
import logging
import uuid

from django.db import connection, connections, transaction
from django.utils import timezone

from experiments_app import jsonlimits, step_detail
from experiments_app.errors import Conflict, NotFound, ValidationFailed
from experiments_app.models import (
    ACTIVE_RUN_STATUSES,
    RUN_LARGE_FIELDS,
    Application,
    DeliveryAttempt,
    Experiment,
    Run,
    RunStatus,
    Test,
)
from experiments_app.rows import concrete_fields, converted, instance
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
UNREAD_RUN_FIELDS = tuple(name for name in RUN_LARGE_FIELDS if name != "config")


# --- fixed statements of the result post --------------------------------------------------
# A result post is the busiest route of all; the ORM compiled its two lookups anew on every post
# (~1.2 ms of CPU for the locking select, ~0.5 ms for the owner's, of ~8 ms in all). These are the
# same statements written once, their values converted as the ORM converts them.


def joined(quote, *, application=False):
    """FROM test t JOIN run r JOIN experiment e [JOIN application a] WHERE t.id = %s."""

    def column(model, name):
        return quote(model._meta.get_field(name).column)

    sql = (
        f" FROM {quote(Test._meta.db_table)} t"
        f" JOIN {quote(Run._meta.db_table)} r ON r.{column(Run, 'id')} = t.{column(Test, 'run')}"
        f" JOIN {quote(Experiment._meta.db_table)} e ON e.{column(Experiment, 'id')} = r.{column(Run, 'experiment')}"
    )
    if application:
        sql += f" JOIN {quote(Application._meta.db_table)} a ON a.{column(Application, 'id')} = e.{column(Experiment, 'application')}"
    return sql + f" WHERE t.{column(Test, 'id')} = %s"


def fetch_one(wrapper, sql, test_id):
    with wrapper.cursor() as cursor:
        cursor.execute(sql, [Test._meta.pk.get_db_prep_value(test_id, wrapper)])
        return cursor.fetchone()


LOCKED = (
    (Test, "t", concrete_fields(Test)),
    (Run, "r", concrete_fields(Run, UNREAD_RUN_FIELDS)),
    (Experiment, "e", concrete_fields(Experiment)),
)


@functools.cache
def lock_sql(vendor, for_update_of, secret_fields=()):
    quote = connections[connection.alias].ops.quote_name  # the same for every connection of a vendor
    columns = [f"{alias}.{quote(field.column)}" for _, alias, fields in LOCKED for field in fields]
    columns += [f"a.{quote(Application._meta.get_field(name).column)}" for name in secret_fields]
    sql = f"SELECT {', '.join(columns)}{joined(quote, application=bool(secret_fields))}"
    return sql + (" FOR UPDATE OF t" if for_update_of else "")


def lock_test(test_id, secret_fields=(), *, begin=None):
    """The test locked for update, with its run (without the run's size-growing columns) and its
    experiment loaded; None when there is no such test. What
    `Test.objects.select_for_update(of=("self",)).select_related("run__experiment")` returns.
    With `secret_fields`, those fields of its application (decrypted) in `test.owner_secrets`.
    `begin` (a TransactionInStrings' begin) sends the select with the BEGIN that opens the
    transaction; without it, call inside one."""
    wrapper = connections[connection.alias]
    sql = lock_sql(wrapper.vendor, wrapper.features.has_select_for_update_of, tuple(secret_fields))
    if begin is None:
        row = fetch_one(wrapper, sql, test_id)
    else:
        row = begin(sql, [Test._meta.pk.get_db_prep_value(test_id, wrapper)])
    if row is None:
        return None
    made, start = [], 0
    for model, _, fields in LOCKED:
        made.append(instance(model, fields, row[start : start + len(fields)], wrapper))
        start += len(fields)
    test, run, experiment = made
    run.experiment = experiment
    test.run = run
    if secret_fields:
        fields = tuple(Application._meta.get_field(name) for name in secret_fields)
        test.owner_secrets = dict(zip(secret_fields, converted(fields, row[start:], wrapper), strict=True))
    return test


def owner(test):
    """{"experiment_id", "team_id", "application_id", and the application's secret fields when
    lock_test read them} of a test from lock_test: who may post its result."""
    experiment = test.run.experiment
    return {
        "experiment_id": experiment.pk,
        "team_id": experiment.team_id,
        "application_id": experiment.application_id,
        **getattr(test, "owner_secrets", {}),
    }


def take_result(test, parsed, accept):
    """Check a result against `test` (locked, None when unknown) and put it onto it; returns
    (parsed, its status), the status None when the test holds this same result already. With
    `accept`, the sender is checked first and its return is the body to parse. Raises NotFound,
    Conflict, ValidationFailed. A puller's lease gets its answer logged (in the transaction)."""
    if accept is not None:
        parsed = parse_result(accept(None if test is None else owner(test)))
    if test is None:
        raise NotFound("No such test.")
    run = test.run
    if run.status == RunStatus.CANCELLED:
        raise Conflict("The run of this test was cancelled; its results are ignored.", status=run.status)
    if test.is_terminal():
        if is_same_result(test, parsed):
            return parsed, None
        raise Conflict(f"The test already has a different result ({test.status}).", status=test.status)
    if run.status not in ACTIVE_RUN_STATUSES:
        raise Conflict(f"The run has ended ({run.status}).", status=run.status)
    now = timezone.now()
    leased = test.lease_until is not None  # a puller's lease, or a push attempt still in flight
    status = state.finish_with_result(test, parsed, run.experiment.evaluators, now)
    if leased:
        state.log_answered_lease(test, now)
    return parsed, status


def record_result(test_id, data, *, source="callback", accept=None, secret_fields=()):
    """Record a result for a test; return the Test.

    Idempotent: the same result again returns the test unchanged. Raises NotFound for
    an unknown test, Conflict for a different result on a finished test or for a test
    of a cancelled run, ValidationFailed for a malformed body.

    `accept(owner)`, for a post whose sender is checked against the test's owner: called once the
    test is locked, with owner(test) (`secret_fields` of the application among it) read by the same
    statement, or with None for an unknown test; it raises to refuse (nothing is written) or
    returns the result body, which is then validated (`data` is not used). The owner's check
    before the body's, as a separate lookup did, one round trip fewer.
    """
    parsed = parse_result(data) if accept is None else None
    try:
        test_uuid = uuid.UUID(str(test_id))
    except ValueError:
        if accept is not None:
            accept(None)
        raise NotFound("No such test.") from None
    strings = state.transaction_in_strings()
    if strings is None:
        with transaction.atomic():
            test = lock_test(test_uuid, secret_fields)
            parsed, status = take_result(test, parsed, accept)
            if status is None:
                return test
            state.save_tests([test], count=False)
        run, left = test.run, None
        state.add_counts_apart(run.pk, [status])
    else:  # PostgreSQL: the same two transactions in two query strings (state.TransactionInStrings)
        with strings:
            test = lock_test(test_uuid, secret_fields, begin=strings.begin)
            parsed, status = take_result(test, parsed, accept)
            if status is None:
                return test
            run = test.run
            # The answer's attempts are read after the commits, in the same string.
            left, (attempt_rows,) = strings.commit_and_count(
                state.write_statements([test], strings.connection), run.pk, [status], then=[attempts_statement(test.pk)]
            )
        test.recorded_attempts = attempts_from_rows(attempt_rows)
    logger.info("result for test %s recorded from %s: %s", test.pk, source, status)
    flagged = step_detail.out_of_scope(parsed["steps"], run.config)
    if flagged:
        logger.warning("result for test %s reports steps outside the run's scope (kept, flagged): %s", test.pk, ", ".join(flagged))
    if run.stop_when_decided:
        live.note_progress([run.pk])  # it may stop now
    # The run's counters say how many of its tests are open, as of this result's count: while
    # some are, there is nothing to close and no need to look (the look went through the tests
    # of the run, often all of them: ~40% of PostgreSQL's CPU per result at 5,000 tests, more with
    # more). At 0, or without counters (elsewhere, or the run no longer active), the tests are
    # checked; so they are for a run that may stop when decided (stopping skips tests, which
    # leave its total). Counters only ever fall short (an increment lost to a crash), never
    # over: a run they would leave open is closed by the sweeper's check of finished runs.
    if run.stop_when_decided or left is None or left <= 0:
        complete_if_done(run.pk)
    return test


ATTEMPT_FIELDS = tuple(
    DeliveryAttempt._meta.get_field(name)
    for name in ("id", "number", "started_at", "status_code", "duration_ms", "error", "retry_at", "pulled")
)


@functools.cache
def attempts_sql(vendor):
    quote = connections[connection.alias].ops.quote_name
    columns = ", ".join(quote(field.column) for field in ATTEMPT_FIELDS)
    test, number = (quote(DeliveryAttempt._meta.get_field(name).column) for name in ("test", "number"))
    return f"SELECT {columns} FROM {quote(DeliveryAttempt._meta.db_table)} WHERE {test} = %s ORDER BY {number}"


def attempts_statement(test_id):
    """(sql, params) of a test's delivery attempts in order (attempts_from_rows loads its rows)."""
    wrapper = connections[connection.alias]
    return attempts_sql(wrapper.vendor), [Test._meta.pk.get_db_prep_value(test_id, wrapper)]


def attempts_from_rows(rows):
    wrapper = connections[connection.alias]
    return [instance(DeliveryAttempt, ATTEMPT_FIELDS, row, wrapper) for row in rows]


def attempts_of(test_id):
    """A test's delivery attempts in order, for the answer to its result post: one fixed statement
    (the related manager's query was compiled anew for every post, ~8% of its CPU; a raw queryset
    still mapped its columns anew, ~4%). A recorded result's post has them already (record_result
    reads them in the counters' round trip on PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute(*attempts_statement(test_id))
        return attempts_from_rows(cursor.fetchall())
