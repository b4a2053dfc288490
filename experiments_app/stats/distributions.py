"""Normal and Student-t distributions in pure Python (no scipy at run time).

The normal quantile is the standard library's `statistics.NormalDist.inv_cdf`
(Wichura's AS241, accurate to about 1e-16). Python has no Student-t, so its tail
is written here from the regularized incomplete beta function (continued fraction,
modified Lentz) and its quantile by safeguarded Newton steps from a Cornish-Fisher
start. tests/experiments_app/test_stats_distributions.py holds both to scipy within 1e-9.
"""

import math
from statistics import NormalDist

_STANDARD_NORMAL = NormalDist()
_TINY = 1e-300


def normal_cdf(x):
    return _STANDARD_NORMAL.cdf(x)


def normal_ppf(p):
    """The p-quantile of the standard normal distribution, 0 < p < 1."""
    if not 0 < p < 1:
        raise ValueError(f"p must be within (0, 1), got {p}")
    return _STANDARD_NORMAL.inv_cdf(p)


def _beta_continued_fraction(a, b, x):
    """The continued fraction of I_x(a, b) (Numerical Recipes' betacf, modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-16:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def regularized_beta(a, b, x, y=None):
    """I_x(a, b), the regularized incomplete beta function; y = 1 − x may be given
    exactly by the caller, which keeps the precision when x is close to 1."""
    y = 1.0 - x if y is None else y
    if x <= 0:
        return 0.0
    if y <= 0:
        return 1.0
    log_front = a * math.log(x) + b * math.log(y) + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, y) / b


def t_sf(t, df):
    """P(T > t) for Student's t with df degrees of freedom (df > 0, not necessarily whole)."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    t2 = t * t
    # P(|T| > |t|) = I_x(df/2, 1/2) with x = df / (df + t²); 1 − x = t² / (df + t²) exactly.
    two_sided = regularized_beta(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2))
    return 0.5 * two_sided if t > 0 else 1.0 - 0.5 * two_sided


def t_cdf(t, df):
    return t_sf(-t, df)


def t_pdf(t, df):
    log_density = (
        math.lgamma((df + 1) / 2.0) - math.lgamma(df / 2.0) - 0.5 * math.log(df * math.pi) - (df + 1) / 2.0 * math.log1p(t * t / df)
    )
    return math.exp(log_density)


def _cornish_fisher_t(z, df):
    """Start for the t quantile: the Cornish-Fisher expansion of t in the normal quantile z
    (Abramowitz & Stegun 26.7.5)."""
    z2 = z * z
    g1 = (z2 + 1) * z / 4
    g2 = ((5 * z2 + 16) * z2 + 3) * z / 96
    g3 = (((3 * z2 + 19) * z2 + 17) * z2 - 15) * z / 384
    g4 = ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) * z / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def t_ppf(p, df):
    """The p-quantile of Student's t with df degrees of freedom, 0 < p < 1."""
    if not 0 < p < 1:
        raise ValueError(f"p must be within (0, 1), got {p}")
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -_t_upper_quantile(p, df)
    return _t_upper_quantile(1.0 - p, df)


def _t_upper_quantile(q, df):
    """The t > 0 with P(T > t) = q, for 0 < q < 1/2."""
    if df == 1:
        return 1.0 / math.tan(math.pi * q)  # the Cauchy quantile, as cot(πq) to keep precision near q = 0
    if df == 2:
        return (1 - 2 * q) / math.sqrt(2 * q * (1 - q))
    t = max(_cornish_fisher_t(-normal_ppf(q), df), 0.0)
    low, high = 0.0, math.inf
    for _ in range(200):
        excess = t_sf(t, df) - q  # decreasing in t
        if excess > 0:
            low = t
        else:
            high = t
        step = excess / t_pdf(t, df)
        candidate = t + step
        if not low < candidate < high or not math.isfinite(candidate):
            # Newton left the bracket: bisect (or grow the bracket while it is open above).
            candidate = (low + high) / 2 if math.isfinite(high) else max(2 * t, 1.0)
        if abs(candidate - t) <= 1e-14 * max(1.0, abs(t)):
            return candidate
        t = candidate
    return t
