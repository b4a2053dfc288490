"""Issue 9 on the pages: verdicts, intervals, Holm-adjusted marks, warnings, guardrails, the
noise panel and the control on the experiment page; charts with error bars; the CSV export."""

import csv
import io
import json

import pytest

from experiments_app import actions, results
from tests.webui.verdict_data import make_verdicts_experiment
from webui import charts

pytestmark = pytest.mark.django_db


@pytest.fixture
def verdicts(editor):
    experiment, made = make_verdicts_experiment(editor.team)
    return experiment, made


def figure_in(html, name):
    marker = f'<script id="{name}" type="application/json">'
    start = html.index(marker) + len(marker)
    return json.loads(html[start : html.index("</script>", start)])


def verdict_item(html, name):
    """The <li> of the verdicts panel for the variant called `name`."""
    panel = html[html.index('id="verdicts"') : html.index("</section>", html.index('id="verdicts"'))]
    (item,) = [chunk for chunk in panel.split('<li class="verdict ')[1:] if f"<strong>{name}</strong>" in chunk]
    return " ".join(item.split())


def rows_of(experiment):
    return {row["name"]: row for row in results.experiment_results(experiment)["variants"]}


def plain(html):
    return html.replace("\u2212", "-")


def test_each_variant_gets_its_verdict_sentence_with_the_interval_and_adjusted_p(editor, verdicts):
    experiment, _ = verdicts
    html = plain(editor.get(f"/experiments/{experiment.pk}/").content.decode())
    assert 'id="verdicts"' in html
    assert "better: +41.7 pp (95% CI +27.6 to +55.7), adjusted p &lt; 0.001" in html
    assert "marks and colours use Holm-adjusted p-values" in html
    row = rows_of(experiment)["temp 0.5"]
    assert row["p_value"] < 0.05 <= row["p_value_adjusted"]
    item = verdict_item(html, "temp 0.5")
    assert "no detectable difference" in item and "raw p 0.031" in item
    assert f"adjusted p <strong>{row['p_value_adjusted']:.3f}</strong>" in item


def test_a_variant_significant_only_before_holm_is_neither_marked_nor_coloured(editor, verdicts):
    experiment, _ = verdicts
    html = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    tree = html[html.index('id="variant-tree"') : html.index("</ul>", html.index('id="variant-tree"'))]
    node = tree[tree.index(">temp 0.5<") :]
    node = node[: node.index("</li>")]
    assert "tone-noise" in node and " sig" not in node
    strong = tree[tree.index(">temp 0.3<") :]
    assert "tone-better sig" in strong[: strong.index("</li>")]


def test_warnings_show_as_badges_with_their_detail(editor, verdicts):
    experiment, _ = verdicts
    html = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    item = verdict_item(html, "max_tokens 64")
    assert "inconclusive: error rates differ" in item
    assert "⚠ error rate mismatch" in item and "errored tests differ beyond chance" in item


def test_guardrails_and_ship_are_shown(editor, verdicts):
    experiment, _ = verdicts
    html = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    slow = verdict_item(html, "gpt-4o")
    assert "latency_ms mean" in slow and "✗ no" in slow and "don't ship" in slow
    fast = verdict_item(html, "temp 0.3")
    assert "✓ yes" in fast and "ship ✓" in fast


def test_flaky_count_pass_at_k_and_stopped_early_are_shown(editor, verdicts):
    experiment, made = verdicts
    html = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    row = rows_of(experiment)["temp 0.5"]
    item = verdict_item(html, "temp 0.5")
    assert "10 flaky tasks" in item
    assert f"pass@3 {row['pass_at_k'] * 100:.0f}% · pass^3 {row['pass_hat_k'] * 100:.0f}%" in item
    stopped = verdict_item(html, "temp 0.1")
    assert f"stopped early · {made['temp 0.1'].skipped} skipped" in stopped


def test_the_control_is_marked_as_the_noise_floor_with_its_flip_rate(editor, verdicts):
    experiment, _ = verdicts
    html = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    item = verdict_item(html, "control")
    assert "control · noise floor" in item and "flip rate 12.5%" in item


def test_the_noise_panel_splits_the_variance_and_shows_the_split_half(editor, verdicts):
    experiment, _ = verdicts
    html = plain(editor.get(f"/experiments/{experiment.pk}/").content.decode())
    panel = html[html.index('id="noise"') : html.index("</section>", html.index('id="noise"'))]
    baseline = results.experiment_results(experiment)["baseline"]["noise"]
    assert "Between tasks" in panel and "Within a task" in panel and "SE floor" in panel and "Split-half A/A" in panel
    assert f"{baseline['within_var']:.4f}".rstrip("0") in panel
    assert "control · noise floor" in panel


