"""Single and paired proportions: the Wilson interval, exact McNemar, one run's pairing with another.

Exact integer arithmetic where it is cheap (McNemar), so the answers do not depend
on a numeric library's version.
"""

import functools
import math

from experiments_app.stats.distributions import normal_ppf

# Two-sided 95%: the 0.975 quantile of the standard normal distribution.
Z_95 = 1.959963984540054


def wilson_interval(successes, n, z=Z_95):
    """(low, high) Wilson score interval of successes/n; (None, None) when n is 0."""
    if n <= 0:
        return (None, None)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within 0..n, got {successes}/{n}")
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    # The bounds are exactly 0 and 1 at the edges; rounding would otherwise leave
    # 1e-17 on the wrong side and break "the interval contains p̂".
    low = 0.0 if successes == 0 else max(0.0, min(p, center - half))
    high = 1.0 if successes == n else min(1.0, max(p, center + half))
    return (low, high)


def mcnemar_exact(b, c):
    """Exact two-sided McNemar p-value on the discordant counts b and c.

    Under the null each discordant pair goes either way with probability 1/2, so
    p = 2 · P(X ≤ min(b, c)) for X ~ Binomial(b + c, 1/2), capped at 1.
    """
    if b < 0 or c < 0:
        raise ValueError("discordant counts cannot be negative")
    n = b + c
    if n == 0:
        return 1.0
    return _mcnemar_tail(n, min(b, c))


# Up to this many discordant pairs the tail is summed in exact integers; beyond it the
# big-integer sum costs O(n²) (670 ms at 5,000 pairs), so it is summed in floats.
EXACT_INTEGER_LIMIT = 200


def _mcnemar_tail(n, k):
    """min(1, 2 · P(X ≤ k)) for X ~ Binomial(n, 1/2)."""
    if n <= EXACT_INTEGER_LIMIT:
        tail = sum(math.comb(n, i) for i in range(k + 1))
        # Integer numerator and denominator: Python divides big ints with correct rounding.
        return min(1.0, (2 * tail) / (2**n))
    # Start at the largest term, P(X = k), in logs (2**-n underflows a float), and add the
    # smaller terms below it through their ratio until they no longer change the sum.
    log_top = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2)
    total, term = 1.0, 1.0
    for i in range(k, 0, -1):
        term *= i / (n - i + 1)
        total += term
        if term < total * 1e-17:
            break
    return min(1.0, 2 * math.exp(log_top) * total)


def paired_outcomes(new, old):
    """Pair two runs' per-task outcomes ({task_id: passed}) over their common tasks.

    Returns {common, new_only, old_only (task counts), improved, regressed (sorted
    task ids that went fail→pass / pass→fail), b, c (their counts), p_value (exact
    McNemar; None when no task is common)}.
    """
    common = new.keys() & old.keys()
    improved = sorted(task for task in common if new[task] and not old[task])
    regressed = sorted(task for task in common if old[task] and not new[task])
    return {
        "common": len(common),
        "new_only": len(new.keys() - old.keys()),
        "old_only": len(old.keys() - new.keys()),
        "improved": improved,
        "regressed": regressed,
        "b": len(improved),
        "c": len(regressed),
        "p_value": mcnemar_exact(len(improved), len(regressed)) if common else None,
    }


def newcombe_paired_interval(both, first_only, second_only, neither, alpha=0.05):
    """(low, high) interval of p1 − p2 for paired binary outcomes, Newcombe (1998) method 10.

    Newcombe, "Improved confidence intervals for the difference between binomial
    proportions based on paired data", Statistics in Medicine 17:2635-2650: the Wilson
    limits of each marginal rate combined by square-and-add, corrected by the phi
    correlation of the 2×2 table (with its continuity correction when positive).
    Cells: both pass, only the first passes, only the second passes, neither.
    """
    cells = (both, first_only, second_only, neither)
    if min(cells) < 0:
        raise ValueError(f"cell counts cannot be negative, got {cells}")
    n = sum(cells)
    if n == 0:
        return (None, None)
    z = normal_ppf(1 - alpha / 2)
    first, second = both + first_only, both + second_only
    p1, p2 = first / n, second / n
    l1, u1 = wilson_interval(first, n, z)
    l2, u2 = wilson_interval(second, n, z)
    product = first * (n - first) * second * (n - second)
    numerator = both * neither - first_only * second_only
    if numerator > 0:
        numerator = max(numerator - n / 2, 0.0)
    phi = numerator / math.sqrt(product) if product > 0 else 0.0
    theta = p1 - p2
    below = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    above = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return (max(-1.0, theta - below), min(1.0, theta + above))


@functools.lru_cache(maxsize=4096)
def fisher_one_sided(passed_a, n_a, passed_b, n_b, greater=True):
    """One-sided Fisher exact p-value that group a passes more (greater) or less often than b.

    Conditional on the total passes, a's passes are hypergeometric; the p-value is the
    tail at or beyond the observed count. Exact integers: the tables are tiny (repetitions).
    """
    total = passed_a + passed_b
    size = n_a + n_b
    denominator = math.comb(size, n_a)
    low, high = max(0, total - n_b), min(total, n_a)
    values = range(passed_a, high + 1) if greater else range(low, passed_a + 1)
    return sum(math.comb(total, x) * math.comb(size - total, n_a - x) for x in values) / denominator
