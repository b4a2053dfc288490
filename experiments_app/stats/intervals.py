"""Intervals on the mean of per-task values (the task is the unit).

- `t_interval`: mean ± t_{1−α/2, n−1} · s/√n.
- `bootstrap_interval`: a task bootstrap for small n, the *expanded* percentile interval
  of Hesterberg (2015, "What teachers should know about the bootstrap", The American
  Statistician 69:371-386, §5.2): the plain percentile interval is too narrow at small n
  (it behaves like z·s·√((n−1)/n)/√n), so its tail level α' is widened until its normal
  quantile matches √(n/(n−1)) · t_{1−α/2, n−1}. It keeps the percentile interval's
  asymmetry for skewed, bounded d_i (pass rates near 0 or 1) while matching the
  t-interval's width when the d_i are symmetric.
"""

import math
import random

from experiments_app.stats.descriptive import percentile
from experiments_app.stats.distributions import normal_cdf, t_ppf

BOOTSTRAP_RESAMPLES = 4_000
SEED = 20_240_901


def mean_and_variance(values):
    """(n, mean, unbiased sample variance) in one pass (Welford); variance None below n = 2."""
    n, mean, squares = 0, 0.0, 0.0
    for value in values:
        n += 1
        delta = value - mean
        mean += delta / n
        squares += delta * (value - mean)
    return n, (mean if n else None), (squares / (n - 1) if n > 1 else None)


def t_interval(mean, variance, n, alpha=0.05):
    """(low, high) two-sided (1 − alpha) t-interval of a mean with n − 1 degrees of freedom."""
    if n < 2 or variance is None:
        return (None, None)
    half = t_ppf(1 - alpha / 2, n - 1) * math.sqrt(variance / n)
    return (mean - half, mean + half)


def expanded_alpha(n, alpha):
    """Hesterberg's expanded tail level α' for the percentile interval at n observations."""
    return 2 * normal_cdf(-math.sqrt(n / (n - 1)) * t_ppf(1 - alpha / 2, n - 1))


def bootstrap_interval(values, alpha=0.05, *, resamples=BOOTSTRAP_RESAMPLES, seed=SEED):
    """(low, high) expanded percentile bootstrap interval of the mean of `values`
    (resampling the values with replacement, fixed seed); (None, None) below n = 2."""
    values = list(values)
    n = len(values)
    if n < 2:
        return (None, None)
    rng = random.Random(seed)
    means = sorted(math.fsum(rng.choices(values, k=n)) / n for _ in range(resamples))
    level = expanded_alpha(n, alpha)
    return (percentile(means, 100 * level / 2), percentile(means, 100 * (1 - level / 2)))
