"""The setup page's one save model: one Save for every section, a visible confirmation,
"run the baseline" saving first, and the same step numbering as the new-experiment page."""

import re
from html.parser import HTMLParser

import pytest

from experiments_app import actions
from experiments_app.models import Experiment, Run
from tests.factories import make_application, make_step, make_task
from tests.webui.conftest import make_ready, make_with_results

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


class SetupFields(HTMLParser):
    """What a browser would post with the page's save form: every enabled control with form="setup-form"."""

    def __init__(self):
        super().__init__()
        self.data, self.outside, self._select, self._textarea = [], [], None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("input", "textarea", "select") and attrs.get("name") and attrs.get("type") not in ("hidden", "submit", "search"):
            if attrs.get("form") != "setup-form":
                self.outside.append(attrs["name"])
                return
            if "disabled" in attrs:
                return
            if tag == "select":
                self._select = attrs["name"]
            elif tag == "textarea":
                self._textarea = [attrs["name"], ""]
            elif attrs.get("type") == "checkbox":
                if "checked" in attrs:
                    self.data.append((attrs["name"], attrs.get("value", "on")))
            else:
                self.data.append((attrs["name"], attrs.get("value", "")))
        elif tag == "option" and self._select and "selected" in attrs:
            self.data.append((self._select, attrs.get("value", "")))

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            name, text = self._textarea
            self.data.append((name, text.removeprefix("\n")))  # as a browser reads a textarea
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self._textarea[1] += data


def page_fields(client, experiment):
    parser = SetupFields()
    parser.feed(client.get(f"/experiments/{experiment.pk}/setup/").content.decode())
    return parser


def posted(fields, **changes):
    """The page's fields as a dict of lists, some changed (a list value for a multi-valued field)."""
    data = {}
    for name, value in fields.data:
        data.setdefault(name, []).append(value)
    data.update({name: value if isinstance(value, list) else [value] for name, value in changes.items()})
    return data


def draft(team):
    application = make_application(team)
    make_step(application, external_id="gen", config={"model": "m1", "temperature": 0.7})
    make_step(application, external_id="cls", config={"model": "m2"})
    for index in range(3):
        make_task(application, external_id=f"task{index}")
    return actions.create_experiment(application, name="Flow", description="Cooler is better.")


def test_every_field_of_the_sections_belongs_to_the_one_save_form(editor):
    experiment = make_ready(editor.team)
    fields = page_fields(editor, experiment)
    names = {name for name, _ in fields.data}
    assert {"name", "description", "steps", "main__temperature", "repetitions", "max_error_rate"} <= names
    planner = {f"plan-{name}" for name in ("expected_pass_rate", "min_difference_pp", "alpha", "power", "k", "measured")}
    assert set(fields.outside) <= {"q", "tag", "show", "add", "remove", "bulk"} | planner  # the task picker's and the planner's own forms
    html = editor.get(f"/experiments/{experiment.pk}/setup/").content.decode()
    assert html.count('type="submit" class="primary">Save</button>') == 1
    assert not re.search(r">Save (details|steps|task selection|baseline config|settings)<", html)


def test_one_save_saves_every_changed_section_and_says_so(editor):
    experiment = draft(editor.team)
    fields = page_fields(editor, experiment)
    data = posted(fields, name="Renamed", steps=["gen", "cls"], repetitions="3")
    response = editor.post(f"/experiments/{experiment.pk}/setup/save/", data, **HTMX)
    html = " ".join(response.content.decode().split())
    assert response.status_code == 200 and html.startswith('<div id="setup">')
    assert re.search(r"Saved ✓ at \d\d:\d\d:\d\d: name and hypothesis, evaluation settings, inference steps\.", html)
    experiment.refresh_from_db()
    assert (experiment.name, experiment.repetitions) == ("Renamed", 3)
    assert sorted(experiment.inference_steps.values_list("external_id", flat=True)) == ["cls", "gen"]
    assert experiment.baseline.config == {"gen": {"model": "m1", "temperature": 0.7}, "cls": {"model": "m2"}}


