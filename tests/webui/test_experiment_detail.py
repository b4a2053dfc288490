"""The experiment page: header actions, progress polling, tree, charts, results table, lifecycle."""

import json

import pytest

from experiments_app import actions, runs
from experiments_app.models import Run, Variant
from tests.webui.conftest import finish_run, make_ready, make_with_results

pytestmark = pytest.mark.django_db


def fragment_ids(html):
    return {marker for marker in ('id="experiment-header"', 'id="progress"', 'id="results"') if marker in html}


def test_page_shows_header_tree_charts_and_table(editor):
    experiment, _, variant, _ = make_with_results(editor.team)
    page = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    assert fragment_ids(page) == {'id="experiment-header"', 'id="progress"', 'id="results"'}
    assert "Lower temperature" in page and "Cooler is better." in page
    assert 'id="variant-tree"' in page and "main.temperature = 0.3" in page
    assert 'id="fig-pass-rate"' in page and 'id="fig-delta"' in page
    assert 'id="results-table"' in page and "100.0%" in page and "50.0%" in page
    assert "+50.0 pt" in page.replace("\u2212", "-")


def test_htmx_request_gets_only_the_results_fragment(editor):
    experiment, *_ = make_with_results(editor.team)
    response = editor.get(f"/experiments/{experiment.pk}/", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert fragment_ids(html) == {'id="results"'}
    assert "<html" not in html
    assert "HX-Request" in response["Vary"]


def test_chart_figures_carry_intervals_and_the_baseline_line(editor):
    experiment, *_ = make_with_results(editor.team)
    html = editor.get(f"/experiments/{experiment.pk}/results/", HTTP_HX_REQUEST="true").content.decode()
    start = html.index('<script id="fig-pass-rate" type="application/json">') + len('<script id="fig-pass-rate" type="application/json">')
    figure = json.loads(html[start : html.index("</script>", start)])
    assert figure["data"][0]["x"] == ["Baseline", "temp 0.3"]
    assert figure["data"][0]["error_y"]["arrayminus"][0] > 0
    assert figure["layout"]["shapes"][0]["line"]["dash"] == "dash"


def test_page_before_any_result_shows_an_empty_chart_note(editor):
    experiment = make_ready(editor.team)
    page = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    assert "Charts appear once the baseline has results." in page
    assert "not run" in page


def test_header_fragment_renders_alone(editor):
    experiment = make_ready(editor.team)
    html = editor.get(f"/experiments/{experiment.pk}/header/", HTTP_HX_REQUEST="true").content.decode()
    assert fragment_ids(html) == {'id="experiment-header"'}
    assert "Run baseline" in html and 'hx-trigger="experiment-changed from:body, run-finished from:body"' in html


@pytest.mark.parametrize(
    "status, expected, absent",
    [
        ("baseline_pending", ["Run baseline", "Archive", "Set up"], ["Complete", "Reopen", "Cancel run"]),
        ("idle", ["Complete", "Archive"], ["Run baseline", "Reopen"]),
        ("baseline_failed", ["Retry baseline", "Reopen", "Archive"], ["Complete"]),
        ("archived", [], ["Archive", "Run baseline", "Complete"]),
    ],
)
def test_header_offers_only_the_legal_lifecycle_actions(editor, status, expected, absent):
    from experiments_app.models import Experiment

    experiment = make_ready(editor.team)
    Experiment.objects.filter(pk=experiment.pk).update(status=status)
    html = editor.get(f"/experiments/{experiment.pk}/header/").content.decode()
    for label in expected:
        assert label in html
    for label in absent:
        assert label not in html


def test_run_baseline_with_htmx_answers_an_event(editor, django_capture_on_commit_callbacks):
    experiment = make_ready(editor.team)
    with django_capture_on_commit_callbacks() as callbacks:
        response = editor.post(f"/experiments/{experiment.pk}/run-baseline/", HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert response["HX-Trigger"] == "experiment-changed"
    assert len(callbacks) == 1  # the dispatch is enqueued on commit
    experiment.refresh_from_db()
    assert experiment.status == "running_baseline"


def test_run_baseline_without_htmx_redirects_with_a_message(editor):
    experiment = make_ready(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/run-baseline/", follow=True)
    assert response.redirect_chain[-1][0] == f"/experiments/{experiment.pk}/"
    assert b"Baseline run started." in response.content


def test_refused_transition_is_a_clear_message_not_a_traceback(editor):
    experiment, *_ = make_with_results(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/run-baseline/", HTTP_HX_REQUEST="true")
    assert response.status_code == 409
    assert response["HX-Retarget"] == "#flash"
    assert b"Cannot go from idle to running_baseline" in response.content
    assert b"Traceback" not in response.content


def test_refused_transition_without_htmx_redirects_with_the_message(editor):
    experiment, *_ = make_with_results(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/reopen/", follow=True)
    assert response.status_code == 200
    assert b"Cannot go from idle to baseline_pending" in response.content


def test_progress_polls_while_a_run_is_active(editor):
    experiment = make_ready(editor.team)
    run = runs.start_baseline_run(experiment)
    response = editor.get(f"/experiments/{experiment.pk}/progress/", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'hx-trigger="every 2s"' in html and f"?run={run.pk}" in html
    assert "0/4" in html


def test_progress_stops_polling_and_announces_the_end_of_the_watched_run(editor):
    experiment = make_ready(editor.team)
    run = finish_run(runs.start_baseline_run(experiment), lambda ext: True)
    response = editor.get(f"/experiments/{experiment.pk}/progress/?run={run.pk}", HTTP_HX_REQUEST="true")
    assert response.status_code == 286
    assert response["HX-Trigger"] == "run-finished"
    html = response.content.decode()
    assert "every 2s" not in html and "succeeded" in html


def test_progress_without_a_run_is_an_idle_placeholder(editor):
    experiment = make_ready(editor.team)
    response = editor.get(f"/experiments/{experiment.pk}/progress/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b"every 2s" not in response.content and b'id="progress"' in response.content


def test_progress_ignores_a_malformed_run_parameter(editor):
    experiment = make_ready(editor.team)
    response = editor.get(f"/experiments/{experiment.pk}/progress/?run=nope", HTTP_HX_REQUEST="true")
    assert response.status_code == 286


def test_cancel_run_from_the_page(editor):
    experiment = make_ready(editor.team)
    run = runs.start_baseline_run(experiment)
    assert "Cancel run" in editor.get(f"/experiments/{experiment.pk}/header/").content.decode()
    response = editor.post(f"/runs/{run.pk}/cancel/", HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    run.refresh_from_db()
    experiment.refresh_from_db()
    assert run.status == "cancelled" and experiment.status == "baseline_failed"


def test_cancelling_an_ended_run_is_refused_with_a_message(editor):
    experiment, baseline_run, *_ = make_with_results(editor.team)
    response = editor.post(f"/runs/{baseline_run.pk}/cancel/", HTTP_HX_REQUEST="true")
    assert response.status_code == 409
    assert b"already ended" in response.content


def test_run_a_variant_from_its_tree_node(editor):
    experiment, _, variant, _ = make_with_results(editor.team)
    child = actions.create_variant(experiment, parent=variant, inference_step="main", parameter="model", value="gpt-4o")
    response = editor.post(f"/variants/{child.pk}/run/", HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert Run.objects.filter(variant=child, status="queued").exists()


def test_tree_nests_children_under_their_parent(editor):
    experiment, _, variant, _ = make_with_results(editor.team)
    actions.create_variant(experiment, parent=variant, inference_step="main", parameter="model", value="gpt-4o", name="gpt-4o")
    html = editor.get(f"/experiments/{experiment.pk}/results/").content.decode()
    tree = html[html.index('id="variant-tree"') : html.index("</ul>", html.index('id="variant-tree"'))]
    assert tree.index("Baseline") < tree.index("temp 0.3") < tree.index("gpt-4o")
    assert tree.count("└") == 2


def test_complete_with_a_winner_then_archive(editor):
    experiment, _, variant, _ = make_with_results(editor.team)
    form = editor.get(f"/experiments/{experiment.pk}/complete/").content.decode()
    assert "temp 0.3" in form
    response = editor.post(f"/experiments/{experiment.pk}/complete/", {"winner": str(variant.pk)})
    assert response.status_code == 302
    experiment.refresh_from_db()
    assert experiment.status == "completed" and experiment.winner_id == variant.pk
    assert "winner: temp 0.3" in editor.get(f"/experiments/{experiment.pk}/").content.decode()
    editor.post(f"/experiments/{experiment.pk}/archive/", HTTP_HX_REQUEST="true")
    experiment.refresh_from_db()
    assert experiment.status == "archived"


def test_complete_form_rejects_an_unknown_winner(editor):
    experiment, *_ = make_with_results(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/complete/", {"winner": "not-a-variant"})
    assert response.status_code == 400
    experiment.refresh_from_db()
    assert experiment.status == "idle"


def test_complete_form_fragment_for_htmx(editor):
    experiment, *_ = make_with_results(editor.team)
    html = editor.get(f"/experiments/{experiment.pk}/complete/", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="complete"' in html and "<html" not in html


def test_delete_a_variant_without_runs(editor):
    experiment, _, variant, _ = make_with_results(editor.team)
    child = actions.create_variant(experiment, parent=variant, inference_step="main", parameter="model", value="gpt-4o")
    html = editor.get(f"/experiments/{experiment.pk}/results/").content.decode()
    assert f"/variants/{child.pk}/delete/" in html and f"/variants/{variant.pk}/delete/" not in html
    assert editor.post(f"/variants/{child.pk}/delete/", HTTP_HX_REQUEST="true").status_code == 204
    assert not Variant.objects.filter(pk=child.pk).exists()


@pytest.mark.parametrize(
    "sort, first", [("-pass_rate", "temp 0.3"), ("pass_rate", "Baseline"), ("name", "Baseline"), ("-name", "temp 0.3")]
)
def test_results_table_sorts_by_allowed_keys(editor, sort, first):
    experiment, *_ = make_with_results(editor.team)
    html = editor.get(f"/experiments/{experiment.pk}/results/?sort={sort}").content.decode()
    body = html[html.index("<tbody>", html.index('id="results-table"')) :]
    names = [name for name in ("temp 0.3", "Baseline") if name in body]
    assert min(names, key=body.index) == first


def test_results_table_ignores_a_sort_key_outside_the_allow_list(editor):
    experiment, *_ = make_with_results(editor.team)
    response = editor.get(f"/experiments/{experiment.pk}/results/?sort=-variant__experiment__team__name")
    assert response.status_code == 200
    assert 'aria-sort="descending">Pass rate' in response.content.decode()


def test_page_queries_do_not_grow_with_variants(editor, django_assert_max_num_queries):
    experiment, _, variant, _ = make_with_results(editor.team)
    for index in range(15):
        actions.create_variant(experiment, parent=variant, inference_step="main", parameter="max_tokens", value=100 + index)
    with django_assert_max_num_queries(20):
        response = editor.get(f"/experiments/{experiment.pk}/")
    assert response.content.decode().count("data-variant=") == 17


def test_export_results_as_csv(editor):
    experiment, *_ = make_with_results(editor.team)
    response = editor.get(f"/experiments/{experiment.pk}/results.csv")
    assert response["Content-Type"].startswith("text/csv")
    lines = response.content.decode().strip().splitlines()
    assert lines[0].startswith("variant,name,parent,is_baseline,step,parameter,value")
    assert len(lines) == 3 and "temp 0.3" in lines[2] and "temperature" in lines[2]


def test_export_results_as_json(editor):
    experiment, *_ = make_with_results(editor.team)
    data = json.loads(editor.get(f"/experiments/{experiment.pk}/results.json").content)
    assert data["baseline"]["pass_rate"] == 0.5
    assert data["variants"][0]["name"] == "temp 0.3" and data["variants"][0]["pass_rate"] == 1.0


def test_export_refuses_an_unknown_format(editor):
    experiment, *_ = make_with_results(editor.team)
    assert editor.get(f"/experiments/{experiment.pk}/results.xml").status_code == 404
