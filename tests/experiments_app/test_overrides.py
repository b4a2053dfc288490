"""The parameter table and the override merge of SPEC §2, without the database."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments_app import overrides
from experiments_app.errors import ValidationFailed

VALID = [
    ("system", "a"),
    ("system", "x" * 20_000),
    ("temperature", 0),
    ("temperature", 0.0),
    ("temperature", 0.7),
    ("temperature", 2),
    ("top_p", 1e-9),
    ("top_p", 0.5),
    ("top_p", 1),
    ("max_tokens", 1),
    ("max_tokens", 1_000_000),
    ("model", "m"),
    ("model", "x" * 200),
    ("model", "gpt-4o"),
    ("verbosity", "low"),
    ("verbosity", "medium"),
    ("verbosity", "high"),
]
INVALID = [
    ("system", ""),
    ("system", "x" * 20_001),
    ("system", 5),
    ("system", None),
    ("temperature", -0.0001),
    ("temperature", 2.0001),
    ("temperature", "0.5"),
    ("temperature", True),
    ("temperature", float("nan")),
    ("temperature", float("inf")),
    ("top_p", 0),
    ("top_p", 0.0),
    ("top_p", -0.1),
    ("top_p", 1.0001),
    ("max_tokens", 0),
    ("max_tokens", 1_000_001),
    ("max_tokens", 10.0),
    ("max_tokens", 10.5),
    ("max_tokens", "100"),
    ("max_tokens", False),
    ("model", ""),
    ("model", "x" * 201),
    ("model", ["gpt"]),
    ("verbosity", "LOW"),
    ("verbosity", "extreme"),
    ("verbosity", 1),
]


@pytest.mark.parametrize(("parameter", "value"), VALID, ids=lambda v: repr(v)[:30])
def test_parameter_accepts_valid_value(parameter, value):
    assert overrides.parameter_error(parameter, value) is None
    overrides.validate_value(parameter, value)


@pytest.mark.parametrize(("parameter", "value"), INVALID, ids=lambda v: repr(v)[:30])
def test_parameter_rejects_invalid_value_naming_the_field(parameter, value):
    with pytest.raises(ValidationFailed) as caught:
        overrides.validate_value(parameter, value)
    assert list(caught.value.errors) == ["value"]


def test_every_table_parameter_is_covered():
    assert {p for p, _ in VALID} == set(overrides.PARAMETERS) == {p for p, _ in INVALID}


def test_unknown_parameter_is_rejected_naming_parameter():
    with pytest.raises(ValidationFailed) as caught:
        overrides.validate_value("frequency_penalty", 0.1)
    assert "parameter" in caught.value.errors


def test_merge_later_layer_wins():
    base = {"gen": {"temperature": 0.7, "model": "a"}}
    merged = overrides.merge_overrides(base, {"gen": {"temperature": 0.3}}, {"gen": {"temperature": 0.1}})
    assert merged == {"gen": {"temperature": 0.1, "model": "a"}}


def test_merge_does_not_change_its_inputs():
    base = {"gen": {"temperature": 0.7}}
    layer = {"gen": {"model": "b"}}
    overrides.merge_overrides(base, layer)
    assert base == {"gen": {"temperature": 0.7}}
    assert layer == {"gen": {"model": "b"}}


def test_merge_rejects_step_outside_the_base():
    with pytest.raises(ValidationFailed) as caught:
        overrides.merge_overrides({"gen": {}}, {"classifier": {"model": "x"}})
    assert "inference_step" in caught.value.errors


def test_effective_config_applies_a_three_level_branch_root_first():
    baseline = {"gen": {"model": "gpt-4o-mini", "temperature": 0.7, "max_tokens": 500}, "cls": {"model": "small"}}
    chain = [("gen", "temperature", 0.3), ("gen", "model", "gpt-4o"), ("cls", "verbosity", "high")]
    assert overrides.effective_config(baseline, chain) == {
        "gen": {"model": "gpt-4o", "temperature": 0.3, "max_tokens": 500},
        "cls": {"model": "small", "verbosity": "high"},
    }


def test_effective_config_deeper_change_of_same_parameter_wins():
    baseline = {"gen": {"temperature": 0.7}}
    assert overrides.effective_config(baseline, [("gen", "temperature", 0.3), ("gen", "temperature", 0.9)]) == {"gen": {"temperature": 0.9}}


def test_effective_config_of_baseline_is_its_config():
    baseline = {"gen": {"temperature": 0.7}}
    assert overrides.effective_config(baseline, []) == baseline


def test_inherited_value_reads_through_the_chain():
    baseline = {"gen": {"temperature": 0.7}}
    assert overrides.inherited_value(baseline, [("gen", "temperature", 0.3)], "gen", "temperature") == 0.3
    assert overrides.inherited_value(baseline, [], "gen", "model") is None


def test_prefill_keeps_edited_steps_and_fills_new_ones():
    current = {"gen": {"temperature": 0.1}, "old": {"model": "x"}}
    production = {"gen": {"temperature": 0.7}, "cls": {"model": "small"}}
    assert overrides.prefill_config(current, production) == {"gen": {"temperature": 0.1}, "cls": {"model": "small"}}


def test_validate_config_names_bad_nested_fields():
    with pytest.raises(ValidationFailed) as caught:
        overrides.validate_config({"gen": {"temperature": 5}, "nope": {}}, {"gen"})
    assert set(caught.value.errors) == {"config.gen.temperature", "config.nope"}


def test_validate_config_keeps_unknown_production_keys():
    overrides.validate_config({"gen": {"temperature": 0.2, "stop": ["\n"]}}, {"gen"})


@given(st.floats(min_value=0, max_value=2, allow_nan=False))
def test_any_temperature_in_range_is_valid(value):
    assert overrides.parameter_error("temperature", value) is None


@given(st.floats(allow_nan=False).filter(lambda v: v < 0 or v > 2))
def test_any_temperature_out_of_range_is_invalid(value):
    assert overrides.parameter_error("temperature", value) is not None


@given(
    st.dictionaries(st.sampled_from(["a", "b"]), st.dictionaries(st.sampled_from(list(overrides.PARAMETERS)), st.integers()), min_size=2),
    st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(list(overrides.PARAMETERS)), st.integers())),
)
def test_effective_config_ends_with_each_changes_last_value(baseline, chain):
    result = overrides.effective_config(baseline, chain)
    for step, parameter, _ in chain:
        assert result[step][parameter] == [v for s, p, v in chain if (s, p) == (step, parameter)][-1]
