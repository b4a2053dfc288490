"""Dry runs (SPEC §8 variants/{id}/dry-run/): a few tasks, beside other runs, outside the lifecycle and the results."""

import random
import uuid

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from experiments_app import actions, results, runs
from experiments_app.errors import Conflict, ValidationFailed
from experiments_app.models import Run, RunStatus, Test, Transition
from experiments_app.states import State
from tests.api_fixtures import experiment_with_baseline, finish_run, ready_experiment
from tests.engine_fixtures import Reply
from tests.factories import make_application, make_task

pytestmark = pytest.mark.django_db


def dry_run_url(variant):
    return reverse("api:variant-dry-run", kwargs={"id": variant.pk})


def lifecycle(experiment):
    experiment.refresh_from_db()
    return experiment.status, experiment.locked_at, Transition.objects.filter(experiment=experiment).count()


@pytest.fixture
def variant_world(team):
    """baseline_complete with a variant `temp 0.3` and 5 tasks."""
    experiment = experiment_with_baseline(make_application(team), n_tasks=5)
    variant = actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.3)
    return experiment, variant


def test_a_dry_run_tries_one_random_selected_task_by_default(variant_world):
    experiment, variant = variant_world
    run = runs.start_dry_run(variant)
    assert run.dry_run and run.status == RunStatus.QUEUED and run.total == 1
    test = run.tests.get()
    assert test.task_id in set(experiment.tasks.values_list("pk", flat=True)) and test.repetition == 1
    assert run.config == actions.variant_effective_config(variant)


def test_a_dry_run_tries_k_tasks_once_each_whatever_the_repetitions(team):
    experiment = ready_experiment(make_application(team), n_tasks=5)
    actions.update_experiment(experiment, repetitions=3)
    run = runs.start_dry_run(experiment.baseline, tasks=3, rng=random.Random(7))
    assert run.total == 3 and set(run.tests.values_list("repetition", flat=True)) == {1}
    assert len(set(run.tests.values_list("task_id", flat=True))) == 3


def test_asking_for_more_tasks_than_selected_tries_them_all(variant_world):
    _, variant = variant_world
    assert runs.start_dry_run(variant, tasks=50).total == 5


def test_a_dry_run_on_named_tasks_may_use_any_task_of_the_application(variant_world):
    experiment, variant = variant_world
    unselected = make_task(experiment.application)
    run = runs.start_dry_run(variant, task_ids=[unselected.pk])
    assert list(run.tests.values_list("task_id", flat=True)) == [unselected.pk]


def test_named_tasks_of_another_application_are_refused_naming_task_ids(variant_world):
    _, variant = variant_world
    foreign = make_task(make_application())
    with pytest.raises(ValidationFailed) as caught:
        runs.start_dry_run(variant, task_ids=[foreign.pk])
    assert set(caught.value.errors) == {"task_ids"}


def test_tasks_and_task_ids_together_are_refused(variant_world):
    experiment, variant = variant_world
    with pytest.raises(ValidationFailed) as caught:
        runs.start_dry_run(variant, tasks=1, task_ids=[experiment.tasks.first().pk])
    assert set(caught.value.errors) == {"task_ids"}


def test_the_baseline_can_be_tried_before_it_has_run(team):
    experiment = ready_experiment(make_application(team))
    before = lifecycle(experiment)
    run = runs.start_dry_run(experiment.baseline)
    assert run.config == experiment.baseline.config and run.dry_run
    finish_run(run)
    assert lifecycle(experiment) == before  # still baseline_pending, unlocked, no transition
    assert experiment.status == State.BASELINE_PENDING and experiment.locked_at is None
    assert results.experiment_results(experiment)["baseline"]["run"] is None


def test_a_draft_without_selected_tasks_needs_task_ids(team):
    application = make_application(team)
    experiment = actions.create_experiment(application, name="Draft")
    with pytest.raises(ValidationFailed) as caught:
        runs.start_dry_run(experiment.baseline)
    assert set(caught.value.errors) == {"tasks"}
    task = make_task(application)
    assert runs.start_dry_run(experiment.baseline, task_ids=[task.pk]).total == 1


def test_an_archived_experiment_refuses_dry_runs(variant_world):
    experiment, variant = variant_world
    actions.archive_experiment(experiment)
    with pytest.raises(Conflict):
        runs.start_dry_run(variant)


def test_a_dry_run_starts_beside_a_running_variant_and_a_real_run_beside_a_dry_run(variant_world):
    experiment, variant = variant_world
    dry = runs.start_dry_run(variant)
    real = runs.start_variant_run(variant)  # the one-active-run constraint does not count dry runs
    another_dry = runs.start_dry_run(experiment.baseline)
    assert {dry.status, real.status, another_dry.status} == {RunStatus.QUEUED}
    experiment.refresh_from_db()
    assert experiment.status == State.RUNNING_VARIANT


def test_the_database_still_allows_one_real_active_run(variant_world):
    experiment, variant = variant_world
    runs.start_variant_run(variant)
    with pytest.raises(IntegrityError), transaction.atomic():
        Run.objects.create(experiment=experiment, variant=variant, config={})
    Run.objects.create(experiment=experiment, variant=variant, config={}, dry_run=True)


