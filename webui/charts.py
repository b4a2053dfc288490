"""Plotly figures for the experiment page, from the results rows of SPEC §8.

Built with plotly's Python API, which validates every property, and handed to the page as
the plain JSON dicts of `to_plotly_json()`: the page passes them through `json_script` and
one init script draws them with the plotly.min.js of the same plotly package
(dashboard/staticfiles.py); templates never compute chart data. Only the web process imports
this module (the first figure loads plotly's validators, about 20 MB).
"""

import math

import plotly.graph_objects as go

COLOURS = {"baseline": "#4c6ef5", "better": "#2f9e44", "worse": "#e03131", "noise": "#868e96"}
FONT = {"family": "ui-sans-serif, system-ui, -apple-system, Segoe UI, sans-serif", "size": 12}


def tone(row):
    """How a result reads against the baseline: baseline, better, worse or noise (not
    `significant`: the Holm-adjusted p-value is not below the experiment's alpha, SPEC §7)."""
    if row.get("is_baseline"):
        return "baseline"
    if row.get("delta_pp") is None or not row.get("significant"):
        return "noise"
    return "better" if row["delta_pp"] > 0 else "worse"


def confidence(alpha):
    """The interval's level as people write it: 0.05 → "95%", 0.01 → "99%", 0.1 → "90%"."""
    return f"{(1 - alpha) * 100:.4g}%"


def with_results(results):
    """The baseline then each variant that has a result, in tree order."""
    rows = [results["baseline"]] if results.get("baseline") else []
    rows += results.get("variants", [])
    return [row for row in rows if row and row.get("pass_rate") is not None]


def base_layout(title, y_title, **extra):
    """The layout both charts share; "none" is plotly's empty template (plotly.js defaults),
    so the page's own colours and font apply."""
    return go.Layout(
        template="none",
        title={"text": title, "font": {"size": 13}, "x": 0, "xanchor": "left"},
        font=FONT,
        margin={"l": 48, "r": 12, "t": 36, "b": 64},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        yaxis={"title": {"text": y_title}, "zeroline": False, "gridcolor": "rgba(128,128,128,0.2)"},
        xaxis={"automargin": True},
        showlegend=False,
        height=300,
        **extra,
    )


def pass_rate_figure(results):
    """Bars of pass rate (%) per variant with 95% Wilson intervals and a dashed baseline line."""
    rows = with_results(results)
    names = [row["name"] for row in rows]
    rates = [round(row["pass_rate"] * 100, 2) for row in rows]
    upper = [round((row["ci_high"] - row["pass_rate"]) * 100, 2) if row.get("ci_high") is not None else 0 for row in rows]
    lower = [round((row["pass_rate"] - row["ci_low"]) * 100, 2) if row.get("ci_low") is not None else 0 for row in rows]
    baseline_line = {}
    baseline = results.get("baseline") or {}
    if baseline.get("pass_rate") is not None:
        level = round(baseline["pass_rate"] * 100, 2)
        baseline_line = {
            "shapes": [
                go.layout.Shape(
                    type="line",
                    xref="paper",
                    x0=0,
                    x1=1,
                    y0=level,
                    y1=level,
                    line={"dash": "dash", "width": 1.5, "color": COLOURS["baseline"]},
                )
            ],
            "annotations": [
                # Labelled above the plot, like a legend entry: at the line's level it covers a bar on a phone.
                go.layout.Annotation(
                    xref="paper",
                    yref="paper",
                    x=1,
                    y=1,
                    xanchor="right",
                    yanchor="bottom",
                    showarrow=False,
                    text=f"– – baseline {level:g}%",
                    font={"size": 11, "color": COLOURS["baseline"]},
                )
            ],
        }
    layout = base_layout("Pass rate with 95% interval", "pass rate (%)", **baseline_line)
    layout.yaxis.range = [0, 105]
    bars = go.Bar(
        x=names,
        y=rates,
        marker={"color": [COLOURS[tone(row)] for row in rows]},
        error_y={"type": "data", "symmetric": False, "array": upper, "arrayminus": lower, "thickness": 1.5, "width": 4},
        hovertemplate="%{x}<br>%{y:.1f}% (95% CI −%{error_y.arrayminus:.1f} / +%{error_y.array:.1f})<extra></extra>",
    )
    return go.Figure(data=[bars] if rows else [], layout=layout).to_plotly_json()


