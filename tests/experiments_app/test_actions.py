"""Lifecycle actions: scope, locking, runs, variants, completion and archiving."""

import threading

import pytest
from django.db import connection
from django.utils import timezone

from experiments_app import actions, runs
from experiments_app.actions.experiments import apply_transition
from experiments_app.errors import Conflict, Locked, ValidationFailed
from experiments_app.models import Experiment, Run, RunStatus, Test, Transition
from experiments_app.states import InvalidTransition, State
from tests.factories import make_application, make_experiment, make_ready_experiment, make_step, make_task

pytestmark = pytest.mark.django_db


def finish_run(run, status=RunStatus.SUCCEEDED):
    """Close a run the way the engine does, for tests of what comes after."""
    Run.objects.filter(pk=run.pk).update(status=status, completed_at=timezone.now())
    experiment = Experiment.objects.get(pk=run.experiment_id)
    if experiment.status == State.RUNNING_BASELINE:
        apply_transition(experiment, State.BASELINE_COMPLETE if status == RunStatus.SUCCEEDED else State.BASELINE_FAILED)
    else:
        apply_transition(experiment, State.IDLE)
    return Experiment.objects.get(pk=experiment.pk)


def baseline_complete(n_tasks=3, **fields):
    experiment = make_ready_experiment(n_tasks=n_tasks, **fields)
    return finish_run(runs.start_baseline_run(experiment))


def test_create_experiment_starts_as_draft_with_a_baseline():
    experiment = make_experiment()
    assert experiment.status == State.DRAFT
    assert experiment.baseline.is_baseline
    assert experiment.baseline.config == {}


def test_create_experiment_rejects_blank_name():
    with pytest.raises(ValidationFailed) as caught:
        actions.create_experiment(make_application(), name="  ")
    assert "name" in caught.value.errors


def test_filling_the_scope_moves_draft_to_baseline_pending():
    experiment = make_ready_experiment()
    assert experiment.status == State.BASELINE_PENDING
    assert Transition.objects.filter(experiment=experiment, verb="fill_scope").exists()


def test_steps_alone_keep_the_experiment_in_draft():
    app = make_application()
    experiment = make_experiment(app, steps=[make_step(app)])
    assert experiment.status == State.DRAFT


def test_emptying_the_scope_moves_back_to_draft():
    experiment = make_ready_experiment()
    actions.set_scope(experiment, tasks=[])
    experiment.refresh_from_db()
    assert experiment.status == State.DRAFT


def test_baseline_config_is_prefilled_from_production_config():
    app = make_application()
    gen = make_step(app, external_id="gen", config={"model": "m1", "temperature": 0.7})
    cls = make_step(app, external_id="cls", config={"model": "m2"})
    experiment = make_experiment(app, steps=[gen, cls], tasks=[make_task(app)])
    assert experiment.baseline.config == {"gen": {"model": "m1", "temperature": 0.7}, "cls": {"model": "m2"}}


def test_scope_rejects_unknown_step():
    experiment = make_experiment()
    with pytest.raises(ValidationFailed) as caught:
        actions.set_scope(experiment, steps=["nope"])
    assert "inference_steps" in caught.value.errors


def test_scope_rejects_another_applications_task():
    experiment = make_experiment()
    with pytest.raises(ValidationFailed) as caught:
        actions.set_scope(experiment, tasks=[make_task()])
    assert "tasks" in caught.value.errors


def test_set_baseline_config_validates_values():
    experiment = make_ready_experiment()
    with pytest.raises(ValidationFailed) as caught:
        actions.set_baseline_config(experiment, {"main": {"temperature": 3}})
    assert "config.main.temperature" in caught.value.errors


def test_start_baseline_locks_and_creates_tests_for_each_repetition(django_capture_on_commit_callbacks):
    experiment = make_ready_experiment(n_tasks=4)
    actions.update_experiment(experiment, repetitions=3)
    with django_capture_on_commit_callbacks() as callbacks:
        run = runs.start_baseline_run(experiment)
    experiment.refresh_from_db()
    assert experiment.status == State.RUNNING_BASELINE
    assert experiment.locked_at is not None
    assert run.status == RunStatus.QUEUED and run.total == 12
    assert sorted(set(run.tests.values_list("repetition", flat=True))) == [1, 2, 3]
    assert len(callbacks) == 1


