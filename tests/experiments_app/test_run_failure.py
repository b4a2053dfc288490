"""Why a run failed, in words (Run.failure_reason), and the limit it was judged by (stored at close)."""

import pytest

from experiments_app import runs
from experiments_app.models import Run, RunStatus, Test, percent
from experiments_app.models import TestStatus as Status
from experiments_app.runs import complete_run
from tests.factories import make_ready_experiment

pytestmark = pytest.mark.django_db


def test_percent_writes_a_share_as_people_do():
    assert [percent(0.4), percent(0.125), percent(0.2), percent(1)] == ["40%", "12.5%", "20%", "100%"]


def test_failure_reason_names_the_counts_and_the_limit():
    run = Run(status=RunStatus.FAILED, total=30, errored=12, max_error_rate=0.2)
    assert run.failure_reason() == "12 of 30 tests errored (40%), above the experiment's max error rate of 20%."
    assert Run(status=RunStatus.FAILED, total=1, errored=1, max_error_rate=0).failure_reason().startswith("1 of 1 test errored (100%)")


def test_a_succeeded_or_active_run_has_no_failure_reason():
    assert Run(status=RunStatus.SUCCEEDED, total=3, errored=0).failure_reason() is None
    assert Run(status=RunStatus.RUNNING).failure_reason() is None
    assert "cancelled" in Run(status=RunStatus.CANCELLED).failure_reason()


def test_closing_a_run_stores_the_limit_it_was_judged_by():
    experiment = make_ready_experiment(n_tasks=4)
    experiment.max_error_rate = 0.25
    experiment.save()
    run = runs.start_baseline_run(experiment)
    Test.objects.filter(run=run).update(status=Status.ERRORED, error="HTTP 500")
    assert complete_run(run.pk)
    run.refresh_from_db()
    assert (run.status, run.max_error_rate) == (RunStatus.FAILED, 0.25)
