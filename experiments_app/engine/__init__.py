"""The execution engine: dispatch (SPEC §4), result ingestion (§5) and run completion (§3).

- `dispatch_application(application_id)`: send every due test of one application.
- `record_result(test_id, data, source=)` / `parse_result(data)`: ingest a result.
- `complete_run(run_id)`: close a run exactly once.
- `sweep_tests()`: the periodic sweeper.
"""

from experiments_app.engine.completion import complete_if_done, complete_run
from experiments_app.engine.dispatch import dispatch_application
from experiments_app.engine.ingest import parse_result, record_result
from experiments_app.engine.sweep import sweep_tests

__all__ = ["complete_if_done", "complete_run", "dispatch_application", "parse_result", "record_result", "sweep_tests"]
