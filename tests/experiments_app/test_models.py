"""Constraints that live in the database, not only in Python."""

import pytest
from django.db import IntegrityError, transaction

from experiments_app.models import Experiment, Run, RunStatus, Task, Test, Variant, new_webhook_secret
from tests.factories import make_application, make_experiment, make_ready_experiment, make_step, make_task

pytestmark = pytest.mark.django_db


def test_task_external_id_is_unique_per_application():
    app = make_application()
    make_task(app, external_id="capital-france")
    with pytest.raises(IntegrityError), transaction.atomic():
        Task.objects.create(application=app, external_id="capital-france", input={})


def test_task_external_id_may_repeat_in_another_application():
    make_task(make_application(), external_id="same")
    make_task(make_application(), external_id="same")


def test_step_external_id_is_unique_per_application():
    app = make_application()
    make_step(app, external_id="gen")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_step(app, external_id="gen")


def test_experiment_has_exactly_one_baseline():
    experiment = make_experiment()
    assert experiment.variants.filter(parent__isnull=True).count() == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        Variant.objects.create(experiment=experiment, name="second root", config={})


def test_variant_must_be_baseline_or_one_change():
    experiment = make_ready_experiment()
    step = experiment.inference_steps.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        Variant.objects.create(
            experiment=experiment, parent=experiment.baseline, name="bad", inference_step=step, parameter="seed", value=1
        )


def test_at_most_one_active_run_per_experiment():
    experiment = make_ready_experiment()
    baseline = experiment.baseline
    Run.objects.create(experiment=experiment, variant=baseline, status=RunStatus.RUNNING)
    with pytest.raises(IntegrityError), transaction.atomic():
        Run.objects.create(experiment=experiment, variant=baseline, status=RunStatus.QUEUED)


def test_finished_runs_do_not_count_as_active():
    experiment = make_ready_experiment()
    Run.objects.create(experiment=experiment, variant=experiment.baseline, status=RunStatus.FAILED)
    Run.objects.create(experiment=experiment, variant=experiment.baseline, status=RunStatus.CANCELLED)
    Run.objects.create(experiment=experiment, variant=experiment.baseline, status=RunStatus.QUEUED)


def test_test_is_unique_per_run_task_and_repetition():
    experiment = make_ready_experiment(n_tasks=1)
    run = Run.objects.create(experiment=experiment, variant=experiment.baseline)
    task = experiment.tasks.get()
    Test.objects.create(run=run, task=task, repetition=1, task_external_id=task.external_id)
    Test.objects.create(run=run, task=task, repetition=2, task_external_id=task.external_id)
    with pytest.raises(IntegrityError), transaction.atomic():
        Test.objects.create(run=run, task=task, repetition=1, task_external_id=task.external_id)


def test_repetitions_are_bounded_in_the_database():
    experiment = make_experiment()
    with pytest.raises(IntegrityError), transaction.atomic():
        Experiment.objects.filter(pk=experiment.pk).update(repetitions=21)


def test_max_error_rate_is_bounded_in_the_database():
    experiment = make_experiment()
    with pytest.raises(IntegrityError), transaction.atomic():
        Experiment.objects.filter(pk=experiment.pk).update(max_error_rate=1.5)


def test_public_ids_are_uuids():
    experiment = make_ready_experiment(n_tasks=1)
    for obj in (experiment, experiment.application, experiment.baseline, experiment.tasks.get(), experiment.team):
        assert len(str(obj.pk)) == 36


def test_webhook_secret_is_whsec_and_24_random_bytes():
    import base64

    secret = new_webhook_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert new_webhook_secret() != secret


def test_rotate_secret_changes_it():
    app = make_application()
    old = app.webhook_secret
    assert app.rotate_secret() != old


def test_webhook_id_is_stable_for_a_test():
    experiment = make_ready_experiment(n_tasks=1)
    run = Run.objects.create(experiment=experiment, variant=experiment.baseline)
    test = Test.objects.create(run=run, task=experiment.tasks.get(), task_external_id="t")
    assert test.webhook_id == Test.objects.get(pk=test.pk).webhook_id
