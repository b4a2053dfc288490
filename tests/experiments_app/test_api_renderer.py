"""The API's JSON renderer (orjson) writes the bytes DRF's JSONRenderer writes, for every kind of
value the API answers, and falls back to DRF where orjson cannot go."""

import datetime
import decimal
import json
import uuid
from collections import OrderedDict

import pytest
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.serializer_helpers import ReturnDict

from experiments_app.api.renderers import FastJSONRenderer
from experiments_app.models import TestStatus
from experiments_app.results import RawJSON

VALUES = [
    {"a": 1, "b": [1, 2.5, None, True, False], "c": {"nested": {"deep": "x"}}},
    {"text": 'é ✓ 中文 "quoted" back\\slash \n tab\t nul-free', "line_sep": "a\u2028b\u2029c"},
    {"when": datetime.datetime(2026, 12, 1, 1, 2, 3, 123456, tzinfo=datetime.UTC), "day": datetime.date(2026, 12, 1)},
    {"naive": datetime.datetime(2026, 12, 1, 1, 2, 3), "time": datetime.time(1, 2, 3)},
    {"id": uuid.UUID("12345678-1234-5678-1234-567812345678"), "status": TestStatus.PASSED},
    {"price": decimal.Decimal("1.25"), "floats": [0.1, 0.001, 123456.789, -0.0, 3.0, 1e-12, 2.5e300]},
    OrderedDict([("z", 1), ("a", 2)]),
    ReturnDict({"x": [OrderedDict([("k", "v")])]}, serializer=None),
    {1: "int key", "s": "str key"},
    [],
    {},
    "a string",
    12,
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_same_bytes_as_drf(value):
    assert FastJSONRenderer().render(value) == JSONRenderer().render(value)


def test_a_float_with_a_two_digit_exponent_below_ten_is_written_shorter_with_the_same_value():
    """The one difference: Python writes 1e-07, orjson 1e-7 (both JSON for the same number)."""
    value = {"p_value": 1e-7, "tiny": 3.2e-9}
    assert FastJSONRenderer().render(value) == b'{"p_value":1e-7,"tiny":3.2e-9}'
    assert json.loads(FastJSONRenderer().render(value)) == json.loads(JSONRenderer().render(value)) == value


def test_an_integer_beyond_64_bits_takes_drfs_path():
    value = {"big": 2**80}
    assert FastJSONRenderer().render(value) == JSONRenderer().render(value) == b'{"big":1208925819614629174706176}'


def test_indent_asked_in_accept_is_honoured():
    rendered = FastJSONRenderer().render({"a": [1]}, "application/json; indent=2")
    assert rendered == JSONRenderer().render({"a": [1]}, "application/json; indent=2")
    assert b"\n" in rendered


def test_nothing_renders_empty():
    assert FastJSONRenderer().render(None) == b""


def test_raw_json_from_the_database_goes_in_as_it_is_and_parses_on_drfs_path():
    value = {"improved": RawJSON('["a", "b"]'), "regressed": RawJSON("[]")}
    assert FastJSONRenderer().render(value) == b'{"improved":["a", "b"],"regressed":[]}'
    assert json.loads(FastJSONRenderer().render(value, "application/json; indent=2")) == {"improved": ["a", "b"], "regressed": []}
