"""Celery entry points, the top floor: take ids, delegate to the run package, return nothing."""

from celery import shared_task, signals

from experiments_app import runs
from experiments_app.runs import dispatch


@shared_task(ignore_result=True)
def dispatch_application(application_id):
    """Send every due test of one application."""
    runs.dispatch_application(application_id)


@shared_task(ignore_result=True)
def sweep_tests():
    """Error silent tests, recover lost leases, close runs left open, wake dispatchers."""
    runs.sweep_tests(wake=lambda application_id: dispatch_application.delay(str(application_id)))


@signals.worker_init.connect
def prepare_warm_shutdown(**kwargs):
    dispatch.prepare_shutdown_flag()


@signals.worker_shutting_down.connect
def stop_dispatchers(**kwargs):
    dispatch.begin_shutdown()
