"""Issue 9 wired in: SPEC §7 result fields, §8 alpha/guardrails/control/?label=/live, and
stop_when_decided. The statistics themselves are checked against references in test_stats_*."""

import json

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.urls import reverse
from scipy.stats import binomtest
from statsmodels.stats.multitest import multipletests

from experiments_app import actions, results, runs, stats
from experiments_app.models import Run, RunStatus, Test, Variant
from experiments_app.models import TestStatus as Status
from tests.api_fixtures import client_for, experiment_with_baseline, finish_run, ready_experiment
from tests.experiments_app.test_results import make_run, make_variant
from tests.factories import make_application, make_ready_experiment, make_token

pytestmark = pytest.mark.django_db

P, F, E = Status.PASSED, Status.FAILED, Status.ERRORED

SPEC_7_FIELDS = {
    "delta_ci_low",
    "delta_ci_high",
    "p_value_adjusted",
    "significant",
    "verdict",
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
    "is_control",
}


def url(name, **kwargs):
    return reverse(f"api:{name}", kwargs=kwargs)


def outcomes_run(variant, tasks, passes):
    """A closed run: task i passed when passes[i] (one repetition each)."""
    return make_run(variant, {task: [P if passed else F] for task, passed in zip(tasks, passes, strict=True)})


@pytest.fixture
def experiment():
    return make_ready_experiment(n_tasks=40)


@pytest.fixture
def tasks(experiment):
    return list(experiment.tasks.order_by("external_id"))


def test_every_result_row_carries_the_fields_of_spec_7(experiment, tasks):
    outcomes_run(experiment.baseline, tasks, [i < 20 for i in range(40)])
    variant = make_variant(experiment)
    outcomes_run(variant, tasks, [i < 30 for i in range(40)])
    table = results.experiment_results(experiment)
    (row,) = table["variants"]
    assert set(row) >= SPEC_7_FIELDS
    assert set(table["baseline"]) >= SPEC_7_FIELDS
    # 10 tasks went fail → pass and none the other way: McNemar's exact p is the binomial test on 10 of 10.
    assert row["p_value"] == pytest.approx(binomtest(10, 10, 0.5).pvalue)
    assert row["delta_pp"] == pytest.approx(25.0)
    assert row["delta_ci_low"] < 25 < row["delta_ci_high"]
    assert row["verdict"]["code"] == "better"
    assert row["verdict"]["text"].startswith("better: +25.0 pp (95% CI ")
    assert row["significant"] is True and row["ship"] is None and row["is_control"] is False


def test_holm_adjusts_over_every_variant_and_the_verdict_uses_the_adjusted_value(experiment, tasks):
    outcomes_run(experiment.baseline, tasks, [i < 20 for i in range(40)])
    # Six fail → pass tasks and none back: raw p = 0.03125, below 0.05 alone.
    weak = make_variant(experiment, value=0.3, name="weak")
    outcomes_run(weak, tasks, [i < 26 for i in range(40)])
    strong = make_variant(experiment, value=0.9, name="strong")
    outcomes_run(strong, tasks, [i < 35 for i in range(40)])
    same = make_variant(experiment, value=0.5, name="same")
    outcomes_run(same, tasks, [i < 20 for i in range(40)])
    rows = {row["name"]: row for row in results.experiment_results(experiment)["variants"]}
    names = ["weak", "strong", "same"]
    expected = multipletests([rows[name]["p_value"] for name in names], method="holm")[1]
    assert [rows[name]["p_value_adjusted"] for name in names] == pytest.approx(list(expected))
    assert rows["weak"]["p_value"] < 0.05 <= rows["weak"]["p_value_adjusted"]
    assert rows["weak"]["verdict"]["code"] == "no_difference" and rows["weak"]["significant"] is False
    assert rows["weak"]["mde_pp"] is not None and rows["weak"]["tasks_needed"] is not None
    assert rows["strong"]["verdict"]["code"] == "better"


def test_repetitions_give_flaky_tasks_pass_at_k_and_labels(experiment, tasks):
    experiment.repetitions = 3
    experiment.save()
    base = {task: ([P, P, P] if i < 10 else [F, F, F] if i < 30 else [P, F, F]) for i, task in enumerate(tasks)}
    make_run(experiment.baseline, base)
    variant = make_variant(experiment)
    var = {task: ([P, P, P] if i < 20 else [F, F, F] if i < 30 else [P, P, F]) for i, task in enumerate(tasks)}
    run = make_run(variant, var)
    (row,) = results.experiment_results(experiment)["variants"]
    assert row["flaky"] == 10
    summaries = {str(task.pk): stats.task_summary(sum(s == P for s in statuses), 3) for task, statuses in var.items()}
    pass_at, pass_hat = stats.repetitions.run_pass_at_k(list(summaries.values()), 3)
    assert row["pass_at_k"] == pytest.approx(pass_at) and row["pass_hat_k"] == pytest.approx(pass_hat)
    assert row["noise"]["k"] == 3 and row["noise"]["within_var"] is not None and row["noise"]["se_floor"] is not None
    assert set(results.tasks_labelled(run, "flaky")) == {str(task.pk) for task in tasks[30:]}
    assert set(results.tasks_labelled(run, "stable_pass")) == {str(task.pk) for task in tasks[:20]}
    # Ten tasks went from 3 fails to 3 passes: beyond their repetition noise (Fisher p = 0.05 ≤ alpha).
    assert set(results.tasks_labelled(run, "improved")) == {str(task.pk) for task in tasks[10:20]}


