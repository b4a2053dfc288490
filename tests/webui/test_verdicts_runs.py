"""Issue 9 on the run page: the live panel of an active variant run, stopped early and skipped
tests, and the task-label filter (stable_pass, stable_fail, flaky, improved, regressed)."""

import uuid

import pytest

from experiments_app import results
from tests.webui.verdict_data import active_variant_run, make_verdicts_experiment

pytestmark = pytest.mark.django_db


@pytest.fixture
def verdicts(editor):
    return make_verdicts_experiment(editor.team)


def shown_tasks(html):
    """The external ids of the tests the run table lists."""
    table = html[html.index("<tbody>", html.index('id="run-table"')) :]
    table = table[: table.index("</tbody>")]
    return {chunk.split("</a>")[0].rsplit(">", 1)[1] for chunk in table.split("/tests/")[1:]}


def test_the_label_filter_lists_only_the_tasks_with_that_label(editor, verdicts):
    experiment, made = verdicts
    run = made["Baseline"]
    html = editor.get(f"/runs/{run.pk}/?label=flaky", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in html and 'id="run-table"' in html
    assert shown_tasks(html) == {f"t{index:03d}" for index in range(30, 40)}
    assert html.count("/tests/") == 30  # every repetition of the ten flaky tasks


@pytest.mark.parametrize("label", ["stable_pass", "stable_fail", "flaky", "improved", "regressed"])
def test_each_label_matches_tasks_labelled(editor, verdicts, label):
    experiment, made = verdicts
    run = made["temp 0.5"]
    html = editor.get(f"/runs/{run.pk}/?label={label}", HTTP_HX_REQUEST="true").content.decode()
    tasks = {task.pk: task.external_id for task in experiment.tasks.all()}
    assert shown_tasks(html) == {tasks[uuid.UUID(task)] for task in results.tasks_labelled(run, label)}


def test_the_label_bar_counts_each_label_and_marks_the_chosen_one(editor, verdicts):
    _, made = verdicts
    html = editor.get(f"/runs/{made['temp 0.5'].pk}/?label=improved").content.decode()
    bar = " ".join(html[html.index('id="label-filters"') : html.index("</nav>", html.index('id="label-filters"'))].split())
    assert 'data-label="flaky"' in bar and "flaky 10" in bar
    assert 'data-label="improved" href="/runs/' in bar and 'hx-push-url="true" aria-current="true">improved 6</a>' in bar


def test_an_unknown_label_shows_every_test(editor, verdicts):
    _, made = verdicts
    response = editor.get(f"/runs/{made['Baseline'].pk}/?label=shaky", HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and response.content.decode().count("/tests/") == 50  # one page


def test_the_old_improved_filter_reads_as_the_label(editor, verdicts):
    _, made = verdicts
    run = made["temp 0.5"]
    old = editor.get(f"/runs/{run.pk}/?filter=improved", HTTP_HX_REQUEST="true").content.decode()
    new = editor.get(f"/runs/{run.pk}/?label=improved", HTTP_HX_REQUEST="true").content.decode()
    assert shown_tasks(old) == shown_tasks(new) and len(shown_tasks(new)) == 6


def test_a_stopped_run_says_so_and_filters_its_skipped_tests(editor, verdicts):
    _, made = verdicts
    run = made["temp 0.1"]
    html = editor.get(f"/runs/{run.pk}/").content.decode()
    assert 'id="stopped-early"' in html and f"{run.skipped} tests skipped" in " ".join(html.split())
    share = run.skipped / (run.total + run.skipped)
    assert f"{100 * share:.0f}% of the planned tests saved" in html  # no cost reported here, so no dollars
    assert "at what this run's tests cost" not in html
    skipped = editor.get(f"/runs/{run.pk}/?filter=skipped", HTTP_HX_REQUEST="true").content.decode()
    assert skipped.count("s-skipped") == min(run.skipped, 50)


def test_the_live_panel_shows_the_running_delta_in_its_confidence_sequence(editor, verdicts):
    experiment, _ = verdicts
    run = active_variant_run(experiment)
    html = " ".join(editor.get(f"/runs/{run.pk}/").content.decode().split())
    assert 'id="live-panel"' in html
    assert "18/40 tasks compared" in html
    assert "95% confidence sequence" in html and 'class="live-bar"' in html
    # the summary fragment, polled every 2 s while the run is active, carries it too
    fragment = editor.get(f"/runs/{run.pk}/summary/").content.decode()
    assert 'id="live-panel"' in fragment and 'hx-trigger="every 2s"' in fragment


def test_the_live_panel_says_when_the_verdict_is_decided(editor, verdicts):
    _, made = verdicts
    html = " ".join(editor.get(f"/runs/{made['temp 0.1'].pk}/").content.decode().split())
    assert "decided: better" in html


def test_the_baseline_run_has_no_live_panel(editor, verdicts):
    _, made = verdicts
    assert 'id="live-panel"' not in editor.get(f"/runs/{made['Baseline'].pk}/").content.decode()


def test_compare_shows_the_paired_delta_with_its_interval(editor, verdicts):
    _, made = verdicts
    new, old = made["temp 0.3"], made["Baseline"]
    body = results.compare_runs(new, old)
    html = " ".join(editor.get(f"/runs/{new.pk}/compare/{old.pk}/").content.decode().split()).replace("\u2212", "-")
    delta = html[html.index('id="compare-delta"') :]
    assert f"Δ <strong>{body['delta_pp']:+.1f} pt</strong>" in delta
    assert f"(95% CI {body['delta_ci_low']:+.1f} to {body['delta_ci_high']:+.1f} pt)" in delta
