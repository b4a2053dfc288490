"""Clients with a token of each role, and a small world of objects for API tests.

Import the fixtures a module needs explicitly: `from tests.api_fixtures import admin, world`.
"""

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from experiments_app import actions, runs
from experiments_app.models import ApiToken, Application, Experiment, InferenceStep, Role, Run, Task, Test, Variant
from tests.factories import make_application, make_step, make_task, make_team, make_token


def client_for(token=None, **headers):
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}", **headers)
    return client


@pytest.fixture
def admin(team):
    return client_for(make_token(team, Role.ADMIN))


@pytest.fixture
def editor(team):
    return client_for(make_token(team, Role.EDITOR))


@pytest.fixture
def viewer(team):
    return client_for(make_token(team, Role.VIEWER))


@pytest.fixture
def stranger(db):
    """An admin of another team."""
    return client_for(make_token(make_team(), Role.ADMIN))


@pytest.fixture
def anonymous(db):
    return APIClient()


def finish_run(run, passed=True):
    """Report a result for every test of `run` (exact_match: the expected output passes)."""
    for test in Test.objects.filter(run=run):
        runs.record_result(test.pk, {"output": test.task_expected if passed else "wrong"})
    run.refresh_from_db()
    return run


def ready_experiment(application, n_tasks=3):
    """An experiment in baseline_pending: one step `main` and `n_tasks` tasks."""
    step = application.inference_steps.filter(external_id="main").first() or make_step(application, external_id="main")
    tasks = [make_task(application) for _ in range(n_tasks)]
    experiment = actions.create_experiment(application, name="Lower temperature")
    actions.set_scope(experiment, steps=[step.external_id], tasks=tasks)
    experiment.refresh_from_db()
    return experiment


def experiment_with_baseline(application, n_tasks=3):
    """An experiment whose baseline run succeeded (baseline_complete)."""
    experiment = ready_experiment(application, n_tasks)
    finish_run(runs.start_baseline_run(experiment))
    experiment.refresh_from_db()
    return experiment


@dataclass
class World:
    application: Application
    step: InferenceStep
    task: Task
    experiment: Experiment
    baseline: Variant
    variant: Variant
    run: Run
    test: Test
    token: ApiToken


@pytest.fixture
def world(team):
    """One object of each kind in `team`: an experiment in baseline_complete with one variant."""
    application = make_application(team)
    experiment = experiment_with_baseline(application)
    baseline = experiment.variants.get(parent__isnull=True)
    variant = actions.create_variant(experiment, parent=baseline, inference_step="main", parameter="temperature", value=0.3)
    run = Run.objects.get(variant=baseline)
    return World(
        application=application,
        step=application.inference_steps.get(external_id="main"),
        task=experiment.tasks.first(),
        experiment=experiment,
        baseline=baseline,
        variant=variant,
        run=run,
        test=run.tests.first(),
        token=ApiToken.issue(team, role=Role.VIEWER, name="world")[0],
    )
