"""Plain-language pages: what the statistics on the experiment page mean."""

from django.shortcuts import render
from django.views.decorators.http import require_GET

from experiments_app import stats
from webui.access import team_member

# One entry per section of the statistics page, in reading order: (anchor, title, template).
# A new figure gets its own entry and template under webui/help/; the table's hints link to the anchors.
STATISTICS_SECTIONS = [
    ("pass-rate", "Pass rate", "webui/help/pass_rate.html"),
    ("interval", "The interval under the pass rate", "webui/help/interval.html"),
    ("delta", "Δ and “vs base”", "webui/help/delta.html"),
    ("p-value", "p", "webui/help/p_value.html"),
    ("significance", "The * mark and the colours", "webui/help/significance.html"),
    ("repetitions", "Repetitions", "webui/help/repetitions.html"),
    ("sample-size", "Is 30 tasks enough?", "webui/help/sample_size.html"),
]

SAMPLE_SIZES = (30, 100, 300, 1000)


def smallest_clean_win():
    """The fewest tasks a variant must fix, breaking none, for McNemar's p to drop below 0.05."""
    fixed = 1
    while stats.mcnemar_exact(fixed, 0) >= 0.05:
        fixed += 1
    return fixed


def sample_size_examples():
    """Figures for "is 30 tasks enough?", computed with the same functions the results use."""
    win = smallest_clean_win()
    rows = []
    for n in SAMPLE_SIZES:
        low, high = stats.wilson_interval(n // 2, n)
        rows.append({"tasks": n, "half_width": (high - low) / 2 * 100, "clean_win_pp": win / n * 100})
    return {
        "rows": rows,
        "clean_win": win,
        "clean_win_p": stats.mcnemar_exact(win, 0),
        "near_win_p": stats.mcnemar_exact(win - 1, 0),
        "mixed_p": stats.mcnemar_exact(10, 4),
        "interval_15_of_30": stats.wilson_interval(15, 30),
    }


@require_GET
@team_member
def statistics(request):
    context = {"sections": STATISTICS_SECTIONS, "examples": sample_size_examples()}
    return render(request, "webui/help_statistics.html", context)