def test_finishing_a_dry_run_during_a_variant_run_leaves_the_experiment_running(variant_world):
    experiment, variant = variant_world
    real = runs.start_variant_run(variant)
    before = lifecycle(experiment)
    finish_run(runs.start_dry_run(variant, tasks=2))
    assert lifecycle(experiment) == before
    finish_run(real)
    experiment.refresh_from_db()
    assert experiment.status == State.IDLE


def test_cancelling_a_dry_run_leaves_the_running_variant_alone(variant_world):
    experiment, variant = variant_world
    runs.start_variant_run(variant)
    dry = runs.start_dry_run(variant)
    before = lifecycle(experiment)
    assert runs.cancel_run(dry).status == RunStatus.CANCELLED
    assert lifecycle(experiment) == before and experiment.status == State.RUNNING_VARIANT


def test_a_dry_run_is_never_a_result(variant_world):
    experiment, variant = variant_world
    before = results.experiment_results(experiment)
    finish_run(runs.start_dry_run(variant, tasks=5), passed=False)
    finish_run(runs.start_dry_run(experiment.baseline, tasks=5), passed=False)
    after = results.experiment_results(experiment)
    assert after == before
    assert after["variants"][0]["run"] is None
    assert results.baseline_result_runs(experiment.pk).first().dry_run is False


def test_a_variant_with_only_a_dry_run_cannot_be_the_winner(variant_world):
    experiment, variant = variant_world
    finish_run(runs.start_dry_run(variant))
    with pytest.raises(ValidationFailed):
        actions.complete_experiment(experiment, winner=variant)


def test_a_variant_with_only_finished_dry_runs_can_be_deleted_but_not_during_one(variant_world):
    experiment, variant = variant_world
    active = runs.start_dry_run(variant)
    with pytest.raises(Conflict):
        actions.delete_variant(variant)
    finish_run(active)
    actions.delete_variant(variant)
    assert not experiment.variants.filter(pk=variant.pk).exists() and not Run.objects.filter(pk=active.pk).exists()


# ------------------------------------------------------------------ through the API


def test_post_dry_run_answers_202_with_a_run_marked_dry(editor, variant_world):
    _, variant = variant_world
    response = editor.post(dry_run_url(variant), {"tasks": 2}, format="json")
    assert response.status_code == 202
    body = response.json()
    assert body["dry_run"] is True and body["total"] == 2 and body["variant"] == str(variant.pk)


def test_post_dry_run_without_a_body_tries_one_task(editor, variant_world):
    _, variant = variant_world
    response = editor.post(dry_run_url(variant))
    assert response.status_code == 202 and response.json()["total"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [({"tasks": 0}, "tasks"), ({"tasks": 101}, "tasks"), ({"task_ids": []}, "task_ids"), ({"task_ids": ["nope"]}, "task_ids[0]")],
)
def test_bad_dry_run_input_is_400_naming_the_field(editor, variant_world, body, field):
    _, variant = variant_world
    response = editor.post(dry_run_url(variant), body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_unknown_task_ids_are_400(editor, variant_world):
    _, variant = variant_world
    response = editor.post(dry_run_url(variant), {"task_ids": [str(uuid.uuid4())]}, format="json")
    assert response.status_code == 400 and "task_ids" in response.json()["errors"]


def test_dry_run_of_an_archived_experiment_is_409(editor, variant_world):
    experiment, variant = variant_world
    actions.archive_experiment(experiment)
    assert editor.post(dry_run_url(variant)).status_code == 409


def test_a_viewer_cannot_start_a_dry_run_and_a_stranger_sees_nothing(viewer, stranger, variant_world):
    _, variant = variant_world
    assert viewer.post(dry_run_url(variant)).status_code == 403
    assert stranger.post(dry_run_url(variant)).status_code == 404
    assert not Run.objects.filter(dry_run=True).exists()


def test_the_results_endpoint_ignores_dry_runs(viewer, editor, variant_world):
    experiment, variant = variant_world
    url = reverse("api:experiment-results", kwargs={"id": experiment.pk})
    before = viewer.get(url).json()
    finish_run(Run.objects.get(pk=editor.post(dry_run_url(variant), {"tasks": 5}, format="json").json()["id"]))
    assert viewer.get(url).json() == before


# ------------------------------------------------------------------ through the engine


def test_a_dry_run_is_delivered_with_the_variants_overrides(receiver, fast_engine, team):
    receiver.handler = lambda received, count: Reply(200, {"output": "an answer"})
    application = make_application(team, webhook_url=receiver.url)
    experiment = experiment_with_baseline(application, n_tasks=3)
    variant = actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.3)
    run = runs.start_dry_run(variant, tasks=2)
    runs.dispatch_application(application.pk)
    run.refresh_from_db()
    assert run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED) and run.total == 2
    assert len(receiver.requests) == 2
    assert {request.json["data"]["experiment"]["overrides"]["main"]["temperature"] for request in receiver.requests} == {0.3}
    assert set(Test.objects.filter(run=run).values_list("output", flat=True)) == {"an answer"}
    experiment.refresh_from_db()
    assert experiment.status == State.BASELINE_COMPLETE