def test_start_baseline_snapshots_task_input_and_expected():
    experiment = make_ready_experiment(n_tasks=1)
    run = runs.start_baseline_run(experiment)
    test, task = run.tests.get(), experiment.tasks.get()
    assert (test.task_input, test.task_expected, test.task_external_id) == (task.input, task.expected, task.external_id)


def test_start_baseline_refused_in_draft():
    with pytest.raises(InvalidTransition) as caught:
        runs.start_baseline_run(make_experiment())
    assert caught.value.current == State.DRAFT


def test_editing_scope_after_baseline_start_is_refused():
    experiment = make_ready_experiment()
    runs.start_baseline_run(experiment)
    experiment.refresh_from_db()
    with pytest.raises(Locked):
        actions.set_scope(experiment, tasks=[make_task(experiment.application)])
    with pytest.raises(Locked):
        actions.set_scope(experiment, steps=[])


def test_editing_baseline_config_after_baseline_start_is_refused():
    experiment = make_ready_experiment()
    runs.start_baseline_run(experiment)
    experiment.refresh_from_db()
    with pytest.raises(Locked):
        actions.set_baseline_config(experiment, {"main": {"temperature": 0.1}})


def test_editing_repetitions_and_evaluators_after_lock_is_refused_but_name_is_not():
    experiment = make_ready_experiment()
    runs.start_baseline_run(experiment)
    experiment.refresh_from_db()
    with pytest.raises(Locked):
        actions.update_experiment(experiment, repetitions=2)
    with pytest.raises(Locked):
        actions.update_experiment(experiment, evaluators=[{"type": "reported"}])
    actions.update_experiment(experiment, name="Renamed", max_error_rate=0.5)
    assert Experiment.objects.get(pk=experiment.pk).name == "Renamed"


def test_editing_a_selected_tasks_input_after_lock_is_refused():
    experiment = make_ready_experiment(n_tasks=1)
    runs.start_baseline_run(experiment)
    task = experiment.tasks.get()
    with pytest.raises(Locked):
        actions.update_task(task, {"input": {"question": "changed"}})
    actions.update_task(task, {"name": "a new label", "tags": ["geo"]})


def test_editing_a_task_is_allowed_again_once_its_experiment_is_archived():
    experiment = baseline_complete(n_tasks=1)
    actions.archive_experiment(experiment)
    task = experiment.tasks.get()
    actions.update_task(task, {"expected": "changed"})
    task.refresh_from_db()
    assert task.expected == "changed"


def test_reopen_after_baseline_failed_unlocks_the_scope():
    experiment = make_ready_experiment()
    experiment = finish_run(runs.start_baseline_run(experiment), RunStatus.FAILED)
    assert experiment.status == State.BASELINE_FAILED
    actions.reopen_experiment(experiment)
    experiment.refresh_from_db()
    assert experiment.status == State.BASELINE_PENDING and experiment.locked_at is None
    actions.set_baseline_config(experiment, {"main": {"temperature": 0.2}})


def test_retry_after_baseline_failed_starts_a_new_baseline_run():
    experiment = make_ready_experiment()
    experiment = finish_run(runs.start_baseline_run(experiment), RunStatus.FAILED)
    run = runs.start_baseline_run(experiment)
    assert Experiment.objects.get(pk=experiment.pk).status == State.RUNNING_BASELINE
    assert run.variant == experiment.baseline


def test_second_start_while_running_is_refused():
    experiment = make_ready_experiment()
    runs.start_baseline_run(experiment)
    with pytest.raises(InvalidTransition):
        runs.start_baseline_run(experiment)


