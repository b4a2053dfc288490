"""The schema states the constraints the API enforces: schemathesis generates schema-valid
bodies for every operation that takes one, sends them with real objects (ids in the path
and in the body point at the world's objects, URLs at a reachable receiver, as a client
that read the schema would send), and no operation may refuse (400) most of them.

What no schema can state is left to the real objects: whether an id exists, whether a URL's
host resolves to a public address, whether an external_id is already taken (a new object's
external_id is made unique).
"""

import collections
import itertools

from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

# The schema, its id mapping and its fixtures (an admin token, the test's connection kept across requests).
from tests.experiments_app.test_api_schema import admin_token, keep_test_connection, point_at_world, schema  # noqa: F401

BODY_METHODS = ("post", "put", "patch")
EXAMPLES = 25
MOSTLY = 0.5


def body_refs(world, receiver_url):
    return {
        "application": str(world.application.pk),
        "parent": str(world.baseline.pk),
        "inference_step": "main",
        "winner": str(world.baseline.pk),
        "webhook_url": receiver_url,
        "url": receiver_url,
    }


def point_body_at_world(case, refs, fresh):
    """Body references to real objects; a new object's external_id made unique, as a client creating one would."""
    bodies = case.body if isinstance(case.body, list) else [case.body]
    for body in bodies:
        if not isinstance(body, dict):
            continue
        for name, value in refs.items():
            if name in body and body[name] not in (None, ""):
                body[name] = value
        if case.method.lower() in ("post", "patch") and isinstance(body.get("external_id"), str):
            body["external_id"] = f"{body['external_id'][:150]}-{next(fresh)}"


def refusal_rates(world, token, receiver_url):
    rates = {}
    refs = body_refs(world, receiver_url)
    fresh = itertools.count(1)
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.lower() not in BODY_METHODS or not operation.body:
            continue
        tally = collections.Counter()

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
        def send(case):
            point_at_world(case, world)
            point_body_at_world(case, refs, fresh)
            tally[case.call(headers={"Authorization": f"Bearer {token}"}).status_code] += 1  # noqa: B023 (run before the loop moves on)

        send()
        rates[f"{operation.method.upper()} {operation.path}"] = tally[400] / sum(tally.values())
    return rates


def test_no_operation_refuses_most_schema_valid_bodies(world, admin_token, receiver):  # noqa: F811
    rates = refusal_rates(world, admin_token, receiver.url)
    assert len(rates) >= 15
    mostly_refused = {operation: round(rate, 2) for operation, rate in rates.items() if rate >= MOSTLY}
    assert mostly_refused == {}
