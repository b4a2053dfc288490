"""Tasks: the add-task form, bulk import of uploaded or pasted JSONL/CSV, line numbers, re-imports, plurals."""

import html as htmllib
import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from experiments_app.models import Task
from tests.factories import make_application, make_task
from tests.webui.conftest import make_with_results

pytestmark = pytest.mark.django_db


@pytest.fixture
def application(editor):
    return make_application(editor.team)


def jsonl(*external_ids, **fields):
    return "\n".join(json.dumps({"external_id": external_id, "input": {"q": external_id}, **fields}) for external_id in external_ids) + "\n"


def paste(client, application, text, **data):
    return client.post(f"/applications/{application.pk}/tasks/import/", {"text": text, "on_existing": "refuse", **data})


def flashed(client, application):
    return htmllib.unescape(client.get(f"/applications/{application.pk}/tasks/").content.decode())


def problems(response):
    html = htmllib.unescape(response.content.decode())
    return re.findall(r"<li>\s*(.*?)\s*</li>", html[html.index('id="import-errors"') :].split("</ul>")[0], re.S)


def test_the_add_task_form_starts_from_an_empty_object(editor, application):
    html = editor.get(f"/applications/{application.pk}/tasks/").content.decode()
    assert re.search(r'<textarea name="input"[^>]*>\s*\{\}</textarea>', html)
    assert re.search(r'<textarea name="expected"[^>]*>\s*</textarea>', html)  # empty, not null


def test_pasted_jsonl_is_imported_and_one_task_reads_singular(editor, application):
    response = paste(editor, application, jsonl("only"))
    assert response.status_code == 302
    assert "Imported 1 task." in flashed(editor, application)
    assert Task.objects.filter(application=application, external_id="only").exists()


def test_pasted_csv_is_imported(editor, application):
    response = paste(editor, application, 'external_id,input,expected\nc1,"{""q"": 1}",Paris\nc2,"{""q"": 2}",Rome\n')
    assert response.status_code == 302
    assert "Imported 2 tasks." in flashed(editor, application)
    assert Task.objects.get(application=application, external_id="c1").expected == "Paris"


def test_import_errors_name_1_based_lines_and_are_all_listed(editor, application):
    rows = [json.dumps({"external_id": f"r{i}", "input": "not an object" if i % 2 else {"q": i}}) for i in range(301)]
    response = paste(editor, application, "\n".join(rows))
    listed = problems(response)
    assert response.status_code == 400 and len(listed) == 150  # every one of them, none cut off
    assert listed[0] == "Line 2 · input: A JSON object is required." and listed[-1].startswith("Line 300 · input")


def test_csv_errors_count_the_header_as_line_1(editor, application):
    response = paste(editor, application, 'external_id,input\na,{}\nb,"{nope"\n,{}\n')
    assert problems(response) == ["Line 3 · input: Not valid JSON: Expecting property name enclosed in double quotes."]
    response = paste(editor, application, "external_id,input\na,{}\n\n,{}\n")  # a blank line is skipped but counted
    assert problems(response) == ["Line 4 · external_id: A string of 1 to 200 characters is required."]


def test_a_repeated_external_id_names_the_line_it_repeats(editor, application):
    response = paste(editor, application, jsonl("a", "b", "a"))
    assert problems(response) == ["Line 3 · external_id: Repeats line 1."]


def test_reimporting_offers_to_skip_or_update_instead_of_an_error_per_task(editor, application):
    text = jsonl("a", "b", "c")
    assert paste(editor, application, text).status_code == 302
    response = paste(editor, application, text)
    html = htmllib.unescape(response.content.decode())
    assert response.status_code == 400 and "3 of these tasks already exist. Import again and:" in " ".join(html.split())
    assert 'name="again" value="skip"' in html and 'name="again" value="update"' in html
    response = paste(editor, application, jsonl("a", "b", "c", "d"), again="skip")
    assert response.status_code == 302
    assert "Imported 1 task; skipped 3 that already exist." in flashed(editor, application)


def test_an_uploaded_file_is_kept_as_text_so_the_offer_needs_no_new_upload(editor, application):
    make_task(application, external_id="a")
    upload = SimpleUploadedFile("tasks.jsonl", jsonl("a", "b").encode())
    response = editor.post(f"/applications/{application.pk}/tasks/import/", {"file": upload, "on_existing": "refuse"})
    html = htmllib.unescape(response.content.decode())
    textarea = re.search(r'<textarea name="text"[^>]*>(.*?)</textarea>', html, re.S).group(1)
    assert '"external_id": "b"' in textarea


def test_update_changes_unlocked_tasks_and_leaves_locked_ones(editor):
    experiment, *_ = make_with_results(editor.team)
    application = experiment.application
    make_task(application, external_id="free", input={"q": "old"})
    text = "\n".join(json.dumps({"external_id": ext, "input": {"q": "new"}, "name": "renamed"}) for ext in ("free", "t001", "fresh"))
    response = paste(editor, application, text, on_existing="update")
    assert response.status_code == 302
    assert "Imported 1 task; updated 1; left 1 locked task unchanged." in flashed(editor, application)
    assert Task.objects.get(application=application, external_id="free").input == {"q": "new"}
    locked = Task.objects.get(application=application, external_id="t001")
    assert locked.input != {"q": "new"} and locked.name != "renamed"


def test_an_import_without_a_file_or_text_says_so(editor, application):
    response = paste(editor, application, "  ")
    assert response.status_code == 400 and "Choose a file or paste tasks." in response.content.decode()
