"""Holm, verdict sentences, ship and the experiment-level assessment."""

import numpy
import pytest
from statsmodels.stats.multitest import multipletests

from experiments_app import stats


@pytest.mark.parametrize("seed", range(6))
def test_holm_matches_statsmodels_multipletests(seed):
    p_values = list(numpy.random.default_rng(seed).uniform(0, 0.2, 3 + seed))
    p_values[0] = p_values[-1]  # a tie
    reference = multipletests(p_values, method="holm")[1]
    assert stats.holm(p_values) == pytest.approx(list(reference), rel=1e-12)


def test_holm_passes_missing_values_through_and_caps_at_one():
    assert stats.holm([0.01, None, 0.04, 0.6, 0.9]) == [pytest.approx(0.04), None, pytest.approx(0.12), 1.0, 1.0]
    assert stats.holm([]) == []


def _comparison(**fields):
    base = {
        "common": 200,
        "delta_pp": 8.0,
        "delta_ci_low": 3.1,
        "delta_ci_high": 12.9,
        "p_value": 0.001,
        "mde_pp": 6.2,
        "tasks_for_delta": 440,
        "warnings": [],
    }
    return {**base, **fields}


def test_better_sentence_uses_the_adjusted_p_value():
    assert stats.verdict(_comparison(), p_value_adjusted=0.004) == {
        "code": "better",
        "text": "better: +8.0 pp (95% CI +3.1 to +12.9), adjusted p = 0.004",
    }


def test_worse_sentence_and_tiny_p_values():
    verdict = stats.verdict(_comparison(delta_pp=-5.0, delta_ci_low=-9.1, delta_ci_high=-0.9), p_value_adjusted=0.0002, alpha=0.1)
    assert verdict == {"code": "worse", "text": "worse: -5.0 pp (90% CI -9.1 to -0.9), adjusted p < 0.001"}


def test_no_difference_says_what_could_be_missed_and_what_would_detect():
    verdict = stats.verdict(_comparison(delta_pp=3.0, p_value=0.2, mde_pp=6.2, tasks_for_delta=440))
    assert verdict == {
        "code": "no_difference",
        "text": "no detectable difference: could miss up to ±6 pp; ~240 more tasks would detect +3 pp",
    }


def test_no_difference_without_an_observed_difference_only_gives_the_mde():
    verdict = stats.verdict(_comparison(delta_pp=0.0, p_value=1.0, mde_pp=0.42, tasks_for_delta=None))
    assert verdict["text"] == "no detectable difference: could miss up to ±0.4 pp"


def test_raw_significance_lost_to_holm_is_no_difference():
    assert stats.verdict(_comparison(p_value=0.03), p_value_adjusted=0.09)["code"] == "no_difference"


def test_error_rate_mismatch_makes_the_verdict_inconclusive():
    warnings = [{"code": "error_rate_mismatch", "detail": "…"}]
    assert stats.verdict(_comparison(warnings=warnings)) == {"code": "inconclusive", "text": "inconclusive: error rates differ"}


def test_identical_repetitions_alone_do_not_block_the_verdict():
    assert stats.verdict(_comparison(warnings=[{"code": "identical_repetitions", "detail": "…"}]))["code"] == "better"


def test_pending_without_result():
    assert stats.verdict(None) == {"code": "pending", "text": "pending: no result yet"}


def test_ship_needs_better_and_every_guardrail_non_inferior():
    better = {"code": "better", "text": ""}
    assert stats.ship(better, [{"non_inferior": True}, {"non_inferior": True}]) is True
    assert stats.ship(better, [{"non_inferior": True}, {"non_inferior": False}]) is False
    assert stats.ship({"code": "no_difference", "text": ""}, [{"non_inferior": True}]) is False
    assert stats.ship(better, []) is None
    assert stats.ship(better, None) is None


def test_assess_experiment_applies_holm_over_all_variants_including_the_control():
    comparisons = {
        "control": _comparison(delta_pp=0.5, p_value=0.8, tasks_for_delta=90_000),
        "a": _comparison(p_value=0.001),
        "b": _comparison(delta_pp=4.0, p_value=0.03, tasks_for_delta=500),
        "c": None,
    }
    assessed = stats.assess_experiment(comparisons, control="control")
    assert assessed["a"]["p_value_adjusted"] == pytest.approx(0.003)
    assert assessed["a"]["verdict"]["code"] == "better" and assessed["a"]["tasks_needed"] is None
    # b: raw p 0.03 < 0.05 but Holm gives 0.06: no difference, and now it needs tasks_needed.
    assert assessed["b"]["p_value_adjusted"] == pytest.approx(0.06)
    assert assessed["b"]["significant"] is False
    assert assessed["b"]["verdict"]["code"] == "no_difference"
    assert assessed["b"]["tasks_needed"] == 500
    assert assessed["c"]["verdict"]["code"] == "pending"
    assert assessed["a"]["ship"] is None


def test_a_drifting_control_makes_every_verdict_inconclusive():
    comparisons = {"control": _comparison(delta_pp=-6.0, p_value=0.0001), "a": _comparison(p_value=0.001)}
    assessed = stats.assess_experiment(comparisons, control="control")
    for row in assessed.values():
        assert [warning["code"] for warning in row["warnings"]] == ["baseline_drift"]
        assert row["verdict"]["code"] == "inconclusive"
    assert "-6.0 pp" in assessed["a"]["warnings"][0]["detail"]


def test_assess_experiment_ships_with_guardrails():
    comparisons = {"a": _comparison(p_value=0.001), "b": _comparison(p_value=0.001)}
    guardrails = {"a": [{"non_inferior": True}], "b": [{"non_inferior": False}]}
    assessed = stats.assess_experiment(comparisons, guardrails=guardrails)
    assert assessed["a"]["ship"] is True and assessed["b"]["ship"] is False
