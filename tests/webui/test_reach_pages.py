"""Issue 13 on the pages: pull mode on the application page, dry runs, per-step detail and the trade-off chart."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from experiments_app import actions, runs
from experiments_app.models import Delivery, DeliveryAttempt, Run, RunStatus, Test
from experiments_app.models import TestStatus as Status
from experiments_app.runs import complete_run
from tests.webui.conftest import make_ready, make_with_results
from webui import charts

pytestmark = pytest.mark.django_db


def finish_with_steps(run, passes, *, latency, cost, model="gpt-4o-mini", extra_step=False):
    """Close `run` as the engine would, every test reporting a `main` step (and cost unless None)."""
    now = timezone.now()
    for test in Test.objects.filter(run=run):
        ok = passes(test.task_external_id)
        step = {
            "model": model,
            "output": f"{test.task_external_id} draft",
            "latency_ms": latency,
            "prompt_tokens": 20,
            "completion_tokens": 10,
        }
        metrics = {"latency_ms": latency}
        if cost is not None:
            step["cost_usd"] = cost
            metrics["cost_usd"] = cost
        steps = {"main": step}
        if extra_step:
            steps["reranker"] = {"model": "tiny", "latency_ms": 5}
        Test.objects.filter(pk=test.pk).update(
            status=Status.PASSED if ok else Status.FAILED,
            output={"answer": test.task_external_id},
            has_output=True,
            attempts=1,
            metrics=metrics,
            steps=steps,
            evaluations=[{"name": "exact_match", "passed": ok}],
            dispatched_at=now,
            completed_at=now,
        )
    assert complete_run(run.pk)
    run.refresh_from_db()
    return run


def with_step_results(team, *, variant_cost=0.002):
    """Baseline passes even tasks at $0.001 and 100 ms; variant `gpt-4o` passes all at `variant_cost` and 150 ms."""
    experiment = make_ready(team, n_tasks=4)
    baseline_run = finish_with_steps(runs.start_baseline_run(experiment), lambda ext: int(ext[1:]) % 2 == 0, latency=100, cost=0.001)
    experiment.refresh_from_db()
    variant = actions.create_variant(
        experiment, parent=experiment.baseline, inference_step="main", parameter="model", value="gpt-4o", name="bigger"
    )
    variant_run = finish_with_steps(
        runs.start_variant_run(variant), lambda ext: True, latency=150, cost=variant_cost, model="gpt-4o", extra_step=True
    )
    experiment.refresh_from_db()
    return experiment, baseline_run, variant, variant_run


# ------------------------------------------------------------------ application page: pull mode


def test_an_admin_switches_an_application_to_pull_on_its_page(admin):
    experiment = make_ready(admin.team)
    application = experiment.application
    response = admin.post(
        f"/applications/{application.pk}/",
        {
            "name": application.name,
            "delivery": "pull",
            "webhook_url": "",
            "timeout_seconds": 30,
            "result_timeout_seconds": 300,
            "max_concurrency": 4,
        },
    )
    assert response.status_code == 302
    application.refresh_from_db()
    assert application.delivery == Delivery.PULL and application.webhook_url == ""
    html = admin.get(f"/applications/{application.pk}/").content.decode()
    assert 'id="pull-mode"' in html and f"--application {application.pk}" in html and "pending-tests/" in html
    assert "0 of at most 4" in html


def test_the_pull_panel_counts_waiting_and_leased_tests(admin):
    experiment = make_ready(admin.team, n_tasks=3)
    actions.update_application(experiment.application, {"delivery": "pull"})
    runs.start_baseline_run(experiment)
    runs.pull_tests(experiment.application_id, limit=1, lease_seconds=60)
    html = admin.get(f"/applications/{experiment.application_id}/").content.decode()
    assert "2 tests" in html and "1 of at most 20" in html


def test_switching_delivery_during_a_run_is_a_form_error_not_a_crash(admin, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    experiment = make_ready(admin.team)
    application = experiment.application
    runs.start_baseline_run(experiment)
    response = admin.post(
        f"/applications/{application.pk}/",
        {
            "name": application.name,
            "delivery": "pull",
            "webhook_url": application.webhook_url,
            "timeout_seconds": 30,
            "result_timeout_seconds": 300,
            "max_concurrency": 20,
        },
    )
    assert response.status_code == 400
    assert "A run of this application is active" in response.content.decode()
    application.refresh_from_db()
    assert application.delivery == Delivery.PUSH


# ------------------------------------------------------------------ experiment page: dry runs


def test_the_experiment_page_offers_try_on_k_tasks_to_editors_only(editor, viewer):
    experiment, *_ = make_with_results(editor.team)
    html = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    assert 'id="dry-runs"' in html and 'id="dry-run-form"' in html and "Try on k tasks" in html
    assert "No dry runs yet." in html
    assert 'id="dry-run-form"' not in viewer.get(f"/experiments/{experiment.pk}/").content.decode()


def test_try_on_k_tasks_with_htmx_starts_a_dry_run_and_answers_the_panel(editor):
    experiment, _, variant, _ = make_with_results(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/dry-runs/", {"variant": str(variant.pk), "tasks": 2}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    run = Run.objects.get(dry_run=True)
    assert run.variant == variant and run.total == 2
    assert f"/runs/{run.pk}/" in html and "every 2s" in html and "<html" not in html  # polls while it runs
    experiment.refresh_from_db()
    assert experiment.status == "idle"


def test_try_on_k_tasks_without_htmx_opens_the_dry_run(editor):
    experiment, *_ = make_with_results(editor.team)
    response = editor.post(f"/experiments/{experiment.pk}/dry-runs/", {"variant": str(experiment.baseline.pk), "tasks": 1})
    run = Run.objects.get(dry_run=True)
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"


def test_try_on_k_tasks_refuses_bad_input_in_the_form(editor):
    experiment, *_ = make_with_results(editor.team)
    response = editor.post(
        f"/experiments/{experiment.pk}/dry-runs/", {"variant": str(experiment.baseline.pk), "tasks": 0}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 400 and "errorlist" in response.content.decode()
    assert not Run.objects.filter(dry_run=True).exists()


def test_try_on_an_archived_experiment_is_refused_with_a_message(editor):
    experiment, *_ = make_with_results(editor.team)
    actions.archive_experiment(experiment)
    assert 'id="dry-run-form"' not in editor.get(f"/experiments/{experiment.pk}/").content.decode()
    response = editor.post(
        f"/experiments/{experiment.pk}/dry-runs/", {"variant": str(experiment.baseline.pk), "tasks": 1}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 409 and "archived" in response.content.decode()


def test_a_viewer_cannot_start_a_dry_run_and_an_outsider_sees_nothing(viewer, outsider, editor):
    experiment, *_ = make_with_results(editor.team)
    assert viewer.post(f"/experiments/{experiment.pk}/dry-runs/", {"variant": str(experiment.baseline.pk), "tasks": 1}).status_code == 403
    assert outsider.get(f"/experiments/{experiment.pk}/dry-runs/").status_code == 404


def test_the_dry_runs_panel_stops_polling_once_they_have_ended(editor):
    experiment, _, variant, _ = make_with_results(editor.team)
    dry = runs.start_dry_run(variant)
    assert "every 2s" in editor.get(f"/experiments/{experiment.pk}/dry-runs/", HTTP_HX_REQUEST="true").content.decode()
    runs.cancel_run(dry)
    html = editor.get(f"/experiments/{experiment.pk}/dry-runs/", HTTP_HX_REQUEST="true").content.decode()
    assert "every 2s" not in html and "cancelled" in html


def test_a_dry_run_is_listed_apart_and_stays_out_of_the_tree_and_the_table(editor):
    experiment = make_ready(editor.team)
    dry = finish_with_steps(runs.start_dry_run(experiment.baseline, tasks=2), lambda ext: True, latency=10, cost=None)
    html = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    assert f"/runs/{dry.pk}/" in html  # in the dry runs panel
    tree = html[html.index('id="variant-tree"') : html.index('id="dry-runs"')]
    assert f"/runs/{dry.pk}/" not in tree and "not run" in tree
    assert "Charts appear once the baseline has results." in html


def test_the_dry_run_page_shows_each_payload_as_sent_the_answer_and_the_evaluation(editor):
    experiment, _, variant, _ = make_with_results(editor.team)
    dry = finish_with_steps(runs.start_dry_run(variant, tasks=2), lambda ext: False, latency=10, cost=None)
    html = editor.get(f"/runs/{dry.pk}/").content.decode()
    assert 'id="dry-run-badge"' in html and "Dry run of temp 0.3" in html
    assert html.count('class="dry-test"') == 2
    payload = html[html.index('class="dry-payload"') :]
    assert "&quot;overrides&quot;" in payload and "&quot;temperature&quot;: 0.3" in payload
    assert "✗ exact_match" in html
    test = dry.tests.first()
    assert f"&quot;answer&quot;: &quot;{test.task_external_id}&quot;" in html


def test_the_dry_tests_fragment_polls_only_an_active_dry_run(editor):
    experiment, baseline_run, variant, _ = make_with_results(editor.team)
    dry = runs.start_dry_run(variant)
    html = editor.get(f"/runs/{dry.pk}/dry-tests/", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="dry-tests"' in html and "every 2s" in html and "waiting…" in html
    assert editor.get(f"/runs/{baseline_run.pk}/dry-tests/").status_code == 404


# ------------------------------------------------------------------ per-step detail


def test_the_test_page_shows_the_steps_beside_the_baselines(editor):
    _, baseline_run, _, run = with_step_results(editor.team)
    test = run.tests.get(task_external_id="t001")
    html = editor.get(f"/runs/{run.pk}/tests/{test.pk}/").content.decode()
    trace = html[html.index('id="step-trace"') :]
    this, base = trace[trace.index('id="trace-this"') :], trace[trace.index('id="trace-baseline"') :]
    assert "gpt-4o" in this[: this.index("</table>")] and "150 ms" in this and "$0.002000" in this and ">30<" in this
    assert "gpt-4o-mini" in base[: base.index("</table>")] and "100 ms" in base
    assert "not in scope" in this[: this.index("</table>")]  # the reranker step the variant reported


def test_a_test_without_steps_shows_no_trace(editor):
    _, _, _, run = make_with_results(editor.team)
    test = run.tests.first()
    assert 'id="step-trace"' not in editor.get(f"/runs/{run.pk}/tests/{test.pk}/").content.decode()


def test_the_run_page_aggregates_per_step_with_deltas_against_the_baseline(editor):
    _, _, _, run = with_step_results(editor.team)
    html = editor.get(f"/runs/{run.pk}/").content.decode()
    table = html[html.index('id="run-steps"') : html.index('id="run-table"')]
    assert "<code>main</code>" in table and "150 ms" in table and "+50 ms" in table and "+$0.001000" in table
    assert "<code>reranker</code>" in table and "not in scope" in table


def test_the_experiment_page_compares_each_step_across_variants(editor):
    experiment, *_ = with_step_results(editor.team)
    html = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    section = html[html.index('id="step-comparison"') :]
    section = section[: section.index("</section>")]
    assert section.count("<code>main</code>") == 1 and "bigger" in section and "+50 ms" in section and "gpt-4o-mini" in section


# ------------------------------------------------------------------ trade-offs


def test_the_results_table_shows_cost_per_passed_test(editor):
    experiment, *_ = with_step_results(editor.team, variant_cost=0.003)
    html = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    table = html[html.index('id="results-table"') : html.index("</table>", html.index('id="results-table"'))]
    assert "Cost / pass" in table
    baseline = table[table.index("Baseline") :]
    assert "$0.002000" in baseline[: baseline.index("</tr>")]  # 4 tests × $0.001 over 2 passed
    bigger = table[table.index("bigger") :]
    assert "$0.003000" in bigger[: bigger.index("</tr>")]  # 4 tests × $0.003 over 4 passed


def test_missing_cost_is_shown_as_missing_not_zero(editor):
    experiment, *_ = make_with_results(editor.team)  # no cost reported at all
    html = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    table = html[html.index('id="results-table"') : html.index("</table>", html.index('id="results-table"'))]
    assert 'title="no cost reported"' in table and "$0.0" not in table
    figure = json.loads(html[html.index('id="fig-tradeoff"') :].split(">", 1)[1].split("</script>", 1)[0])
    assert all(x is None for trace in figure["data"] for x in trace["x"])
    assert "no cost reported: Baseline, temp 0.3" in figure["layout"]["annotations"][0]["text"]


def test_the_exports_carry_cost_per_passed(editor):
    experiment, *_ = with_step_results(editor.team)
    text = editor.get(f"/experiments/{experiment.pk}/results.csv").content.decode()
    header, baseline_line = text.splitlines()[:2]
    assert "cost_per_test" in header and "cost_per_passed" in header
    assert baseline_line.split(",")[header.split(",").index("cost_per_passed")] == "0.002"
    data = json.loads(editor.get(f"/experiments/{experiment.pk}/results.json").content)
    assert data["variants"][0]["cost_per_passed"] == pytest.approx(0.002) and data["variants"][0]["steps"]["main"]["delta"]


def row(name, pass_rate, *, cost=None, p95=None, is_baseline=False, is_control=False, delta_pp=0.0, p_value=1.0):
    metrics = {"latency_ms": {"p95": p95}} if p95 is not None else {}
    return {
        "name": name,
        "pass_rate": pass_rate,
        "ci_low": pass_rate - 0.1,
        "ci_high": min(1.0, pass_rate + 0.1),
        "cost_per_test": cost,
        "metrics": metrics,
        "is_baseline": is_baseline,
        "is_control": is_control,
        "delta_pp": delta_pp,
        "p_value": p_value,
        "significant": p_value is not None and p_value < 0.05,  # as judged by experiment_results (Holm-adjusted)
    }


def test_the_tradeoff_figure_has_one_point_per_variant_the_baseline_marked_and_the_control_shown():
    results = {
        "baseline": row("Baseline", 0.5, cost=0.001, p95=300, is_baseline=True),
        "variants": [
            row("control", 0.52, cost=0.001, p95=310, is_control=True),
            row("bigger", 0.8, cost=0.004, p95=900, delta_pp=30, p_value=0.001),
            row("no cost", 0.6, p95=250),
            {**row("never run", 0.0), "pass_rate": None},
        ],
    }
    figure = charts.tradeoff_figure(results)
    by_name = {trace["name"]: trace for trace in figure["data"]}
    assert set(by_name) == {"baseline", "control", "variants"}
    assert by_name["baseline"]["marker"]["symbol"] == "star" and by_name["baseline"]["text"] == ["Baseline"]
    assert by_name["control"]["marker"]["symbol"] == "diamond" and by_name["control"]["x"] == [0.001]
    assert by_name["variants"]["text"] == ["bigger", "no cost"] and by_name["variants"]["x"] == [0.004, None]
    assert by_name["variants"]["y"] == [80.0, 60.0] and by_name["variants"]["error_y"]["array"] == [10.0, 10.0]
    assert by_name["variants"]["marker"]["color"] == [charts.COLOURS["better"], charts.COLOURS["noise"]]
    assert figure["layout"]["annotations"][0]["text"] == "no cost reported: no cost"
    cost_button, latency_button = figure["layout"]["updatemenus"][0]["buttons"]
    assert latency_button["args"][0]["x"] == [[300], [310], [900, 250]]
    assert (
        latency_button["args"][1]["xaxis.title.text"] == "p95 latency (ms)"
        and latency_button["args"][1]["xaxis.type"] == "linear"
        and figure["layout"]["xaxis"]["title"]["text"].startswith("mean cost")
        and latency_button["args"][1]["annotations"][0]["text"] == ""
    )
    assert cost_button["args"][0]["x"] == [[0.001], [0.001], [0.004, None]]


def test_the_tradeoff_figure_without_a_control_has_no_control_point():
    figure = charts.tradeoff_figure({"baseline": row("Baseline", 0.5, cost=0.001, is_baseline=True), "variants": []})
    assert [trace["name"] for trace in figure["data"]] == ["baseline"]


def admin_failures(client, application_id):
    html = client.get(f"/applications/{application_id}/").content.decode()
    return html[html.index('id="delivery-failures"') :]


def test_an_expired_lease_is_a_delivery_failure_on_the_application_page(editor):
    experiment = make_ready(editor.team, n_tasks=1)
    actions.update_application(experiment.application, {"delivery": "pull"})
    run = runs.start_baseline_run(experiment)
    runs.pull_tests(experiment.application_id, lease_seconds=60)
    Test.objects.filter(run=run).update(lease_until=timezone.now() - timedelta(seconds=1))
    runs.pull_tests(experiment.application_id, lease_seconds=60)  # re-offered: the first lease is logged as expired
    assert "The lease expired without a result." in admin_failures(editor, experiment.application_id)


def test_a_pulled_test_page_lists_its_lease_as_an_attempt(editor):
    experiment = make_ready(editor.team, n_tasks=1)
    actions.update_application(experiment.application, {"delivery": "pull"})
    run = runs.start_baseline_run(experiment)
    runs.pull_tests(experiment.application_id, lease_seconds=60)
    test = run.tests.get()
    runs.record_result(test.pk, {"output": "x"})
    html = editor.get(f"/runs/{run.pk}/tests/{test.pk}/").content.decode()
    assert DeliveryAttempt.objects.get(test=test).pulled
    text = " ".join(html.split())  # as rendered: template line breaks are spaces
    assert "leased" in html and "leased to a puller (pull mode); its result was posted" in text
    failures = admin_failures(editor, experiment.application_id)
    assert "No failed deliveries." in failures  # an answered lease is not a failure
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
