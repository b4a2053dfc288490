"""Statistics of SPEC §7 as pure functions over plain numbers: no Django, no numpy.

One module per concept, re-exported here so callers import from `experiments_app.stats`.
"""

from experiments_app.stats.descriptive import is_number, majority_passed, percentile, summarize
from experiments_app.stats.proportions import EXACT_INTEGER_LIMIT, Z_95, mcnemar_exact, paired_outcomes, wilson_interval

__all__ = [
    "EXACT_INTEGER_LIMIT",
    "Z_95",
    "is_number",
    "majority_passed",
    "mcnemar_exact",
    "paired_outcomes",
    "percentile",
    "summarize",
    "wilson_interval",
]
