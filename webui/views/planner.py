"""The setup page's planner (issue 9): how many tasks a comparison needs, before the baseline
runs or, with a baseline that has repetitions, from its measured noise (stats.plan)."""

from experiments_app import results, stats
from webui.forms import PlannerForm

DEFAULT_DIFFERENCE_PP = 5.0
DEFAULT_POWER = 0.8


def baseline_figures(experiment):
    """(pass rate, stats.baseline_noise or None) of the latest baseline result; (None, None)
    before the baseline ran (no query then: the setup page of a draft stays as cheap as it was)."""
    run = results.baseline_result_runs(experiment.pk).first() if experiment.locked_at else None
    if run is None:
        return None, None
    noise = stats.baseline_noise(results.task_summaries(results.run_outcomes(run)))
    rate = run.passed / run.total if run.total else None
    return rate, noise if noise["within_var"] is not None else None


def planner_context(experiment, data=None):
    """{"planner": the form, "plan": stats.plan's answer (when asked), "noise": the measured noise or None}."""
    rate, noise = baseline_figures(experiment)
    rate = 0.5 if rate is None else rate
    initial = {
        "expected_pass_rate": round(rate * 100, 1),
        "min_difference_pp": DEFAULT_DIFFERENCE_PP,
        "alpha": experiment.alpha,
        "power": DEFAULT_POWER,
        "k": experiment.repetitions,
        "measured": noise is not None,
    }
    form = PlannerForm(data, initial=initial, prefix="plan")
    answer = None
    if data is not None and form.is_valid():
        asked = form.cleaned_data
        try:
            answer = stats.plan(
                asked["expected_pass_rate"] / 100,
                asked["min_difference_pp"],
                alpha=asked["alpha"],
                power=asked["power"],
                k=asked["k"],
                measured={"within_var": noise["within_var"]} if asked["measured"] and noise else None,
            )
        except ValueError as error:
            form.add_error(None, str(error))
        else:
            answer = {**answer, "asked": asked, "used_measured": bool(asked["measured"] and noise)}
    return {"experiment": experiment, "planner": form, "plan": answer, "noise": noise}
