"""Always-valid live monitoring of a running variant against the complete baseline (SPEC §7 `live`).

The dispatcher feeds one task at a time, once all its repetitions are done: d_i = v_i − b_i
in [−1, 1]. The state is a small JSON-able dict stored on the run between updates; each
update costs O(grid) at most. Looking after every task does not raise the false-positive
rate above alpha (Ville's inequality: a non-negative martingale under the null reaches
1/alpha with probability at most alpha).

Two constructions:

- "betting" (default, every k): the hedged betting confidence sequence of Waudby-Smith &
  Ramdas (2024), "Estimating means of bounded random variables by betting", JRSS-B 86:1-27,
  for the mean of x_i = (d_i + 1)/2 in [0, 1]: for each candidate mean m on a grid, the
  capital K(m) = max(½ Π(1 + λ⁺_i(x_i − m)), ½ Π(1 − λ⁻_i(x_i − m))) with the predictable
  plug-in bets λ_i = √(2 log(1/α) / (σ̂²_{i−1} · i · log(1 + i))) truncated at ½/m and
  ½/(1 − m); m leaves the sequence for good once K(m) ≥ 1/α (running intersection). Under
  the null of no difference (each d_i as likely +|d_i| as −|d_i|) K(½) is a martingale
  whatever order the tasks arrive in, so `decided` is valid in any order; the interval
  covers the mean difference when tasks arrive in random order (the dispatcher should shuffle).
- "mixture" (k = 1 only): the Jeffreys-mixture e-value on the discordant tasks,
  E = B(b + ½, c + ½) / B(½, ½) · 2^(b + c) (b fail→pass, c pass→fail), rejecting p = ½ when
  E ≥ 1/α. Its interval is the same mixture's confidence sequence for p (the share of
  discordant tasks that improved) mapped to Δ = ψ̂ · (2p − 1), ψ̂ the running discordance
  rate: valid given the discordance observed so far.

The interval is reported conservatively on the grid (the outermost rejected grid points),
and `decided` is "better" exactly when ci_low > 0, "worse" exactly when ci_high < 0.
"""

import math

GRID_STEP = 0.005
TRUNCATION = 0.5


def live_start(total, *, alpha=0.05, method="betting", grid_step=GRID_STEP):
    """A fresh state for a run of `total` tasks."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be within (0, 1), got {alpha}")
    if method not in ("betting", "mixture"):
        raise ValueError(f"method must be betting or mixture, got {method}")
    state = {"method": method, "alpha": alpha, "total": total, "done": 0, "sum": 0.0}
    if method == "mixture":
        return {**state, "up": 0, "down": 0}
    points = round(2 / grid_step)
    return {
        **state,
        "step": 2 / points,
        "sum_x": 0.0,
        "squares": 0.0,
        "mean_x": 0.5,
        "var_x": 0.25,
        "low": 0,
        "high": points,
        "log_plus": [0.0] * (points + 1),
        "log_minus": [0.0] * (points + 1),
    }


def live_update(state, difference):
    """Feed one finished task's d_i = v_i − b_i; returns the new state (the given one is not changed)."""
    if not -1 <= difference <= 1:
        raise ValueError(f"a task's difference must be within [-1, 1], got {difference}")
    state = dict(state)
    state["done"] += 1
    state["sum"] += difference
    if state["method"] == "mixture":
        if difference not in (-1, 0, 1):
            raise ValueError("the mixture e-value takes single outcomes (d in -1, 0, 1); use the betting method with repetitions")
        if difference > 0:
            state["up"] += 1
        elif difference < 0:
            state["down"] += 1
        return state
    return _bet(state, (difference + 1) / 2)


def _bet(state, x):
    t = state["done"]
    threshold = math.log(1 / state["alpha"])
    bet = math.sqrt(2 * threshold / (state["var_x"] * t * math.log(1 + t)))
    low, high, step = state["low"], state["high"], state["step"]
    plus, minus = state["log_plus"][:], state["log_minus"][:]
    half = math.log(0.5)
    rejected = []
    for offset in range(high - low + 1):
        m = (low + offset) * step / 2
        shift = x - m
        bet_plus = min(bet, TRUNCATION / m) if m > 0 else bet
        bet_minus = min(bet, TRUNCATION / (1 - m)) if m < 1 else bet
        plus[offset] += math.log1p(bet_plus * shift)
        minus[offset] += math.log1p(-bet_minus * shift)
        rejected.append(max(plus[offset], minus[offset]) + half >= threshold)
    # The capital is quasi-convex in m: the rejected points are the two ends of the range.
    first, last = 0, len(rejected) - 1
    while first <= last and rejected[first]:
        first += 1
    while last >= first and rejected[last]:
        last -= 1
    if first > last:
        # Every surviving point rejected at once (probability ≤ alpha): keep the least rejected one.
        best = min(range(len(rejected)), key=lambda i: max(plus[i], minus[i]))
        first = last = best
    state.update(low=low + first, high=low + last, log_plus=plus[first : last + 1], log_minus=minus[first : last + 1])
    # Regularized running mean and variance (one fake observation at ½ and ¼) for the next bet.
    state["sum_x"] += x
    mean = (0.5 + state["sum_x"]) / (t + 1)
    state["squares"] += (x - mean) ** 2
    state.update(mean_x=mean, var_x=(0.25 + state["squares"]) / (t + 1))
    return state


def discordant_log_e_value(up, down, p=0.5):
    """log of the Jeffreys-mixture e-value against a share p of improvements among discordant tasks."""
    log_mixture = _log_beta(up + 0.5, down + 0.5) - _log_beta(0.5, 0.5)
    log_likelihood = (up * math.log(p) if up else 0.0) + (down * math.log(1 - p) if down else 0.0)
    return log_mixture - log_likelihood


def _log_beta(a, b):
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _mixture_share_interval(up, down, alpha):
    """The mixture confidence sequence for p at this time: {p : E(p) < 1/α}, an interval around up/(up + down)."""
    threshold = math.log(1 / alpha)
    center = up / (up + down)

    def outside(p):
        return discordant_log_e_value(up, down, p) >= threshold

    def boundary(inside, out):
        for _ in range(60):
            middle = (inside + out) / 2
            if outside(middle):
                out = middle
            else:
                inside = middle
        return out

    low = 0.0 if not up or not outside(1e-300) else boundary(center, 0.0)
    high = 1.0 if not down or not outside(1 - 1e-16) else boundary(center, 1.0)
    return low, high


def live_summary(state):
    """{done, total, delta_pp, ci_low, ci_high, decided} (pp; decided "better" | "worse" | None)."""
    done = state["done"]
    summary = {"done": done, "total": state["total"], "delta_pp": None, "ci_low": None, "ci_high": None, "decided": None}
    if not done:
        return summary
    summary["delta_pp"] = 100 * state["sum"] / done
    if state["method"] == "mixture":
        up, down = state["up"], state["down"]
        if up + down == 0:
            low = high = 0.0
        else:
            share_low, share_high = _mixture_share_interval(up, down, state["alpha"])
            discordance = (up + down) / done
            low, high = discordance * (2 * share_low - 1), discordance * (2 * share_high - 1)
    else:
        step = state["step"]
        last = round(2 / step)
        low = -1.0 if state["low"] == 0 else -1 + (state["low"] - 1) * step
        high = 1.0 if state["high"] == last else -1 + (state["high"] + 1) * step
    # Rounded to 1e-9 pp so that grid points read as the round numbers they are.
    low, high = round(100 * low, 9), round(100 * high, 9)
    summary.update(ci_low=low, ci_high=high, decided="better" if low > 0 else "worse" if high < 0 else None)
    return summary
