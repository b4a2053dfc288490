"""Celery entry points: take ids, reload rows, delegate to the engine, return nothing."""

from celery import shared_task


@shared_task(ignore_result=True)
def dispatch_application(application_id):
    """Send every due test of one application (implemented by the engine)."""
    from experiments_app import engine

    engine.dispatch_application(application_id)


@shared_task(ignore_result=True)
def sweep_tests():
    """Re-dispatch expired leases and error silent tests (implemented by the engine)."""
    from experiments_app import engine

    engine.sweep_tests()
