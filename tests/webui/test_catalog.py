"""Steps and tasks tabs: search, tag filter, create, edit, bulk import with row errors."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from experiments_app.models import InferenceStep, Task
from tests.factories import make_application, make_step, make_task
from tests.webui.conftest import make_with_results

pytestmark = pytest.mark.django_db


@pytest.fixture
def application(editor):
    return make_application(editor.team)


def test_steps_tab_lists_and_searches(editor, application):
    make_step(application, external_id="response_generator")
    make_step(application, external_id="classifier")
    html = editor.get(f"/applications/{application.pk}/steps/?q=class", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="tab"' in html and "<html" not in html
    assert "classifier" in html and "response_generator" not in html


def test_create_a_step(editor, application):
    data = {"external_id": "gen", "name": "Generator", "description": "", "config": '{"model": "m", "temperature": 0.2}'}
    response = editor.post(f"/applications/{application.pk}/steps/", data)
    assert response.status_code == 302
    assert InferenceStep.objects.get(application=application, external_id="gen").config == {"model": "m", "temperature": 0.2}


def test_create_a_step_names_a_bad_config_value(editor, application):
    data = {"external_id": "gen", "config": '{"temperature": 5}'}
    response = editor.post(f"/applications/{application.pk}/steps/", data)
    assert response.status_code == 400 and "config.temperature" in response.content.decode()


def test_duplicate_step_is_a_form_error(editor, application):
    make_step(application, external_id="gen")
    response = editor.post(f"/applications/{application.pk}/steps/", {"external_id": "gen", "config": "{}"})
    assert response.status_code == 400 and b"already exists" in response.content


def test_edit_a_step(editor, application):
    step = make_step(application, external_id="gen")
    assert editor.get(f"/applications/{application.pk}/steps/{step.pk}/").status_code == 200
    response = editor.post(
        f"/applications/{application.pk}/steps/{step.pk}/", {"external_id": "gen", "name": "New name", "config": '{"model": "x"}'}
    )
    assert response.status_code == 302
    step.refresh_from_db()
    assert step.name == "New name" and step.config == {"model": "x"}


def test_viewer_cannot_create_steps_or_tasks(viewer):
    application = make_application(viewer.team)
    assert viewer.post(f"/applications/{application.pk}/steps/", {"external_id": "x", "config": "{}"}).status_code == 403
    assert viewer.post(f"/applications/{application.pk}/tasks/", {"external_id": "x", "input": "{}"}).status_code == 403
    assert b"Add a task" not in viewer.get(f"/applications/{application.pk}/tasks/").content


def test_tasks_tab_filters_by_tag_and_search(editor, application):
    make_task(application, external_id="capital-france", tags=["geo"])
    make_task(application, external_id="capital-spain", tags=["geo", "hard"])
    make_task(application, external_id="math-1", tags=["math"])
    html = editor.get(f"/applications/{application.pk}/tasks/?tag=geo").content.decode()
    table = html[html.index('id="task-table"') :]
    assert "capital-france" in table and "capital-spain" in table and "math-1" not in table
    html = editor.get(f"/applications/{application.pk}/tasks/?q=spain&tag=geo").content.decode()
    table = html[html.index('id="task-table"') :]
    assert "capital-spain" in table and "capital-france" not in table


def test_tasks_table_fragment_for_the_filter_bar(editor, application):
    make_task(application, external_id="a1")
    response = editor.get(f"/applications/{application.pk}/tasks/?q=a", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="task-table")
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="task-table"') and "a1" in html


def test_tasks_tab_paginates_with_flat_queries(editor, application, django_assert_max_num_queries):
    Task.objects.bulk_create([Task(application=application, external_id=f"t{index:04d}", input={"q": index}) for index in range(130)])
    with django_assert_max_num_queries(10):
        html = editor.get(f"/applications/{application.pk}/tasks/").content.decode()
    assert "Page 1 of 3" in html and "t0049" in html and "t0050" not in html


def test_create_a_task(editor, application):
    data = {
        "external_id": "capital-france",
        "name": "",
        "input": '{"question": "Capital of France?"}',
        "expected": '"Paris"',
        "tags": "geo, easy",
    }
    assert editor.post(f"/applications/{application.pk}/tasks/", data).status_code == 302
    task = Task.objects.get(external_id="capital-france")
    assert (task.input, task.expected, task.tags) == ({"question": "Capital of France?"}, "Paris", ["geo", "easy"])


def test_create_a_task_requires_an_object_input(editor, application):
    response = editor.post(f"/applications/{application.pk}/tasks/", {"external_id": "x", "input": "[1, 2]"})
    assert response.status_code == 400 and b"A JSON object is required." in response.content


def test_editing_a_locked_tasks_input_is_not_offered(editor):
    experiment, *_ = make_with_results(editor.team)
    task = experiment.tasks.first()
    url = f"/applications/{experiment.application_id}/tasks/{task.pk}/"
    assert "make a new task instead" in editor.get(url).content.decode()  # said before any edit
    editor.post(url, {"external_id": task.external_id, "input": '{"question": "changed"}'}, follow=True)
    task.refresh_from_db()
    assert task.input != {"question": "changed"}


def upload(client, application, name, content):
    return client.post(f"/applications/{application.pk}/tasks/import/", {"file": SimpleUploadedFile(name, content.encode())})


def test_import_jsonl(editor, application):
    lines = [json.dumps({"external_id": f"q{index}", "input": {"question": index}, "tags": ["bulk"]}) for index in range(3)]
    response = upload(editor, application, "tasks.jsonl", "\n".join(lines) + "\n")
    assert response.status_code == 302
    assert Task.objects.filter(application=application, tags__isnull=False).count() == 3


def test_import_csv(editor, application):
    content = 'external_id,name,input,expected,tags\nc1,First,"{""q"": 1}",Paris,geo|easy\nc2,,"{""q"": 2}","{""a"": 2}",\n'
    assert upload(editor, application, "tasks.csv", content).status_code == 302
    first, second = Task.objects.filter(application=application).order_by("external_id")
    assert (first.name, first.input, first.expected, first.tags) == ("First", {"q": 1}, "Paris", ["geo", "easy"])
    assert second.expected == {"a": 2}


def test_import_lists_row_errors_and_saves_nothing(editor, application):
    make_task(application, external_id="exists")
    lines = [
        json.dumps({"external_id": "ok", "input": {"q": 1}}),
        json.dumps({"external_id": "bad", "input": "not an object"}),
        "{broken json",
        json.dumps({"external_id": "exists", "input": {}}),
    ]
    response = upload(editor, application, "tasks.jsonl", "\n".join(lines))
    html = response.content.decode()
    assert response.status_code == 400
    assert 'id="import-errors"' in html and "Line 3: Not valid JSON" in html and "tasks[" not in html
    assert Task.objects.filter(application=application).count() == 1


def test_import_shape_errors_are_listed_by_row(editor, application):
    lines = [json.dumps({"external_id": "ok", "input": {"q": 1}}), json.dumps({"external_id": "", "input": []})]
    html = upload(editor, application, "tasks.jsonl", "\n".join(lines)).content.decode()
    assert "Line 2 · external_id" in html and "Line 2 · input" in html
    assert not Task.objects.filter(application=application).exists()


def test_import_csv_without_header_is_refused(editor, application):
    response = upload(editor, application, "tasks.csv", "1,2,3\n")
    assert response.status_code == 400 and b"header row" in response.content


def test_import_rejects_non_utf8(editor, application):
    response = editor.post(f"/applications/{application.pk}/tasks/import/", {"file": SimpleUploadedFile("t.jsonl", b"\xff\xfe\x00bad")})
    assert response.status_code == 400 and b"not UTF-8" in response.content
