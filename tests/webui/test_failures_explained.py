"""Failures explained where they happen (issue 11): failed runs, awaiting callbacks, delivery failures, stale flashes."""

import html as htmllib
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from experiments_app import actions, runs
from experiments_app.models import DeliveryAttempt, Run, Test
from experiments_app.models import TestStatus as Status
from experiments_app.runs import complete_run
from tests.webui.conftest import finish_run, make_ready, make_with_results

pytestmark = pytest.mark.django_db


def test_with_only_a_baseline_the_delta_chart_is_replaced_by_a_sentence(editor):
    experiment = make_ready(editor.team)
    finish_run(runs.start_baseline_run(experiment), lambda ext: True)
    html = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    assert 'id="fig-pass-rate"' in html
    assert 'id="fig-delta"' not in html and 'id="chart-delta"' not in html
    assert "once a variant has a result" in html


def test_a_second_run_answers_409_with_a_message_placed_in_flash_without_retargeting(editor):
    experiment, _, variant, _ = make_with_results(editor.team)
    htmx = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "flash"}
    assert editor.post(f"/variants/{variant.pk}/run/", **htmx).status_code == 204
    response = editor.post(f"/variants/{variant.pk}/run/", **htmx)
    assert response.status_code == 409
    assert "One run at a time: the experiment is running variant now." in response.content.decode()
    assert "HX-Retarget" not in response  # #flash was resolved when the form was sent; it may be gone by now


def test_experiment_page_buttons_are_disabled_while_their_request_is_in_flight(editor):
    experiment, *_ = make_with_results(editor.team)
    html = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    forms = [chunk for chunk in html.split("<form")[1:] if "hx-post" in chunk.split(">")[0]]
    assert forms and all('hx-disabled-elt="find button"' in chunk.split(">")[0] for chunk in forms)
    # Lifecycle buttons answer in the message area; the dry-run form swaps its own panel (errors included).
    lifecycle = [chunk for chunk in forms if 'hx-target="#dry-runs"' not in chunk.split(">")[0]]
    assert lifecycle and all('hx-target="#flash"' in chunk.split(">")[0] for chunk in lifecycle)


def close_with_errors(run, errored, *, accepted=False):
    """Error the tests of `run` whose external id is in `errored` (as silent 202s when `accepted`),
    pass the others, and close the run as the engine would."""
    now = timezone.now()
    for test in Test.objects.filter(run=run):
        if test.task_external_id in errored:
            Test.objects.filter(pk=test.pk).update(
                status=Status.ERRORED,
                error="The application accepted it (202); no result arrived." if accepted else "HTTP 500",
                attempts=1,
                accepted_at=now - timedelta(seconds=30) if accepted else None,
                completed_at=now,
            )
            if not accepted:
                DeliveryAttempt.objects.create(test=test, number=1, started_at=now, status_code=500, error="HTTP 500")
        else:
            Test.objects.filter(pk=test.pk).update(status=Status.PASSED, output="ok", has_output=True, completed_at=now)
    assert complete_run(run.pk)
    run.refresh_from_db()
    return run


def page_text(response):
    """The page's HTML with entities decoded and whitespace collapsed."""
    return htmllib.unescape(" ".join(response.content.decode().split()))


REASON = "3 of 4 tests errored (75%), above the experiment's max error rate of 20%."


def test_a_failed_baseline_says_why_and_links_to_its_errored_tests_after_a_reload(editor):
    experiment = make_ready(editor.team)
    run = close_with_errors(runs.start_baseline_run(experiment), {"t000", "t001", "t002"})
    assert run.status == "failed"
    for path in (f"/experiments/{experiment.pk}/", f"/experiments/{experiment.pk}/progress/"):
        html = page_text(editor.get(path, HTTP_HX_REQUEST="true" if "progress" in path else ""))
        assert REASON in html, path
        assert f'href="/runs/{run.pk}/?filter=errored"' in html and "See the 3 errored tests" in html


def test_the_reason_keeps_the_limit_the_run_was_judged_by(editor):
    experiment = make_ready(editor.team)
    run = close_with_errors(runs.start_baseline_run(experiment), {"t000", "t001", "t002"})
    actions.update_experiment(experiment, max_error_rate=0.9)  # editable after the lock
    assert REASON in page_text(editor.get(f"/runs/{run.pk}/"))


