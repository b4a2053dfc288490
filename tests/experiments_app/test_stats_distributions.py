"""The hand-written normal and t distributions against scipy.stats (the reference)."""

import pytest
from scipy import stats as scipy_stats
from scipy.special import betainc

from experiments_app.stats import distributions

PROBABILITIES = [1e-12, 1e-6, 0.0005, 0.005, 0.025, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.975, 0.995, 0.9995, 1 - 1e-6]
DEGREES = [1, 2, 3, 4, 5, 7, 9, 14, 29, 99, 299, 2999, 99999, 2.5]


@pytest.mark.parametrize("p", PROBABILITIES)
def test_normal_quantile_matches_scipy_norm_ppf(p):
    assert distributions.normal_ppf(p) == pytest.approx(scipy_stats.norm.ppf(p), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("df", DEGREES)
@pytest.mark.parametrize("p", PROBABILITIES)
def test_t_quantile_matches_scipy_t_ppf(p, df):
    assert distributions.t_ppf(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("df", DEGREES)
@pytest.mark.parametrize("t", [-40.0, -6.0, -2.0, -0.3, 0.0, 0.01, 1.0, 2.045, 3.5, 12.0, 300.0])
def test_t_tail_matches_scipy_t_sf(t, df):
    assert distributions.t_sf(t, df) == pytest.approx(scipy_stats.t.sf(t, df), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(("a", "b", "x"), [(0.5, 0.5, 0.3), (2.0, 3.0, 0.9), (50.0, 0.5, 0.99), (0.5, 200.0, 0.001), (10.0, 10.0, 0.5)])
def test_regularized_beta_matches_scipy_betainc(a, b, x):
    assert distributions.regularized_beta(a, b, x) == pytest.approx(betainc(a, b, x), rel=1e-10)


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5])
def test_quantiles_reject_probabilities_outside_zero_one(bad):
    with pytest.raises(ValueError):
        distributions.t_ppf(bad, 5)
    with pytest.raises(ValueError):
        distributions.normal_ppf(bad)
