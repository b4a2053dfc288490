"""The experiments list and the new-experiment flow: name → steps → tasks → baseline config → run."""

import re

import pytest

from experiments_app import actions
from experiments_app.models import Experiment, Role
from tests.factories import make_application, make_step, make_task
from tests.webui.conftest import make_ready, make_with_results, signed_in

pytestmark = pytest.mark.django_db

SAVE_BAR = 'id="setup-save"'


def test_list_shows_status_badges_and_last_activity(editor):
    make_ready(editor.team, name="Alpha")
    html = editor.get("/experiments/").content.decode()
    assert "Alpha" in html and 'class="badge s-baseline_pending"' in html and "ago" in html


def test_list_filters_by_status(editor):
    make_ready(editor.team, name="Pending one")
    make_with_results(editor.team)
    html = editor.get("/experiments/?status=idle").content.decode()
    assert "Lower temperature" in html and "Pending one" not in html


def test_list_ignores_an_unknown_status(editor):
    make_ready(editor.team, name="Pending one")
    assert b"Pending one" in editor.get("/experiments/?status=bogus").content


def test_list_searches_names(editor):
    make_ready(editor.team, name="Alpha")
    make_ready(editor.team, name="Beta")
    html = editor.get("/experiments/?q=alp", HTTP_HX_REQUEST="true").content.decode()
    assert "Alpha" in html and "Beta" not in html


def test_list_fragment_for_htmx(editor):
    make_ready(editor.team)
    response = editor.get("/experiments/", HTTP_HX_REQUEST="true")
    assert b'id="experiment-table"' in response.content and b"<html" not in response.content


def test_list_queries_do_not_grow_with_experiments(editor, django_assert_max_num_queries):
    application = make_application(editor.team)
    for index in range(30):
        actions.create_experiment(application, name=f"E{index}")
    with django_assert_max_num_queries(8):
        response = editor.get("/experiments/")
    assert response.content.decode().count('class="badge s-draft"') == 30


def test_list_paginates(editor):
    application = make_application(editor.team)
    for index in range(55):
        actions.create_experiment(application, name=f"E{index}")
    html = editor.get("/experiments/").content.decode()
    assert "Page 1 of 2" in html
    assert "Page 2 of 2" in editor.get("/experiments/?page=2").content.decode()


def test_viewer_cannot_open_the_new_experiment_form(viewer):
    assert viewer.get("/experiments/new/").status_code == 403
    assert b"New experiment" not in viewer.get("/experiments/").content


def test_new_experiment_goes_to_the_setup(editor):
    application = make_application(editor.team)
    response = editor.post("/experiments/new/", {"application": application.pk, "name": "Try it", "description": "Hypothesis"})
    experiment = Experiment.objects.get(name="Try it")
    assert response["Location"] == f"/experiments/{experiment.pk}/setup/"
    assert experiment.created_by == editor.user and experiment.status == "draft"


def test_new_experiment_needs_a_name(editor):
    application = make_application(editor.team)
    response = editor.post("/experiments/new/", {"application": application.pk, "name": ""})
    assert response.status_code == 400 and b"errorlist" in response.content


def test_new_experiment_refuses_another_teams_application(editor, outsider):
    theirs = make_application(outsider.team)
    response = editor.post("/experiments/new/", {"application": theirs.pk, "name": "Sneaky"})
    assert response.status_code == 400
    assert not Experiment.objects.filter(name="Sneaky").exists()


def draft(team):
    application = make_application(team)
    make_step(application, external_id="gen", config={"model": "m1", "temperature": 0.7})
    make_step(application, external_id="cls", config={"model": "m2"})
    for index in range(4):
        make_task(application, external_id=f"task{index}", tags=["smoke"] if index < 2 else [])
    return actions.create_experiment(application, name="Flow")


