"""Per-step detail of a result (SPEC §5 `steps`) and what it adds up to: pure functions, no database.

A result may say, per inference step, which model ran, what it wrote, how long it took,
how many tokens it used and what it cost. This module checks that shape, aggregates it
per step over a run's tests, sets a variant's figures beside the baseline's, and owns
the one rule for what a test cost (its `cost_usd` metric, else the sum of its steps').
"""

from array import array

from experiments_app import stats

MAX_STEPS = 100
STEP_NAME_MAX = 200
MODEL_MAX = 200
NUMBER_FIELDS = ("latency_ms", "cost_usd")
COUNT_FIELDS = ("prompt_tokens", "completion_tokens")
FIGURES = (*NUMBER_FIELDS, *COUNT_FIELDS)
FIELDS = ("model", "output", *FIGURES)
# The per-step figures whose difference against the baseline is shown: (figure, statistic).
DELTAS = (("latency_ms", "mean"), ("latency_ms", "p95"), ("tokens", "mean"), ("cost_usd", "mean"), ("cost_usd", "sum"))


def is_count(value):
    return stats.is_number(value) and value >= 0 and float(value).is_integer()


def parse_step(name, detail, prefix):
    """One step's detail, cleaned (nulls dropped); errors keyed `steps.<name>.<field>`."""
    if not isinstance(detail, dict):
        return None, {prefix: "Must be an object with any of: " + ", ".join(FIELDS) + "."}
    errors, clean = {}, {}
    for field, value in detail.items():
        where = f"{prefix}.{field}"
        if field not in FIELDS:
            errors[where] = "Unknown field; a step may carry " + ", ".join(FIELDS) + "."
        elif value is None:
            continue
        elif field == "model" and (not isinstance(value, str) or not 0 < len(value) <= MODEL_MAX):
            errors[where] = f"Must be a string of 1 to {MODEL_MAX} characters."
        elif field in NUMBER_FIELDS and not (stats.is_number(value) and value >= 0):
            errors[where] = "Must be a finite number, 0 or more."
        elif field in COUNT_FIELDS and not is_count(value):
            errors[where] = "Must be a whole number, 0 or more."
        else:
            clean[field] = int(value) if field in COUNT_FIELDS else value
    return clean, errors


def parse_steps(value):
    """Validate a result's `steps`; return (clean, errors). `clean` maps each step name to its
    detail without nulls; `errors` maps field paths (`steps`, `steps.<step>.<field>`) to messages.
    A step that is not in the run's scope is kept: see `out_of_scope`."""
    if value is None:
        return {}, {}
    if not isinstance(value, dict):
        return {}, {"steps": "Must be an object keyed by inference step external_id."}
    if len(value) > MAX_STEPS:
        return {}, {"steps": f"At most {MAX_STEPS} steps per result; got {len(value)}."}
    clean, errors = {}, {}
    for name, detail in value.items():
        if not isinstance(name, str) or not 0 < len(name) <= STEP_NAME_MAX:
            errors["steps"] = f"Step names must have 1 to {STEP_NAME_MAX} characters."
            continue
        step, step_errors = parse_step(name, detail, f"steps.{name}")
        errors.update(step_errors)
        if step is not None:
            clean[name] = step
    return clean, errors


def out_of_scope(steps, scope):
    """The reported step names that are not among the run's in-scope steps (kept, but flagged)."""
    return sorted(set(steps or {}) - set(scope or ()))


def tokens(detail):
    """prompt + completion tokens of one step, None when neither was reported."""
    parts = [detail.get(field) for field in COUNT_FIELDS if stats.is_number(detail.get(field))]
    return sum(parts) if parts else None


def test_cost(metrics, steps):
    """What one test cost in USD: its `cost_usd` metric, else the sum of its steps' `cost_usd`,
    else None (not reported, which is not zero)."""
    reported = (metrics or {}).get("cost_usd") if isinstance(metrics, dict) else None
    if stats.is_number(reported):
        return reported
    costs = [detail.get("cost_usd") for detail in (steps or {}).values() if isinstance(detail, dict)]
    costs = [cost for cost in costs if stats.is_number(cost)]
    return sum(costs) if costs else None


