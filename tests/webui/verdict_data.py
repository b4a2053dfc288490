"""An experiment with every kind of verdict of SPEC §7, made through the engine's own actions:
repetitions with flaky tasks, a control, a clear winner, a variant significant only before the
Holm adjustment, a variant failing a latency guardrail and one that stopped early."""

from django.test import override_settings
from django.utils import timezone

from experiments_app import actions, runs
from experiments_app.models import Application, Delivery, Test, TestStatus
from experiments_app.runs import state
from tests.webui.conftest import make_ready

K = 3
N_TASKS = 40


def answer(run, passes, *, latency=lambda index, repetition: 100):
    """Answer the run's pending tests in task order: `passes(task index, repetition)` says
    which pass; each repetition's output differs (independent samples, not a cache)."""
    index_of = {}
    for test in Test.objects.filter(run=run, status=TestStatus.PENDING).order_by("task_external_id", "repetition"):
        test.refresh_from_db()
        if test.status != TestStatus.PENDING:
            continue  # skipped once the run decided
        index = index_of.setdefault(test.task_external_id, int(test.task_external_id[1:]))
        ok = passes(index, test.repetition)
        body = {
            "output": {"answer": f"{test.task_external_id} sample {test.repetition} {'right' if ok else 'wrong'}"},
            "passed": ok,
            "metrics": {"latency_ms": latency(index, test.repetition)},
        }
        if ok is None:  # no usable output (as after the last failed delivery); never a run's last test here
            state.error_tests(Test.objects.filter(pk=test.pk), "upstream timeout", timezone.now())  # counted, as the engine does
            continue
        runs.record_result(test.pk, body)
    run.refresh_from_db()
    return run


def baseline_passes(index, repetition):
    if index < 10:
        return True
    if index < 30:
        return False
    return repetition == 1 + index % 2  # flaky: one of three


def control_passes(index, repetition):
    """The baseline's configuration again: the same tasks pass, the flaky ones by their own luck."""
    if 30 <= index < 33:
        return repetition != 3
    if 33 <= index < 35:
        return False
    return baseline_passes(index, repetition)


def run_variant(experiment, name, value, passes, parameter="temperature", **options):
    experiment.refresh_from_db()
    variant = actions.create_variant(
        experiment, parent=experiment.baseline, inference_step="main", parameter=parameter, value=value, name=name
    )
    return variant, answer(runs.start_variant_run(variant, **options), passes)


def make_verdicts_experiment(team, *, with_stopped=True):
    """Returns (experiment, {name: run}) with the baseline, `control`, `temp 0.3` (better),
    `temp 0.5` (raw p < 0.05, adjusted not), `gpt-4o` (better but slower than the latency
    guardrail allows) and, with `with_stopped`, `temp 0.1` stopped early when decided."""
    experiment = make_ready(team, N_TASKS, name="Cooler answers")
    # Answered here, never sent: a pull application gets no webhooks, so a Celery worker started
    # by other tests of the session (and its sweeper) cannot deliver these tests meanwhile.
    Application.objects.filter(pk=experiment.application_id).update(delivery=Delivery.PULL)
    actions.update_experiment(experiment, repetitions=K)
    experiment.refresh_from_db()
    made = {"Baseline": answer(runs.start_baseline_run(experiment), baseline_passes)}
    actions.update_experiment(experiment, guardrails=[{"metric": "latency_ms", "statistic": "mean", "margin": 20}])
    experiment.refresh_from_db()
    control = actions.create_control_variant(experiment, name="control")
    made["control"] = answer(runs.start_variant_run(control), control_passes)
    _, made["temp 0.3"] = run_variant(experiment, "temp 0.3", 0.3, lambda index, repetition: index < 20 or index >= 30)
    _, made["temp 0.5"] = run_variant(
        experiment, "temp 0.5", 0.5, lambda index, repetition: baseline_passes(index, repetition) or index < 16
    )
    experiment.refresh_from_db()
    variant = actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="model", value="gpt-4o")
    variant.name = "gpt-4o"
    variant.save(update_fields=["name"])
    made["gpt-4o"] = answer(runs.start_variant_run(variant), lambda index, repetition: index < 24, latency=lambda index, repetition: 160)
    _, made["max_tokens 64"] = run_variant(
        experiment,
        "max_tokens 64",
        64,
        parameter="max_tokens",
        passes=lambda index, repetition: None if 26 <= index < 38 and repetition == 1 else baseline_passes(index, repetition),
    )
    if with_stopped:
        experiment.refresh_from_db()
        stopped = actions.create_variant(
            experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.1, name="temp 0.1"
        )
        with override_settings(LIVE_LOOK_SECONDS=0):
            made["temp 0.1"] = answer(runs.start_variant_run(stopped, stop_when_decided=True), lambda index, repetition: index < 36)
    experiment.refresh_from_db()
    return experiment, made


def active_variant_run(experiment, tasks_answered=18):
    """A running variant (stop when decided off) with the first `tasks_answered` tasks answered."""
    experiment.refresh_from_db()
    variant = actions.create_variant(
        experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.2, name="temp 0.2"
    )
    run = runs.start_variant_run(variant)
    keep = {f"t{index:03d}" for index in range(tasks_answered)}
    Test.objects.filter(run=run).exclude(task_external_id__in=keep).update(status=TestStatus.DISPATCHED)
    answer(run, lambda index, repetition: index < 30)
    Test.objects.filter(run=run, status=TestStatus.DISPATCHED).update(status=TestStatus.PENDING)
    run.refresh_from_db()
    return run