def delta_error_bars(rows):
    """Plotly's error_y arrays (above, below) of each row's paired interval around its Δ; 0 when it has none."""
    above = [round(row["delta_ci_high"] - row["delta_pp"], 2) if row.get("delta_ci_high") is not None else 0 for row in rows]
    below = [round(row["delta_pp"] - row["delta_ci_low"], 2) if row.get("delta_ci_low") is not None else 0 for row in rows]
    return above, below


def delta_figure(results, alpha=0.05):
    """Points of the change vs baseline in percentage points with their (1 − alpha) paired
    interval as error bars; significant ones (Holm-adjusted p < alpha) larger and coloured,
    others grey, the control a diamond."""
    rows = [row for row in with_results(results) if not row.get("is_baseline") and row.get("delta_pp") is not None]
    zero = go.layout.Shape(type="line", xref="paper", x0=0, x1=1, y0=0, y1=0, line={"width": 1, "color": COLOURS["noise"]})
    level = confidence(alpha)
    layout = base_layout(f"Δ vs baseline (pp) with {level} interval", "Δ pp", shapes=[zero])
    above, below = delta_error_bars(rows)
    points = go.Scatter(
        mode="markers",
        x=[row["name"] for row in rows],
        y=[round(row["delta_pp"], 2) for row in rows],
        marker={
            "size": [13 if row.get("significant") else 9 for row in rows],
            "symbol": ["diamond" if row.get("is_control") else "circle" for row in rows],
            "color": [COLOURS[tone(row)] for row in rows],
            "line": {"width": 1, "color": "rgba(0,0,0,0.3)"},
        },
        error_y={"type": "data", "symmetric": False, "array": above, "arrayminus": below, "thickness": 1.5, "width": 5},
        customdata=[[interval_text(row), p_text(row.get("p_value_adjusted")), p_text(row.get("p_value"))] for row in rows],
        hovertemplate=(
            f"%{{x}}<br>%{{y:+.1f}} pp ({level} CI %{{customdata[0]}})"
            "<br>adjusted p = %{customdata[1]} · raw p = %{customdata[2]}<extra></extra>"
        ),
    )
    return go.Figure(data=[points] if rows else [], layout=layout).to_plotly_json()


def interval_text(row):
    if row.get("delta_ci_low") is None or row.get("delta_ci_high") is None:
        return "—"
    return f"{row['delta_ci_low']:+.1f} to {row['delta_ci_high']:+.1f}"


def p_text(value):
    if value is None:
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


# --- trade-offs: pass rate against what it costs -------------------------------------

TRADEOFF_AXES = {
    "cost": ("Mean cost per test", "mean cost per test (USD, log scale)", "no cost reported"),
    "latency": ("p95 latency", "p95 latency (ms)", "no latency reported"),
}
# Model prices differ by orders of magnitude, so cost reads best on a log axis; latency does not.
TRADEOFF_AXIS_TYPES = {"cost": "log", "latency": "linear"}


def tradeoff_x(row, axis):
    """A row's x on the trade-off chart: its mean cost per test or its p95 latency; None when not reported."""
    if axis == "cost":
        return row.get("cost_per_test")
    return ((row.get("metrics") or {}).get("latency_ms") or {}).get("p95")


def tradeoff_groups(rows):
    """(label, rows, marker) of the three kinds of point: the baseline, the control, the other variants."""
    baseline = [row for row in rows if row.get("is_baseline")]
    control = [row for row in rows if row.get("is_control") and not row.get("is_baseline")]
    variants = [row for row in rows if not row.get("is_baseline") and not row.get("is_control")]
    return [
        ("baseline", baseline, {"symbol": "star", "size": 16, "color": COLOURS["baseline"]}),
        ("control", control, {"symbol": "diamond", "size": 12, "color": COLOURS["noise"]}),
        ("variants", variants, {"symbol": "circle", "size": 11, "color": [COLOURS[tone(row)] for row in variants]}),
    ]


def missing_note(rows, axis):
    """The annotation naming the points the chart cannot place (missing is not zero)."""
    missing = [row["name"] for row in rows if tradeoff_x(row, axis) is None]
    text = f"{TRADEOFF_AXES[axis][2]}: {', '.join(missing)}" if missing else ""
    return {"xref": "paper", "yref": "paper", "x": 0, "y": -0.3, "xanchor": "left", "showarrow": False, "text": text, "font": {"size": 11}}


