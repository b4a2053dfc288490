"""Failures explained where they happen (issue 11): failed runs, awaiting callbacks, delivery failures, stale flashes."""

import pytest

from experiments_app import runs
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
    assert all('hx-target="#flash"' in chunk.split(">")[0] for chunk in forms)
