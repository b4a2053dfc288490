"""The branch form: typed value widget, inherited value, no-op refusal, creation."""

import pytest

from experiments_app.models import Variant
from tests.webui.conftest import make_ready, make_with_results

pytestmark = pytest.mark.django_db


def form_url(experiment, **params):
    from urllib.parse import urlencode

    return f"/experiments/{experiment.pk}/variants/new/?{urlencode(params)}"


def test_form_fragment_shows_the_inherited_value(editor):
    experiment, _, variant, _ = make_with_results(editor.team)
    response = editor.get(form_url(experiment, parent=variant.pk, parameter="temperature"), HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert 'id="inherited-value">0.3<' in html  # temp 0.3 overrides the baseline's 0.7


def test_form_without_htmx_is_a_full_page(editor):
    experiment, *_ = make_with_results(editor.team)
    html = editor.get(form_url(experiment)).content.decode()
    assert "<html" in html and "Branch from <em>Baseline</em>" in html


@pytest.mark.parametrize(
    "parameter, marker",
    [
        ("temperature", 'type="number" name="value"'),
        ("top_p", "data-slider"),
        ("max_tokens", 'type="number" name="value"'),
        ("verbosity", '<select name="value"'),
        ("system", '<textarea name="value"'),
        ("model", 'type="text" name="value"'),
    ],
)
def test_value_widget_fits_the_parameter_type(editor, parameter, marker):
    experiment, *_ = make_with_results(editor.team)
    html = editor.get(form_url(experiment, parameter=parameter), HTTP_HX_REQUEST="true").content.decode()
    assert marker in html


def test_fraction_widgets_are_sliders_and_integers_are_not(editor):
    experiment, *_ = make_with_results(editor.team)
    assert "data-slider" in editor.get(form_url(experiment, parameter="temperature")).content.decode()
    assert "data-slider" not in editor.get(form_url(experiment, parameter="max_tokens")).content.decode()


def test_creating_a_variant_triggers_a_refresh(editor):
    experiment, _, variant, _ = make_with_results(editor.team)
    data = {"parent": variant.pk, "inference_step": "main", "parameter": "model", "value": "gpt-4o", "name": ""}
    response = editor.post(f"/experiments/{experiment.pk}/variants/new/", data, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert response["HX-Trigger"] == "experiment-changed"
    child = Variant.objects.get(parent=variant)
    assert (child.parameter, child.value, child.name) == ("model", "gpt-4o", "main model gpt-4o")


def test_creating_a_variant_without_htmx_redirects_to_the_experiment(editor):
    experiment, *_ = make_with_results(editor.team)
    data = {"parent": experiment.baseline.pk, "inference_step": "main", "parameter": "max_tokens", "value": "900"}
    response = editor.post(f"/experiments/{experiment.pk}/variants/new/", data)
    assert response.status_code == 302 and response["Location"] == f"/experiments/{experiment.pk}/"
    assert Variant.objects.filter(experiment=experiment, parameter="max_tokens", value=900).exists()


def test_no_op_variant_is_refused_with_the_field_named(editor):
    experiment, _, variant, _ = make_with_results(editor.team)
    data = {"parent": variant.pk, "inference_step": "main", "parameter": "temperature", "value": "0.3"}
    response = editor.post(f"/experiments/{experiment.pk}/variants/new/", data, HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    assert "already has here" in response.content.decode()
    assert not Variant.objects.filter(parent=variant).exists()


def test_out_of_range_value_is_a_form_error(editor):
    experiment, *_ = make_with_results(editor.team)
    data = {"parent": experiment.baseline.pk, "inference_step": "main", "parameter": "temperature", "value": "3.5"}
    response = editor.post(f"/experiments/{experiment.pk}/variants/new/", data, HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    assert b"errorlist" in response.content


def test_unknown_step_is_a_form_error(editor):
    experiment, *_ = make_with_results(editor.team)
    data = {"parent": experiment.baseline.pk, "inference_step": "nope", "parameter": "model", "value": "x"}
    response = editor.post(f"/experiments/{experiment.pk}/variants/new/", data)
    assert response.status_code == 400


def test_branching_before_the_baseline_has_results_is_refused(editor):
    experiment = make_ready(editor.team)
    data = {"parent": experiment.baseline.pk, "inference_step": "main", "parameter": "model", "value": "gpt-4o"}
    response = editor.post(f"/experiments/{experiment.pk}/variants/new/", data, HTTP_HX_REQUEST="true")
    assert response.status_code == 409
    assert b"once the baseline has results" in response.content


def test_parent_from_another_experiment_is_not_found(editor):
    experiment, *_ = make_with_results(editor.team)
    other, *_ = make_with_results(editor.team)
    assert editor.get(form_url(experiment, parent=other.baseline.pk)).status_code == 404


def test_malformed_parent_is_not_found(editor):
    experiment, *_ = make_with_results(editor.team)
    assert editor.get(form_url(experiment, parent="not-a-uuid")).status_code == 404