def test_a_save_without_changes_says_nothing_changed(editor):
    experiment = make_ready(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/setup/save/", posted(page_fields(editor, experiment)), **HTMX)
    assert "nothing had changed" in response.content.decode()


def test_saving_with_no_step_checked_says_so(editor):
    experiment = draft(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/setup/save/", posted(page_fields(editor, experiment), steps=[]), **HTMX)
    html = response.content.decode()
    assert "No inference step is selected: the baseline needs at least one." in html
    assert "No task is selected: the baseline needs at least one." in html


def test_a_refused_section_saves_nothing_and_keeps_every_edit_on_the_page(editor):
    experiment = make_ready(editor.team)
    data = posted(page_fields(editor, experiment), name="Renamed", main__temperature="9", repetitions="4")
    response = editor.post(f"/experiments/{experiment.pk}/setup/save/", data, **HTMX)
    html = response.content.decode()
    assert response.status_code == 400 and "Not saved: fix the fields marked above." in html
    assert 'value="Renamed"' in html and 'value="9"' in html and 'value="4"' in html  # the input is kept
    experiment.refresh_from_db()
    assert (experiment.name, experiment.repetitions) == ("Lower temperature", 1)


def test_a_section_the_domain_refuses_rolls_back_the_others(editor):
    experiment = draft(editor.team)
    actions.set_scope(experiment, steps=["gen"])
    experiment.refresh_from_db()
    # a model of 201 characters passes the form (no max there) but not the domain's rule
    data = posted(page_fields(editor, experiment), name="Renamed", gen__model="m" * 201)
    response = editor.post(f"/experiments/{experiment.pk}/setup/save/", data, **HTMX)
    assert response.status_code == 400
    experiment.refresh_from_db()
    assert experiment.name == "Flow" and experiment.baseline.config["gen"]["model"] == "m1"


def test_run_the_baseline_saves_the_edits_first(editor):
    experiment = make_ready(editor.team)
    data = posted(page_fields(editor, experiment), main__temperature="0.2", then="run")
    response = editor.post(f"/experiments/{experiment.pk}/setup/save/", data)
    assert response.status_code == 302 and response["Location"] == f"/experiments/{experiment.pk}/"
    run = Run.objects.get(experiment=experiment)
    assert run.config["main"]["temperature"] == 0.2  # sent with the edit, not without it
    experiment.refresh_from_db()
    assert experiment.status == "running_baseline"


def test_run_the_baseline_with_htmx_redirects_to_the_experiment_page(editor):
    experiment = make_ready(editor.team)
    data = posted(page_fields(editor, experiment), then="run")
    response = editor.post(f"/experiments/{experiment.pk}/setup/save/", data, **HTMX)
    assert response.status_code == 204 and response["HX-Redirect"] == f"/experiments/{experiment.pk}/"


def test_run_the_baseline_with_a_bad_edit_runs_nothing(editor):
    experiment = make_ready(editor.team)
    data = posted(page_fields(editor, experiment), main__temperature="9", then="run")
    assert editor.post(f"/experiments/{experiment.pk}/setup/save/", data, **HTMX).status_code == 400
    assert not Run.objects.filter(experiment=experiment).exists()


def test_run_the_baseline_before_a_task_is_selected_saves_and_says_why_it_did_not_run(editor):
    experiment = draft(editor.team)
    data = posted(page_fields(editor, experiment), steps=["gen"], then="run")
    html = editor.post(f"/experiments/{experiment.pk}/setup/save/", data, **HTMX).content.decode()
    assert "The baseline did not run: select at least one step and one task first." in html
    assert Experiment.objects.get(pk=experiment.pk).inference_steps.count() == 1  # the save itself stands


def test_after_the_lock_a_full_save_changes_what_may_change(editor):
    experiment, *_ = make_with_results(editor.team)
    data = posted(page_fields(editor, experiment), max_error_rate="0.3", name="Renamed")
    response = editor.post(f"/experiments/{experiment.pk}/setup/save/", data, **HTMX)
    assert response.status_code == 200
    experiment.refresh_from_db()
    assert (experiment.max_error_rate, experiment.name) == (0.3, "Renamed")


def test_step_numbering_is_the_same_on_the_new_experiment_and_setup_pages(editor):
    experiment = make_ready(editor.team)
    new = editor.get(f"/experiments/new/?application={experiment.application_id}").content.decode()
    setup = editor.get(f"/experiments/{experiment.pk}/setup/").content.decode()

    def steps(html):
        bar = html[html.index('<ol class="setup-steps"') : html.index("</ol>", html.index('<ol class="setup-steps"'))]
        return re.findall(r"\d · [A-Z][a-z ]+", bar)

    assert (
        steps(new)
        == steps(setup)
        == [
            "1 · Name and hypothesis",
            "2 · Inference steps",
            "3 · Tasks",
            "4 · Baseline config",
            "5 · Evaluation settings",
            "6 · Run the baseline",
        ]
    )
    for title in steps(setup):  # the setup page's sections carry the same numbers
        assert re.search(rf"<h2 id=\"h-[a-z]+\">{title}", setup), title


def test_numbers_are_written_as_people_do(editor):
    experiment = make_ready(editor.team)
    html = editor.get(f"/experiments/{experiment.pk}/setup/").content.decode()
    assert "at most 1,000,000" in html and "1e+06" not in html


def test_a_variant_value_is_written_as_people_do_in_the_tree(editor):
    experiment, *_ = make_with_results(editor.team)
    actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="max_tokens", value=1_000_000)
    actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="top_p", value=0.00001)
    html = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    assert "main.max_tokens = 1,000,000" in html and "0.00001" in html
    assert "1e+06" not in html and "1e-05" not in html.split('id="fig-pass-rate"')[0]
