"""Renaming and deleting applications, steps, tasks and experiments from the pages, and locked tasks marked up front."""

import re

import pytest

from experiments_app import actions, runs
from experiments_app.models import Application, Experiment, InferenceStep, Task, Test
from experiments_app.results import store_summary
from tests.factories import make_application, make_step, make_task
from tests.webui.conftest import make_ready, make_with_results

pytestmark = pytest.mark.django_db


def text(response):
    return " ".join(response.content.decode().replace("&ldquo;", "“").replace("&rdquo;", "”").split())


def test_deleting_an_application_says_what_goes_with_it_then_deletes(admin):
    experiment, *_ = make_with_results(admin.team)
    application = experiment.application
    url = f"/applications/{application.pk}/delete/"
    page = text(admin.get(url))
    assert "Delete application “" in page
    assert "its 1 inference step and 4 tasks" in page
    assert "its 1 experiment, with their 2 runs and 8 test results" in page
    response = admin.post(url)
    assert response.status_code == 302 and response["Location"] == "/applications/"
    assert not Application.objects.filter(pk=application.pk).exists()


def test_an_application_with_a_running_experiment_says_why_it_cannot_go(admin):
    experiment = make_ready(admin.team)
    runs.start_baseline_run(experiment)
    response = admin.get(f"/applications/{experiment.application_id}/delete/")
    assert response.status_code == 409 and "is running; cancel its run first" in text(response)
    assert "Delete application</button>" not in text(response)
    admin.post(f"/applications/{experiment.application_id}/delete/")
    assert Application.objects.filter(pk=experiment.application_id).exists()


def test_only_admins_delete_applications_and_the_page_offers_it_to_them(admin, editor):
    application = make_application(admin.team)
    assert 'id="delete-link"' in admin.get(f"/applications/{application.pk}/").content.decode()
    assert 'id="delete-link"' not in editor.get(f"/applications/{application.pk}/").content.decode()
    assert editor.get(f"/applications/{application.pk}/delete/").status_code == 403
    assert editor.post(f"/applications/{application.pk}/delete/").status_code == 403


def test_a_step_in_an_experiments_scope_cannot_be_deleted_and_the_page_says_where(editor):
    experiment = make_ready(editor.team, name="Scoped")
    step = InferenceStep.objects.get(application=experiment.application)
    response = editor.get(f"/applications/{experiment.application_id}/steps/{step.pk}/delete/")
    assert response.status_code == 409 and "in the scope of 1 experiment (“Scoped”); remove it there first" in text(response)
    assert editor.post(f"/applications/{experiment.application_id}/steps/{step.pk}/delete/").status_code == 302
    assert InferenceStep.objects.filter(pk=step.pk).exists()


def test_an_unused_step_is_deleted_from_its_page(editor):
    application = make_application(editor.team)
    step = make_step(application, external_id="spare")
    assert (
        f"/applications/{application.pk}/steps/{step.pk}/delete/"
        in editor.get(f"/applications/{application.pk}/steps/{step.pk}/").content.decode()
    )
    assert "Nothing else is deleted." in text(editor.get(f"/applications/{application.pk}/steps/{step.pk}/delete/"))
    response = editor.post(f"/applications/{application.pk}/steps/{step.pk}/delete/")
    assert response.status_code == 302 and not InferenceStep.objects.filter(pk=step.pk).exists()


def test_deleting_a_task_says_it_leaves_selections_and_results_keep_their_copy(editor):
    experiment = make_ready(editor.team)  # not locked: its baseline has not run
    task = Task.objects.get(application=experiment.application, external_id="t001")
    url = f"/applications/{experiment.application_id}/tasks/{task.pk}/delete/"
    page = text(editor.get(url))
    assert "its place in the task selection of 1 experiment" in page
    assert editor.post(url).status_code == 302 and not Task.objects.filter(pk=task.pk).exists()


def test_a_task_of_a_locked_experiment_cannot_be_deleted_and_the_page_says_so(editor):
    experiment, *_ = make_with_results(editor.team)
    task = Task.objects.get(application=experiment.application, external_id="t001")
    page = text(editor.get(f"/applications/{experiment.application_id}/tasks/{task.pk}/delete/"))
    assert "used by locked experiment “Lower temperature”; archive it first" in page
    assert "The 2 test results that ran it keep their own copy of its input and expected." not in page  # refused: nothing else said


def test_deleting_an_experiment_says_what_goes_and_the_header_offers_rename_and_delete(editor):
    experiment, *_ = make_with_results(editor.team)
    header = editor.get(f"/experiments/{experiment.pk}/header/").content.decode()
    assert f'href="/experiments/{experiment.pk}/setup/#setup-details"' in header and ">Rename…<" in header
    assert f'href="/experiments/{experiment.pk}/delete/"' in header
    page = text(editor.get(f"/experiments/{experiment.pk}/delete/"))
    assert "its baseline and 1 variant" in page and "its 2 runs and 8 test results" in page
    assert "Its application, steps and tasks stay." in page
    assert editor.post(f"/experiments/{experiment.pk}/delete/")["Location"] == "/experiments/"
    assert not Experiment.objects.filter(pk=experiment.pk).exists()


