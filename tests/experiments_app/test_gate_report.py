"""The gate (SPEC §8) for every outcome, the judge's switch to the newer statistics, and the
decision report of a fixed experiment in JSON, Markdown and CSV."""

import csv
import io

import pytest

from experiments_app import actions, decisions, runs
from experiments_app.models import Role, Test
from tests.api_fixtures import client_for, experiment_with_baseline, finish_run, ready_experiment
from tests.factories import make_application, make_token, make_user


def finish_variant(experiment, fail_first=0, value=0.1, parent=None, name="", control=False):
    """Run a variant (or the control) of `experiment` whose first `fail_first` tasks (by external id) fail."""
    parent = parent or experiment.variants.get(parent__isnull=True)
    if control:
        variant = actions.create_control_variant(experiment)
    else:
        variant = actions.create_variant(experiment, parent=parent, inference_step="main", parameter="temperature", value=value, name=name)
    run = runs.start_variant_run(variant)
    for index, test in enumerate(Test.objects.filter(run=run).order_by("task_external_id")):
        runs.record_result(test.pk, {"output": "wrong" if index < fail_first else test.task_expected})
    experiment.refresh_from_db()
    return variant


@pytest.fixture
def experiment(team):
    experiment = experiment_with_baseline(make_application(team), n_tasks=12)
    actions.update_experiment(experiment, description="Lower temperature cuts hallucinations.")
    return experiment


def gate(client, experiment, **params):
    response = client.get(f"/api/v1/experiments/{experiment.pk}/gate/", params)
    return response.status_code, response.json()


@pytest.fixture
def viewer(team):
    return client_for(make_token(team, Role.VIEWER))


def test_gate_passes_a_variant_as_good_as_the_baseline(viewer, experiment):
    variant = finish_variant(experiment)
    status, body = gate(viewer, experiment, variant=variant.pk)
    assert status == 200
    assert body["pass"] is True
    assert body["verdict"]["code"] == "no_difference"
    assert body["variant"] == str(variant.pk) and body["run"] == body["result"]["run"]


def test_gate_fails_a_significantly_worse_variant(viewer, experiment):
    variant = finish_variant(experiment, fail_first=12)
    status, body = gate(viewer, experiment, variant=variant.pk, max_regression_pp=100)
    assert (status, body["pass"], body["verdict"]["code"]) == (200, False, "worse")
    assert "regressed" in body["reason"]


def test_gate_fails_a_drop_beyond_the_tolerance_and_passes_within_it(viewer, experiment):
    # −41.7 pp, McNemar p = 0.0625: not significant, but the paired interval's upper bound is −8.7 pp
    variant = finish_variant(experiment, fail_first=5)
    _, strict = gate(viewer, experiment, variant=variant.pk)
    _, tolerant = gate(viewer, experiment, variant=variant.pk, max_regression_pp=10)
    assert strict["pass"] is False and "by more than 0 pp: its upper confidence bound is -8.7 pp" in strict["reason"]
    assert tolerant["pass"] is True and tolerant["verdict"]["code"] == "no_difference"


def test_gate_passes_a_small_drop_whose_interval_reaches_above_zero(viewer, experiment):
    # −8.3 pp, p = 1: the upper bound (+16.9 pp) says the variant may be as good, so even a zero tolerance passes it
    variant = finish_variant(experiment, fail_first=1)
    _, strict = gate(viewer, experiment, variant=variant.pk)
    assert strict["pass"] is True and strict["result"]["delta_ci_high"] > 0


def test_gate_uses_the_alpha_it_is_given(viewer, experiment):
    variant = finish_variant(experiment, fail_first=6)  # McNemar b=0, c=6: p = 0.03125
    _, at_5 = gate(viewer, experiment, variant=variant.pk, max_regression_pp=60)
    _, at_1 = gate(viewer, experiment, variant=variant.pk, max_regression_pp=60, alpha=0.01)
    assert (at_5["pass"], at_5["verdict"]["code"]) == (False, "worse")
    assert (at_1["pass"], at_1["verdict"]["code"]) == (True, "no_difference")


