"""Live monitoring: the e-value and betting capital against their published formulas, and the state's contract."""

import json
import math

import numpy
import pytest
from scipy.special import betaln

from experiments_app import stats
from experiments_app.stats import sequential


@pytest.mark.parametrize(("b", "c"), [(0, 0), (5, 1), (12, 3), (40, 41), (0, 9)])
def test_discordant_e_value_is_the_jeffreys_mixture_formula(b, c):
    # STATS-REFERENCES: E = B(c + ½, b + ½) / B(½, ½) · 2^(b + c), the Jeffreys-mixture likelihood ratio against p = ½.
    expected = betaln(b + 0.5, c + 0.5) - betaln(0.5, 0.5) + (b + c) * math.log(2)
    assert stats.discordant_log_e_value(b, c) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def _reference_hedged_capital(d, m, alpha):
    """Waudby-Smith & Ramdas (2024), JRSS-B 86:1-27, §4 (hedged capital, predictable plug-in bets,
    truncation ½/m and ½/(1 − m), θ = ½), written with numpy on x = (d + 1)/2."""
    x = (numpy.asarray(d, dtype=float) + 1) / 2
    t = numpy.arange(1, len(x) + 1)
    mean = (0.5 + numpy.cumsum(x)) / (t + 1)
    variance = (0.25 + numpy.cumsum((x - mean) ** 2)) / (t + 1)
    previous_variance = numpy.append(0.25, variance[:-1])
    bets = numpy.sqrt(2 * numpy.log(1 / alpha) / (previous_variance * t * numpy.log(1 + t)))
    plus = numpy.cumsum(numpy.log1p(numpy.minimum(bets, 0.5 / m if m > 0 else numpy.inf) * (x - m)))
    minus = numpy.cumsum(numpy.log1p(-numpy.minimum(bets, 0.5 / (1 - m) if m < 1 else numpy.inf) * (x - m)))
    return numpy.maximum(plus, minus) + math.log(0.5)


@pytest.mark.parametrize("seed", range(4))
def test_betting_interval_is_the_running_intersection_of_the_hedged_capital(seed):
    rng = numpy.random.default_rng(seed)
    d = list(rng.choice([-1, -2 / 3, -1 / 3, 0, 1 / 3, 2 / 3, 1], size=150, p=[0.05, 0.1, 0.15, 0.3, 0.2, 0.12, 0.08]))
    state = stats.live_start(150, alpha=0.05)
    for value in d:
        state = stats.live_update(state, value)
    step = state["step"]
    grid = numpy.arange(0, 2 / step + 1)
    survivors = [j for j in grid if (_reference_hedged_capital(d, j * step / 2, 0.05) < math.log(20)).all()]
    assert (state["low"], state["high"]) == (min(survivors), max(survivors))
    summary = stats.live_summary(state)
    assert summary["ci_low"] == pytest.approx(100 * (-1 + (min(survivors) - 1) * step))
    assert summary["ci_high"] == pytest.approx(100 * (-1 + (max(survivors) + 1) * step))
    assert summary["delta_pp"] == pytest.approx(100 * numpy.mean(d))


def test_decided_is_consistent_with_the_interval():
    state = stats.live_start(400)
    decided_at = None
    for i in range(400):
        state = stats.live_update(state, 1.0 if i % 3 else 0.0)
        summary = stats.live_summary(state)
        assert (summary["decided"] == "better") == (summary["ci_low"] > 0)
        assert summary["decided"] != "worse"
        if summary["decided"] and decided_at is None:
            decided_at = i
    assert decided_at is not None and decided_at < 50


def test_worse_is_decided_for_a_clear_regression():
    state = stats.live_start(100, method="mixture")
    for _ in range(30):
        state = stats.live_update(state, -1)
    summary = stats.live_summary(state)
    assert summary["decided"] == "worse" and summary["ci_high"] < 0
    # E = B(½, 30½)/B(½, ½) · 2^30 ≥ 20
    assert stats.discordant_log_e_value(0, 30) >= math.log(20)


def test_mixture_decides_exactly_when_the_e_value_reaches_one_over_alpha():
    state = stats.live_start(1000, method="mixture", alpha=0.05)
    rng = numpy.random.default_rng(3)
    for value in rng.choice([-1, 0, 1], size=300, p=[0.1, 0.6, 0.3]):
        state = stats.live_update(state, int(value))
        summary = stats.live_summary(state)
        rejected = stats.discordant_log_e_value(state["up"], state["down"]) >= math.log(20)
        assert (summary["decided"] is not None) == rejected


def test_state_round_trips_through_json_and_stays_small():
    state = stats.live_start(10_000)
    rng = numpy.random.default_rng(4)
    for value in rng.choice([-1, -0.5, 0, 0.5, 1], size=2000):
        state = stats.live_update(state, float(value))
    restored = json.loads(json.dumps(state))
    assert stats.live_summary(restored) == stats.live_summary(state)
    assert stats.live_summary(stats.live_update(restored, 0.5)) == stats.live_summary(stats.live_update(state, 0.5))
    assert len(json.dumps(state)) < 20_000


def test_update_does_not_change_the_given_state():
    state = stats.live_start(10)
    stats.live_update(state, 1.0)
    assert state["done"] == 0 and state["log_plus"][0] == 0.0


def test_live_summary_before_any_task():
    assert stats.live_summary(stats.live_start(5)) == {
        "done": 0,
        "total": 5,
        "delta_pp": None,
        "ci_low": None,
        "ci_high": None,
        "decided": None,
    }


def test_bad_updates_are_refused():
    with pytest.raises(ValueError):
        stats.live_update(stats.live_start(5), 1.5)
    with pytest.raises(ValueError):
        stats.live_update(stats.live_start(5, method="mixture"), 0.5)
    with pytest.raises(ValueError):
        sequential.live_start(5, method="other")
