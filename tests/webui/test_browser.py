"""Browser tests: Playwright driving Debian's chromium against the live server.

The full flow runs a real Celery worker and the demo application; the others use
data made with the actions. Screenshots of the main pages go to $WEBUI_SCREENSHOTS_DIR
(docs/ when refreshing the README pictures), else to a temporary directory.
"""

import io
import os
import re
from pathlib import Path

import pytest

from experiments_app import actions
from experiments_app.models import Experiment, InferenceStep, Role, Task
from tests.engine_fixtures import wait_for
from tests.factories import make_application, make_team, make_user
from tests.webui.conftest import PASSWORD, TIMEOUT_MS, make_ready, make_with_results, open_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in(page, base_url, username):
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(re.compile(r".*/experiments/$"))


def settled(page):
    """Wait until htmx has no request in flight and nothing left to swap or settle."""
    page.wait_for_function("!document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")


def user_in(team, role=Role.ADMIN, username=None):
    return make_user(team, role, username=username or f"u{team.pk.hex[:8]}{role}", password=PASSWORD)


def test_sign_in_list_and_sign_out(page, live_server):
    team = make_team(name="Browser team")
    user = user_in(team)
    make_ready(team, name="Visible experiment")
    sign_in(page, live_server.url, user.username)
    assert page.locator("#experiment-table").inner_text().count("Visible experiment") == 1
    page.click("button:has-text('Sign out')")
    page.wait_for_url(re.compile(r".*/accounts/login/$"))


def test_experiment_page_draws_charts_sorts_and_refuses_a_no_op_branch(page, live_server):
    team = make_team()
    user = user_in(team)
    experiment, *_ = make_with_results(team)
    sign_in(page, live_server.url, user.username)
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    page.wait_for_selector("#chart-pass-rate .main-svg")
    assert page.evaluate("document.getElementById('chart-pass-rate').data[0].x") == ["Baseline", "temp 0.3"]
    assert page.evaluate("document.getElementById('chart-delta').data[0].y") == [50]

    settled(page)
    page.click("#results-table th a:has-text('Variant')")  # sort by name through htmx
    page.wait_for_selector("#results-table th a.sorted:has-text('Variant')")
    assert page.locator("#results-table tbody tr").first.inner_text().startswith("temp 0.3")  # -name after the first click
    page.wait_for_selector("#chart-pass-rate .main-svg")  # the init script re-ran after the swap
    settled(page)

    page.click("li[data-variant] a:has-text('+ branch') >> nth=1")
    page.wait_for_selector("#branch")
    settled(page)
    assert page.locator("#inherited-value").inner_text() == "0.3"
    page.click("#branch button:has-text('Create variant')")  # value prefilled with the inherited one: a no-op
    page.wait_for_selector("#branch .errorlist")
    settled(page)
    assert "already has here" in page.locator("#branch").inner_text()
    with page.expect_response(lambda response: "/variants/new/" in response.url):
        page.select_option("#branch select[name=parameter]", "verbosity")
    settled(page)
    page.wait_for_selector("#branch select[name=value]")
    page.select_option("#branch select[name=value]", "high")
    page.click("#branch button:has-text('Create variant')")
    page.wait_for_selector("#variant-tree .change:has-text('main.verbosity')")
    assert page.locator("#branch").count() == 0


def test_viewer_sees_no_buttons_and_pages_are_keyboard_reachable(page, live_server):
    team = make_team()
    viewer = user_in(team, Role.VIEWER)
    experiment, *_ = make_with_results(team)
    sign_in(page, live_server.url, viewer.username)
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    assert page.locator("button:has-text('Run')").count() == 0
    assert page.locator("text=+ branch").count() == 0
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('#results-table') !== null"):
            break
    else:
        pytest.fail("The results table's sort links are not reachable with the keyboard.")


