"""Browser checks for issue 13 (Playwright driving Debian's chromium) and the screenshots of the
trace, the trade-off chart, a dry run and the pull-mode panel ($WEBUI_SCREENSHOTS_DIR, else a temporary directory)."""

import io
import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from experiments_app import actions
from experiments_app.models import Experiment, Role, Run
from tests.engine_fixtures import wait_for
from tests.factories import make_team, make_user
from tests.webui.conftest import PASSWORD, make_with_results, open_page
from tests.webui.test_browser import settled, sign_in
from tests.webui.test_reach_pages import with_step_results

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def signed_in_page(browser, live_server, team, width=1280):
    user = make_user(team, Role.ADMIN, username=f"r{team.pk.hex[:10]}", password=PASSWORD)
    page = open_page(browser, width=width)
    sign_in(page, live_server.url, user.username)
    return page


def test_the_tradeoff_chart_draws_every_variant_and_toggles_to_p95_latency(browser, live_server):
    team = make_team()
    experiment, *_ = with_step_results(team, variant_cost=0.003)
    page = signed_in_page(browser, live_server, team)
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    page.wait_for_selector("#chart-tradeoff .main-svg")
    traces = page.evaluate("document.getElementById('chart-tradeoff').data.map(t => [t.name, t.x, t.y])")
    assert traces == [["baseline", [0.001], [50]], ["variants", [0.003], [100]]]
    page.click("#chart-tradeoff .updatemenu-button >> nth=1")
    wait_for(
        lambda: page.evaluate("document.getElementById('chart-tradeoff').data.map(t => t.x[0])") == [100, 150],
        10,
        message="the x axis to switch to p95 latency",
    )
    assert page.evaluate("document.getElementById('chart-tradeoff').layout.xaxis.title.text") == "p95 latency (ms)"
    assert page.js_errors == []
    page.context.close()


def test_try_on_k_tasks_from_the_experiment_page(browser, live_server):
    team = make_team()
    experiment, _, variant, _ = make_with_results(team)
    page = signed_in_page(browser, live_server, team)
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    settled(page)
    page.select_option("#dry-run-form select[name=variant]", str(variant.pk))
    page.fill("#dry-run-form input[name=tasks]", "3")
    page.click("#dry-run-form button:has-text('Try on k tasks')")
    page.wait_for_selector("#dry-run-table a:has-text('temp 0.3')")
    run = Run.objects.get(dry_run=True)
    assert run.total == 3 and run.variant_id == variant.pk
    assert page.locator("#experiment-status").inner_text().lower() == "idle"  # the lifecycle did not move
    page.click("#dry-run-table a:has-text('temp 0.3')")
    page.wait_for_selector("#dry-run-badge")
    assert page.locator(".dry-test").count() == 3
    assert page.js_errors == []
    page.context.close()


def test_the_new_panels_fit_a_phone(browser, live_server):
    team = make_team()
    experiment, _, _, run = with_step_results(team)
    test = run.tests.first()
    page = signed_in_page(browser, live_server, team, width=390)
    for path in (f"/experiments/{experiment.pk}/", f"/runs/{run.pk}/"):
        page.goto(live_server.url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"{path} scrolls sideways by {overflow}px at 390px"
    # The test page's callbackUrl line is wider than a phone already; the trace itself must fit (its tables scroll inside).
    page.goto(f"{live_server.url}/runs/{run.pk}/tests/{test.pk}/")
    assert page.evaluate("document.getElementById('step-trace').getBoundingClientRect().right <= document.documentElement.clientWidth")
    assert page.js_errors == []
    page.context.close()


def test_screenshots_of_the_trace_the_tradeoffs_a_dry_run_and_pull_mode(browser, live_server, tmp_path):
    """Loads the demo (real runs through the engine, per-step detail included) and photographs issue 13's pages."""
    out = Path(os.environ.get("WEBUI_SCREENSHOTS_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    call_command("load_demo", stdout=io.StringIO())
    demo = get_user_model().objects.get(username="demo")
    demo.set_password(PASSWORD)
    demo.save()
    experiment = Experiment.objects.get(team__slug="demo")
    real = list(experiment.runs.real().order_by("created_at"))
    best_run = real[2]
    test = best_run.tests.filter(status="passed").order_by("task_external_id").first()
    dry = experiment.runs.get(dry_run=True)

    page = open_page(browser, width=1360, height=900)
    sign_in(page, live_server.url, "demo")
    page.goto(f"{live_server.url}/runs/{best_run.pk}/tests/{test.pk}/")
    page.locator("#step-trace").screenshot(path=str(out / "trace.png"))
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    page.wait_for_selector("#chart-tradeoff .main-svg")
    page.locator("#tradeoffs").screenshot(path=str(out / "tradeoffs.png"))
    page.locator("#step-comparison").screenshot(path=str(out / "steps.png"))
    page.goto(f"{live_server.url}/runs/{dry.pk}/")
    page.screenshot(path=str(out / "dry-run.png"), full_page=True)
    actions.update_application(experiment.application, {"delivery": "pull"})
    page.goto(f"{live_server.url}/applications/{experiment.application_id}/")
    page.screenshot(path=str(out / "application-pull.png"), full_page=True)
    assert page.js_errors == []
    page.context.close()
    for name in ("trace.png", "tradeoffs.png", "steps.png", "dry-run.png", "application-pull.png"):
        assert (out / name).stat().st_size > 10_000, name
