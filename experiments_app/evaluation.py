"""Evaluators of SPEC §6 as pure functions: one test's output in, verdicts out.

A badly configured evaluator never raises: it fails with a detail saying why, so
one bad regex cannot stop a run from closing.
"""

import json

import regex

from experiments_app import jsonlimits
from experiments_app.stats import is_number

EVALUATOR_TYPES = ("reported", "exact_match", "contains", "regex", "json_subset", "metric_threshold")

MISSING = object()


def evaluator_names(evaluators):
    """The name each evaluator reports under (its `name`, else its type), in order."""
    return [evaluator_name(evaluator, index) for index, evaluator in enumerate(evaluators or [])]


def evaluator_name(evaluator, index=0):
    if not isinstance(evaluator, dict):
        return f"evaluator_{index + 1}"
    name = evaluator.get("name")
    if isinstance(name, str) and name:
        return name
    kind = evaluator.get("type")
    return kind if isinstance(kind, str) and kind else f"evaluator_{index + 1}"


def default_evaluators(reported_passed):
    """What runs when none are configured: the app's own verdict if it sent one."""
    return [{"type": "reported"}] if reported_passed is not None else [{"type": "exact_match"}]


def evaluate(evaluators, *, output, has_output, expected, reported_passed, metrics, error):
    """Run each evaluator on one test's result.

    Returns (passed, evaluations): `passed` is true when the test has no error, has
    an output and every evaluator passed; each evaluation is
    {"name", "type", "passed", "score", "detail"}.
    """
    configured = evaluators or default_evaluators(reported_passed)
    result = Result(output, has_output, expected, reported_passed, metrics if isinstance(metrics, dict) else {})
    evaluations = []
    for index, evaluator in enumerate(configured):
        kind = evaluator.get("type") if isinstance(evaluator, dict) else None
        check = CHECKS.get(kind) if isinstance(kind, str) else None
        if check is None:
            passed, score, detail = False, None, f"Unknown evaluator type {kind!r}."
        else:
            try:
                passed, score, detail = check(evaluator, result)
            except Exception as exc:  # a misconfigured evaluator fails that evaluator, never the run
                passed, score, detail = False, None, f"Evaluator error: {type(exc).__name__}: {exc}"
        evaluations.append(
            {
                "name": evaluator_name(evaluator, index),
                "type": kind if isinstance(kind, str) else None,
                "passed": bool(passed),
                "score": score,
                "detail": detail,
            }
        )
    passed = not error and has_output and all(evaluation["passed"] for evaluation in evaluations)
    return bool(passed), evaluations


class Result:
    __slots__ = ("output", "has_output", "expected", "reported_passed", "metrics")

    def __init__(self, output, has_output, expected, reported_passed, metrics):
        self.output = output
        self.has_output = has_output
        self.expected = expected
        self.reported_passed = reported_passed
        self.metrics = metrics


def output_text(output):
    """The text that `contains` and `regex` look at: a string as is, anything else as sorted JSON."""
    if isinstance(output, str):
        return output
    return json.dumps(output, sort_keys=True, ensure_ascii=False)


