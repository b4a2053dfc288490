"""The API fuzzed from its own OpenAPI schema (schemathesis, in-process over WSGI).

Every operation gets a bounded number of generated requests, valid and invalid, sent
with an admin token. Path ids point at real objects most of the time (random UUIDs
would only ever reach 404s). No answer may be a 5xx, and every answer must match the
schema: its status code, content type and body.
"""

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from experiments_app.models import Role
from tests.factories import make_token

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# Which world object each path parameter names, by the route's first segment.
OBJECTS = {
    "applications": {"id": "application", "step_id": "step", "task_id": "task"},
    "experiments": {"id": "experiment"},
    "variants": {"id": "variant"},
    "runs": {"id": "run", "new": "run", "old": "run"},
    "tests": {"id": "test"},
    "tokens": {"id": "token"},
}


def point_at_world(case, world):
    """Replace generated ids by real ones, except in about one case of four (kept to reach 404s)."""
    if not case.path_parameters:
        return
    first = case.operation.path.strip("/").split("/")[2]
    for name, value in list(case.path_parameters.items()):
        if str(value)[:1] in "0123":
            continue
        attr = OBJECTS.get(first, {}).get(name)
        if attr:
            case.path_parameters[name] = str(getattr(world, attr).pk)


@pytest.fixture
def admin_token(team):
    return make_token(team, Role.ADMIN)


@pytest.fixture(autouse=True)
def keep_test_connection():
    """Django's handler closes the DB connection after each request; the test client
    avoids that the same way, so the requests see the test's transaction."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def loopback_hooks(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_schema(case, world, admin_token):
    point_at_world(case, world)
    case.call_and_validate(headers={"Authorization": f"Bearer {admin_token}"}, checks=CHECKS)