def test_the_failure_note_goes_once_another_run_starts(editor):
    experiment = make_ready(editor.team)
    close_with_errors(runs.start_baseline_run(experiment), {"t000", "t001", "t002"})
    experiment.refresh_from_db()
    runs.start_baseline_run(experiment)  # retry
    assert REASON not in editor.get(f"/experiments/{experiment.pk}/").content.decode()


def test_a_results_row_whose_run_failed_is_marked(editor):
    experiment, _, variant, _ = make_with_results(editor.team)
    other = actions.create_variant(
        experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.5, name="temp 0.5"
    )
    failed = close_with_errors(runs.start_variant_run(other), {"t000", "t001"})
    html = editor.get(f"/experiments/{experiment.pk}/results/", HTTP_HX_REQUEST="true").content.decode()
    table = html[html.index('id="results-table"') :]
    rows = {row.split("</tr>")[0].count("run failed"): row for row in table.split("<tr>")[2:]}
    assert set(rows) == {0, 1}
    assert "temp 0.5" in rows[1] and f'href="/runs/{failed.pk}/?filter=errored"' in rows[1]
    assert "2 of 4 tests errored" in rows[1]


def test_the_run_page_says_why_it_failed(editor):
    experiment = make_ready(editor.team)
    run = close_with_errors(runs.start_baseline_run(experiment), {"t000", "t001", "t002"})
    html = page_text(editor.get(f"/runs/{run.pk}/"))
    assert REASON in html and f'href="/runs/{run.pk}/?filter=errored"' in html


def test_progress_counts_tests_awaiting_their_callback_and_when_the_first_times_out(editor):
    experiment = make_ready(editor.team)
    run = runs.start_baseline_run(experiment)
    now = timezone.now()
    waiting = Test.objects.filter(run=run, task_external_id__in=["t000", "t001"])
    waiting.update(status=Status.DISPATCHED, attempts=1, accepted_at=now, result_due_at=now + timedelta(seconds=41))
    Test.objects.filter(run=run, task_external_id="t002").update(status=Status.DISPATCHED, attempts=1)  # in flight, not accepted
    html = editor.get(f"/experiments/{experiment.pk}/progress/?run={run.pk}", HTTP_HX_REQUEST="true").content.decode()
    assert re.search(r"2 awaiting callback · time out in (40|41) s", " ".join(html.split()))
    assert re.search(r"2 awaiting callback · time out in (40|41) s", " ".join(editor.get(f"/runs/{run.pk}/").content.decode().split()))


def test_the_application_page_counts_result_timeouts_as_delivery_failures(editor):
    experiment = make_ready(editor.team)
    close_with_errors(runs.start_baseline_run(experiment), {"t000", "t001", "t002"}, accepted=True)
    html = page_text(editor.get(f"/applications/{experiment.application_id}/"))
    section = html[html.index('id="recent-failures"') :]
    assert "0 failed attempts · 3 result timeouts" in section
    assert section.count('class="result-timeout"') == 3 and "202, no result" in section
    assert "No failed deliveries" not in section
    assert "failed." in section and REASON in section


def test_the_application_page_never_says_no_failed_deliveries_while_its_last_run_failed(editor):
    experiment = make_ready(editor.team)
    run = runs.start_baseline_run(experiment)
    # errored before any delivery (e.g. the address was refused): no attempt, no 202
    Test.objects.filter(run=run).update(status=Status.ERRORED, error="Refused address.", completed_at=timezone.now())
    assert complete_run(run.pk)
    section = editor.get(f"/applications/{experiment.application_id}/").content.decode()
    section = " ".join(section[section.index('id="recent-failures"') :].split())
    assert "No failed deliveries." not in section
    assert "4 of 4 tests errored (100%)" in section


def test_run_started_message_is_dropped_once_the_run_has_ended(editor):
    experiment = make_ready(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/run-baseline/")
    assert response.status_code == 302
    finish_run(Run.objects.get(experiment=experiment), lambda ext: True)
    assert "Baseline run started." not in editor.get(f"/experiments/{experiment.pk}/").content.decode()


def test_run_started_message_shows_while_the_run_is_active(editor):
    experiment = make_ready(editor.team)
    editor.post(f"/experiments/{experiment.pk}/run-baseline/")
    assert "Baseline run started." in editor.get(f"/experiments/{experiment.pk}/").content.decode()
