"""Pure shaping for the pages: chart figures, the variant tree, sorting, diffs, upload parsing."""

import uuid
from types import SimpleNamespace

import pytest

from experiments_app.errors import ValidationFailed
from webui import charts
from webui.diffs import side_by_side
from webui.forms import parse_task_file
from webui.tree import parse_sort, sort_rows, variant_tree


def row(name, pass_rate, *, baseline=False, delta=None, p=None, variant=None, ci=(None, None)):
    return {
        "variant": variant or str(uuid.uuid4()),
        "name": name,
        "is_baseline": baseline,
        "pass_rate": pass_rate,
        "delta_pp": delta,
        "p_value": p,
        # as experiment_results judges it: the Holm-adjusted p below alpha (one variant at a time here)
        "significant": p is not None and p < 0.05,
        "ci_low": ci[0],
        "ci_high": ci[1],
    }


RESULTS = {
    "baseline": row("Baseline", 0.6, baseline=True, delta=0.0, ci=(0.45, 0.73)),
    "variants": [
        row("better", 0.8, delta=20.0, p=0.01, ci=(0.67, 0.89)),
        row("worse", 0.4, delta=-20.0, p=0.02, ci=(0.27, 0.55)),
        row("noise", 0.62, delta=2.0, p=0.7, ci=(0.48, 0.74)),
        row("not run", None),
    ],
}


def test_tone_says_better_worse_or_noise():
    assert [charts.tone(r) for r in [RESULTS["baseline"], *RESULTS["variants"][:3]]] == ["baseline", "better", "worse", "noise"]


def test_pass_rate_figure_has_asymmetric_95_percent_error_bars():
    trace = charts.pass_rate_figure(RESULTS)["data"][0]
    assert trace["x"] == ["Baseline", "better", "worse", "noise"]
    assert trace["y"][1] == 80.0
    assert trace["error_y"]["array"][1] == 9.0 and trace["error_y"]["arrayminus"][1] == 13.0


def test_pass_rate_figure_draws_a_dashed_baseline_line():
    shape = charts.pass_rate_figure(RESULTS)["layout"]["shapes"][0]
    assert (shape["y0"], shape["y1"], shape["line"]["dash"]) == (60.0, 60.0, "dash")


def test_delta_figure_colours_only_significant_points():
    trace = charts.delta_figure(RESULTS)["data"][0]
    assert trace["x"] == ["better", "worse", "noise"]
    assert trace["marker"]["color"] == [charts.COLOURS["better"], charts.COLOURS["worse"], charts.COLOURS["noise"]]


def test_figures_without_results_are_empty():
    assert charts.pass_rate_figure({"baseline": row("Baseline", None, baseline=True), "variants": []})["data"] == []
    assert charts.delta_figure({"baseline": None, "variants": []})["data"] == []


def variant(pk, parent=None):
    return SimpleNamespace(pk=pk, parent_id=parent)


def test_tree_is_depth_first_with_guides():
    nodes = variant_tree([variant("b"), variant("a", "b"), variant("c", "b"), variant("a1", "a")], {"baseline": None, "variants": []})
    assert [(n["variant"].pk, n["depth"], n["is_last"]) for n in nodes] == [
        ("b", 0, True),
        ("a", 1, False),
        ("a1", 2, True),
        ("c", 1, True),
    ]
    assert nodes[2]["guides"] == [True]  # a1 sits under a, which has a later sibling: draw │


@pytest.mark.parametrize(
    "value, expected",
    [("-pass_rate", ("pass_rate", True)), ("name", ("name", False)), ("id; drop", ("pass_rate", True)), (None, ("pass_rate", True))],
)
def test_sort_keys_come_from_an_allow_list(value, expected):
    assert parse_sort(value) == expected


def test_sort_puts_missing_values_last_in_both_directions():
    rows = [row("a", None), row("b", 0.5), row("c", 0.9)]
    assert [r["name"] for r in sort_rows(rows, "pass_rate", True)] == ["c", "b", "a"]
    assert [r["name"] for r in sort_rows(rows, "pass_rate", False)] == ["b", "c", "a"]


def test_side_by_side_marks_changed_added_and_removed_lines():
    rows = side_by_side("same\nold\ngone", "same\nnew")
    assert [r["kind"] for r in rows] == ["equal", "changed", "removed"]
    assert side_by_side(None, {"a": 1})[1]["kind"] == "added"


def test_parse_jsonl_skips_blank_lines():
    assert parse_task_file("t.jsonl", b'{"external_id": "a", "input": {}}\n\n{"external_id": "b", "input": {}}\n') == [
        {"external_id": "a", "input": {}},
        {"external_id": "b", "input": {}},
    ]


def test_parse_csv_names_the_row_with_bad_input_json():
    with pytest.raises(ValidationFailed) as error:
        parse_task_file("t.csv", b"external_id,input\na,{}\nb,{nope\n")
    assert list(error.value.errors) == ["line 3.input"]  # 1-based, the header being line 1


def test_parse_refuses_an_empty_file():
    with pytest.raises(ValidationFailed):
        parse_task_file("t.jsonl", b"\n\n")