def test_variant_run_moves_to_running_variant_and_sends_effective_config():
    experiment = baseline_complete()
    variant = actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.3)
    run = runs.start_variant_run(variant)
    assert Experiment.objects.get(pk=experiment.pk).status == State.RUNNING_VARIANT
    assert run.config["main"]["temperature"] == 0.3


def test_baseline_never_runs_through_the_variant_route():
    experiment = baseline_complete()
    with pytest.raises(InvalidTransition):
        runs.start_variant_run(experiment.baseline)


def test_cancel_baseline_run_fails_the_baseline():
    experiment = make_ready_experiment(n_tasks=2)
    run = runs.cancel_run(runs.start_baseline_run(experiment))
    assert run.status == RunStatus.CANCELLED and run.errored == 2
    assert Experiment.objects.get(pk=experiment.pk).status == State.BASELINE_FAILED
    assert not Test.objects.filter(run=run, status__in=["pending", "dispatched"]).exists()


def test_cancel_variant_run_makes_experiment_idle():
    experiment = baseline_complete()
    variant = actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="model", value="other")
    runs.cancel_run(runs.start_variant_run(variant))
    assert Experiment.objects.get(pk=experiment.pk).status == State.IDLE


def test_cancel_of_an_ended_run_is_refused():
    experiment = make_ready_experiment()
    run = runs.start_baseline_run(experiment)
    finish_run(run)
    with pytest.raises(Conflict):
        runs.cancel_run(run)


def test_variant_before_baseline_results_is_refused():
    experiment = make_ready_experiment()
    with pytest.raises(Conflict):
        actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.3)


def test_noop_variant_is_rejected():
    experiment = baseline_complete()  # main's production temperature is 0.7
    with pytest.raises(ValidationFailed) as caught:
        actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.7)
    assert "value" in caught.value.errors


def test_noop_against_the_parents_change_is_rejected():
    experiment = baseline_complete()
    child = actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.3)
    with pytest.raises(ValidationFailed):
        actions.create_variant(experiment, parent=child, inference_step="main", parameter="temperature", value=0.3)


def test_variant_value_out_of_range_names_value():
    experiment = baseline_complete()
    with pytest.raises(ValidationFailed) as caught:
        actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="top_p", value=0)
    assert list(caught.value.errors) == ["value"]


def test_variant_of_a_step_out_of_scope_is_rejected():
    experiment = baseline_complete()
    make_step(experiment.application, external_id="other")
    with pytest.raises(ValidationFailed) as caught:
        actions.create_variant(experiment, parent=experiment.baseline, inference_step="other", parameter="model", value="x")
    assert "inference_step" in caught.value.errors


def test_effective_config_through_a_three_level_branch():
    experiment = baseline_complete()
    a = actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.3)
    b = actions.create_variant(experiment, parent=a, inference_step="main", parameter="model", value="gpt-4o")
    c = actions.create_variant(experiment, parent=b, inference_step="main", parameter="verbosity", value="high")
    assert actions.variant_effective_config(c) == {"main": {"model": "gpt-4o", "temperature": 0.3, "max_tokens": 500, "verbosity": "high"}}
    assert actions.variant_effective_config(a)["main"]["model"] == "gpt-4o-mini"


def test_variant_gets_a_default_name_from_its_change():
    experiment = baseline_complete()
    variant = actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.3)
    assert variant.name == "main temperature 0.3"


def test_leaf_variant_without_runs_can_be_deleted():
    experiment = baseline_complete()
    variant = actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.3)
    actions.delete_variant(variant)
    assert not experiment.variants.filter(pk=variant.pk).exists()


def test_variant_with_a_run_is_immutable():
    experiment = baseline_complete()
    variant = actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.3)
    runs.start_variant_run(variant)
    with pytest.raises(Conflict):
        actions.delete_variant(variant)


def test_variant_with_children_cannot_be_deleted():
    experiment = baseline_complete()
    parent = actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.3)
    actions.create_variant(experiment, parent=parent, inference_step="main", parameter="model", value="x")
    with pytest.raises(Conflict):
        actions.delete_variant(parent)


