"""Plain descriptive figures: what counts as a number, percentiles, metric summaries, majority outcome."""

import math


def is_number(value):
    """A finite JSON number (true/false are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def percentile(sorted_values, q):
    """The q-th percentile (q from 0 to 100) of already sorted values, interpolated
    linearly between closest ranks like numpy's default; None when empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, got {q}")
    n = len(sorted_values)
    if n == 0:
        return None
    position = (n - 1) * q / 100
    lower = math.floor(position)
    upper = min(lower + 1, n - 1)
    fraction = position - lower
    low_value, high_value = float(sorted_values[lower]), float(sorted_values[upper])
    if fraction == 0 or low_value == high_value:
        return low_value
    return low_value + (high_value - low_value) * fraction


def summarize(values):
    """{count, mean, median, p95, min, max, sum} of numbers; None for all but count when empty."""
    ordered = sorted(float(value) for value in values)
    if not ordered:
        return {"count": 0, "mean": None, "median": None, "p95": None, "min": None, "max": None, "sum": None}
    total = math.fsum(ordered)
    return {
        "count": len(ordered),
        "mean": total / len(ordered),
        "median": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
        "min": ordered[0],
        "max": ordered[-1],
        "sum": total,
    }


def majority_passed(passes):
    """Whether most repetitions passed; a tie (and no repetition at all) is not passed."""
    passes = list(passes)
    return 2 * sum(1 for passed in passes if passed) > len(passes)
