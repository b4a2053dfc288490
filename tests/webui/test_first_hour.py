"""Browser tests for a new user's first hour (issue 11): what the pages show after htmx
swaps content, from the keyboard and at phone width. Playwright drives Debian's chromium."""

import io
import os
import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from experiments_app import actions, runs
from experiments_app.models import Experiment, Run, Test
from experiments_app.runs import complete_run
from tests.factories import make_team
from tests.webui.conftest import PASSWORD, finish_run, make_ready, make_with_results, open_page
from tests.webui.test_browser import settled, sign_in, user_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Every title, axis title, shape and annotation of a chart must be drawn inside that chart's
# own box: when a refresh mixes two charts up, one chart's title and lines land in the other.
CHART_PARTS_OUTSIDE = """(id) => {
  const chart = document.getElementById(id);
  const box = chart.getBoundingClientRect();
  const outside = [];
  chart.querySelectorAll(".gtitle, .g-xtitle text, .g-ytitle text, .shapelayer path, .annotation").forEach((el) => {
    const r = el.getBoundingClientRect();
    if (!r.width && !r.height) return;
    if (r.top < box.top - 1 || r.bottom > box.bottom + 1 || r.left < box.left - 1 || r.right > box.right + 1) {
      outside.push((el.getAttribute("class") || el.tagName) + " " + (el.textContent || "").slice(0, 40));
    }
  });
  return outside;
}"""

# Text labels of a chart (annotations) that cover one of its bars.
LABELS_ON_BARS = """(id) => {
  const chart = document.getElementById(id);
  const bars = [...chart.querySelectorAll(".trace.bars .point path")].map((el) => el.getBoundingClientRect());
  const covering = [];
  chart.querySelectorAll(".annotation").forEach((el) => {
    const r = el.getBoundingClientRect();
    if (bars.some((b) => r.left < b.right && r.right > b.left && r.top < b.bottom && r.bottom > b.top)) covering.push(el.textContent);
  });
  return covering;
}"""


def chart_text(page, selector, part):
    return page.evaluate(f"document.querySelector('{selector} {part}').textContent")


def test_charts_redrawn_after_a_run_ends_keep_their_own_titles_axes_and_lines(page, live_server):
    team = make_team()
    user = user_in(team)
    experiment, *_ = make_with_results(team)
    sign_in(page, live_server.url, user.username)
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    page.wait_for_selector("#chart-delta .main-svg")
    settled(page)
    for _ in range(3):
        page.evaluate("htmx.trigger(document.body, 'run-finished')")  # what the progress poll fires when a run ends
        page.wait_for_timeout(300)
        settled(page)
        page.wait_for_selector("#chart-pass-rate .gtitle")
        page.wait_for_selector("#chart-delta .gtitle")
        # htmx's settle must not strip what plotly put on the chart after drawing it
        assert page.evaluate("document.getElementById('chart-delta').classList.contains('js-plotly-plot')")
        assert page.evaluate("document.getElementById('chart-pass-rate').classList.contains('js-plotly-plot')")
        assert chart_text(page, "#chart-pass-rate", ".gtitle") == "Pass rate with 95% interval"
        assert chart_text(page, "#chart-delta", ".gtitle") == "Δ vs baseline (pp) with 95% interval"
        assert chart_text(page, "#chart-delta", ".g-ytitle text") == "Δ pp"
        assert "baseline 50%" not in page.locator("#chart-delta").inner_text()
        for chart in ("chart-pass-rate", "chart-delta"):
            assert page.evaluate(CHART_PARTS_OUTSIDE, chart) == [], chart
        charts_bottom = page.evaluate("document.querySelector('section[aria-label=Charts]').getBoundingClientRect().bottom")
        table_top = page.evaluate("document.getElementById('results-table').getBoundingClientRect().top")
        assert charts_bottom <= table_top