def label_positions(rows):
    """{row name: textposition}: above and below in turn along the cost axis, so the names of
    neighbouring points do not overprint."""
    ranked = sorted(rows, key=lambda row: (tradeoff_x(row, "cost") is None, tradeoff_x(row, "cost") or 0, row["pass_rate"]))
    return {row["name"]: "top center" if index % 2 == 0 else "bottom center" for index, row in enumerate(ranked)}


def axis_range(rows, axis):
    """The x range with room for the points' names at both ends (None: let plotly choose)."""
    values = [value for value in (tradeoff_x(row, axis) for row in rows) if value is not None and value > 0]
    if not values:
        return None
    low, high = min(values), max(values)
    if TRADEOFF_AXIS_TYPES[axis] == "log":  # plotly takes a log axis's range in log10 units
        low, high = math.log10(low), math.log10(high)
        pad = max(0.25, (high - low) * 0.12)
        return [low - pad, high + pad]
    pad = max(high * 0.1, (high - low) * 0.12)
    return [max(0.0, low - pad), high + pad]


def axis_layout(rows, axis):
    """The x axis of the trade-off chart for `axis`: title, scale, range and tick labels."""
    span = axis_range(rows, axis)
    money = axis == "cost"
    return {
        "title.text": TRADEOFF_AXES[axis][1],
        "type": TRADEOFF_AXIS_TYPES[axis],
        "range": span,
        "autorange": span is None,
        "dtick": 1 if money else None,  # one tick per power of ten: $0.0001, $0.001, …
        "tickprefix": "$" if money else "",
        "tickformat": "~g" if money else "",
    }


def tradeoff_figure(results):
    """Pass rate (with its 95% interval) against mean cost per test, one point per variant with
    a result, the baseline a star and the control a diamond; a button switches the x axis to
    p95 latency. Points without the metric are named under the chart, never drawn at zero."""
    rows = with_results(results)
    groups = tradeoff_groups(rows)
    positions = label_positions(rows)
    traces = []
    for label, members, marker in groups:
        if not members:
            continue
        rates = [round(row["pass_rate"] * 100, 2) for row in members]
        traces.append(
            {
                "mode": "markers+text",
                "name": label,
                "x": [tradeoff_x(row, "cost") for row in members],
                "y": rates,
                "text": [row["name"] for row in members],
                "textposition": [positions[row["name"]] for row in members],
                "textfont": {"size": 11},
                "marker": {**marker, "line": {"width": 1, "color": "rgba(0,0,0,0.35)"}},
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": [round((row["ci_high"] - row["pass_rate"]) * 100, 2) for row in members],
                    "arrayminus": [round((row["pass_rate"] - row["ci_low"]) * 100, 2) for row in members],
                    "thickness": 1.2,
                    "width": 3,
                },
                "customdata": [[tradeoff_x(row, "cost"), tradeoff_x(row, "latency")] for row in members],
                "hovertemplate": "%{text}<br>%{y:.1f}% passed<br>cost/test $%{customdata[0]:.6f} · p95 %{customdata[1]:.0f} ms<extra></extra>",
            }
        )
    first = axis_layout(rows, "cost")
    # No title: the panel's heading names the chart; the axis switch sits where a title would.
    layout = base_layout("", "pass rate (%)", annotations=[missing_note(rows, "cost")])
    layout.update(
        showlegend=True,
        legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"},
        margin={"l": 48, "r": 12, "t": 44, "b": 80},
        height=340,
    )
    layout.yaxis.range = [0, 110]
    layout.xaxis = {"gridcolor": "rgba(128,128,128,0.2)", "title": {"text": first.pop("title.text")}, **first}
    menus = [
        {
            "type": "buttons",
            "direction": "right",
            "x": 0,
            "xanchor": "left",
            "y": 1.02,
            "yanchor": "bottom",
            "pad": {"l": 0, "t": 0, "b": 4},
            "showactive": True,
            "active": 0,
            "buttons": [
                {
                    "label": label,
                    "method": "update",
                    "args": [
                        {"x": [[tradeoff_x(row, axis) for row in members] for _, members, _ in groups if members]},
                        {
                            **{f"xaxis.{key}": value for key, value in axis_layout(rows, axis).items()},
                            "annotations": [missing_note(rows, axis)],
                        },
                    ],
                }
                for axis, (label, _, _) in TRADEOFF_AXES.items()
            ],
        }
    ]
    layout.updatemenus = menus
    return go.Figure(data=[go.Scatter(**trace) for trace in traces], layout=layout).to_plotly_json()
