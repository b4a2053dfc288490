"""Plotly figure dicts for the experiment page, from the results rows of SPEC §8.

Pure functions over plain dicts: the page passes them through `json_script` and one
init script draws them; templates never compute chart data.
"""

from experiments_app.results import significant

COLOURS = {"baseline": "#4c6ef5", "better": "#2f9e44", "worse": "#e03131", "noise": "#868e96"}
FONT = {"family": "ui-sans-serif, system-ui, -apple-system, Segoe UI, sans-serif", "size": 12}


def tone(row):
    """How a result reads against the baseline: baseline, better, worse or noise
    (a difference not distinguishable from chance at 5%)."""
    if row.get("is_baseline"):
        return "baseline"
    if row.get("delta_pp") is None or not significant(row.get("p_value")):
        return "noise"
    return "better" if row["delta_pp"] > 0 else "worse"


def with_results(results):
    """The baseline then each variant that has a result, in tree order."""
    rows = [results["baseline"]] if results.get("baseline") else []
    rows += results.get("variants", [])
    return [row for row in rows if row and row.get("pass_rate") is not None]


def base_layout(title, y_title):
    return {
        "title": {"text": title, "font": {"size": 13}, "x": 0, "xanchor": "left"},
        "font": FONT,
        "margin": {"l": 48, "r": 12, "t": 36, "b": 64},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "yaxis": {"title": {"text": y_title}, "zeroline": False, "gridcolor": "rgba(128,128,128,0.2)"},
        "xaxis": {"automargin": True},
        "showlegend": False,
        "height": 300,
    }


def pass_rate_figure(results):
    """Bars of pass rate (%) per variant with 95% Wilson intervals and a dashed baseline line."""
    rows = with_results(results)
    names = [row["name"] for row in rows]
    rates = [round(row["pass_rate"] * 100, 2) for row in rows]
    upper = [round((row["ci_high"] - row["pass_rate"]) * 100, 2) if row.get("ci_high") is not None else 0 for row in rows]
    lower = [round((row["pass_rate"] - row["ci_low"]) * 100, 2) if row.get("ci_low") is not None else 0 for row in rows]
    layout = base_layout("Pass rate with 95% interval", "pass rate (%)")
    layout["yaxis"]["range"] = [0, 105]
    baseline = results.get("baseline") or {}
    if baseline.get("pass_rate") is not None:
        level = round(baseline["pass_rate"] * 100, 2)
        layout["shapes"] = [
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": level,
                "y1": level,
                "line": {"dash": "dash", "width": 1.5, "color": COLOURS["baseline"]},
            }
        ]
        # Labelled above the plot, like a legend entry: at the line's level it covers a bar on a phone.
        layout["annotations"] = [
            {
                "xref": "paper",
                "yref": "paper",
                "x": 1,
                "y": 1,
                "xanchor": "right",
                "yanchor": "bottom",
                "showarrow": False,
                "text": f"– – baseline {level:g}%",
                "font": {"size": 11, "color": COLOURS["baseline"]},
            }
        ]
    trace = {
        "type": "bar",
        "x": names,
        "y": rates,
        "marker": {"color": [COLOURS[tone(row)] for row in rows]},
        "error_y": {"type": "data", "symmetric": False, "array": upper, "arrayminus": lower, "thickness": 1.5, "width": 4},
        "hovertemplate": "%{x}<br>%{y:.1f}% (95% CI −%{error_y.arrayminus:.1f} / +%{error_y.array:.1f})<extra></extra>",
    }
    return {"data": [trace] if rows else [], "layout": layout}


def delta_figure(results):
    """Points of the change vs baseline in percentage points; significant ones coloured, others grey."""
    rows = [row for row in with_results(results) if not row.get("is_baseline") and row.get("delta_pp") is not None]
    layout = base_layout("Δ vs baseline (percentage points)", "Δ pp")
    layout["shapes"] = [
        {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 0, "y1": 0, "line": {"width": 1, "color": COLOURS["noise"]}}
    ]
    trace = {
        "type": "scatter",
        "mode": "markers",
        "x": [row["name"] for row in rows],
        "y": [round(row["delta_pp"], 2) for row in rows],
        "marker": {
            "size": [13 if significant(row.get("p_value")) else 9 for row in rows],
            "color": [COLOURS[tone(row)] for row in rows],
            "line": {"width": 1, "color": "rgba(0,0,0,0.3)"},
        },
        "customdata": [row.get("p_value") for row in rows],
        "hovertemplate": "%{x}<br>%{y:+.1f} pp · p=%{customdata:.3f}<extra></extra>",
    }
    return {"data": [trace] if rows else [], "layout": layout}