def test_a_changed_alpha_or_guardrail_is_judged_again_without_a_new_run(experiment, tasks):
    metrics_base = {(task.external_id, 1): {"latency_ms": 100 + i} for i, task in enumerate(tasks)}
    metrics_var = {(task.external_id, 1): {"latency_ms": 150 + i} for i, task in enumerate(tasks)}
    make_run(experiment.baseline, {task: [P if i < 20 else F] for i, task in enumerate(tasks)}, metrics=metrics_base)
    variant = make_variant(experiment)
    make_run(variant, {task: [P if i < 32 else F] for i, task in enumerate(tasks)}, metrics=metrics_var)
    (row,) = results.experiment_results(experiment)["variants"]
    assert row["ship"] is None and row["guardrails"] == []
    actions.update_experiment(experiment, guardrails=[{"metric": "latency_ms", "statistic": "mean", "margin": 10}])
    experiment.refresh_from_db()
    (row,) = results.experiment_results(experiment)["variants"]
    (guard,) = row["guardrails"]
    assert guard["name"] == "latency_ms mean" and guard["delta"] == pytest.approx(50) and guard["non_inferior"] is False
    assert row["verdict"]["code"] == "better" and row["ship"] is False
    actions.update_experiment(experiment, guardrails=[{"metric": "latency_ms", "statistic": "mean", "margin": 60}], alpha=0.01)
    experiment.refresh_from_db()
    (row,) = results.experiment_results(experiment)["variants"]
    assert row["guardrails"][0]["non_inferior"] is True and row["ship"] is True
    assert "99% CI" in row["verdict"]["text"]
    # The new judgement was stored: reading again makes no new comparison.
    run = Run.objects.get(variant=variant)
    assert run.aggregates["vs_baseline"]["alpha"] == 0.01


def test_the_control_shows_the_noise_floor_and_a_drifted_baseline_makes_verdicts_inconclusive(experiment, tasks):
    outcomes_run(experiment.baseline, tasks, [i < 20 for i in range(40)])
    # make_run does not move the lifecycle, so the control is made directly (the API test below creates one).
    control = Variant.objects.create(experiment=experiment, parent=experiment.baseline, name="control", is_control=True)
    outcomes_run(control, tasks, [i < 34 for i in range(40)])  # the "same" config passes 14 more: drift
    variant = make_variant(experiment)
    outcomes_run(variant, tasks, [i < 36 for i in range(40)])
    rows = {row["name"]: row for row in results.experiment_results(experiment)["variants"]}
    assert rows["control"]["is_control"] is True and rows["control"]["change"] is None
    assert rows["control"]["noise"]["flip_rate"] == pytest.approx(14 / 40)
    codes = {warning["code"] for warning in rows["temp 0.3"]["warnings"]}
    assert "baseline_drift" in codes
    assert rows["temp 0.3"]["verdict"]["code"] == "inconclusive"


def test_compare_answers_the_paired_difference_with_its_interval(experiment, tasks):
    base = outcomes_run(experiment.baseline, tasks, [i < 20 for i in range(40)])
    variant = make_variant(experiment)
    new = outcomes_run(variant, tasks, [i < 30 for i in range(40)])
    body = results.compare_runs(new, base)
    assert body["delta_pp"] == pytest.approx(25.0)
    assert body["delta_ci_low"] < 25 < body["delta_ci_high"]
    low, high = stats.newcombe_paired_interval(20, 10, 0, 10, alpha=experiment.alpha)
    assert (body["delta_ci_low"], body["delta_ci_high"]) == pytest.approx((100 * low, 100 * high))


# ---------------------------------------------------------------- API


def editor_client(team):
    return client_for(make_token(team))


