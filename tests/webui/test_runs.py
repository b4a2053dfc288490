"""The run page, the test page with the baseline diff, run comparison and run exports."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from experiments_app import runs
from experiments_app.models import DeliveryAttempt, Test
from tests.webui.conftest import finish_run, make_ready, make_with_results

pytestmark = pytest.mark.django_db


def test_run_page_lists_tests_with_status_evaluators_latency_attempts(editor):
    _, _, _, run = make_with_results(editor.team)
    html = editor.get(f"/runs/{run.pk}/").content.decode()
    assert 'id="run-summary"' in html and 'id="run-table"' in html
    assert html.count('class="badge s-passed"') == 4
    assert "✓ exact_match" in html and "80 ms" in html


def test_run_table_fragment_for_htmx(editor):
    _, _, _, run = make_with_results(editor.team)
    response = editor.get(f"/runs/{run.pk}/?filter=passed", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert 'id="run-table"' in html and "<html" not in html and 'id="run-summary"' not in html
    assert "HX-Request" in response["Vary"]


@pytest.mark.parametrize("shown, count", [("all", 4), ("passed", 2), ("failed", 2), ("errored", 0)])
def test_run_page_filters_by_status(editor, shown, count):
    _, baseline_run, _, _ = make_with_results(editor.team)
    html = editor.get(f"/runs/{baseline_run.pk}/?filter={shown}", HTTP_HX_REQUEST="true").content.decode()
    assert html.count("/tests/") == count


def test_run_page_filters_improved_tasks_against_the_baseline(editor):
    _, _, _, run = make_with_results(editor.team)
    html = editor.get(f"/runs/{run.pk}/?filter=improved", HTTP_HX_REQUEST="true").content.decode()
    assert html.count("/tests/") == 2 and "t001" in html and "t003" in html and "t000" not in html
    assert editor.get(f"/runs/{run.pk}/?filter=regressed", HTTP_HX_REQUEST="true").content.decode().count("/tests/") == 0


def test_run_page_ignores_an_unknown_filter(editor):
    _, _, _, run = make_with_results(editor.team)
    html = editor.get(f"/runs/{run.pk}/?filter=drop-table", HTTP_HX_REQUEST="true").content.decode()
    assert html.count("/tests/") == 4


def test_run_page_paginates_and_keeps_queries_flat(editor, django_assert_max_num_queries):
    experiment = make_ready(editor.team, n_tasks=120)
    run = finish_run(runs.start_baseline_run(experiment), lambda ext: True)
    with django_assert_max_num_queries(14):
        html = editor.get(f"/runs/{run.pk}/").content.decode()
    assert html.count("/tests/") == 50 and "Page 1 of 3" in html
    assert editor.get(f"/runs/{run.pk}/?page=3", HTTP_HX_REQUEST="true").content.decode().count("/tests/") == 20


def test_run_summary_polls_while_active_and_stops_at_the_end(editor):
    experiment = make_ready(editor.team)
    run = runs.start_baseline_run(experiment)
    response = editor.get(f"/runs/{run.pk}/summary/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and b'hx-trigger="every 2s"' in response.content
    finish_run(run, lambda ext: True)
    response = editor.get(f"/runs/{run.pk}/summary/", HTTP_HX_REQUEST="true")
    assert response.status_code == 286 and response["HX-Trigger"] == "run-finished"
    assert b"every 2s" not in response.content


def test_test_page_shows_the_output_beside_the_baselines_with_differences(editor):
    _, baseline_run, _, run = make_with_results(editor.team)
    test = Test.objects.get(run=run, task_external_id="t001")
    html = editor.get(f"/runs/{run.pk}/tests/{test.pk}/").content.decode()
    assert 'id="output-diff"' in html
    assert 'class="c changed"' in html
    assert "t001 wrong" in html and "t001 right" in html  # baseline left, this run right
    assert "exact_match" in html and "latency_ms" in html


def test_test_page_lists_every_delivery_attempt(editor):
    _, _, _, run = make_with_results(editor.team)
    test = Test.objects.filter(run=run).first()
    DeliveryAttempt.objects.create(test=test, number=2, started_at=timezone.now(), status_code=503, duration_ms=40, error="HTTP 503")
    html = editor.get(f"/runs/{run.pk}/tests/{test.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="test-body"' in html and "<html" not in html
    assert "HTTP 503" in html and "503" in html and "200" in html


def test_test_of_another_run_is_not_found(editor):
    _, baseline_run, _, run = make_with_results(editor.team)
    test = Test.objects.filter(run=baseline_run).first()
    assert editor.get(f"/runs/{run.pk}/tests/{test.pk}/").status_code == 404


def test_baseline_test_page_has_nothing_to_compare(editor):
    _, baseline_run, _, _ = make_with_results(editor.team)
    test = Test.objects.filter(run=baseline_run).first()
    assert "Baseline (none to compare)" in editor.get(f"/runs/{baseline_run.pk}/tests/{test.pk}/").content.decode()


def test_compare_page_lists_improved_tasks_and_metric_deltas(editor):
    _, baseline_run, _, run = make_with_results(editor.team)
    html = editor.get(f"/runs/{run.pk}/compare/{baseline_run.pk}/").content.decode()
    improved = html[html.index('id="improved"') : html.index("</ul>", html.index('id="improved"'))]
    assert "t001" in improved and "t003" in improved
    assert "latency_ms" in html and ">−20<" in html


def test_compare_refuses_runs_of_two_experiments(editor):
    _, run_a, _, _ = make_with_results(editor.team)
    _, run_b, _, _ = make_with_results(editor.team)
    assert editor.get(f"/runs/{run_a.pk}/compare/{run_b.pk}/").status_code == 404


def test_run_export_csv_streams_every_test(editor):
    _, _, _, run = make_with_results(editor.team)
    response = editor.get(f"/runs/{run.pk}/export.csv")
    lines = b"".join(response.streaming_content).decode().strip().splitlines()
    assert lines[0].startswith("test,task,repetition,status")
    assert len(lines) == 5 and "passed" in lines[1]


def test_run_export_json(editor):
    _, _, _, run = make_with_results(editor.team)
    data = json.loads(editor.get(f"/runs/{run.pk}/export.json").content)
    assert data["run"]["status"] == "succeeded" and len(data["tests"]) == 4
    assert data["tests"][0]["output"] == {"answer": "t000 right"}


def test_a_silent_test_page_says_it_was_accepted_and_where_callbacks_go(editor, settings):
    settings.PUBLIC_URL = "https://dashboard.example"
    experiment = make_ready(editor.team, n_tasks=1)
    run = runs.start_baseline_run(experiment)
    now = timezone.now()
    Test.objects.filter(run=run).update(
        status="dispatched", attempts=1, accepted_at=now - timedelta(seconds=400), result_due_at=now - timedelta(seconds=1)
    )
    runs.sweep_tests(wake=lambda application_id: None)
    test = Test.objects.get(run=run)
    html = editor.get(f"/runs/{run.pk}/tests/{test.pk}/").content.decode()
    callback = f"https://dashboard.example/api/v1/tests/{test.pk}/result/"
    assert f"The application accepted it (202) at {test.accepted_at:%Y-%m-%d %H:%M:%S} UTC" in html
    assert f"no result arrived within result_timeout_seconds; callbacks go to {callback}" in html
    assert "no result arrived by callback" in html and "Not evaluated: no usable output." in html


def test_the_test_page_shows_the_request_as_sent_with_the_overrides(editor):
    _, baseline_run, _, run = make_with_results(editor.team)
    test = Test.objects.filter(run=run).first()
    html = editor.get(f"/runs/{run.pk}/tests/{test.pk}/").content.decode()
    assert 'id="test-request"' in html and "Request as sent" in html
    assert "&quot;overrides&quot;" in html and "&quot;temperature&quot;" in html
    assert f"/api/v1/tests/{test.pk}/result/" in html and "answered synchronously" in html