def test_a_running_experiment_cannot_be_deleted(editor):
    experiment = make_ready(editor.team)
    runs.start_baseline_run(experiment)
    assert "Delete…" not in editor.get(f"/experiments/{experiment.pk}/header/").content.decode()
    assert editor.get(f"/experiments/{experiment.pk}/delete/").status_code == 409
    editor.post(f"/experiments/{experiment.pk}/delete/")
    assert Experiment.objects.filter(pk=experiment.pk).exists()


def test_a_viewer_cannot_delete(viewer, editor):
    experiment, *_ = make_with_results(editor.team)
    assert viewer.get(f"/experiments/{experiment.pk}/delete/").status_code == 403
    assert viewer.post(f"/experiments/{experiment.pk}/delete/").status_code == 403


def test_an_experiment_is_renamed_from_its_setup_page_after_the_lock(editor):
    experiment, *_ = make_with_results(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/setup/details/", {"name": "Renamed", "description": "New"})
    assert response.status_code == 302
    experiment.refresh_from_db()
    assert experiment.name == "Renamed"


def test_a_step_is_renamed_from_its_page(editor):
    application = make_application(editor.team)
    step = make_step(application, external_id="old", config={})
    response = editor.post(f"/applications/{application.pk}/steps/{step.pk}/", {"external_id": "new", "name": "New", "config": "{}"})
    assert response.status_code == 302
    step.refresh_from_db()
    assert step.external_id == "new"


def test_locked_tasks_are_marked_in_the_list_and_on_their_page_before_any_edit(editor):
    experiment, *_ = make_with_results(editor.team)
    free = make_task(experiment.application, external_id="zz-free")
    listing = editor.get(f"/applications/{experiment.application_id}/tasks/").content.decode()
    rows = {
        re.search(r'<td class="mono">([^<{]+)', row).group(1).strip(): row for row in listing.split("<tr>")[2:] if 'class="mono"' in row
    }
    assert "🔒 locked" in rows["t001"] and "🔒 locked" not in rows["zz-free"]
    task = Task.objects.get(application=experiment.application, external_id="t001")
    page = editor.get(f"/applications/{experiment.application_id}/tasks/{task.pk}/").content.decode()
    assert "Used by locked experiment “Lower temperature”" in page.replace("&ldquo;", "“").replace("&rdquo;", "”")
    assert re.search(r'<textarea[^>]*name="input"[^>]*disabled', page) and re.search(r'<textarea[^>]*name="expected"[^>]*disabled', page)
    assert not re.search(r'<input[^>]*name="name"[^>]*disabled', page)  # the name and tags stay editable
    free_page = editor.get(f"/applications/{experiment.application_id}/tasks/{free.pk}/").content.decode()
    assert "locked" not in free_page.split("<main")[1].split("Edit task")[1].split("</h2>")[0]


def test_saving_a_locked_task_keeps_its_input_and_changes_its_name(editor):
    experiment, *_ = make_with_results(editor.team)
    task = Task.objects.get(application=experiment.application, external_id="t001")
    data = {"external_id": "t001", "name": "Renamed", "input": '{"changed": true}', "expected": "1", "tags": "odd"}
    response = editor.post(f"/applications/{experiment.application_id}/tasks/{task.pk}/", data)
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.name == "Renamed" and task.input != {"changed": True}


def test_a_step_of_a_locked_experiment_shows_its_external_id_locked(editor):
    experiment, *_ = make_with_results(editor.team)
    step = InferenceStep.objects.get(application=experiment.application)
    page = editor.get(f"/applications/{experiment.application_id}/steps/{step.pk}/").content.decode()
    assert re.search(r'<input[^>]*name="external_id"[^>]*disabled', page) and 'id="locked-reason"' in page
    assert actions  # the actions refuse the same (tests/experiments_app/test_catalog.py)


def test_the_winner_dropdown_shows_each_variants_pass_rate_and_delta(editor):
    experiment, *_ = make_with_results(editor.team)
    html = editor.get(f"/experiments/{experiment.pk}/complete/").content.decode()
    options = re.findall(r"<option[^>]*>([^<]*)</option>", html)
    assert "temp 0.3 — 100% pass rate, +50.0 pt vs baseline" in options
    assert "Baseline — 50% pass rate" in options and "No winner" in options


def test_compare_page_links_changed_tasks_and_formats_numbers_by_magnitude(editor):
    experiment, baseline_run, _, run = make_with_results(editor.team)
    Test.objects.filter(run=run).update(metrics={"cost_usd": 0.00042, "latency_ms": 812.4})
    Test.objects.filter(run=baseline_run).update(metrics={"cost_usd": 0.0003, "latency_ms": 100})
    store_summary(run)
    store_summary(baseline_run)
    html = editor.get(f"/runs/{run.pk}/compare/{baseline_run.pk}/").content.decode()
    improved = html[html.index('id="improved"') : html.index("</ul>", html.index('id="improved"'))]
    test = Test.objects.get(run=run, task_external_id="t001")
    old = Test.objects.get(run=baseline_run, task_external_id="t001")
    assert f'href="/runs/{run.pk}/tests/{test.pk}/"' in improved and f'href="/runs/{baseline_run.pk}/tests/{old.pk}/"' in improved
    metrics = re.sub(r">\s+<", "><", " ".join(html[html.index('id="metric-deltas"') :].split()))
    expected = '<td>cost_usd</td><td class="num">$0.0003</td><td class="num">$0.00042</td><td class="num">+$0.00012</td>'
    assert expected in metrics
    assert '<td class="num">812</td>' in metrics and "0.000<" not in metrics
