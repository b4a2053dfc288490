"""Power and planning: how many tasks detect a difference, and the smallest difference n tasks detect.

Differences are fractions (0.03 = 3 pp); power 80% by default.

- k = 1, Connor (1987), "Sample size for testing differences in proportions for the
  paired-sample design", Biometrics 43:207-211: n = [z_{1−α/2}·√ψ + z_{1−β}·√(ψ − δ²)]² / δ²,
  ψ the discordance rate (share of tasks whose outcome differs).
- k > 1, the variance form (Miller 2024, "Adding error bars to evals", arXiv 2411.00640):
  n = (z_{1−α/2} + z_{1−β})² · Var(d_i) / δ², with Var(d_i) = ω² + (σ_b² + σ_v²)/k.

For the minimum detectable effect the nuisance cannot be smaller than the effect allows:
a difference δ needs a discordance of at least δ (k = 1), and per-task differences on the
lattice of multiples of 1/k with mean δ have at least the variance of the two lattice
points around δ. Without that floor a comparison with no discordant task would claim it
could detect any difference.
"""

import math

from experiments_app.stats.distributions import normal_ppf

POWER = 0.8


def _z_sum(alpha, power):
    return normal_ppf(1 - alpha / 2), normal_ppf(power)


def connor_tasks(delta, discordance, alpha=0.05, power=POWER):
    """Tasks (not rounded) for exact McNemar to detect δ at discordance rate ψ (ψ ≥ |δ| > 0)."""
    delta = abs(delta)
    z_alpha, z_power = _z_sum(alpha, power)
    spread = max(discordance - delta * delta, 0.0)
    return (z_alpha * math.sqrt(discordance) + z_power * math.sqrt(spread)) ** 2 / (delta * delta)


def variance_tasks(delta, var_d, alpha=0.05, power=POWER):
    """Tasks (not rounded) for the paired test to detect δ when the per-task differences have variance var_d."""
    z_alpha, z_power = _z_sum(alpha, power)
    return (z_alpha + z_power) ** 2 * var_d / (delta * delta)


def lattice_floor(delta, k):
    """The least variance of differences on multiples of 1/k whose mean is δ."""
    delta = abs(delta)
    below = math.floor(delta * k) / k
    return max(0.0, (delta - below) * (below + 1 / k - delta))


def tasks_needed(delta, *, k, discordance=None, var_d=None, alpha=0.05, power=POWER):
    """Whole tasks (at k repetitions) to detect δ with the given power; None when δ is 0
    or the noise is unknown. k = 1 needs `discordance`, k > 1 needs `var_d`."""
    if not delta:
        return None
    if k == 1:
        if discordance is None:
            return None
        return math.ceil(connor_tasks(delta, max(discordance, abs(delta)), alpha, power))
    if var_d is None:
        return None
    return math.ceil(variance_tasks(delta, max(var_d, lattice_floor(delta, k)), alpha, power))


def mde(n, *, k, discordance=None, var_d=None, alpha=0.05, power=POWER):
    """The smallest |δ| (fraction) that n tasks detect with the given power; None without
    tasks or noise, 1.0 when even a difference of 100 pp would not do."""
    if n < 1 or (discordance if k == 1 else var_d) is None:
        return None

    def needed(delta):
        if k == 1:
            return connor_tasks(delta, max(discordance, delta), alpha, power)
        return variance_tasks(delta, max(var_d, lattice_floor(delta, k)), alpha, power)

    if needed(1.0) > n:
        return 1.0
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        if middle > 0 and needed(middle) <= n:
            high = middle
        else:
            low = middle
    return high


def plan(expected_pass_rate, min_difference_pp, alpha=0.05, power=POWER, k=1, measured=None):
    """The setup page's planner: tasks needed to detect `min_difference_pp` at k repetitions.

    Without `measured`, every repetition is taken as an independent pass/fail at the
    expected rate (the largest within-task noise a run at that rate can have, and no
    pairing benefit). With `measured` ({"within_var": σ² of a baseline with repetitions,
    e.g. `baseline_noise(...)["within_var"]`, optional "effect_var": ω², the spread of the
    effect across tasks, default 0}) it uses Var(d_i) = ω² + 2σ²/k, the variant assumed as
    noisy as the baseline. Returns {"tasks_needed", "tests_needed" (per run: tasks × k),
    "var_d", "noise": "assumed" | "measured"}.
    """
    if not 0 <= expected_pass_rate <= 1:
        raise ValueError(f"expected_pass_rate must be within 0..1, got {expected_pass_rate}")
    if not 0 < min_difference_pp <= 100:
        raise ValueError(f"min_difference_pp must be within (0, 100], got {min_difference_pp}")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError("alpha and power must be within (0, 1)")
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a whole number of repetitions ≥ 1, got {k}")
    delta = min_difference_pp / 100
    rate = expected_pass_rate
    other = rate + delta if rate + delta <= 1 else rate - delta
    if other < 0:
        raise ValueError("no pass rate is min_difference_pp away from expected_pass_rate")
    if measured is None:
        var_d, noise = (rate * (1 - rate) + other * (1 - other)) / k, "assumed"
    else:
        within = measured.get("within_var")
        if within is None or within < 0:
            raise ValueError("measured needs a non-negative within_var")
        var_d, noise = measured.get("effect_var", 0.0) + 2 * within / k, "measured"
    if k == 1:
        tasks = tasks_needed(delta, k=1, discordance=var_d + delta * delta, alpha=alpha, power=power)
    else:
        tasks = tasks_needed(delta, k=k, var_d=var_d, alpha=alpha, power=power)
    return {"tasks_needed": tasks, "tests_needed": tasks * k, "var_d": var_d, "noise": noise}