def test_gate_passes_a_better_variant(viewer, team):
    experiment = ready_experiment(make_application(team), n_tasks=12)
    finish_run(runs.start_baseline_run(experiment), passed=False)
    experiment.refresh_from_db()
    variant = finish_variant(experiment)
    _, body = gate(viewer, experiment, variant=variant.pk)
    assert (body["pass"], body["verdict"]["code"]) == (True, "better")
    assert body["result"]["delta_pp"] == 100.0


def test_gate_fails_a_variant_without_a_result(viewer, experiment):
    baseline = experiment.variants.get(parent__isnull=True)
    variant = actions.create_variant(experiment, parent=baseline, inference_step="main", parameter="temperature", value=0.2)
    status, body = gate(viewer, experiment, variant=variant.pk)
    assert (status, body["pass"], body["verdict"]["code"], body["run"]) == (200, False, "pending", None)
    assert "no result" in body["reason"]


def test_gate_needs_a_variant_of_the_experiment(viewer, experiment, team):
    assert gate(viewer, experiment)[0] == 400
    status, body = gate(viewer, experiment, variant=experiment.variants.get(parent__isnull=True).pk)
    assert status == 400 and "variant" in body["errors"]
    assert gate(viewer, experiment, variant="not-a-uuid")[1]["errors"].keys() == {"variant"}
    assert gate(viewer, experiment, variant=experiment.pk, alpha=0.5)[1]["errors"].keys() >= {"alpha"}


def test_gate_is_404_for_another_team(experiment, stranger):
    assert stranger.get(f"/api/v1/experiments/{experiment.pk}/gate/", {"variant": experiment.pk}).status_code == 404


# --- the judge switches to the newer statistics without other changes ---------------------


def test_judge_uses_the_rows_own_verdict_and_interval_when_present():
    row = {"name": "v", "run": "r", "pass_rate": 0.5, "delta_pp": -3.0, "p_value": 0.001, "verdict": {"code": "no_difference", "text": "t"}}
    assert decisions.judge({**row, "delta_ci_high": 2.0}).passed is True
    failed = decisions.judge({**row, "delta_ci_high": -1.0})
    assert failed.passed is False and "upper confidence bound" in failed.reason


def test_judge_prefers_the_adjusted_p_value_when_an_alpha_is_asked():
    row = {"name": "v", "run": "r", "pass_rate": 0.5, "delta_pp": -10.0, "p_value": 0.01, "p_value_adjusted": 0.2, "delta_ci_high": 5.0}
    assert decisions.judge(row, alpha=0.05).verdict["code"] == "no_difference"
    assert decisions.judge({**row, "p_value_adjusted": None}, alpha=0.05).verdict["code"] == "worse"


# --- the decision report -----------------------------------------------------------------


@pytest.fixture
def decided(experiment, team):
    """The fixed experiment: a better-or-equal child, a worse grandchild, completed by a person with a winner."""
    keeper = finish_variant(experiment, name="temp 0.1")
    worse = finish_variant(experiment, fail_first=2, parent=keeper, value=0.5, name="temp 0.5 from 0.1")
    person = make_user(team, Role.EDITOR, username="ada")
    actions.complete_experiment(experiment, winner=keeper, by=person)
    experiment.refresh_from_db()
    return experiment, keeper, worse


