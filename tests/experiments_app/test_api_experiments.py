"""Experiments, baseline, lifecycle and variants through the API."""

from django.urls import reverse

from experiments_app import actions, runs
from experiments_app.models import Experiment, Run, Variant
from experiments_app.states import State
from tests.api_fixtures import experiment_with_baseline, ready_experiment
from tests.factories import make_application, make_step, make_task

EXPERIMENT_FIELDS = {
    "id",
    "application",
    "name",
    "description",
    "status",
    "inference_steps",
    "tasks",
    "evaluators",
    "repetitions",
    "max_error_rate",
    "alpha",
    "guardrails",
    "baseline",
    "locked_at",
    "winner",
    "completed_at",
    "created_at",
}


def url(name, **kwargs):
    return reverse(f"api:{name}", kwargs=kwargs)


# ------------------------------------------------------------------ experiments


def test_creating_an_experiment_answers_201_in_draft_with_its_baseline(editor, team):
    application = make_application(team)
    response = editor.post(
        url("experiment-list"),
        {"application": str(application.pk), "name": "Lower temperature", "description": "Hypothesis"},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == EXPERIMENT_FIELDS
    assert body["status"] == "draft" and body["description"] == "Hypothesis"
    assert body["baseline"] == str(Variant.objects.get(experiment_id=body["id"], parent__isnull=True).pk)


def test_creating_an_experiment_without_a_name_is_400(editor, team):
    application = make_application(team)
    response = editor.post(url("experiment-list"), {"application": str(application.pk)}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()["errors"]


def test_creating_an_experiment_with_a_non_uuid_application_is_400(editor):
    response = editor.post(url("experiment-list"), {"application": "nope", "name": "x"}, format="json")
    assert response.status_code == 400
    assert "application" in response.json()["errors"]


def test_experiments_filter_by_status(viewer, world):
    actions.create_experiment(world.application, name="draft one")
    response = viewer.get(url("experiment-list"), {"status": "baseline_complete"})
    assert [row["id"] for row in response.json()["results"]] == [str(world.experiment.pk)]
    assert viewer.get(url("experiment-list"), {"status": "draft"}).json()["count"] == 1


def test_an_unknown_status_filter_is_400(viewer, world):
    response = viewer.get(url("experiment-list"), {"status": "sleeping"})
    assert response.status_code == 400
    assert "status" in response.json()["errors"]


def test_reading_an_experiment_shows_its_scope(viewer, world):
    body = viewer.get(url("experiment-detail", id=world.experiment.pk)).json()
    assert body["inference_steps"] == ["main"]
    assert sorted(body["tasks"]) == sorted(str(pk) for pk in world.experiment.tasks.values_list("pk", flat=True))
    assert body["locked_at"] is not None and body["status"] == "baseline_complete"


def test_patching_the_scope_moves_draft_to_baseline_pending(editor, team):
    application = make_application(team)
    step, task = make_step(application, external_id="gen"), make_task(application)
    experiment = actions.create_experiment(application, name="x")
    response = editor.patch(
        url("experiment-detail", id=experiment.pk),
        {"inference_steps": ["gen"], "tasks": [str(task.pk)], "repetitions": 3, "evaluators": [{"type": "contains", "value": "Paris"}]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "baseline_pending" and body["inference_steps"] == [step.external_id]
    assert body["tasks"] == [str(task.pk)] and body["repetitions"] == 3
    assert body["evaluators"] == [{"type": "contains", "value": "Paris"}]


def test_patching_with_an_unknown_step_names_inference_steps(editor, team):
    experiment = actions.create_experiment(make_application(team), name="x")
    response = editor.patch(url("experiment-detail", id=experiment.pk), {"inference_steps": ["nope"]}, format="json")
    assert response.status_code == 400
    assert "inference_steps" in response.json()["errors"]


def test_patching_repetitions_out_of_range_is_400(editor, world):
    response = editor.patch(url("experiment-detail", id=world.experiment.pk), {"repetitions": 21}, format="json")
    assert response.status_code == 400
    assert "repetitions" in response.json()["errors"]


def test_a_bad_evaluator_is_named_by_index(editor, team):
    experiment = actions.create_experiment(make_application(team), name="x")
    response = editor.patch(url("experiment-detail", id=experiment.pk), {"evaluators": [{"type": "regex", "pattern": "("}]}, format="json")
    assert response.status_code == 400
    assert "evaluators[0].pattern" in response.json()["errors"]


def test_patching_the_scope_of_a_locked_experiment_is_409_with_its_status(editor, world):
    response = editor.patch(url("experiment-detail", id=world.experiment.pk), {"tasks": []}, format="json")
    assert response.status_code == 409
    assert response.json()["status"] == "baseline_complete"


def test_renaming_a_locked_experiment_is_allowed(editor, world):
    response = editor.patch(url("experiment-detail", id=world.experiment.pk), {"name": "Renamed"}, format="json")
    assert response.status_code == 200 and response.json()["name"] == "Renamed"


def test_deleting_an_experiment_answers_204(editor, world):
    assert editor.delete(url("experiment-detail", id=world.experiment.pk)).status_code == 204
    assert not Experiment.objects.filter(pk=world.experiment.pk).exists()


def test_deleting_a_running_experiment_is_409(editor, world):
    runs.start_variant_run(world.variant)
    response = editor.delete(url("experiment-detail", id=world.experiment.pk))
    assert response.status_code == 409
    assert response.json()["status"] == "running_variant"


# ------------------------------------------------------------------ baseline


def test_the_baseline_config_is_prefilled_from_the_steps(viewer, world):
    response = viewer.get(url("experiment-baseline", id=world.experiment.pk))
    assert response.status_code == 200
    assert response.json()["config"] == {"main": world.step.config}


def test_putting_the_baseline_config_replaces_it(editor, team):
    experiment = ready_experiment(make_application(team))
    config = {"main": {"model": "gpt-4o", "temperature": 0.5}}
    response = editor.put(url("experiment-baseline", id=experiment.pk), {"config": config}, format="json")
    assert response.status_code == 200
    assert response.json()["config"] == config


def test_a_baseline_value_out_of_range_names_the_path(editor, team):
    experiment = ready_experiment(make_application(team))
    response = editor.put(url("experiment-baseline", id=experiment.pk), {"config": {"main": {"top_p": 0}}}, format="json")
    assert response.status_code == 400
    assert "config.main.top_p" in response.json()["errors"]


def test_a_baseline_config_of_the_wrong_shape_is_400(editor, team):
    experiment = ready_experiment(make_application(team))
    response = editor.put(url("experiment-baseline", id=experiment.pk), {"config": {"main": 3}}, format="json")
    assert response.status_code == 400
    assert "config.main" in response.json()["errors"]


def test_the_baseline_config_is_locked_after_the_baseline_ran(editor, world):
    response = editor.put(url("experiment-baseline", id=world.experiment.pk), {"config": {"main": {"temperature": 0.1}}}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "locked"


# ------------------------------------------------------------------ running the baseline


def test_run_baseline_answers_202_with_the_queued_run(editor, team, django_capture_on_commit_callbacks):
    experiment = ready_experiment(make_application(team), n_tasks=2)
    with django_capture_on_commit_callbacks() as callbacks:
        response = editor.post(url("experiment-run-baseline", id=experiment.pk))
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["total"] == 2 and body["variant"] == str(experiment.baseline.pk)
    assert set(body) == {
        "id",
        "experiment",
        "variant",
        "status",
        "total",
        "passed",
        "failed",
        "errored",
        "started_at",
        "completed_at",
        "created_at",
        "webhook_url",
        "dry_run",  # issue 13
        "steps",  # issue 13: per-step aggregates, stored when the run ends
        "skipped",  # issue 9: SPEC §3 stop_when_decided, §7 live
        "stop_when_decided",
        "stopped_early",
        "live",
    }
    assert len(callbacks) == 1  # the dispatch is enqueued on commit


def test_run_baseline_of_a_draft_is_409_invalid_transition(editor, team):
    experiment = actions.create_experiment(make_application(team), name="x")
    response = editor.post(url("experiment-run-baseline", id=experiment.pk))
    assert response.status_code == 409
    assert response.json() == {"code": "invalid_transition", "status": "draft", "detail": response.json()["detail"]}


def test_run_baseline_again_after_it_succeeded_is_409(editor, world):
    response = editor.post(url("experiment-run-baseline", id=world.experiment.pk))
    assert response.status_code == 409
    assert response.json()["status"] == "baseline_complete"


# ------------------------------------------------------------------ lifecycle


def test_reopen_after_a_failed_baseline_answers_200_with_the_experiment(editor, team):
    experiment = ready_experiment(make_application(team))
    runs.cancel_run(runs.start_baseline_run(experiment))
    response = editor.post(url("experiment-reopen", id=experiment.pk))
    assert response.status_code == 200
    assert response.json()["status"] == "baseline_pending" and response.json()["locked_at"] is None


def test_reopen_of_a_completed_baseline_is_409(editor, world):
    response = editor.post(url("experiment-reopen", id=world.experiment.pk))
    assert response.status_code == 409
    assert response.json()["code"] == "invalid_transition" and response.json()["status"] == "baseline_complete"


def test_complete_with_a_winner_answers_200(editor, world):
    response = editor.post(url("experiment-complete", id=world.experiment.pk), {"winner": str(world.baseline.pk)}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "completed" and body["winner"] == str(world.baseline.pk) and body["completed_at"]


def test_complete_without_a_body_names_no_winner(editor, world):
    response = editor.post(url("experiment-complete", id=world.experiment.pk))
    assert response.status_code == 200 and response.json()["winner"] is None


def test_complete_with_a_winner_without_a_succeeded_run_is_400(editor, world):
    response = editor.post(url("experiment-complete", id=world.experiment.pk), {"winner": str(world.variant.pk)}, format="json")
    assert response.status_code == 400
    assert "winner" in response.json()["errors"]


def test_complete_with_a_winner_of_another_experiment_is_400(editor, world):
    other = experiment_with_baseline(world.application)
    response = editor.post(url("experiment-complete", id=world.experiment.pk), {"winner": str(other.baseline.pk)}, format="json")
    assert response.status_code == 400
    assert "winner" in response.json()["errors"]


def test_archive_answers_200_and_archived_is_final(editor, world):
    response = editor.post(url("experiment-archive", id=world.experiment.pk))
    assert response.status_code == 200 and response.json()["status"] == "archived"
    again = editor.post(url("experiment-archive", id=world.experiment.pk))
    assert again.status_code == 409 and again.json()["status"] == "archived"


def test_archive_while_running_is_409(editor, world):
    runs.start_variant_run(world.variant)
    response = editor.post(url("experiment-archive", id=world.experiment.pk))
    assert response.status_code == 409 and response.json()["status"] == "running_variant"


# ------------------------------------------------------------------ variants


def test_variants_are_listed_with_their_effective_config(viewer, world):
    response = viewer.get(url("variant-list", id=world.experiment.pk))
    assert response.status_code == 200
    rows = {row["id"]: row for row in response.json()["results"]}
    baseline, variant = rows[str(world.baseline.pk)], rows[str(world.variant.pk)]
    assert baseline["is_baseline"] and baseline["change"] is None and baseline["effective_config"] == {"main": world.step.config}
    assert variant["change"] == {"step": "main", "parameter": "temperature", "value": 0.3}
    assert variant["effective_config"] == {"main": {**world.step.config, "temperature": 0.3}}


def test_a_variant_branched_from_a_variant_inherits_its_change(editor, world):
    body = {"parent": str(world.variant.pk), "inference_step": "main", "parameter": "model", "value": "gpt-4o", "name": "B"}
    response = editor.post(url("variant-list", id=world.experiment.pk), body, format="json")
    assert response.status_code == 201
    created = response.json()
    assert created["parent"] == str(world.variant.pk) and created["name"] == "B"
    assert created["effective_config"] == {"main": {**world.step.config, "temperature": 0.3, "model": "gpt-4o"}}


def test_a_variant_that_changes_nothing_is_400(editor, world):
    body = {"parent": str(world.variant.pk), "inference_step": "main", "parameter": "temperature", "value": 0.3}
    response = editor.post(url("variant-list", id=world.experiment.pk), body, format="json")
    assert response.status_code == 400
    assert "value" in response.json()["errors"]


def test_a_variant_value_out_of_range_names_value(editor, world):
    body = {"parent": str(world.baseline.pk), "inference_step": "main", "parameter": "temperature", "value": 2.5}
    response = editor.post(url("variant-list", id=world.experiment.pk), body, format="json")
    assert response.status_code == 400
    assert "value" in response.json()["errors"]


def test_a_variant_with_an_unknown_parameter_names_parameter(editor, world):
    body = {"parent": str(world.baseline.pk), "inference_step": "main", "parameter": "seed", "value": 1}
    response = editor.post(url("variant-list", id=world.experiment.pk), body, format="json")
    assert response.status_code == 400
    assert "parameter" in response.json()["errors"]


def test_a_variant_of_a_parent_in_another_experiment_names_parent(editor, world):
    other = experiment_with_baseline(world.application)
    body = {"parent": str(other.baseline.pk), "inference_step": "main", "parameter": "temperature", "value": 0.1}
    response = editor.post(url("variant-list", id=world.experiment.pk), body, format="json")
    assert response.status_code == 400
    assert "parent" in response.json()["errors"]


def test_a_variant_before_the_baseline_has_results_is_409(editor, team):
    experiment = ready_experiment(make_application(team))
    body = {"parent": str(experiment.baseline.pk), "inference_step": "main", "parameter": "temperature", "value": 0.1}
    response = editor.post(url("variant-list", id=experiment.pk), body, format="json")
    assert response.status_code == 409
    assert response.json()["status"] == "baseline_pending"


def test_reading_a_variant(viewer, world):
    response = viewer.get(url("variant-detail", id=world.variant.pk))
    assert response.status_code == 200
    assert response.json()["effective_config"]["main"]["temperature"] == 0.3


def test_deleting_a_variant_without_runs_answers_204(editor, world):
    assert editor.delete(url("variant-detail", id=world.variant.pk)).status_code == 204
    assert not Variant.objects.filter(pk=world.variant.pk).exists()


def test_deleting_the_baseline_is_409(editor, world):
    assert editor.delete(url("variant-detail", id=world.baseline.pk)).status_code == 409


def test_running_a_variant_answers_202_with_the_run(editor, world):
    response = editor.post(url("variant-run", id=world.variant.pk))
    assert response.status_code == 202
    assert response.json()["variant"] == str(world.variant.pk) and response.json()["status"] == "queued"
    world.experiment.refresh_from_db()
    assert world.experiment.status == State.RUNNING_VARIANT


def test_running_a_second_variant_while_one_runs_is_409(editor, world):
    runs.start_variant_run(world.variant)
    other = actions.create_variant(world.experiment, parent=world.baseline, inference_step="main", parameter="temperature", value=0.9)
    response = editor.post(url("variant-run", id=other.pk))
    assert response.status_code == 409
    assert response.json()["code"] == "invalid_transition" and response.json()["status"] == "running_variant"


def test_running_the_baseline_as_a_variant_is_409(editor, world):
    assert editor.post(url("variant-run", id=world.baseline.pk)).status_code == 409


def test_deleting_a_variant_with_a_run_is_409(editor, world):
    runs.start_variant_run(world.variant)
    assert editor.delete(url("variant-detail", id=world.variant.pk)).status_code == 409
    assert Run.objects.filter(variant=world.variant).exists()
