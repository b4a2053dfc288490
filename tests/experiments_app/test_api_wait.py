"""runs/{id}/?wait=N: a long poll that answers the moment the run ends, or after N seconds."""

import threading
import time

import httpx
import pytest

from experiments_app import runs
from experiments_app.models import Role, Run
from tests.api_fixtures import ready_experiment
from tests.factories import make_application, make_team, make_token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def active_run():
    team = make_team()
    experiment = ready_experiment(make_application(team, webhook_url="http://127.0.0.1:9/never"))
    return make_token(team, Role.EDITOR), runs.start_baseline_run(experiment)


def get(live_server, token, run, **params):
    started = time.monotonic()
    response = httpx.get(
        f"{live_server.url}/api/v1/runs/{run.pk}/", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=70
    )
    return response, time.monotonic() - started


def later(seconds, action):
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_wait_answers_as_soon_as_the_run_is_cancelled(live_server, active_run):
    token, run = active_run
    later(1.0, lambda: runs.cancel_run(Run.objects.get(pk=run.pk))).join(0)
    response, took = get(live_server, token, run, wait=30)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled" and response.headers["X-Wait"] == "ended"
    assert 0.9 < took < 3.0


def test_wait_answers_with_the_current_state_after_n_seconds(live_server, active_run):
    token, run = active_run
    response, took = get(live_server, token, run, wait=1)
    # "running" when a worker of the session has picked it up (its application never answers)
    assert response.json()["status"] in ("queued", "running") and response.headers["X-Wait"] == "timeout"
    assert 1.0 <= took < 2.5


def test_an_ended_run_answers_at_once(live_server, active_run):
    token, run = active_run
    runs.cancel_run(run)
    response, took = get(live_server, token, run, wait=60)
    assert response.json()["status"] == "cancelled" and "X-Wait" not in response.headers
    assert took < 1.0


def test_waiters_beyond_the_limit_answer_at_once(live_server, active_run, settings):
    settings.LONG_POLL_MAX_WAITERS = 1
    token, run = active_run
    first = threading.Thread(target=get, args=(live_server, token, run), kwargs={"wait": 2})
    first.start()
    time.sleep(0.5)
    response, took = get(live_server, token, run, wait=2)
    first.join()
    assert response.headers["X-Wait"] == "busy" and took < 1.0


def test_wait_must_be_1_to_60_seconds(live_server, active_run):
    token, run = active_run
    for bad in (0, 61, "soon"):
        response, _ = get(live_server, token, run, wait=bad)
        assert response.status_code == 400 and "wait" in response.json()["errors"]
