"""The served OpenAPI schema, held to what a generated client needs: OpenAPI 3.1 that validates
strictly (openapi-spec-validator), a client generated from it without a warning
(openapi-python-client), verb-named operation ids, `format: uuid` on ids, the same enums in
requests and responses, one schema per evaluator type, and the outbound payloads in `webhooks`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client as DjangoClient
from openapi_spec_validator import validate

from experiments_app import overrides
from experiments_app.evaluation import EVALUATOR_TYPES
from experiments_app.models import EventType, Role
from tests.api_fixtures import client_for
from tests.factories import make_application, make_token

VERBS = ("list_", "create_", "get_", "update_", "delete_", "set_", "run_", "rotate_", "ping_", "gate_", "reopen_", "complete_")
VERBS += ("archive_", "cancel_", "compare_", "report_", "issue_", "revoke_", "redeliver_", "enable_", "lease_", "start_")


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    with django_db_blocker.unblock():
        response = DjangoClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_the_schema_is_openapi_3_1_and_validates_strictly(schema):
    assert schema["openapi"] == "3.1.0"
    validate(schema)


def test_every_operation_id_is_an_explicit_verb(schema):
    ids = [operation["operationId"] for _, _, operation in operations(schema)]
    assert len(ids) == len(set(ids))
    assert [name for name in ids if not name.startswith(VERBS)] == []
    assert {"run_variant", "cancel_run", "report_test_result", "gate_variant", "get_decision_report"} <= set(ids)


def test_every_id_is_a_uuid(schema):
    schemas = schema["components"]["schemas"]
    for name in ("Experiment", "Run", "Variant", "Result", "Compare", "EventDelivery", "Gate"):
        properties = schemas[name]["properties"]
        for field, spec in properties.items():
            if field in ("id", "experiment", "variant", "run", "baseline", "parent", "application", "winner", "event", "endpoint"):
                text = json.dumps(spec)
                assert '"format": "uuid"' in text or "$ref" in text, (name, field, spec)
    assert schemas["Experiment"]["properties"]["baseline"] == {
        "type": ["string", "null"],
        "format": "uuid",
        "readOnly": True,
        "description": "The baseline variant's id.",
    }
    assert schemas["Experiment"]["properties"]["tasks"]["items"]["format"] == "uuid"
    assert schemas["Result"]["properties"]["regressed"]["items"]["format"] == "uuid"
    for path, _, operation in operations(schema):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                assert parameter["schema"].get("format") == "uuid", (path, parameter)


def enum_ref(spec):
    text = json.dumps(spec)
    return text[text.index("#/components/schemas/") :].split('"')[0] if "#/components/schemas/" in text else None


def test_responses_use_the_enums_requests_use(schema):
    schemas = schema["components"]["schemas"]
    assert enum_ref(schemas["Variant"]["properties"]["parameter"]) == "#/components/schemas/ParameterEnum"
    assert schemas["ParameterEnum"]["enum"] == list(overrides.PARAMETERS)
    assert enum_ref(schemas["Result"]["properties"]["status"]) == "#/components/schemas/RunStatusEnum"
    assert enum_ref(schemas["Run"]["properties"]["status"]) == "#/components/schemas/RunStatusEnum"
    assert enum_ref(schemas["Token"]["properties"]["role"]) == enum_ref(schemas["TokenInputRequest"]["properties"]["role"])
    assert enum_ref(schemas["EventEndpoint"]["properties"]["events"]) == enum_ref(
        schemas["EventEndpointInputRequest"]["properties"]["events"]
    )


def test_each_evaluator_type_has_its_own_schema_discriminated_by_type(schema):
    evaluator = schema["components"]["schemas"]["Evaluator"]
    assert evaluator["discriminator"]["propertyName"] == "type"
    assert set(evaluator["discriminator"]["mapping"]) == set(EVALUATOR_TYPES)
    contains = schema["components"]["schemas"]["ContainsEvaluator"]
    assert "value" in contains["required"]


def test_config_parameters_carry_their_ranges(schema):
    create = schema["components"]["schemas"]["TemperatureVariantCreateRequest"]
    assert create["properties"]["value"] == {"type": "number", "maximum": 2, "minimum": 0}
    top_p = schema["components"]["schemas"]["TopPVariantCreateRequest"]["properties"]["value"]
    assert top_p["exclusiveMinimum"] == 0


def test_outbound_payloads_are_in_the_webhooks_section(schema):
    webhooks = schema["webhooks"]
    assert set(webhooks) == {"experiment.test", "webhook.ping", "event"}
    body = webhooks["experiment.test"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    data = schema["components"]["schemas"][body]["properties"]["data"]["$ref"].rsplit("/", 1)[1]
    assert {"testId", "callbackUrl", "repetition", "task", "experiment"} <= set(schema["components"]["schemas"][data]["properties"])
    event = webhooks["event"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert schema["components"]["schemas"][event]["properties"]["type"]["enum"] == EventType.values


def test_the_same_result_rule_is_documented(schema):
    description = schema["paths"]["/api/v1/tests/{id}/result/"]["post"]["description"]
    assert "The same result" in description and "409" in description


def test_a_client_generated_from_the_schema_has_no_warning(schema, tmp_path):
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    (tmp_path / "config.yaml").write_text("post_hooks: []\n")
    generator = Path(sys.executable).parent / "openapi-python-client"
    done = subprocess.run(
        [str(generator), "generate", "--path", "schema.json", "--meta", "none", "--config", "config.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Warning" not in output and "warning" not in output, output
    package = tmp_path / "experiments_dashboard_api_client"
    assert (package / "api" / "variants" / "run_variant.py").exists()
    assert (package / "models" / "contains_evaluator.py").exists()


# --- "did you mean temperature?" ---------------------------------------------------------


def test_a_config_key_close_to_a_parameter_is_refused_with_a_suggestion(team):
    admin = client_for(make_token(team, Role.ADMIN))
    application = make_application(team)
    url = f"/api/v1/applications/{application.pk}/inference-steps/"
    response = admin.post(url, {"external_id": "gen", "config": {"temprature": 0.3}}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"]["config.temprature"] == ["Unknown parameter 'temprature': did you mean temperature?"]
    kept = admin.post(url, {"external_id": "gen", "config": {"temperature": 0.3, "retrieval_depth": 4}}, format="json")
    assert kept.status_code == 201 and kept.json()["unvalidated"] == ["retrieval_depth"]


def test_typos_of_every_parameter_are_caught_but_distant_keys_pass():
    assert overrides.typo_error("max_token") == "Unknown parameter 'max_token': did you mean max_tokens?"
    assert overrides.typo_error("Model") == "Unknown parameter 'Model': did you mean model?"
    assert overrides.typo_error("verbosty").endswith("did you mean verbosity?")
    assert overrides.typo_error("temperature") is None
    assert overrides.typo_error("retrieval_depth") is None
    assert overrides.edit_distance("kitten", "sitting") == 3
    assert overrides.unvalidated_keys({"a": {"model": "m", "k": 1}}) == ["a.k"]