def test_baseline_cannot_be_deleted():
    experiment = make_ready_experiment()
    with pytest.raises(Conflict):
        actions.delete_variant(experiment.baseline)


def test_complete_with_a_winner_that_succeeded():
    experiment = baseline_complete()
    actions.complete_experiment(experiment, winner=experiment.baseline)
    experiment.refresh_from_db()
    assert experiment.status == State.COMPLETED and experiment.winner == experiment.baseline
    assert experiment.completed_at is not None


def test_complete_refuses_a_winner_without_a_succeeded_run():
    experiment = baseline_complete()
    variant = actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="temperature", value=0.3)
    with pytest.raises(ValidationFailed) as caught:
        actions.complete_experiment(experiment, winner=variant)
    assert "winner" in caught.value.errors


def test_archive_refused_while_running():
    experiment = make_ready_experiment()
    runs.start_baseline_run(experiment)
    experiment.refresh_from_db()
    with pytest.raises(InvalidTransition):
        actions.archive_experiment(experiment)


def test_archived_experiment_is_read_only():
    experiment = actions.archive_experiment(make_ready_experiment())
    with pytest.raises(Conflict):
        actions.update_experiment(experiment, name="x")
    with pytest.raises(InvalidTransition):
        actions.archive_experiment(experiment)


def test_conditional_update_loses_to_a_stale_status():
    experiment = make_ready_experiment()
    stale = Experiment.objects.get(pk=experiment.pk)
    actions.archive_experiment(experiment)
    with pytest.raises(InvalidTransition) as caught:
        apply_transition(stale, State.RUNNING_BASELINE)
    assert caught.value.current == State.ARCHIVED


@pytest.mark.django_db(transaction=True)
def test_two_racing_starts_exactly_one_wins():
    experiment = make_ready_experiment(n_tasks=2)
    barrier = threading.Barrier(2)
    outcomes = []

    def start():
        try:
            barrier.wait()
            runs.start_baseline_run(Experiment.objects.get(pk=experiment.pk))
            outcomes.append("won")
        except InvalidTransition:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused", "won"]
    assert Run.objects.filter(experiment=experiment).count() == 1


def test_evaluators_are_validated_naming_the_nested_field():
    experiment = make_ready_experiment()
    with pytest.raises(ValidationFailed) as caught:
        actions.update_experiment(
            experiment,
            evaluators=[{"type": "contains", "value": "Paris"}, {"type": "fuzzy"}, {"type": "regex", "pattern": "("}],
        )
    assert set(caught.value.errors) == {"evaluators[1].type", "evaluators[2].pattern"}


def test_evaluator_names_must_be_unique():
    experiment = make_ready_experiment()
    with pytest.raises(ValidationFailed) as caught:
        actions.update_experiment(experiment, evaluators=[{"type": "reported"}, {"type": "reported"}])
    assert "evaluators[1].name" in caught.value.errors


def test_repetitions_outside_one_to_twenty_are_rejected():
    experiment = make_ready_experiment()
    for value in (0, 21, 2.5, True):
        with pytest.raises(ValidationFailed) as caught:
            actions.update_experiment(experiment, repetitions=value)
        assert "repetitions" in caught.value.errors


@pytest.mark.django_db
def test_change_task_selection_adds_and_removes_keeping_the_rest():
    from experiments_app.states import State
    from tests.factories import make_ready_experiment

    experiment = make_ready_experiment(n_tasks=3)
    application = experiment.application
    tasks = list(application.tasks.order_by("external_id"))
    extra = make_task(application, external_id="extra")
    actions.change_task_selection(experiment, add=[extra], remove=[tasks[0].pk])
    assert set(experiment.tasks.all()) == {tasks[1], tasks[2], extra}
    actions.change_task_selection(experiment, remove=[tasks[1], tasks[2], str(extra.pk)])
    experiment.refresh_from_db()
    assert experiment.tasks.count() == 0 and experiment.status == State.DRAFT  # empty scope goes back to draft
