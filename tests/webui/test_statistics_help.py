"""Explaining the statistics where they appear: "how to read this", hints on p, the interval and *, and the statistics page."""

import html as htmllib
import re

import pytest

from experiments_app import stats
from tests.webui.conftest import make_with_results

pytestmark = pytest.mark.django_db


def test_results_table_has_how_to_read_this_linking_to_the_statistics_page(editor):
    experiment, *_ = make_with_results(editor.team)
    html = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    aside = html[html.index('id="how-to-read"') :]
    assert "How to read this" in aside and 'href="/help/statistics/"' in aside


def test_p_the_interval_and_the_significance_mark_carry_hints(editor):
    experiment, *_ = make_with_results(editor.team, n_tasks=12)
    html = htmllib.unescape(editor.get(f"/experiments/{experiment.pk}/").content.decode())
    table = html[html.index('id="results-table"') :]
    header = table[: table.index("</thead>")]
    assert re.search(r'<a class="hint tip" href="/help/statistics/#p-value" data-tip="How often chance alone', header)
    assert 'href="/help/statistics/#pass-rate"' in header
    assert re.search(r'<span class="tip" tabindex="0"\s+data-tip="95% interval:', table)
    assert re.search(r'<span class="tip" tabindex="0"\s+data-tip="\* significant: the Holm-adjusted p', table)  # 6 of 12 fixed: p = 0.03
    assert 'href="/help/statistics/#significance"' in html


def test_the_statistics_page_explains_each_figure_and_whether_30_tasks_are_enough(editor):
    response = editor.get("/help/statistics/")
    html = htmllib.unescape(" ".join(response.content.decode().split()))
    assert response.status_code == 200
    for anchor in ("pass-rate", "interval", "delta", "p-value", "significance", "repetitions", "sample-size"):
        assert f'id="{anchor}"' in html and f'href="#{anchor}"' in html
    assert "Is 30 tasks enough?" in html
    # the figures come from the same functions as the results
    low, high = stats.wilson_interval(15, 30)
    assert f"about ±{round((high - low) / 2 * 100)} points with 30 tasks" in html
    assert "needs to fix at least 6 of them before p drops below 0.05 (p = 0.031; with 5 it is 0.062)" in html
    assert f"gives p = {stats.mcnemar_exact(10, 4):.3f}: not significant" in html


def test_the_statistics_page_needs_a_sign_in(client):
    assert client.get("/help/statistics/").status_code == 302
