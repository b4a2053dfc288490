"""Browser checks for issue 9 (Playwright driving Debian's chromium): what a user sees after the
htmx swaps of the experiment, run and setup pages, and the screenshots of the verdicts and of
the live panel ($WEBUI_SCREENSHOTS_DIR, else a temporary directory)."""

import os
from pathlib import Path

import pytest

from experiments_app.models import Role
from tests.factories import make_team, make_user
from tests.webui.conftest import PASSWORD, open_page
from tests.webui.test_browser import settled, sign_in
from tests.webui.verdict_data import active_variant_run, make_verdicts_experiment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def signed_in_page(browser, live_server, team, width=1360, height=900):
    user = make_user(team, Role.ADMIN, username=f"v{team.pk.hex[:10]}", password=PASSWORD)
    page = open_page(browser, width=width, height=height)
    sign_in(page, live_server.url, user.username)
    return page


def test_verdicts_and_interval_bars_survive_a_refresh(browser, live_server):
    team = make_team()
    experiment, _ = make_verdicts_experiment(team, with_stopped=False)
    page = signed_in_page(browser, live_server, team)
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    page.wait_for_selector("#chart-delta .main-svg")
    bars = page.evaluate("document.getElementById('chart-delta').data[0].error_y")
    assert bars["type"] == "data" and len(bars["array"]) == 5 and min(bars["array"]) >= 0
    assert page.locator("#chart-delta .errorbar").count() > 0  # drawn, not only in the data
    # the results refresh through htmx (a run ended elsewhere): the verdicts and the bars come back
    page.evaluate("htmx.trigger(document.body, 'experiment-changed')")
    page.wait_for_function("document.querySelector('#chart-delta .main-svg') && document.querySelector('#verdicts')")
    settled(page)
    text = page.locator("#verdicts").inner_text()
    assert "better: +41.7 pp (95% CI +27.6 to +55.7)" in text
    assert "ERROR RATE MISMATCH" in text.upper()
    assert page.locator("#chart-delta .errorbar").count() > 0
    assert page.js_errors == []
    page.context.close()


def test_the_label_filter_swaps_the_run_table(browser, live_server):
    team = make_team()
    experiment, made = make_verdicts_experiment(team, with_stopped=False)
    page = signed_in_page(browser, live_server, team)
    page.goto(f"{live_server.url}/runs/{made['Baseline'].pk}/")
    page.click("#label-filters a[data-label=flaky]")
    page.wait_for_selector("#label-filters a[data-label=flaky][aria-current=true]")
    settled(page)
    assert page.url.endswith("?label=flaky")  # pushed, so the filtered view is a link
    rows = page.locator("#run-table tbody tr")
    assert rows.count() == 30
    assert {text.strip() for text in page.locator("#run-table tbody tr td:first-child").all_inner_texts()} == {
        f"t{index:03d}" for index in range(30, 40)
    }
    page.click("#label-filters a:has-text('any')")
    page.wait_for_selector("#label-filters a[aria-current=true]:has-text('any')")
    settled(page)
    assert rows.count() == 50
    assert page.js_errors == []
    page.context.close()


def test_the_live_panel_refreshes_while_the_run_goes_on(browser, live_server):
    team = make_team()
    experiment, _ = make_verdicts_experiment(team, with_stopped=False)
    run = active_variant_run(experiment, tasks_answered=6)
    page = signed_in_page(browser, live_server, team)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    page.wait_for_selector("#live-done:has-text('6/40 tasks compared')")
    answer_more(run, 20)  # results arrive meanwhile; the 2 s poll brings them
    page.wait_for_selector("#live-done:has-text('20/40 tasks compared')")
    assert page.locator("#live-panel .live-bar .band").count() == 1
    assert page.js_errors == []
    page.context.close()


def answer_more(run, tasks):
    """Answer the run's tests of the first `tasks` tasks that are still open."""
    from experiments_app.models import Test, TestStatus
    from tests.webui.verdict_data import answer

    later = Test.objects.filter(run=run, status=TestStatus.PENDING).exclude(
        task_external_id__in=[f"t{index:03d}" for index in range(tasks)]
    )
    hidden = list(later.values_list("pk", flat=True))
    later.update(status=TestStatus.DISPATCHED)
    answer(run, lambda index, repetition: index < 30)
    Test.objects.filter(pk__in=hidden).update(status=TestStatus.PENDING)


def test_screenshots_of_the_verdicts_and_the_live_panel(browser, live_server, tmp_path):
    out = Path(os.environ.get("WEBUI_SCREENSHOTS_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    team = make_team()
    experiment, _ = make_verdicts_experiment(team)
    page = signed_in_page(browser, live_server, team, height=1000)
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    page.wait_for_selector("#chart-delta .main-svg")
    bottom = page.evaluate("document.getElementById('verdicts').getBoundingClientRect().bottom + window.scrollY")
    page.screenshot(path=str(out / "experiment-verdicts.png"), clip={"x": 0, "y": 0, "width": 1360, "height": bottom + 12}, full_page=True)
    run = active_variant_run(experiment)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    page.wait_for_selector("#live-panel .live-bar")
    page.screenshot(path=str(out / "run-live.png"), clip={"x": 0, "y": 0, "width": 1360, "height": 900})
    assert page.js_errors == []
    page.context.close()
    for name in ("experiment-verdicts.png", "run-live.png"):
        assert (out / name).stat().st_size > 10_000, name


def test_the_planner_answers_in_place(browser, live_server):
    from tests.webui.conftest import make_ready

    team = make_team()
    experiment = make_ready(team)
    page = signed_in_page(browser, live_server, team)
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/setup/")
    page.fill("#id_plan-expected_pass_rate", "60")
    page.fill("#id_plan-min_difference_pp", "10")
    page.fill("#id_plan-k", "3")
    page.click("#planner-form button:has-text('Plan')")
    page.wait_for_selector("#planner-answer")
    assert page.url.endswith("/setup/")  # answered in place, nothing else reloaded
    from experiments_app import stats

    tasks = stats.plan(0.6, 10, alpha=0.05, power=0.8, k=3)["tasks_needed"]
    assert page.locator("#planner-answer strong").inner_text() == f"{tasks} tasks"
    # a question the browser's own checks let through but no pass rate can answer: the field is named
    page.fill("#id_plan-expected_pass_rate", "50")
    page.fill("#id_plan-min_difference_pp", "60")
    page.click("#planner-form button:has-text('Plan')")
    page.wait_for_selector("#planner [role=alert]:has-text('Smallest difference that matters')")
    assert page.locator("#planner-answer").count() == 0
    assert page.js_errors == []
    page.context.close()


def test_the_verdicts_and_the_live_panel_fit_a_phone(browser, live_server):
    team = make_team()
    experiment, made = make_verdicts_experiment(team, with_stopped=False)
    run = active_variant_run(experiment)
    page = signed_in_page(browser, live_server, team, width=390, height=844)
    for path in (f"/experiments/{experiment.pk}/", f"/runs/{run.pk}/", f"/experiments/{experiment.pk}/setup/"):
        page.goto(live_server.url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        wide = page.evaluate(WIDEST)
        assert overflow <= 1, f"{path} scrolls sideways by {overflow}px at 390px: {wide}"
    assert page.js_errors == []
    page.context.close()


# The deepest elements reaching past the viewport's right edge, for the message of a failed check.
WIDEST = """[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1
  && ![...e.children].some(c => c.getBoundingClientRect().right > document.documentElement.clientWidth + 1))
  .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + (e.id || ''))"""
