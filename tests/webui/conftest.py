"""Fixtures for the pages: signed-in clients per role and experiments with finished runs."""

import os
from pathlib import Path

import pytest
from django.utils import timezone

from experiments_app import actions, runs
from experiments_app.models import DeliveryAttempt, Role, Test, TestStatus
from experiments_app.runs import complete_run
from tests.factories import make_application, make_step, make_task, make_team, make_user


@pytest.fixture
def editor(db, client):
    """A client signed in as an editor of a fresh team; the team is `client.team`."""
    team = make_team()
    user = make_user(team, Role.EDITOR)
    client.force_login(user)
    client.team, client.user = team, user
    return client


def signed_in(team, role):
    from django.test import Client

    client = Client()
    user = make_user(team, role)
    client.force_login(user)
    client.team, client.user = team, user
    return client


@pytest.fixture
def viewer(editor):
    return signed_in(editor.team, Role.VIEWER)


@pytest.fixture
def admin(editor):
    return signed_in(editor.team, Role.ADMIN)


@pytest.fixture
def outsider(db):
    return signed_in(make_team(), Role.ADMIN)


def finish_run(run, passes, *, latency=100):
    """Give every test of `run` an output and close it as the engine would.
    `passes(external_id) -> bool` says which tests pass."""
    now = timezone.now()
    for test in Test.objects.filter(run=run):
        ok = passes(test.task_external_id)
        Test.objects.filter(pk=test.pk).update(
            status=TestStatus.PASSED if ok else TestStatus.FAILED,
            output={"answer": f"{test.task_external_id} {'right' if ok else 'wrong'}"},
            has_output=True,
            attempts=1,
            metrics={"latency_ms": latency},
            evaluations=[{"name": "exact_match", "passed": ok}],
            dispatched_at=now,
            completed_at=now,
        )
        DeliveryAttempt.objects.create(test=test, number=1, started_at=now, status_code=200, duration_ms=12.5)
    assert complete_run(run.pk)
    run.refresh_from_db()
    return run


def make_ready(team, n_tasks=4, **experiment_fields):
    application = make_application(team)
    step = make_step(application, external_id="main", config={"model": "gpt-4o-mini", "temperature": 0.7, "max_tokens": 500})
    tasks = [make_task(application, external_id=f"t{index:03d}", tags=["even" if index % 2 == 0 else "odd"]) for index in range(n_tasks)]
    experiment = actions.create_experiment(
        application, name=experiment_fields.pop("name", "Lower temperature"), description="Cooler is better."
    )
    actions.set_scope(experiment, steps=[step.external_id], tasks=tasks)
    experiment.refresh_from_db()
    return experiment


def make_with_results(team, n_tasks=4):
    """Baseline passes the even tasks; variant `temp 0.3` passes every task."""
    experiment = make_ready(team, n_tasks)
    baseline_run = finish_run(runs.start_baseline_run(experiment), lambda ext: int(ext[1:]) % 2 == 0)
    experiment.refresh_from_db()
    variant = actions.create_variant(
        experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.3, name="temp 0.3"
    )
    variant_run = finish_run(runs.start_variant_run(variant), lambda ext: True, latency=80)
    experiment.refresh_from_db()
    return experiment, baseline_run, variant, variant_run


# --- browser tests (Playwright driving Debian's chromium) ---------------------------

# Playwright's sync API runs an event loop in the main thread for the whole session; the
# ORM calls the tests make between page actions are still plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "pw-for-browser"
TIMEOUT_MS = 90_000


@pytest.fixture(scope="session")
def browser():
    """One chromium for every browser test of the session."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Install Debian's chromium first: apt-get install -y chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield browser
        browser.close()


def open_page(browser, width=1280, height=900):
    context = browser.new_context(viewport={"width": width, "height": height}, color_scheme="light")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.js_errors = errors
    return page


@pytest.fixture
def page(browser):
    page = open_page(browser)
    yield page
    assert page.js_errors == []
    page.context.close()
