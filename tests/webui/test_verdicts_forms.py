"""Issue 9's forms on the pages: the control variant, "stop when decided", alpha and guardrails,
and the planner — each with good and bad input, with and without htmx."""

import json

import pytest

from experiments_app import results, stats
from experiments_app.models import Run, Variant
from tests.webui.conftest import make_ready, make_with_results
from webui.forms import PlannerForm

pytestmark = pytest.mark.django_db


def test_add_control_creates_the_control_variant(editor):
    experiment, *_ = make_with_results(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/variants/control/")
    assert response.status_code == 302
    control = Variant.objects.get(experiment=experiment, is_control=True)
    assert control.parent_id == experiment.baseline.pk
    page = editor.get(response["Location"]).content.decode()
    assert "Control variant added" in page and "control (baseline again)" in page


def test_add_control_by_htmx_fires_experiment_changed(editor):
    experiment, *_ = make_with_results(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/variants/control/", HTTP_HX_REQUEST="true")
    assert response.status_code == 204 and response["HX-Trigger"] == "experiment-changed"


def test_a_second_control_is_refused_with_a_message_not_a_500(editor):
    experiment, *_ = make_with_results(editor.team)
    editor.post(f"/experiments/{experiment.pk}/variants/control/")
    response = editor.post(f"/experiments/{experiment.pk}/variants/control/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="flash")
    assert response.status_code == 409
    assert "already has a control variant" in response.content.decode()
    assert Variant.objects.filter(experiment=experiment, is_control=True).count() == 1


def test_a_control_before_the_baseline_has_results_is_refused(editor):
    experiment = make_ready(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/variants/control/")
    assert response.status_code == 302
    assert "once the baseline has results" in editor.get(response["Location"]).content.decode()
    assert not Variant.objects.filter(experiment=experiment, is_control=True).exists()


def test_a_viewer_cannot_add_a_control(viewer, editor):
    experiment, *_ = make_with_results(editor.team)
    assert viewer.post(f"/experiments/{experiment.pk}/variants/control/").status_code == 403


def test_the_control_button_shows_until_there_is_a_control(editor):
    experiment, *_ = make_with_results(editor.team)
    assert 'id="add-control"' in editor.get(f"/experiments/{experiment.pk}/").content.decode()
    editor.post(f"/experiments/{experiment.pk}/variants/control/")
    assert 'id="add-control"' not in editor.get(f"/experiments/{experiment.pk}/").content.decode()


def test_run_with_stop_when_decided_ticked_starts_a_run_that_stops_when_decided(editor):
    experiment, *_ = make_with_results(editor.team)
    editor.post(f"/experiments/{experiment.pk}/variants/control/")
    control = Variant.objects.get(experiment=experiment, is_control=True)
    response = editor.post(f"/variants/{control.pk}/run/", {"stop_when_decided": "on"})
    assert response.status_code == 302
    assert Run.objects.get(variant=control).stop_when_decided is True


def test_run_without_the_box_runs_in_full(editor):
    experiment, *_ = make_with_results(editor.team)
    editor.post(f"/experiments/{experiment.pk}/variants/control/")
    control = Variant.objects.get(experiment=experiment, is_control=True)
    editor.post(f"/variants/{control.pk}/run/")
    assert Run.objects.get(variant=control).stop_when_decided is False


def test_the_run_button_offers_stop_when_decided(editor):
    experiment, *_ = make_with_results(editor.team)
    html = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    assert 'name="stop_when_decided"' in html


# ---------------------------------------------------------------- alpha and guardrails


def settings_post(experiment, **changes):
    """The setup page's one form, as the page posts it, with `changes`."""
    data = {
        "name": experiment.name,
        "description": experiment.description,
        "repetitions": experiment.repetitions,
        "max_error_rate": experiment.max_error_rate,
        "evaluators": json.dumps(experiment.evaluators),
        "alpha": experiment.alpha,
        "guardrails": json.dumps(experiment.guardrails or []),
    }
    data.update(changes)
    return data


def field_html(html, name):
    """The markup of one field of the settings section, from its input to the next field."""
    rest = html[html.index(f'id="id_{name}"') :]
    return rest[: rest.index('<div class="field')]


def test_alpha_and_guardrails_save_after_the_baseline_ran(editor):
    experiment, *_ = make_with_results(editor.team)
    guardrails = [{"metric": "latency_ms", "statistic": "p95", "margin": 50}]
    response = editor.post(
        f"/experiments/{experiment.pk}/setup/save/", settings_post(experiment, alpha="0.01", guardrails=json.dumps(guardrails))
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    experiment.refresh_from_db()
    assert experiment.alpha == 0.01 and experiment.guardrails == [{**guardrails[0], "higher_is_better": False}]
    page = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    assert "99% CI" in page and "latency_ms p95" in page


def test_the_settings_show_alpha_and_guardrails(editor):
    experiment, *_ = make_with_results(editor.team)
    html = editor.get(f"/experiments/{experiment.pk}/setup/").content.decode()
    assert 'name="alpha"' in html and 'name="guardrails"' in html
    assert 'id="id_alpha"' in html and "disabled" not in html[html.index('id="id_alpha"') - 200 : html.index('id="id_alpha"')]


@pytest.mark.parametrize("alpha", ["0.5", "0", "abc", ""])
def test_a_bad_alpha_is_a_form_error_naming_the_field(editor, alpha):
    experiment, *_ = make_with_results(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/setup/save/", settings_post(experiment, alpha=alpha), HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    html = response.content.decode()
    assert '<ul class="errorlist"' in field_html(html, "alpha")
    experiment.refresh_from_db()
    assert experiment.alpha == 0.05


@pytest.mark.parametrize(
    ("guardrails", "message"),
    [
        ("[{", "Enter a valid JSON."),
        ('[{"metric": "latency_ms", "statistic": "p99", "margin": 1}]', "statistic"),
        ('[{"evaluator": "exact", "margin_pp": -1}]', "margin_pp"),
        ('{"metric": "latency_ms"}', "list"),
    ],
)
def test_bad_guardrails_are_a_form_error_naming_the_field(editor, guardrails, message):
    experiment, *_ = make_with_results(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/setup/save/", settings_post(experiment, guardrails=guardrails))
    assert response.status_code == 400
    html = response.content.decode()
    errors = field_html(html, "guardrails")
    assert '<ul class="errorlist"' in errors and message in errors
    experiment.refresh_from_db()
    assert experiment.guardrails == []


def test_the_settings_section_alone_takes_alpha(editor):
    experiment, *_ = make_with_results(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/setup/settings/", settings_post(experiment, alpha="0.1"))
    assert response.status_code == 302
    experiment.refresh_from_db()
    assert experiment.alpha == 0.1


# ---------------------------------------------------------------- the planner


def plan_query(**fields):
    asked = {"expected_pass_rate": "60", "min_difference_pp": "10", "alpha": "0.05", "power": "0.8", "k": "1"}
    asked.update(fields)
    return {f"plan-{key}": value for key, value in asked.items()}


def test_the_planner_answers_the_tasks_needed_by_htmx(editor):
    experiment = make_ready(editor.team)
    response = editor.get(f"/experiments/{experiment.pk}/setup/planner/", plan_query(), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    expected = stats.plan(0.6, 10, alpha=0.05, power=0.8, k=1)
    assert "<html" not in html and 'id="planner-answer"' in html
    assert f"<strong>{expected['tasks_needed']} tasks</strong>" in html and "Assuming each" in html


def test_the_planner_without_htmx_shows_the_setup_page_with_the_answer(editor):
    experiment = make_ready(editor.team)
    html = editor.get(f"/experiments/{experiment.pk}/setup/planner/", plan_query(k="3")).content.decode()
    expected = stats.plan(0.6, 10, alpha=0.05, power=0.8, k=3)
    assert 'id="setup-planner"' in html and f"<strong>{expected['tasks_needed']} tasks</strong>" in html


@pytest.mark.parametrize(
    ("field", "value"),
    [("expected_pass_rate", "120"), ("min_difference_pp", "0"), ("alpha", "0.9"), ("power", "x"), ("k", "0"), ("k", "")],
)
def test_bad_planner_input_names_the_field_never_a_500(editor, field, value):
    experiment = make_ready(editor.team)
    response = editor.get(f"/experiments/{experiment.pk}/setup/planner/", plan_query(**{field: value}), HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    html = response.content.decode()
    assert 'role="alert"' in html and 'id="planner-answer"' not in html
    assert f"{PlannerForm(prefix='plan')[field].label}: " in html


def test_the_planner_uses_the_noise_measured_on_a_baseline_with_repetitions(editor):
    from tests.webui.verdict_data import make_verdicts_experiment

    experiment, made = make_verdicts_experiment(editor.team, with_stopped=False)
    noise = stats.baseline_noise(results.task_summaries(results.run_outcomes(made["Baseline"])))
    query = plan_query(k="3", measured="on")
    html = editor.get(f"/experiments/{experiment.pk}/setup/planner/", query, HTTP_HX_REQUEST="true").content.decode()
    expected = stats.plan(0.6, 10, alpha=0.05, power=0.8, k=3, measured={"within_var": noise["within_var"]})
    assert f"<strong>{expected['tasks_needed']} tasks</strong>" in html and "Using the noise measured" in html
    page = editor.get(f"/experiments/{experiment.pk}/setup/").content.decode()
    assert 'name="plan-measured"' in page and "within-task variance" in page


def test_the_setup_page_offers_the_control_once_the_baseline_has_results(editor):
    experiment = make_ready(editor.team)
    assert 'id="setup-add-control"' not in editor.get(f"/experiments/{experiment.pk}/setup/").content.decode()
    experiment, *_ = make_with_results(editor.team)
    assert 'id="setup-add-control"' in editor.get(f"/experiments/{experiment.pk}/setup/").content.decode()