def test_phone_width_keeps_every_results_column_in_a_sideways_scroll_and_fills_the_chart_panel(browser, live_server):
    team = make_team()
    user = user_in(team)
    experiment, *_ = make_with_results(team)
    page = open_page(browser, width=390, height=844)
    sign_in(page, live_server.url, user.username)
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    page.wait_for_selector("#chart-pass-rate .main-svg")
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 1
    headers = page.locator("#results-table thead th")
    assert headers.count() >= 9
    assert all(headers.nth(index).is_visible() for index in range(headers.count()))
    wrap = page.evaluate(
        "(() => { const w = document.getElementById('results-table').closest('.table-wrap');"
        " return [w.scrollWidth, w.clientWidth, getComputedStyle(w).overflowX]; })()"
    )
    assert wrap[0] > wrap[1] and wrap[2] == "auto"  # wider than the phone, scrolled sideways inside its panel
    for chart in ("chart-pass-rate", "chart-delta"):
        widths = page.evaluate(
            f"(() => {{ const c = document.getElementById('{chart}');"
            " return [c.querySelector('.main-svg').getBoundingClientRect().width, c.getBoundingClientRect().width]; })()"
        )
        assert abs(widths[0] - widths[1]) <= 2, (chart, widths)
        assert page.evaluate(CHART_PARTS_OUTSIDE, chart) == [], chart
    assert page.evaluate(LABELS_ON_BARS, "chart-pass-rate") == []
    page.context.close()


def test_with_only_a_baseline_the_delta_chart_is_a_sentence(page, live_server):
    team = make_team()
    user = user_in(team)
    experiment = make_ready(team)
    finish_run(runs.start_baseline_run(experiment), lambda ext: True)
    sign_in(page, live_server.url, user.username)
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    page.wait_for_selector("#chart-pass-rate .main-svg")
    assert page.locator("#chart-delta").count() == 0
    assert re.search("once a variant has a result", page.locator("#delta-note").inner_text())


def second_variant(experiment, name="temp 0.5", value=0.5):
    return actions.create_variant(
        experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=value, name=name
    )


def test_run_is_disabled_while_its_request_is_in_flight_so_a_double_click_starts_one_run(page, live_server):
    team = make_team()
    user = user_in(team)
    experiment, *_ = make_with_results(team)
    variant = second_variant(experiment)
    sign_in(page, live_server.url, user.username)
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    settled(page)
    button = page.locator(f"li[data-variant='{variant.pk}'] button:has-text('Run')")
    held = []
    page.route(f"**/variants/{variant.pk}/run/", lambda route: held.append(route))
    button.click()
    page.wait_for_function("document.querySelector('.htmx-request') !== null")
    assert button.is_disabled()
    button.click(force=True)  # the second click of a double click lands on a disabled button
    assert len(held) == 1
    held[0].continue_()
    page.wait_for_selector("#progress .bar")
    settled(page)
    assert Run.objects.filter(variant=variant).count() == 1
    assert page.locator("#flash .flash.error").count() == 0


def test_a_refusal_answering_a_button_that_a_refresh_swapped_out_is_shown(page, live_server):
    team = make_team()
    user = user_in(team)
    experiment, _, first, _ = make_with_results(team)
    second = second_variant(experiment)
    sign_in(page, live_server.url, user.username)
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    settled(page)
    held = []
    page.route(f"**/variants/{first.pk}/run/", lambda route: held.append(route))
    page.click(f"li[data-variant='{first.pk}'] button:has-text('Run')")  # held back: answers after the other
    page.click(f"li[data-variant='{second.pk}'] button:has-text('Run')")
    page.wait_for_selector("#progress .bar")  # the second run started and the page refreshed
    settled(page)
    held[0].continue_()  # now answered 409: one run at a time
    page.wait_for_selector("#flash .flash.error")
    assert "One run at a time: the experiment is running variant now." in page.locator("#flash").inner_text()
    assert Run.objects.filter(variant=first).count() == 1  # its earlier run only