class StepAggregator:
    """Aggregates a run's tests one at a time (`add(metrics, steps)`), so a run of any size is
    read in one pass without holding its tests; `summary()` gives what `aggregate` returns."""

    def __init__(self):
        self.per_step = {}
        self.costs = array("d")  # a run's numbers kept as 8 bytes each, not as 32-byte floats in a list

    def add(self, metrics, steps):
        steps = steps if isinstance(steps, dict) else {}
        cost = test_cost(metrics, steps)
        if cost is not None:
            self.costs.append(cost)
        for name, detail in steps.items():
            if not isinstance(detail, dict):
                continue
            entry = self.per_step.setdefault(name, {"count": 0, "models": {}, **{figure: array("d") for figure in (*FIGURES, "tokens")}})
            entry["count"] += 1
            if isinstance(detail.get("model"), str):
                entry["models"][detail["model"]] = entry["models"].get(detail["model"], 0) + 1
            for figure in FIGURES:
                if stats.is_number(detail.get(figure)):
                    entry[figure].append(detail[figure])
            if tokens(detail) is not None:
                entry["tokens"].append(tokens(detail))

    def summary(self):
        steps = {
            name: {
                "count": entry["count"],
                "models": dict(sorted(entry["models"].items(), key=lambda item: (-item[1], item[0]))),
                **{figure: stats.summarize(entry[figure]) for figure in (*FIGURES, "tokens")},
            }
            for name, entry in sorted(self.per_step.items())
        }
        return {"steps": steps, "cost": stats.summarize(self.costs)}


def aggregate(rows):
    """Aggregate a run's tests given as (metrics, steps) pairs.

    Returns {"steps": {step: {"count", "models": {model: n}, "latency_ms", "prompt_tokens",
    "completion_tokens", "tokens", "cost_usd"}}, "cost": summary of each test's cost}, each
    figure a `stats.summarize` summary over the tests that reported it.
    """
    aggregator = StepAggregator()
    for metrics, steps in rows:
        aggregator.add(metrics, steps)
    return aggregator.summary()


def statistic_of(step, name, statistic):
    return ((step or {}).get(name) or {}).get(statistic)


def difference(new, old):
    return new - old if new is not None and old is not None else None


def step_deltas(steps, baseline_steps):
    """{step: {"<figure>_<statistic>": variant − baseline}} for the figures in DELTAS; None
    where either side did not report the figure (missing is not zero)."""
    baseline_steps = baseline_steps or {}
    return {
        name: {
            f"{figure}_{statistic}": difference(
                statistic_of(step, figure, statistic), statistic_of(baseline_steps.get(name), figure, statistic)
            )
            for figure, statistic in DELTAS
        }
        for name, step in (steps or {}).items()
    }


def with_deltas(steps, baseline_steps):
    """Each step's aggregate with its `delta` against the baseline's same step."""
    deltas = step_deltas(steps, baseline_steps)
    return {name: {**step, "delta": deltas[name]} for name, step in (steps or {}).items()}


def cost_figures(aggregates, passed):
    """{cost_per_test, cost_per_passed} of a run from its stored aggregates: the mean cost of
    the tests that reported one, and what the run spent divided by its passed tests (None when
    no cost was reported or nothing passed: missing, never zero)."""
    cost = (aggregates or {}).get("cost") or ((aggregates or {}).get("metrics") or {}).get("cost_usd") or {}
    total = cost.get("sum")
    return {
        "cost_per_test": cost.get("mean"),
        "cost_per_passed": total / passed if total is not None and passed else None,
    }


def trace(steps, baseline_steps, scope):
    """The test page's trace: one row per step (in-scope steps in scope order, then the others),
    with this test's detail and the baseline's for the same task side by side."""
    steps, baseline_steps = steps or {}, baseline_steps or {}
    names = [name for name in scope if name in steps or name in baseline_steps]
    names += sorted((set(steps) | set(baseline_steps)) - set(names))
    rows = []
    for name in names:
        mine, theirs = steps.get(name), baseline_steps.get(name)
        rows.append(
            {
                "step": name,
                "in_scope": name in scope,
                "this": {**mine, "tokens": tokens(mine)} if mine is not None else None,
                "baseline": {**theirs, "tokens": tokens(theirs)} if theirs is not None else None,
            }
        )
    return rows