def test_report_json_has_hypothesis_diffs_evidence_flips_and_who_picked_the_winner(viewer, decided, settings):
    experiment, keeper, worse = decided
    response = viewer.get(f"/api/v1/experiments/{experiment.pk}/report/")
    assert response.status_code == 200
    report = response.json()
    assert report["experiment"]["hypothesis"] == "Lower temperature cuts hallucinations."
    assert report["scope"]["tasks"] == 12 and report["scope"]["inference_steps"] == ["main"]
    assert report["scope"]["locked_at"] is not None
    entries = {entry["name"]: entry for entry in report["variants"]}
    grandchild = entries["temp 0.5 from 0.1"]
    assert grandchild["diff_vs_parent"] == [{"step": "main", "parameter": "temperature", "from": 0.1, "to": 0.5}]
    assert grandchild["diff_vs_baseline"] == [{"step": "main", "parameter": "temperature", "from": 0.7, "to": 0.5}]
    assert grandchild["pass_rate"] == pytest.approx(10 / 12) and grandchild["ci_low"] < grandchild["pass_rate"] < grandchild["ci_high"]
    assert grandchild["delta_pp"] == pytest.approx(-100 * 2 / 12)
    assert grandchild["verdict"]["code"] == "no_difference"
    regressed = grandchild["flipped"]["regressed"]
    assert len(regressed) == 2 and all(
        item["url"].startswith(f"{settings.PUBLIC_URL}/runs/{grandchild['run']}/tests/") for item in regressed
    )
    assert any(w["code"] == "errored_tests" for w in grandchild["warnings"]) is False
    assert report["decision"]["winner"] == {"id": str(keeper.pk), "name": "temp 0.1"}
    assert report["decision"]["picked_by"] == "ada" and report["decision"]["picked_at"]
    assert entries["temp 0.1"]["winner"] is True and grandchild["winner"] is False


def test_report_markdown_renders_a_table_and_the_decision(viewer, decided):
    experiment, _, _ = decided
    response = viewer.get(f"/api/v1/experiments/{experiment.pk}/report/?format=md")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/markdown")
    text = response.content.decode()
    assert text.startswith(f"# Decision report: {experiment.name}")
    assert "| Variant | Change vs parent |" in text and "|---|" in text
    assert "Winner: **temp 0.1**, picked by ada" in text
    assert "`main.temperature`: 0.1 → 0.5" in text
    assert "Regressed (2):" in text


def test_report_csv_has_one_row_per_variant(viewer, decided):
    experiment, keeper, _ = decided
    response = viewer.get(f"/api/v1/experiments/{experiment.pk}/report/?format=csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["name"] for row in rows] == ["Baseline", "temp 0.1", "temp 0.5 from 0.1"]
    assert rows[1]["winner"] == "True" and rows[2]["regressed"] == "2"


def test_report_carries_the_verdict_interval_adjusted_p_guardrails_and_ship(viewer, experiment):
    actions.update_experiment(experiment, guardrails=[{"name": "correct", "evaluator": "exact_match", "margin_pp": 50}])
    finish_variant(experiment, control=True)
    finish_variant(experiment, fail_first=6, name="much worse")
    report = viewer.get(f"/api/v1/experiments/{experiment.pk}/report/").json()
    control, worse = report["variants"]
    assert control["is_control"] and control["diff_vs_baseline"] == [] and control["verdict"]["code"] == "no_difference"
    assert worse["verdict"]["code"] == "no_difference"  # p = 0.031, Holm over two variants: 0.0625
    assert worse["p_value"] == pytest.approx(0.03125) and worse["p_value_adjusted"] == pytest.approx(0.0625)
    assert worse["delta_ci_low"] < worse["delta_pp"] < worse["delta_ci_high"] < 0
    assert worse["guardrails"][0]["name"] == "correct" and worse["ship"] is False
    assert {"mde_pp", "tasks_needed", "skipped", "stopped_early", "flaky", "pass_at_k", "pass_hat_k", "significant"} <= worse.keys()

    text = viewer.get(f"/api/v1/experiments/{experiment.pk}/report/?format=md").content.decode()
    assert "| p (raw) | p (adjusted) | Verdict | Ship |" in text and "Holm-adjusted" in text
    assert "(control)" in text and "Guardrail correct:" in text

    rows = list(csv.DictReader(io.StringIO(viewer.get(f"/api/v1/experiments/{experiment.pk}/report/?format=csv").content.decode())))
    assert rows[2]["verdict"] == "no_difference" and rows[2]["verdict_text"].startswith("no detectable difference")
    assert float(rows[2]["p_value_adjusted"]) == pytest.approx(0.0625) and rows[2]["ship"] == "False"
    assert rows[2]["guardrails"].startswith("correct:") and rows[1]["is_control"] == "True"


def test_report_refuses_an_unknown_format(viewer, experiment):
    assert viewer.get(f"/api/v1/experiments/{experiment.pk}/report/?format=xml").status_code in (400, 404)