def test_flash_messages_go_when_the_state_they_describe_is_gone(page, live_server):
    team = make_team()
    user = user_in(team)
    experiment = make_ready(team)
    sign_in(page, live_server.url, user.username)
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/setup/")
    page.click("#setup-head button:has-text('Save and run baseline')")
    page.wait_for_url(re.compile(rf".*/experiments/{experiment.pk}/$"))
    assert "Baseline run started." in page.locator("#flash").inner_text()
    page.wait_for_selector("#progress .bar")
    finish_run(Run.objects.get(experiment=experiment), lambda ext: True)
    page.wait_for_selector("#experiment-status:has-text('baseline complete')")
    page.wait_for_function("!document.getElementById('flash').textContent.includes('Baseline run started.')")

    page.click("a:has-text('Complete…')")
    page.click("#complete button:has-text('Complete')")
    page.wait_for_selector("#experiment-status:has-text('completed')")
    assert "Completed." in page.locator("#flash").inner_text()
    settled(page)
    page.click("#experiment-header button:has-text('Archive')")
    page.wait_for_selector("#experiment-status:has-text('archived')")
    settled(page)
    assert "Completed." not in page.locator("#flash").inner_text()


def test_setup_page_says_unsaved_then_saved_and_run_the_baseline_keeps_the_edit(page, live_server):
    team = make_team()
    user = user_in(team)
    experiment = make_ready(team)
    sign_in(page, live_server.url, user.username)
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/setup/")
    assert not page.locator("#save-state .unsaved-note").is_visible()
    page.fill("#setup-details input[name=name]", "Cooler still")
    page.wait_for_selector("#save-state .unsaved-note", state="visible")
    page.click("#setup-save button:has-text('Save')")
    page.wait_for_selector("#saved-note")
    assert re.search(r"Saved ✓ at \d\d:\d\d:\d\d: name and hypothesis\.", page.locator("#saved-note").inner_text())
    assert not page.locator("#save-state .unsaved-note").is_visible()

    page.fill("#setup-baseline input[name=main__temperature]", "0.2")  # then straight to the run, without Save
    page.click("#setup-head button:has-text('Save and run baseline')")
    page.wait_for_url(re.compile(rf".*/experiments/{experiment.pk}/$"))
    assert Run.objects.get(experiment=experiment).config["main"]["temperature"] == 0.2
    experiment.refresh_from_db()
    assert experiment.name == "Cooler still"


def test_truncated_values_end_in_an_ellipsis_and_show_whole_on_hover_and_focus(browser, live_server):
    team = make_team()
    user = user_in(team)
    experiment, *_ = make_with_results(team)
    prompt = "You are a careful assistant. " * 6
    actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="system", value=prompt, name="careful")
    page = open_page(browser, width=390, height=844)
    sign_in(page, live_server.url, user.username)
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    change = page.locator("li[data-variant]:has-text('careful') .change")
    style = change.evaluate("el => [getComputedStyle(el).textOverflow, el.scrollWidth > el.clientWidth]")
    assert style == ["ellipsis", True]  # cut, and the cut shows
    assert change.get_attribute("title") == f"main.system = {prompt}"  # the whole value on hover
    change.focus()
    assert change.evaluate("el => el.scrollWidth <= el.clientWidth")  # and on focus
    assert " ".join(change.inner_text().split()) == f"main.system = {prompt.strip()}"
    assert page.js_errors == []
    page.context.close()


def test_branch_form_takes_focus_closes_on_escape_and_gives_focus_back(page, live_server):
    team = make_team()
    user = user_in(team)
    experiment, *_ = make_with_results(team)
    sign_in(page, live_server.url, user.username)
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    settled(page)
    link = page.locator("li[data-variant] a:has-text('+ branch')").nth(1)
    href = link.get_attribute("href")
    link.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#branch")
    settled(page)
    page.wait_for_function("document.activeElement && document.activeElement.closest('#branch') !== null")
    assert page.evaluate("document.activeElement.name") == "inference_step"
    page.keyboard.press("Tab")  # still inside the form
    page.keyboard.press("Escape")
    page.wait_for_selector("#branch", state="detached")
    assert page.evaluate("document.activeElement.getAttribute('href')") == href

    page.keyboard.press("Enter")  # the link again, from the keyboard, then Close
    page.wait_for_selector("#branch")
    settled(page)
    page.click("#branch button:has-text('Close')")
    page.wait_for_selector("#branch", state="detached")
    assert page.evaluate("document.activeElement.getAttribute('href')") == href


