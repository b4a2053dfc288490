"""Run execution, in the order a run lives:

- start.py     start a baseline, variant or dry run (its tests written in bulk), cancel a run
- claim.py     the application's dispatch lease and claiming due tests
- dispatch.py  one dispatcher per application keeps up to max_concurrency deliveries in flight
- pull.py      pull mode: an application leases its due tests (pending-tests/) instead
- send.py      the HTTP side: signed requests from an asyncio loop
- policy.py    which answers are retried, and when
- ingest.py    a result posted to tests/{id}/result/ (SPEC §5)
- state.py     the one writer of a test's terminal or retry state and of the run's counts
- complete.py  closing a run exactly once and moving its experiment on (SPEC §3)
- sweep.py     the periodic sweeper: silent tests, lost leases, runs left open
"""

from experiments_app.runs.complete import complete_if_done, complete_run
from experiments_app.runs.dispatch import dispatch_application
from experiments_app.runs.ingest import attempts_of, parse_result, record_result
from experiments_app.runs.pull import pull_tests
from experiments_app.runs.start import cancel_run, start_baseline_run, start_dry_run, start_variant_run
from experiments_app.runs.sweep import sweep_tests

__all__ = [
    "attempts_of",
    "cancel_run",
    "complete_if_done",
    "complete_run",
    "dispatch_application",
    "parse_result",
    "pull_tests",
    "record_result",
    "start_baseline_run",
    "start_dry_run",
    "start_variant_run",
    "sweep_tests",
]
