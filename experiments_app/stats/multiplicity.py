"""Holm's step-down adjustment over the variants of one experiment (control included).

Holm (1979), "A simple sequentially rejective multiple test procedure", Scandinavian
Journal of Statistics 6:65-70: the i-th smallest of m p-values is multiplied by
(m − i + 1), made monotone with a running maximum and capped at 1. It keeps the
family-wise error rate at or below alpha for any dependence between the comparisons
(they share the baseline run, so they are dependent).
"""


def holm(p_values):
    """Holm-adjusted p-values in the order given; None entries (no result) pass through and do not count in m."""
    indexed = sorted((p, index) for index, p in enumerate(p_values) if p is not None)
    m = len(indexed)
    adjusted = list(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(indexed):
        if not 0 <= p <= 1:
            raise ValueError(f"p-values must be within 0..1, got {p}")
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted
