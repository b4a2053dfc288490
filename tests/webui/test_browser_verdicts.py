"""Browser checks for issue 9 (Playwright driving Debian's chromium): what a user sees after the
htmx swaps of the experiment, run and setup pages, and the screenshots of the verdicts and of
the live panel ($WEBUI_SCREENSHOTS_DIR, else a temporary directory)."""

import os
from pathlib import Path

import pytest

from experiments_app import runs
from experiments_app.models import Role, Test, TestStatus
from tests.factories import make_team, make_user
from tests.webui.conftest import PASSWORD, open_page
from tests.webui.test_browser import settled, sign_in
from tests.webui.verdict_data import answer, make_verdicts_experiment

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


def active_variant_run(experiment, tasks_answered=18):
    """A running variant (stop when decided off) with the first `tasks_answered` tasks answered."""
    from experiments_app import actions

    experiment.refresh_from_db()
    variant = actions.create_variant(
        experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.2, name="temp 0.2"
    )
    run = runs.start_variant_run(variant)
    keep = {f"t{index:03d}" for index in range(tasks_answered)}
    Test.objects.filter(run=run).exclude(task_external_id__in=keep).update(status=TestStatus.DISPATCHED)
    answer(run, lambda index, repetition: index < 30)
    Test.objects.filter(run=run, status=TestStatus.DISPATCHED).update(status=TestStatus.PENDING)
    run.refresh_from_db()
    return run


def test_screenshots_of_the_verdicts_and_the_live_panel(browser, live_server, tmp_path):
    out = Path(os.environ.get("WEBUI_SCREENSHOTS_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    team = make_team()
    experiment, _ = make_verdicts_experiment(team)
    page = signed_in_page(browser, live_server, team, height=1000)
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    page.wait_for_selector("#chart-delta .main-svg")
    page.screenshot(path=str(out / "experiment-verdicts.png"), full_page=True)
    assert page.js_errors == []
    page.context.close()
    assert (out / "experiment-verdicts.png").stat().st_size > 10_000
