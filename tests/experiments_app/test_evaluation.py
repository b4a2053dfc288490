import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments_app.evaluation import EVALUATOR_TYPES, evaluate, evaluator_names, output_text


def run(evaluators, output="Paris", *, has_output=True, expected="Paris", reported_passed=None, metrics=None, error=""):
    return evaluate(
        evaluators,
        output=output,
        has_output=has_output,
        expected=expected,
        reported_passed=reported_passed,
        metrics=metrics or {},
        error=error,
    )


def one(evaluator, **result):
    passed, evaluations = run([evaluator], **result)
    assert len(evaluations) == 1
    return evaluations[0]


def test_every_evaluation_has_the_same_shape():
    evaluators = [
        {"type": "reported"},
        {"type": "exact_match"},
        {"type": "contains", "value": "a"},
        {"type": "regex", "pattern": "a"},
        {"type": "json_subset"},
        {"type": "metric_threshold", "metric": "latency_ms", "max": 10},
    ]
    _, evaluations = run(evaluators)
    assert [evaluation["type"] for evaluation in evaluations] == list(EVALUATOR_TYPES)
    for evaluation in evaluations:
        assert set(evaluation) == {"name", "type", "passed", "score", "detail"}
        assert isinstance(evaluation["passed"], bool)
        assert isinstance(evaluation["detail"], str) and evaluation["detail"]


def test_name_defaults_to_the_type():
    assert one({"type": "contains", "value": "P"})["name"] == "contains"
    assert one({"type": "contains", "value": "P", "name": "mentions P"})["name"] == "mentions P"


def test_evaluator_names_follow_configuration_order():
    assert evaluator_names([{"type": "regex", "pattern": "x"}, {"type": "contains", "value": "y", "name": "has y"}]) == ["regex", "has y"]
    assert evaluator_names([]) == []


def test_without_evaluators_the_reported_verdict_decides():
    passed, evaluations = run([], output="wrong", reported_passed=True)
    assert passed is True
    assert [evaluation["type"] for evaluation in evaluations] == ["reported"]


def test_without_evaluators_or_a_reported_verdict_exact_match_against_expected_decides():
    passed, evaluations = run([], output="Paris", expected="Paris")
    assert passed is True
    assert [evaluation["type"] for evaluation in evaluations] == ["exact_match"]
    assert run([], output="Lyon", expected="Paris")[0] is False


def test_reported_false_fails():
    assert one({"type": "reported"}, reported_passed=False)["passed"] is False


def test_reported_fails_when_the_application_said_nothing():
    evaluation = one({"type": "reported"}, reported_passed=None)
    assert evaluation["passed"] is False
    assert "did not report" in evaluation["detail"]


def test_exact_match_compares_json_values():
    assert one({"type": "exact_match"}, output={"a": [1, 2]}, expected={"a": [1, 2]})["passed"] is True
    assert one({"type": "exact_match"}, output={"a": [2, 1]}, expected={"a": [1, 2]})["passed"] is False


def test_exact_match_treats_1_and_1_0_as_equal_but_not_true_or_a_string():
    assert one({"type": "exact_match"}, output=1, expected=1.0)["passed"] is True
    assert one({"type": "exact_match"}, output=True, expected=1)["passed"] is False
    assert one({"type": "exact_match"}, output="1", expected=1)["passed"] is False


def test_exact_match_with_field_compares_that_field_of_both():
    evaluator = {"type": "exact_match", "field": "answer"}
    assert one(evaluator, output={"answer": "Paris", "reasoning": "…"}, expected={"answer": "Paris"})["passed"] is True


def test_exact_match_with_field_compares_to_a_plain_expected_value():
    assert one({"type": "exact_match", "field": "answer"}, output={"answer": "Paris"}, expected="Paris")["passed"] is True


def test_exact_match_with_missing_field_fails_naming_it():
    evaluation = one({"type": "exact_match", "field": "answer"}, output={"text": "Paris"}, expected={"answer": "Paris"})
    assert evaluation["passed"] is False
    assert "answer" in evaluation["detail"]


def test_exact_match_detail_shows_both_values():
    evaluation = one({"type": "exact_match"}, output="Lyon", expected="Paris")
    assert "Paris" in evaluation["detail"] and "Lyon" in evaluation["detail"]


def test_contains_is_case_sensitive_by_default():
    assert one({"type": "contains", "value": "paris"}, output="The capital is Paris.")["passed"] is False
    assert one({"type": "contains", "value": "Paris"}, output="The capital is Paris.")["passed"] is True


def test_contains_can_ignore_case():
    assert one({"type": "contains", "value": "PARIS", "case_insensitive": True}, output="in paris")["passed"] is True


def test_contains_looks_into_structured_output_as_json_text():
    assert one({"type": "contains", "value": '"city": "Paris"'}, output={"city": "Paris"})["passed"] is True


def test_contains_without_a_string_value_fails_without_raising():
    evaluation = one({"type": "contains", "value": 3})
    assert evaluation["passed"] is False
    assert "value" in evaluation["detail"]


def test_regex_searches_anywhere_in_the_text():
    assert one({"type": "regex", "pattern": r"\bParis\b"}, output="It is Paris, France")["passed"] is True
    assert one({"type": "regex", "pattern": r"^\d+$"}, output="12a")["passed"] is False


def test_invalid_regex_fails_the_evaluation_with_detail():
    passed, evaluations = run([{"type": "regex", "pattern": "(unclosed"}])
    assert passed is False
    assert evaluations[0]["passed"] is False
    assert "Invalid pattern" in evaluations[0]["detail"]