def test_hints_on_p_the_interval_and_the_mark_show_on_keyboard_focus(page, live_server):
    team = make_team()
    user = user_in(team)
    experiment, *_ = make_with_results(team, n_tasks=12)
    sign_in(page, live_server.url, user.username)
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    shown = "getComputedStyle(document.activeElement, '::after').content"
    for selector, start in (
        ("#results-table thead a.hint[href$='#p-value']", "How often chance alone"),
        ("#results-table tbody .tip[data-tip^='95% interval']", "95% interval"),
        ("#results-table tbody .tip[data-tip^='* significant']", "* significant: the Holm-adjusted p is below"),
    ):
        page.focus(f"{selector} >> nth=0")
        assert page.evaluate(shown).strip('"').startswith(start), selector
    page.click("#how-to-read a")
    page.wait_for_selector("#sample-size")


def test_screenshots_of_failure_explanations_and_charts_after_a_refresh(browser, live_server, tmp_path):
    """From the demo (real runs through the engine), plus one variant run that failed on errors:
    the experiment page explaining the failure, its charts redrawn after a run-finished refresh, and
    the statistics page. Written to $WEBUI_SCREENSHOTS_DIR (docs/ to refresh the README's pictures)."""
    out = Path(os.environ.get("WEBUI_SCREENSHOTS_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    call_command("load_demo", stdout=io.StringIO())
    demo = get_user_model().objects.get(username="demo")
    demo.set_password(PASSWORD)
    demo.save()
    experiment = Experiment.objects.get(team__slug="demo")
    variant = actions.create_variant(
        experiment, parent=experiment.baseline, inference_step="answer", parameter="max_tokens", value=16, name="Tiny answers"
    )
    run = runs.start_variant_run(variant)
    tests = list(Test.objects.filter(run=run).order_by("task_external_id"))
    Test.objects.filter(pk__in=[test.pk for test in tests[: len(tests) * 2 // 5]]).update(
        status="errored", attempts=4, error="HTTP 500 from the application after 4 attempts.", completed_at=timezone.now()
    )
    Test.objects.filter(pk__in=[test.pk for test in tests[len(tests) * 2 // 5 :]]).update(
        status="failed", output="(cut off)", has_output=True, attempts=1, completed_at=timezone.now()
    )
    assert complete_run(run.pk)

    page = open_page(browser, width=1360, height=900)
    sign_in(page, live_server.url, "demo")
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    page.wait_for_selector("#chart-delta .main-svg")
    assert "above the experiment's max error rate of 20%" in page.locator("#run-finished-note").inner_text()
    page.screenshot(path=str(out / "experiment-failed.png"), full_page=True)
    settled(page)
    page.evaluate("htmx.trigger(document.body, 'run-finished')")
    page.wait_for_timeout(300)
    settled(page)
    page.wait_for_selector("#chart-delta .gtitle")
    assert page.evaluate(CHART_PARTS_OUTSIDE, "chart-delta") == []
    page.locator("section[aria-label=Charts]").screenshot(path=str(out / "charts-after-refresh.png"))
    page.goto(f"{live_server.url}/help/statistics/")
    page.screenshot(path=str(out / "statistics.png"), full_page=True)
    assert page.js_errors == []
    page.context.close()
    for name in ("experiment-failed.png", "charts-after-refresh.png", "statistics.png"):
        assert (out / name).stat().st_size > 10_000, name
