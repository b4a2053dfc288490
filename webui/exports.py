"""CSV and JSON downloads of an experiment's results and a run's tests."""

import csv
import json

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse, StreamingHttpResponse

RESULT_COLUMNS = [
    "variant",
    "name",
    "parent",
    "is_baseline",
    "step",
    "parameter",
    "value",
    "run",
    "status",
    "pass_rate",
    "pass_rate_vs_baseline",
    "delta_pp",
    "ci_low",
    "ci_high",
    "p_value",
    "total",
    "passed",
    "failed",
    "errored",
    "improved",
    "regressed",
    "completed_at",
    "cost_per_test",
    "cost_per_passed",
    # SPEC §7 (issue 9)
    "is_control",
    "delta_ci_low",
    "delta_ci_high",
    "p_value_adjusted",
    "significant",
    "verdict",
    "verdict_text",
    "mde_pp",
    "tasks_needed",
    "flaky",
    "pass_at_k",
    "pass_hat_k",
    "warnings",
    "guardrails",
    "ship",
    "stopped_early",
    "skipped",
]
TEST_COLUMNS = [
    "test",
    "task",
    "repetition",
    "status",
    "attempts",
    "passed_evaluators",
    "failed_evaluators",
    "output",
    "expected",
    "error",
    "metrics",
    "steps",
    "trace_id",
    "completed_at",
]


class Echo:
    def write(self, value):
        return value


def cell(value):
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return "" if value is None else value


def result_record(row):
    change = row.get("change") or {}
    record = {key: row.get(key) for key in RESULT_COLUMNS}
    record.update(step=change.get("step"), parameter=change.get("parameter"), value=change.get("value"))
    record["improved"] = len(row.get("improved") or [])
    record["regressed"] = len(row.get("regressed") or [])
    verdict = row.get("verdict") or {}
    record.update(verdict=verdict.get("code"), verdict_text=verdict.get("text"))
    record["warnings"] = ";".join(warning["code"] for warning in row.get("warnings") or [])
    record["guardrails"] = "; ".join(guardrail_cell(guard) for guard in row.get("guardrails") or [])
    return record


def guardrail_cell(guard):
    """One guardrail in a CSV cell: "latency_ms mean: not non-inferior (Δ 60, CI 55 to 65)"."""
    state = "non-inferior" if guard.get("non_inferior") else "not non-inferior"

    def number(key):
        value = guard.get(key)
        return "—" if value is None else f"{value:g}"

    return f"{guard.get('name')}: {state} (Δ {number('delta')}, CI {number('ci_low')} to {number('ci_high')})"


def results_csv(results, filename):
    rows = [row for row in [results.get("baseline"), *results.get("variants", [])] if row]
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(RESULT_COLUMNS)
    for row in rows:
        record = result_record(row)
        writer.writerow([cell(record[key]) for key in RESULT_COLUMNS])
    return response


def json_download(data, filename):
    response = HttpResponse(json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def row_of_test(test):
    evaluations = [e for e in test.evaluations or [] if isinstance(e, dict)]
    return {
        "test": str(test.pk),
        "task": test.task_external_id,
        "repetition": test.repetition,
        "status": test.status,
        "attempts": test.attempts,
        "passed_evaluators": ";".join(str(e.get("name")) for e in evaluations if e.get("passed")),
        "failed_evaluators": ";".join(str(e.get("name")) for e in evaluations if not e.get("passed")),
        "output": test.output,
        "expected": test.task_expected,
        "error": test.error,
        "metrics": test.metrics,
        "steps": test.steps,
        "trace_id": test.trace_id,
        "completed_at": test.completed_at,
    }


def tests_csv(tests, filename):
    """Stream the rows so a run with many thousands of tests is never held in memory."""
    writer = csv.writer(Echo())

    def lines():
        yield writer.writerow(TEST_COLUMNS)
        for test in tests.iterator(chunk_size=2000):
            record = row_of_test(test)
            yield writer.writerow([cell(record[key]) for key in TEST_COLUMNS])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
