"""Celery entry points, the top floor: take ids, delegate to the run package, return nothing."""

from celery import shared_task, signals

from experiments_app import runs
from experiments_app.events import deliver
from experiments_app.runs import dispatch


@shared_task(ignore_result=True)
def dispatch_application(application_id):
    """Send every due test of one application."""
    runs.dispatch_application(application_id)


@shared_task(ignore_result=True)
def sweep_tests():
    """Error silent tests, recover lost leases, close runs left open, wake dispatchers."""
    runs.sweep_tests(wake=lambda application_id: dispatch_application.delay(str(application_id)))


@shared_task(ignore_result=True)
def deliver_event(delivery_id):
    """Make the next attempt of one event delivery, if it is due (safe to run twice)."""
    deliver.deliver(delivery_id)


@shared_task(ignore_result=True)
def sweep_event_deliveries():
    """Send event deliveries that are due: lost wake-ups and retries."""
    for delivery_id in deliver.due_deliveries():
        deliver_event.delay(str(delivery_id))


@signals.worker_init.connect
def prepare_warm_shutdown(**kwargs):
    dispatch.prepare_shutdown_flag()


@signals.worker_shutting_down.connect
def stop_dispatchers(**kwargs):
    dispatch.begin_shutdown()