def test_catastrophic_regex_fails_after_the_timeout_instead_of_hanging(monkeypatch):
    from experiments_app import evaluation

    monkeypatch.setattr(evaluation, "REGEX_TIMEOUT_SECONDS", 0.2)
    # (a|aa)+$ against 40 a's and a b backtracks through Fibonacci(40) splits without a timeout.
    evaluation_result = one({"type": "regex", "pattern": r"(a|aa)+$"}, output="a" * 40 + "b")
    assert evaluation_result["passed"] is False
    assert "took longer than" in evaluation_result["detail"]


def test_regex_is_case_insensitive_when_asked():
    assert one({"type": "regex", "pattern": "paris", "case_insensitive": True}, output="PARIS")["passed"] is True


def test_json_subset_passes_when_expected_keys_match_and_extra_keys_are_ignored():
    evaluation = one(
        {"type": "json_subset"}, output={"city": "Paris", "country": "FR", "extra": 1}, expected={"city": "Paris", "country": "FR"}
    )
    assert evaluation["passed"] is True
    assert evaluation["score"] == 1.0


def test_json_subset_scores_the_share_of_matching_keys():
    evaluation = one(
        {"type": "json_subset"}, output={"city": "Lyon", "country": "FR"}, expected={"city": "Paris", "country": "FR", "zip": "75"}
    )
    assert evaluation["passed"] is False
    assert evaluation["score"] == pytest.approx(1 / 3)
    assert "zip" in evaluation["detail"] and "city" in evaluation["detail"]


def test_json_subset_parses_output_sent_as_json_text():
    assert one({"type": "json_subset"}, output='{"city": "Paris"}', expected={"city": "Paris"})["passed"] is True


def test_json_subset_fails_when_the_output_is_not_an_object():
    evaluation = one({"type": "json_subset"}, output="Paris", expected={"city": "Paris"})
    assert evaluation["passed"] is False
    assert "not a JSON object" in evaluation["detail"]


def test_json_subset_with_field_looks_inside_it():
    evaluator = {"type": "json_subset", "field": "entities"}
    assert one(evaluator, output={"entities": {"a": 1, "b": 2}}, expected={"entities": {"a": 1}})["passed"] is True


def test_metric_threshold_checks_inclusive_bounds():
    evaluator = {"type": "metric_threshold", "metric": "latency_ms", "min": 10, "max": 500}
    assert one(evaluator, metrics={"latency_ms": 500})["passed"] is True
    assert one(evaluator, metrics={"latency_ms": 10})["passed"] is True
    above = one(evaluator, metrics={"latency_ms": 501})
    assert above["passed"] is False
    assert above["score"] == 501.0


def test_metric_threshold_fails_when_the_metric_is_missing_or_not_a_number():
    evaluator = {"type": "metric_threshold", "metric": "cost_usd", "max": 0.01}
    assert "not reported" in one(evaluator, metrics={})["detail"]
    assert one(evaluator, metrics={"cost_usd": "cheap"})["passed"] is False
    assert one(evaluator, metrics={"cost_usd": True})["passed"] is False


def test_metric_threshold_without_bounds_fails_instead_of_passing():
    assert one({"type": "metric_threshold", "metric": "latency_ms"}, metrics={"latency_ms": 1})["passed"] is False


def test_unknown_type_fails_without_raising():
    passed, evaluations = run([{"type": "sentiment"}, "not even a dict"])
    assert passed is False
    assert [evaluation["passed"] for evaluation in evaluations] == [False, False]
    assert "Unknown evaluator type" in evaluations[0]["detail"]


def test_a_test_with_an_error_does_not_pass_even_if_evaluators_do():
    passed, evaluations = run([{"type": "contains", "value": "Paris"}], error="upstream timeout")
    assert passed is False
    assert evaluations[0]["passed"] is True


def test_a_test_without_output_does_not_pass():
    passed, evaluations = run([{"type": "reported"}], has_output=False, output=None, reported_passed=True)
    assert passed is False


def test_output_evaluators_fail_when_there_is_no_output():
    evaluators = [{"type": "exact_match"}, {"type": "contains", "value": "x"}, {"type": "regex", "pattern": "x"}, {"type": "json_subset"}]
    _, evaluations = run(evaluators, has_output=False, output=None, expected=None)
    assert all(evaluation["passed"] is False and evaluation["detail"] == "No output." for evaluation in evaluations)


def test_a_test_passes_only_when_every_evaluator_passes():
    evaluators = [{"type": "contains", "value": "Paris"}, {"type": "regex", "pattern": "France"}]
    assert run(evaluators, output="Paris, France")[0] is True
    assert run(evaluators, output="Paris")[0] is False


def test_output_text_keeps_strings_and_sorts_json():
    assert output_text("héllo") == "héllo"
    assert output_text({"b": 1, "a": "é"}) == '{"a": "é", "b": 1}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=10,
)


@given(json_values, json_values, st.one_of(st.none(), st.booleans()), st.dictionaries(st.text(), json_values), st.text())
def test_evaluate_never_raises_and_always_answers_every_evaluator(output, expected, reported, metrics, error):
    evaluators = [
        {"type": "reported"},
        {"type": "exact_match", "field": "a"},
        {"type": "contains", "value": "a", "case_insensitive": True},
        {"type": "regex", "pattern": "[a-"},
        {"type": "json_subset", "field": "a"},
        {"type": "metric_threshold", "metric": "", "min": 0},
    ]
    passed, evaluations = evaluate(
        evaluators, output=output, has_output=True, expected=expected, reported_passed=reported, metrics=metrics, error=error
    )
    assert passed is False  # the broken regex always fails
    assert len(evaluations) == len(evaluators)
