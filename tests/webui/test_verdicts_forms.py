"""Issue 9's forms on the pages: the control variant, "stop when decided", alpha and guardrails,
and the planner — each with good and bad input, with and without htmx."""

import pytest

from experiments_app.models import Run, Variant
from tests.webui.conftest import make_ready, make_with_results

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
