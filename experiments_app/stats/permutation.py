"""The paired sign-flip permutation test on per-task differences (SPEC §7, repetitions > 1).

Under the null hypothesis the variant and the baseline are exchangeable within each task,
so every d_i is as likely to be +|d_i| as −|d_i|. The statistic is Σ d_i. Its
permutation distribution depends only on how many non-zero |d_i| there are of each
magnitude, so it is a sum of a few scaled binomials (a handful of magnitudes: multiples
of 1/k at k repetitions), never one pass over the tasks per permutation:

- exact: convolve the scaled binomial distributions when that costs at most
  EXACT_BUDGET multiply-adds (the exact p-value, as scipy's exhaustive enumeration);
- Monte Carlo otherwise: each permutation is one binomial draw per magnitude (inverse
  CDF over a precomputed table), MONTE_CARLO_PERMUTATIONS of them from a fixed seed,
  p = (1 + #{|S*| ≥ |S|}) / (1 + B), which is a valid p-value at any B.

Magnitudes are integers on a common lattice (d_i times the least common multiple of the
repetition counts), so ties are compared exactly, never as floats.
"""

import bisect
import math
import random
from collections import Counter
from fractions import Fraction

from experiments_app.stats.proportions import EXACT_INTEGER_LIMIT, mcnemar_exact

EXACT_BUDGET = 1_000_000
MONTE_CARLO_PERMUTATIONS = 10_000
SEED = 20_240_901


def sign_flip_p_value(differences, *, permutations=MONTE_CARLO_PERMUTATIONS, seed=SEED, exact_budget=EXACT_BUDGET):
    """Two-sided sign-flip p-value of the mean of `differences` (ints, Fractions or floats;
    floats are read as the nearest fraction with a denominator up to 10⁶).

    Returns {"p_value", "method": "exact" | "monte_carlo", "permutations"}.
    """
    fractions = [value if isinstance(value, Fraction) else Fraction(value).limit_denominator(10**6) for value in differences]
    lattice = math.lcm(*(value.denominator for value in fractions)) if fractions else 1
    integers = [int(value * lattice) for value in fractions]
    return sign_flip_test(
        Counter(abs(value) for value in integers if value), sum(integers), permutations=permutations, seed=seed, exact_budget=exact_budget
    )


def sign_flip_test(magnitudes, observed, *, permutations=MONTE_CARLO_PERMUTATIONS, seed=SEED, exact_budget=EXACT_BUDGET):
    """Two-sided sign-flip p-value P(|S*| ≥ |observed|) for S* = Σ ±a over the non-zero
    integer magnitudes {a: how many tasks}; `observed` is the integer Σ d_i."""
    classes = sorted((magnitude, count) for magnitude, count in magnitudes.items() if magnitude and count)
    if observed == 0 or not classes:
        return {"p_value": 1.0, "method": "exact", "permutations": None}
    divisor = math.gcd(*(magnitude for magnitude, _ in classes))
    if observed % divisor:
        raise ValueError("the observed sum is not a signed sum of the magnitudes")
    classes = [(magnitude // divisor, count) for magnitude, count in classes]
    observed = abs(observed) // divisor
    if len(classes) == 1:
        # One magnitude: S = a·(2X − m) with X ~ Binomial(m, 1/2), the exact McNemar tail.
        count = classes[0][1]
        below = (count - observed // classes[0][0]) // 2
        return {"p_value": mcnemar_exact(below, count - below), "method": "exact", "permutations": None}
    if _convolution_cost(classes) <= exact_budget:
        return {"p_value": _exact(classes, observed), "method": "exact", "permutations": None}
    return {"p_value": _monte_carlo(classes, observed, permutations, seed), "method": "monte_carlo", "permutations": permutations}


def _convolution_cost(classes):
    cost, length = 0, 1
    for magnitude, count in classes:
        cost += length * (count + 1)
        length += magnitude * count
    return cost


def _binomial_half_pmf(count):
    if count <= EXACT_INTEGER_LIMIT:
        denominator = 2**count
        # Big integer over big integer: Python rounds the quotient correctly.
        return [math.comb(count, x) / denominator for x in range(count + 1)]
    log_top, log_half = math.lgamma(count + 1), count * math.log(2)
    return [math.exp(log_top - math.lgamma(x + 1) - math.lgamma(count - x + 1) - log_half) for x in range(count + 1)]


def _exact(classes, observed):
    # T = Σ a·X_a with X_a ~ Binomial(m_a, 1/2) counts the positive signs; S = 2T − A.
    distribution = [1.0]
    for magnitude, count in classes:
        weights = _binomial_half_pmf(count)
        result = [0.0] * (len(distribution) + magnitude * count)
        length = len(distribution)
        for x, weight in enumerate(weights):
            if weight == 0.0:
                continue
            offset = magnitude * x
            result[offset : offset + length] = [r + weight * p for r, p in zip(result[offset : offset + length], distribution, strict=True)]
        distribution = result
    total = sum(magnitude * count for magnitude, count in classes)
    threshold = (total + observed) // 2  # S ≥ observed ⇔ T ≥ (A + observed) / 2
    upper_tail = math.fsum(distribution[threshold:])
    return min(1.0, 2 * upper_tail)


def _binomial_half_table(count):
    """(first value, cumulative probabilities) of Binomial(count, 1/2) over the values
    whose probability is not negligible (±9 standard deviations: tails below 1e-18)."""
    spread = 9 * math.sqrt(count) / 2 + 1
    low, high = max(0, math.floor(count / 2 - spread)), min(count, math.ceil(count / 2 + spread))
    log_half = count * math.log(2)
    log_top = math.lgamma(count + 1)
    cumulative, running = [], 0.0
    for x in range(low, high + 1):
        running += math.exp(log_top - math.lgamma(x + 1) - math.lgamma(count - x + 1) - log_half)
        cumulative.append(running)
    return low, [value / running for value in cumulative]


def _monte_carlo(classes, observed, permutations, seed):
    rng = random.Random(seed)
    tables = [(magnitude, count, *_binomial_half_table(count)) for magnitude, count in classes]
    hits = 0
    for _ in range(permutations):
        statistic = 0
        for magnitude, count, low, cumulative in tables:
            positives = low + bisect.bisect_left(cumulative, rng.random())
            statistic += magnitude * (2 * positives - count)
        if abs(statistic) >= observed:
            hits += 1
    return (1 + hits) / (1 + permutations)