def test_setup_flow_picks_steps_tasks_and_baseline_config(editor):
    experiment = draft(editor.team)
    url = f"/experiments/{experiment.pk}/setup/"
    assert editor.get(url).status_code == 200
    response = editor.post(url + "steps/", {"steps": ["gen"]}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and b'id="setup"' in response.content
    editor.post(url + "tasks/pick/", {"bulk": "only-matching", "tag": "smoke"}, HTTP_HX_REQUEST="true")
    experiment.refresh_from_db()
    assert experiment.status == "baseline_pending"
    assert sorted(experiment.tasks.values_list("external_id", flat=True)) == ["task0", "task1"]
    html = editor.get(url).content.decode()
    assert 'name="gen__temperature"' in html and 'value="0.7"' in html  # prefilled from production config
    response = editor.post(url + "baseline/", {"gen__model": "m1", "gen__temperature": "0.5", "gen__verbosity": "low"})
    assert response.status_code == 302
    assert experiment.baseline.config == {"gen": {"model": "m1", "temperature": 0.5, "verbosity": "low"}}
    editor.post(url + "settings/", {"repetitions": "2", "max_error_rate": "0.1", "evaluators": '[{"type": "exact_match"}]'})
    experiment.refresh_from_db()
    assert (experiment.repetitions, experiment.max_error_rate, experiment.evaluators) == (2, 0.1, [{"type": "exact_match"}])
    response = editor.post(f"/experiments/{experiment.pk}/run-baseline/")
    experiment.refresh_from_db()
    assert experiment.status == "running_baseline" and experiment.runs.get().total == 4


def test_setup_selects_all_tasks_after_a_hand_pick(editor):
    experiment = draft(editor.team)
    url = f"/experiments/{experiment.pk}/setup/"
    task = experiment.application.tasks.get(external_id="task3")
    editor.post(url + "tasks/pick/", {"add": str(task.pk)})
    assert list(experiment.tasks.values_list("external_id", flat=True)) == ["task3"]
    html = editor.get(url).content.decode()
    assert "1 of 4 tasks selected" in html and 'id="all-selected"' not in html
    editor.post(url + "tasks/pick/", {"bulk": "add-matching"})
    assert experiment.tasks.count() == 4
    html = editor.get(url).content.decode()
    assert "4 of 4 tasks selected" in html and 'id="all-selected"' in html


def test_nothing_on_the_setup_page_claims_all_tasks_while_none_is_selected(editor):
    experiment = draft(editor.team)
    html = editor.get(f"/experiments/{experiment.pk}/setup/").content.decode()
    assert "0 of 4 tasks selected" in html and "0 of 4 selected" in html
    assert 'id="all-selected"' not in html and not re.search(r"<input[^>]*checked", html)


def test_select_only_the_tasks_a_tag_matches_replaces_the_selection(editor):
    experiment = draft(editor.team)
    url = f"/experiments/{experiment.pk}/setup/"
    editor.post(url + "tasks/pick/", {"bulk": "add-matching"})
    editor.post(url + "tasks/pick/", {"bulk": "only-matching", "tag": "smoke"})
    assert sorted(experiment.tasks.values_list("external_id", flat=True)) == ["task0", "task1"]


def test_setup_names_a_bad_baseline_value(editor):
    experiment = draft(editor.team)
    url = f"/experiments/{experiment.pk}/setup/"
    editor.post(url + "steps/", {"steps": ["gen"]})
    response = editor.post(url + "baseline/", {"gen__temperature": "9"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and b"errorlist" in response.content


def test_setup_names_a_bad_evaluator(editor):
    experiment = draft(editor.team)
    response = editor.post(
        f"/experiments/{experiment.pk}/setup/settings/", {"repetitions": "1", "max_error_rate": "0.2", "evaluators": '[{"type": "magic"}]'}
    )
    assert response.status_code == 400 and b"evaluators[0].type" in response.content


def test_setup_shows_locked_fields_once_the_baseline_ran(editor):
    experiment, *_ = make_with_results(editor.team)
    html = editor.get(f"/experiments/{experiment.pk}/setup/").content.decode()
    assert "locked since the baseline ran" in html
    assert "disabled" in input_tag(html, "steps") and "disabled" in input_tag(html, "main__temperature")


def test_setup_refuses_changes_once_locked(editor):
    experiment, *_ = make_with_results(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/setup/steps/", {"steps": []}, HTTP_HX_REQUEST="true")
    assert response.status_code == 409 and b"locked" in response.content


def test_setup_posts_need_the_editor_role(editor):
    experiment = draft(editor.team)
    viewer = signed_in(editor.team, Role.VIEWER)
    assert viewer.post(f"/experiments/{experiment.pk}/setup/steps/", {"steps": ["gen"]}).status_code == 403
    assert viewer.get(f"/experiments/{experiment.pk}/setup/").status_code == 200


def test_details_stay_editable_after_the_baseline_ran(editor):
    experiment, *_ = make_with_results(editor.team)
    html = editor.get(f"/experiments/{experiment.pk}/setup/").content.decode()
    assert SAVE_BAR in html and "disabled" not in input_tag(html, "name") and "disabled" in input_tag(html, "steps")
    response = editor.post(f"/experiments/{experiment.pk}/setup/details/", {"name": "Renamed", "description": "New hypothesis"})
    assert response.status_code == 302
    experiment.refresh_from_db()
    assert (experiment.name, experiment.description) == ("Renamed", "New hypothesis")


def test_details_need_a_name(editor):
    experiment = draft(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/setup/details/", {"name": "", "description": "x"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and b"errorlist" in response.content
    experiment.refresh_from_db()
    assert experiment.name == "Flow"


def test_details_of_an_archived_experiment_are_read_only(editor):
    experiment = draft(editor.team)
    actions.archive_experiment(experiment)
    html = editor.get(f"/experiments/{experiment.pk}/setup/").content.decode()
    assert SAVE_BAR not in html and "disabled" in input_tag(html, "name")
    response = editor.post(f"/experiments/{experiment.pk}/setup/details/", {"name": "X"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 409


def test_details_posts_need_the_editor_role(editor):
    experiment = draft(editor.team)
    viewer = signed_in(editor.team, Role.VIEWER)
    assert viewer.post(f"/experiments/{experiment.pk}/setup/details/", {"name": "X"}).status_code == 403


def test_another_teams_details_cannot_be_changed(editor, outsider):
    experiment = draft(editor.team)
    assert outsider.post(f"/experiments/{experiment.pk}/setup/details/", {"name": "Taken"}).status_code == 404
    experiment.refresh_from_db()
    assert experiment.name == "Flow"


def input_tag(html, name):
    """The opening tag of the form control named `name`."""
    return re.search(rf'<(?:input|textarea|select)[^>]*name="{name}"[^>]*>', html).group(0)


def test_settings_page_keeps_max_error_rate_editable_after_the_baseline_ran(editor):
    experiment, *_ = make_with_results(editor.team)
    html = editor.get(f"/experiments/{experiment.pk}/setup/").content.decode()
    assert SAVE_BAR in html
    assert "disabled" not in input_tag(html, "max_error_rate")
    assert "disabled" in input_tag(html, "repetitions") and "disabled" in input_tag(html, "evaluators")


def test_max_error_rate_changes_after_the_baseline_ran_and_the_rest_stays(editor):
    experiment, *_ = make_with_results(editor.team)
    before = (experiment.repetitions, experiment.evaluators)
    response = editor.post(
        f"/experiments/{experiment.pk}/setup/settings/",
        {"max_error_rate": "0.35", "repetitions": "7", "evaluators": '[{"type": "contains"}]'},
    )
    assert response.status_code == 302
    experiment.refresh_from_db()
    assert experiment.max_error_rate == 0.35 and (experiment.repetitions, experiment.evaluators) == before


def test_htmx_max_error_rate_change_after_the_lock_answers_the_setup_fragment(editor):
    experiment, *_ = make_with_results(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/setup/settings/", {"max_error_rate": "0.05"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith('<div id="setup">')
    assert 'value="0.05"' in input_tag(html, "max_error_rate")
    experiment.refresh_from_db()
    assert experiment.max_error_rate == 0.05


@pytest.mark.parametrize("value", ["1.5", "-0.1", "lots", ""])
def test_a_bad_max_error_rate_after_the_lock_is_a_form_error(editor, value):
    experiment, *_ = make_with_results(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/setup/settings/", {"max_error_rate": value}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 400
    section = html[html.index('id="setup-settings"') : html.index('id="setup-run"')]
    assert "has-error" in section and "errorlist" in section
    experiment.refresh_from_db()
    assert experiment.max_error_rate == 0.2


def test_settings_of_an_archived_experiment_are_read_only(editor):
    experiment, *_ = make_with_results(editor.team)
    actions.archive_experiment(experiment)
    html = editor.get(f"/experiments/{experiment.pk}/setup/").content.decode()
    assert SAVE_BAR not in html and "disabled" in input_tag(html, "max_error_rate")
    response = editor.post(f"/experiments/{experiment.pk}/setup/settings/", {"max_error_rate": "0.5"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 409 and b"archived" in response.content
    experiment.refresh_from_db()
    assert experiment.max_error_rate == 0.2


def test_a_viewer_cannot_change_settings_after_the_lock(editor):
    experiment, *_ = make_with_results(editor.team)
    viewer = signed_in(editor.team, Role.VIEWER)
    html = viewer.get(f"/experiments/{experiment.pk}/setup/").content.decode()
    assert SAVE_BAR not in html and "disabled" in input_tag(html, "max_error_rate")
    assert viewer.post(f"/experiments/{experiment.pk}/setup/settings/", {"max_error_rate": "0.5"}).status_code == 403
    experiment.refresh_from_db()
    assert experiment.max_error_rate == 0.2


def test_all_settings_stay_editable_before_the_lock(editor):
    experiment = draft(editor.team)
    html = editor.get(f"/experiments/{experiment.pk}/setup/").content.decode()
    assert all("disabled" not in input_tag(html, name) for name in ("repetitions", "max_error_rate", "evaluators"))