def test_no_noise_panel_without_repetitions_or_control(editor):
    from tests.webui.conftest import make_with_results

    experiment, *_ = make_with_results(editor.team)
    html = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    assert 'id="noise"' not in html and 'id="verdicts"' in html


def test_the_table_shows_delta_intervals_and_adjusted_p_with_the_raw_one(editor, verdicts):
    experiment, _ = verdicts
    html = plain(editor.get(f"/experiments/{experiment.pk}/").content.decode())
    table = html[html.index('id="results-table"') :]
    assert "p (adj.)" in table
    assert '<div class="muted small delta-ci">+27.6 to +55.7 pt</div>' in table
    assert "raw 0.031" in table


def test_the_table_sorts_by_adjusted_p(editor, verdicts):
    experiment, _ = verdicts
    html = editor.get(f"/experiments/{experiment.pk}/results/?sort=p_value_adjusted", HTTP_HX_REQUEST="true").content.decode()
    table = html[html.index("<tbody>", html.index('id="results-table"')) :]
    order = [name for name in ("temp 0.3", "temp 0.1", "gpt-4o", "temp 0.5", "control") if f">{name}</a>" in table]
    positions = [table.index(f">{name}</a>") for name in order]
    assert positions == sorted(positions)


def test_the_page_says_marks_use_holm_adjusted_p(editor, verdicts):
    experiment, _ = verdicts
    html = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    how = html[html.index('id="how-to-read"') :]
    assert "Holm" in how[: how.index("</aside>")]


def test_the_delta_chart_has_error_bars_of_the_paired_interval(editor, verdicts):
    experiment, _ = verdicts
    html = editor.get(f"/experiments/{experiment.pk}/results/", HTTP_HX_REQUEST="true").content.decode()
    figure = figure_in(html, "fig-delta")
    (trace,) = figure["data"]
    rows = {row["name"]: row for row in results.experiment_results(experiment)["variants"]}
    index = trace["x"].index("temp 0.3")
    row = rows["temp 0.3"]
    assert trace["error_y"]["array"][index] == pytest.approx(row["delta_ci_high"] - row["delta_pp"], abs=0.01)
    assert trace["error_y"]["arrayminus"][index] == pytest.approx(row["delta_pp"] - row["delta_ci_low"], abs=0.01)
    assert "95% interval" in figure["layout"]["title"]["text"]


def test_chart_highlights_follow_the_adjusted_value_not_the_raw_one():
    rows = [
        {
            "name": "raw only",
            "variant": "a",
            "pass_rate": 0.6,
            "delta_pp": 10.0,
            "p_value": 0.01,
            "p_value_adjusted": 0.07,
            "significant": False,
        },
        {
            "name": "adjusted",
            "variant": "b",
            "pass_rate": 0.7,
            "delta_pp": 20.0,
            "p_value": 0.001,
            "p_value_adjusted": 0.004,
            "significant": True,
        },
    ]
    figure = charts.delta_figure({"baseline": None, "variants": rows})
    marker = figure["data"][0]["marker"]
    assert marker["color"] == [charts.COLOURS["noise"], charts.COLOURS["better"]]
    assert marker["size"] == [9, 13]


def test_the_interval_level_follows_alpha(editor, verdicts):
    experiment, _ = verdicts
    actions.update_experiment(experiment, alpha=0.01)
    html = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    assert "99% CI" in html and "99% interval" in figure_in(html, "fig-delta")["layout"]["title"]["text"]


def test_csv_export_carries_the_new_fields(editor, verdicts):
    experiment, _ = verdicts
    response = editor.get(f"/experiments/{experiment.pk}/results.csv")
    rows = {row["name"]: row for row in csv.DictReader(io.StringIO(response.content.decode()))}
    row = rows["temp 0.5"]
    for field in (
        "delta_ci_low",
        "delta_ci_high",
        "p_value_adjusted",
        "significant",
        "verdict",
        "verdict_text",
        "mde_pp",
        "tasks_needed",
        "flaky",
        "pass_at_k",
        "pass_hat_k",
        "warnings",
        "ship",
        "stopped_early",
        "skipped",
        "is_control",
    ):
        assert field in row, field
    assert row["verdict"] == "no_difference"
    assert float(row["p_value_adjusted"]) == pytest.approx(rows_of(experiment)["temp 0.5"]["p_value_adjusted"])
    assert rows["max_tokens 64"]["warnings"] == "error_rate_mismatch"
    assert rows["control"]["is_control"] == "True"
    assert rows["gpt-4o"]["guardrails"].startswith("latency_ms mean: not non-inferior")