def test_phone_width_has_no_horizontal_scroll(browser, live_server):
    team = make_team()
    user = user_in(team)
    experiment, baseline_run, _, run = make_with_results(team)
    page = open_page(browser, width=390, height=844)
    sign_in(page, live_server.url, user.username)
    for path in (
        "/experiments/",
        f"/experiments/{experiment.pk}/",
        f"/runs/{run.pk}/",
        f"/applications/{experiment.application_id}/tasks/",
        f"/applications/{experiment.application_id}/",
        "/docs/integrating/",
    ):
        page.goto(live_server.url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"{path} scrolls sideways by {overflow}px at 390px"
    assert page.js_errors == []
    page.context.close()


@pytest.fixture
def demo_server(settings):
    from demo_app.server import serve_in_thread

    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    server = serve_in_thread(port=0, async_fraction=0.3, speed=0.01, callback_delay=0.05)
    yield server
    server.shutdown()
    server.server_close()


def demo_application(team, url, n_tasks=12):
    from demo_app.catalog import TASKS
    from experiments_app.management.commands.load_demo import STEPS

    application = make_application(
        team, name="Demo assistant", webhook_url=url, max_concurrency=5, timeout_seconds=5, result_timeout_seconds=30
    )
    for external_id, fields in STEPS.items():
        InferenceStep.objects.create(application=application, external_id=external_id, **fields)
    for task in TASKS[:: max(1, len(TASKS) // n_tasks)][:n_tasks]:
        Task.objects.create(application=application, **task)
    return application


def wait_for_status(page, status):
    page.wait_for_selector(f"#experiment-status:has-text('{status}')", timeout=TIMEOUT_MS)


@pytest.mark.worker
def test_full_flow_against_the_demo_application(page, live_server, celery_worker_process, demo_server):
    team = make_team(name="Demo team")
    user = user_in(team, Role.ADMIN, username="demo-browser")
    application = demo_application(team, f"http://127.0.0.1:{demo_server.server_address[1]}/webhook")
    demo_server.app.fixed_secret = application.webhook_secret
    sign_in(page, live_server.url, user.username)

    # 1. name and hypothesis
    page.click("a:has-text('New experiment')")
    page.fill("#id_name", "Cooler answers, by browser")
    page.fill("#id_description", "A cooler answer model answers more questions correctly.")
    page.click("button:has-text('Create and pick steps')")
    page.wait_for_url(re.compile(r".*/setup/$"))
    # 2. steps, 3. tasks, 4. baseline config (prefilled)
    page.check("#setup-steps input[value=router]")
    page.check("#setup-steps input[value=answer]")
    page.click("#setup-save button:has-text('Save')")
    page.wait_for_selector("#h-steps:has-text('2 selected')")
    page.click("#task-picker button[value=add-matching]")
    page.wait_for_selector("#h-tasks:has-text('12 of 12 selected')")
    assert page.input_value("#setup-baseline input[name=answer__temperature]") == "0.9"
    # 5. run the baseline (saving first) and watch the progress finish
    page.click("#setup-head button:has-text('Save and run baseline')")
    page.wait_for_url(re.compile(r".*/experiments/[0-9a-f-]+/$"))
    wait_for_status(page, "baseline complete")
    page.wait_for_selector("#chart-pass-rate .main-svg")
    experiment = Experiment.objects.get(name="Cooler answers, by browser")
    assert experiment.locked_at is not None

    # branch a variant from the baseline and run it; the run's end refreshes the tree and
    # table, so wait for htmx to settle first (a link swapped out mid-request loses its answer)
    settled(page)
    page.click("li[data-variant] a:has-text('+ branch') >> nth=0")
    page.wait_for_selector("#branch")
    settled(page)
    with page.expect_response(lambda response: "/variants/new/" in response.url):
        page.select_option("#branch select[name=inference_step]", "answer")  # re-renders the form
    settled(page)
    page.wait_for_selector("#inherited-value:has-text('0.9')")
    page.fill("#branch input[name=value]", "0.2")
    page.fill("#branch input[name=name]", "cooler")
    page.click("#branch button:has-text('Create variant')")
    page.wait_for_selector("li[data-variant]:has-text('cooler') button:has-text('Run')")
    # real simulated latency (~1 s a request, 12 tests at concurrency 5): the run lasts
    # seconds, so its running status and progress bar are there to be seen, however fast the worker
    demo_server.app.speed = 1.0
    settled(page)
    page.click("li[data-variant]:has-text('cooler') button:has-text('Run')")
    wait_for_status(page, "running variant")
    page.wait_for_selector("#progress .bar")
    wait_for_status(page, "idle")
    # the chart and the table picked up the new result
    wait_for(
        lambda: page.evaluate("(document.getElementById('chart-pass-rate').data || [{x: []}])[0].x.length") == 2,
        30,
        message="the chart update",
    )
    assert page.locator("#results-table tbody tr").count() == 2
    assert "cooler" in page.locator("#results-table").inner_text()

    # pick a winner, then archive
    page.click("a:has-text('Complete…')")
    page.select_option("#id_winner", value=page.locator("#id_winner option", has_text="cooler —").get_attribute("value"))
    page.click("#complete button:has-text('Complete')")
    wait_for_status(page, "completed")
    assert "winner: cooler" in page.locator("#experiment-header").inner_text()
    page.click("#experiment-header button:has-text('Archive')")
    wait_for_status(page, "archived")
    experiment.refresh_from_db()
    assert experiment.status == "archived" and experiment.winner.name == "cooler"


def test_screenshots_of_the_main_pages(browser, live_server, tmp_path, settings, demo_server):
    """Loads the demo (real runs through the engine) and photographs the main pages."""
    from django.core.management import call_command

    out = Path(os.environ.get("WEBUI_SCREENSHOTS_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    call_command("load_demo", stdout=io.StringIO())
    from django.contrib.auth import get_user_model

    demo = get_user_model().objects.get(username="demo")
    demo.set_password(PASSWORD)
    demo.save()
    experiment = Experiment.objects.get(team__slug="demo")
    runs = list(experiment.runs.select_related("variant").order_by("created_at"))
    baseline_run, best_run = runs[0], runs[2]
    test = best_run.tests.filter(status="passed").first()
    draft = actions.create_experiment(
        experiment.application, name="Shorter system prompt", description="A shorter prompt keeps accuracy and cuts tokens."
    )
    actions.set_scope(draft, steps=["answer"], tasks=list(experiment.application.tasks.all()[:20]))

    page = open_page(browser, width=1360, height=900)
    sign_in(page, live_server.url, "demo")
    shots = [
        ("experiments.png", "/experiments/", None),
        ("experiment.png", f"/experiments/{experiment.pk}/", "#chart-pass-rate .main-svg"),
        ("run.png", f"/runs/{best_run.pk}/?filter=improved", None),
        ("test.png", f"/runs/{best_run.pk}/tests/{test.pk}/", None),
        ("compare.png", f"/runs/{best_run.pk}/compare/{baseline_run.pk}/", None),
        ("setup.png", f"/experiments/{draft.pk}/setup/", None),
        ("application.png", f"/applications/{experiment.application_id}/", None),
        ("tasks.png", f"/applications/{experiment.application_id}/tasks/", None),
    ]
    # the demo application, served here, connects through the connect panel's test delivery
    application = experiment.application
    application.webhook_url = f"http://127.0.0.1:{demo_server.server_address[1]}/webhook"
    application.save()
    demo_server.app.fixed_secret = application.webhook_secret
    page.goto(f"{live_server.url}/applications/{application.pk}/")
    page.click("#connection button:has-text('Send test delivery')")
    page.wait_for_selector("#connection:has-text('connected ✓')")
    for name, path, ready in shots:
        page.goto(live_server.url + path)
        if ready:
            page.wait_for_selector(ready)
        page.screenshot(path=str(out / name), full_page=name != "experiment.png")
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    settled(page)
    page.click("li[data-variant] a:has-text('+ branch') >> nth=1")
    page.wait_for_selector("#branch")
    settled(page)
    with page.expect_response(lambda response: "/variants/new/" in response.url):
        page.select_option("#branch select[name=inference_step]", "answer")
    settled(page)
    page.wait_for_selector("#inherited-value")
    page.locator("#branch").screenshot(path=str(out / "branch-form.png"))
    assert page.js_errors == []
    page.context.close()

    phone = open_page(browser, width=390, height=844)
    sign_in(phone, live_server.url, "demo")
    phone.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    phone.wait_for_selector("#chart-pass-rate .main-svg")
    phone.screenshot(path=str(out / "experiment-phone.png"), full_page=True)
    phone.context.close()

    dark = browser.new_context(viewport={"width": 1360, "height": 900}, color_scheme="dark").new_page()
    sign_in(dark, live_server.url, "demo")
    dark.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    dark.wait_for_selector("#chart-pass-rate .main-svg")
    dark.screenshot(path=str(out / "experiment-dark.png"))
    dark.context.close()
    for name in [shot[0] for shot in shots] + ["branch-form.png", "experiment-phone.png", "experiment-dark.png"]:
        assert (out / name).stat().st_size > 10_000, name
