"""Shapes of per-step detail for the pages: the run's step table and the experiment's step comparison.

Pure functions over aggregates and results rows (experiments_app.step_detail owns the
figures); no queries here.
"""

from experiments_app import step_detail


def step_rows(steps, baseline_steps, scope):
    """The run page's table: one row per step (in-scope steps in scope order, then the
    others, flagged), with its figures and, for a variant run, the deltas against the
    baseline run's same step."""
    steps = steps or {}
    deltas = step_detail.step_deltas(steps, baseline_steps) if baseline_steps is not None else {}
    names = [name for name in scope if name in steps] + sorted(set(steps) - set(scope))
    return [{"step": name, "in_scope": name in scope, **steps[name], "delta": deltas.get(name)} for name in names]


def step_comparison(results, scope):
    """The experiment page's per-step comparison: for each step, the baseline's figures then
    each variant's with its deltas, from the results rows (variants without a result or
    without that step are left out)."""
    rows = [row for row in [results.get("baseline"), *results.get("variants", [])] if row and row.get("steps")]
    names = [name for name in scope if any(name in row["steps"] for row in rows)]
    names += sorted({name for row in rows for name in row["steps"]} - set(names))
    return [
        {
            "step": name,
            "in_scope": name in scope,
            "rows": [
                {"name": row["name"], "run": row["run"], "is_baseline": row["is_baseline"], **row["steps"][name]}
                for row in rows
                if name in row["steps"]
            ],
        }
        for name in names
    ]
