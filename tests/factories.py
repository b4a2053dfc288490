"""Small explicit factories. Each makes one object and what it cannot exist without."""

import itertools

from django.contrib.auth import get_user_model

from experiments_app import actions
from experiments_app.models import ApiToken, Application, InferenceStep, Membership, Role, Task, Team

counter = itertools.count(1)


def make_team(**fields):
    n = next(counter)
    fields.setdefault("name", f"Team {n}")
    fields.setdefault("slug", f"team-{n}")
    return Team.objects.create(**fields)


def make_user(team=None, role=Role.EDITOR, **fields):
    n = next(counter)
    fields.setdefault("username", f"user{n}")
    password = fields.pop("password", "pw")
    user = get_user_model().objects.create_user(password=password, **fields)
    if team is not None:
        Membership.objects.create(team=team, user=user, role=role)
    return user


def make_token(team=None, role=Role.EDITOR):
    """Return the raw token string of a new token."""
    _, raw = ApiToken.issue(team or make_team(), role=role)
    return raw


def make_application(team=None, **fields):
    n = next(counter)
    fields.setdefault("name", f"App {n}")
    fields.setdefault("webhook_url", "http://127.0.0.1:9/hook")
    return Application.objects.create(team=team or make_team(), **fields)


def make_step(application=None, **fields):
    n = next(counter)
    fields.setdefault("external_id", f"step_{n}")
    fields.setdefault("config", {"model": "gpt-4o-mini", "temperature": 0.7, "max_tokens": 500})
    return InferenceStep.objects.create(application=application or make_application(), **fields)


def make_task(application=None, **fields):
    n = next(counter)
    fields.setdefault("external_id", f"task-{n}")
    fields.setdefault("input", {"question": f"q{n}"})
    fields.setdefault("expected", f"a{n}")
    return Task.objects.create(application=application or make_application(), **fields)


def make_experiment(application=None, *, steps=None, tasks=None, n_tasks=0, **fields):
    """An experiment; with `steps`/`tasks` (or `n_tasks`) its scope is set (baseline_pending)."""
    application = application or make_application()
    fields.setdefault("name", f"Experiment {next(counter)}")
    experiment = actions.create_experiment(application, **fields)
    if n_tasks:
        tasks = [make_task(application) for _ in range(n_tasks)]
    if steps is not None or tasks is not None:
        actions.set_scope(
            experiment,
            steps=[step.external_id for step in steps] if steps is not None else None,
            tasks=tasks,
        )
        experiment.refresh_from_db()
    return experiment


def make_ready_experiment(n_tasks=3, **fields):
    """An experiment in baseline_pending with one step (`main`) and `n_tasks` tasks."""
    application = fields.pop("application", None) or make_application()
    step = make_step(application, external_id="main")
    return make_experiment(application, steps=[step], n_tasks=n_tasks, **fields)