def test_alpha_and_guardrails_are_validated_by_field(team):
    client = editor_client(team)
    experiment = make_ready_experiment(application=make_application(team))
    target = url("experiment-detail", id=experiment.pk)
    assert client.patch(target, {"alpha": 0.5}, format="json").json()["errors"].keys() >= {"alpha"}
    answer = client.patch(target, {"guardrails": [{"metric": "latency_ms", "statistic": "p99", "margin": 1}]}, format="json")
    assert answer.status_code == 400 and "statistic" in str(answer.json()["errors"]["guardrails"])
    answer = client.patch(target, {"guardrails": [{"evaluator": "exact", "margin_pp": -1}]}, format="json")
    assert answer.status_code == 400 and "margin_pp" in str(answer.json()["errors"]["guardrails"])
    answer = client.patch(
        target, {"alpha": 0.01, "guardrails": [{"metric": "latency_ms", "statistic": "p95", "margin": 50}]}, format="json"
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["alpha"] == 0.01
    assert answer.json()["guardrails"] == [{"metric": "latency_ms", "statistic": "p95", "margin": 50, "higher_is_better": False}]


def test_the_control_variant_is_created_once_and_runs_the_baseline_config(team):
    client = editor_client(team)
    experiment = experiment_with_baseline(make_application(team))
    target = url("variant-list", id=experiment.pk)
    answer = client.post(target, {"is_control": True}, format="json")
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["is_control"] is True and body["change"] is None and body["parent"] == str(experiment.baseline.pk)
    assert body["effective_config"] == experiment.baseline.config
    assert client.post(target, {"is_control": True}, format="json").status_code == 409
    assert client.post(target, {"is_control": False}, format="json").status_code == 400
    run = client.post(url("variant-run", id=body["id"]), {"stop_when_decided": True}, format="json")
    assert run.status_code == 202, run.content
    assert run.json()["stop_when_decided"] is True


def test_runs_tests_filter_by_label(team):
    client = editor_client(team)
    experiment = experiment_with_baseline(make_application(team), n_tasks=4)
    run = Run.objects.get(variant=experiment.baseline)
    answer = client.get(url("run-tests", id=run.pk), {"label": "stable_pass"})
    assert answer.status_code == 200
    assert answer.json()["count"] == 4
    assert client.get(url("run-tests", id=run.pk), {"label": "flaky"}).json()["count"] == 0
    assert client.get(url("run-tests", id=run.pk), {"label": "shaky"}).status_code == 400


def test_live_and_stop_when_decided_skip_the_unsent_tests(team, settings):
    """A variant run that passes every task against a baseline that failed every one: the
    mixture e-value decides `better` after a handful of tasks, the rest are skipped."""
    settings.LIVE_LOOK_SECONDS = 0  # look after every result (the default bounds the cost)
    client = editor_client(team)
    application = make_application(team)
    experiment = ready_experiment(application, n_tasks=60)
    finish_run(runs.start_baseline_run(experiment), passed=False)
    experiment.refresh_from_db()
    variant = actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.3)
    run = runs.start_variant_run(variant, stop_when_decided=True)
    answered = 0
    for test in Test.objects.filter(run=run).order_by("created_at", "pk"):
        test.refresh_from_db()
        if test.status != Status.PENDING:
            continue
        runs.record_result(test.pk, {"output": test.task_expected})
        answered += 1
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.stopped_early is True
    assert run.skipped == 60 - answered and 0 < answered < 60
    assert run.total == answered and run.passed == answered
    body = client.get(url("run-detail", id=run.pk)).json()
    assert body["stopped_early"] is True and body["skipped"] == run.skipped
    assert body["live"]["decided"] == "better" and body["live"]["ci_low"] > 0
    (row,) = client.get(url("experiment-results", id=experiment.pk)).json()["variants"]
    assert row["stopped_early"] is True and row["skipped"] == run.skipped and row["pass_rate"] == 1.0
    assert Test.objects.filter(run=run, status=Status.SKIPPED).count() == run.skipped


def test_an_ended_run_shows_the_live_sequence_over_all_its_tasks(team, settings):
    """`live` on an ended run is not left where the last look during the run stopped."""
    settings.LIVE_LOOK_SECONDS = 3600  # no look while the results arrive
    client = editor_client(team)
    experiment = ready_experiment(make_application(team), n_tasks=12)
    finish_run(runs.start_baseline_run(experiment), passed=False)
    experiment.refresh_from_db()
    variant = actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.3)
    run = runs.start_variant_run(variant)
    assert client.get(url("run-detail", id=run.pk)).json()["live"]["done"] == 0
    finish_run(run)
    assert run.status == RunStatus.SUCCEEDED
    live = client.get(url("run-detail", id=run.pk)).json()["live"]
    assert live["done"] == live["total"] == 12 and live["delta_pp"] == 100.0


def test_the_results_api_answers_the_task_id_lists_it_writes_unparsed(team):
    """The API writes each comparison's improved/regressed as the database's JSON text (RawJSON):
    the answer reads exactly as experiment_results with parsed lists."""
    client = editor_client(team)
    experiment = make_ready_experiment(n_tasks=4, application=make_application(team))
    tasks = list(experiment.tasks.order_by("external_id"))
    P, F = Status.PASSED, Status.FAILED
    make_run(experiment.baseline, {tasks[0]: [P], tasks[1]: [F], tasks[2]: [P], tasks[3]: [F]})
    make_run(make_variant(experiment), {tasks[0]: [F], tasks[1]: [P], tasks[2]: [P], tasks[3]: [P]})
    answer = client.get(url("experiment-results", id=experiment.pk)).json()
    (row,) = answer["variants"]
    assert row["improved"] == sorted([str(tasks[1].pk), str(tasks[3].pk)]) and row["regressed"] == [str(tasks[0].pk)]
    expected = json.loads(json.dumps(results.experiment_results(experiment), cls=DjangoJSONEncoder))
    assert {key: value for key, value in answer["variants"][0].items() if key != "completed_at"} == {
        key: value for key, value in expected["variants"][0].items() if key != "completed_at"
    }