def json_equal(a, b):
    """Equality of JSON values: 1 equals 1.0, but true is not 1 and "1" is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=False))
    return type(a) is type(b) and a == b


def pick(value, field):
    """value[field] when a field is asked for and value is an object; MISSING when the key is absent."""
    if field is None or not isinstance(value, dict):
        return value
    return value.get(field, MISSING)


def short(value, limit=80):
    text = output_text(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


NO_OUTPUT = (False, None, "No output.")


def check_reported(evaluator, result):
    if result.reported_passed is None:
        return False, None, "The application did not report `passed`."
    return result.reported_passed is True, None, f"The application reported passed={str(result.reported_passed).lower()}."


def check_exact_match(evaluator, result):
    if not result.has_output:
        return NO_OUTPUT
    field = evaluator.get("field")
    actual, wanted = pick(result.output, field), pick(result.expected, field)
    if actual is MISSING:
        return False, None, f"The output has no field {field!r}."
    if wanted is MISSING:
        return False, None, f"The expected value has no field {field!r}."
    if json_equal(actual, wanted):
        return True, None, "Equal to the expected value."
    return False, None, f"Expected {short(wanted)}, got {short(actual)}."


def check_contains(evaluator, result):
    if not result.has_output:
        return NO_OUTPUT
    value = evaluator.get("value")
    if not isinstance(value, str):
        return False, None, "A `contains` evaluator needs a string `value`."
    text = output_text(result.output)
    if evaluator.get("case_insensitive"):
        found = value.casefold() in text.casefold()
    else:
        found = value in text
    return found, None, f"The output {'contains' if found else 'does not contain'} {value!r}."


# A team's own pattern may backtrack catastrophically; it fails its evaluation
# after this long instead of holding the worker that evaluates the run.
REGEX_TIMEOUT_SECONDS = 1.0


def check_regex(evaluator, result):
    if not result.has_output:
        return NO_OUTPUT
    pattern = evaluator.get("pattern")
    if not isinstance(pattern, str):
        return False, None, "A `regex` evaluator needs a string `pattern`."
    flags = regex.IGNORECASE if evaluator.get("case_insensitive") else 0
    try:
        compiled = regex.compile(pattern, flags)
    except regex.error as exc:
        return False, None, f"Invalid pattern: {exc}."
    try:
        found = compiled.search(output_text(result.output), timeout=REGEX_TIMEOUT_SECONDS) is not None
    except TimeoutError:
        return False, None, f"The pattern /{pattern}/ took longer than {REGEX_TIMEOUT_SECONDS:g} s on this output."
    return found, None, f"The output {'matches' if found else 'does not match'} /{pattern}/."


def as_object(value):
    """A JSON object from the value, parsing a string that holds one (apps often send JSON as text)."""
    if isinstance(value, str):
        try:
            value = jsonlimits.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def check_json_subset(evaluator, result):
    if not result.has_output:
        return NO_OUTPUT
    field = evaluator.get("field")
    output = as_object(result.output) if isinstance(result.output, str) else result.output
    actual, wanted = pick(output, field), pick(result.expected, field)
    if actual is MISSING:
        return False, None, f"The output has no field {field!r}."
    if wanted is MISSING:
        return False, None, f"The expected value has no field {field!r}."
    actual, wanted = as_object(actual), as_object(wanted)
    if wanted is None:
        return False, None, "The expected value is not a JSON object."
    if actual is None:
        return False, None, "The output is not a JSON object."
    if not wanted:
        return True, 1.0, "Nothing expected."
    missing = [key for key in wanted if key not in actual]
    different = [key for key in wanted if key in actual and not json_equal(actual[key], wanted[key])]
    score = (len(wanted) - len(missing) - len(different)) / len(wanted)
    if not missing and not different:
        return True, score, f"All {len(wanted)} expected keys match."
    parts = []
    if missing:
        parts.append("missing " + ", ".join(sorted(missing)))
    if different:
        parts.append("different " + ", ".join(sorted(different)))
    detail = "; ".join(parts)
    return False, score, detail[0].upper() + detail[1:] + "."


def check_metric_threshold(evaluator, result):
    metric = evaluator.get("metric")
    if not isinstance(metric, str):
        return False, None, "A `metric_threshold` evaluator needs the `metric` name."
    low, high = evaluator.get("min"), evaluator.get("max")
    if low is None and high is None:
        return False, None, "A `metric_threshold` evaluator needs `min`, `max` or both."
    if (low is not None and not is_number(low)) or (high is not None and not is_number(high)):
        return False, None, "`min` and `max` must be numbers."
    value = result.metrics.get(metric)
    if value is None:
        return False, None, f"The metric {metric!r} was not reported."
    if not is_number(value):
        return False, None, f"The metric {metric!r} is not a number."
    if low is not None and value < low:
        return False, float(value), f"{metric} = {value} is below {low}."
    if high is not None and value > high:
        return False, float(value), f"{metric} = {value} is above {high}."
    return True, float(value), f"{metric} = {value} is within bounds."


CHECKS = {
    "reported": check_reported,
    "exact_match": check_exact_match,
    "contains": check_contains,
    "regex": check_regex,
    "json_subset": check_json_subset,
    "metric_threshold": check_metric_threshold,
}
