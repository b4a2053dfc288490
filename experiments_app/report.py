"""The decision report (`experiments/{id}/report/`): what was tested, the evidence, and what was decided.

`build_report(experiment)` gathers it as plain data; `to_markdown` and `to_csv` render that
data and nothing else, so the three formats cannot disagree. The verdict of each variant
comes from `decisions.judge`, the winner and who picked it from the `complete` Transition.
"""

import csv
import io
import json

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from experiments_app import decisions, overrides
from experiments_app.evaluation import evaluator_names
from experiments_app.models import Test, Transition
from experiments_app.results import experiment_results
from experiments_app.states import State

VERSION = 1
CSV_COLUMNS = [
    "variant",
    "name",
    "parent",
    "is_baseline",
    "is_control",
    "change",
    "diff_vs_baseline",
    "run",
    "status",
    "pass_rate",
    "ci_low",
    "ci_high",
    "delta_pp",
    "delta_ci_low",
    "delta_ci_high",
    "p_value",
    "p_value_adjusted",
    "significant",
    "verdict",
    "verdict_text",
    "mde_pp",
    "tasks_needed",
    "total",
    "passed",
    "failed",
    "errored",
    "skipped",
    "stopped_early",
    "flaky",
    "pass_at_k",
    "pass_hat_k",
    "improved",
    "regressed",
    "guardrails",
    "ship",
    "warnings",
    "winner",
]


def page_url(path):
    return f"{settings.PUBLIC_URL.rstrip('/')}{path}"


def config_diff(old, new):
    """[{step, parameter, from, to}] for every parameter whose value differs between two configs."""
    changes = []
    for step in sorted(old.keys() | new.keys()):
        before, after = old.get(step, {}), new.get(step, {})
        for parameter in sorted(before.keys() | after.keys()):
            if before.get(parameter) != after.get(parameter):
                changes.append({"step": step, "parameter": parameter, "from": before.get(parameter), "to": after.get(parameter)})
    return changes


def effective_configs(variants, baseline_config):
    """{variant id: effective config} walking each variant's chain to the root (no query per node)."""
    by_id = {variant.pk: variant for variant in variants}
    configs = {}
    for variant in variants:
        chain, node = [], variant
        while node is not None and node.parent_id is not None:
            change = node.change()  # None for the control, which changes nothing
            if change is not None:
                chain.append((change["step"], change["parameter"], change["value"]))
            node = by_id.get(node.parent_id)
        configs[variant.pk] = overrides.effective_config(baseline_config, list(reversed(chain)))
    return configs


def flipped_tasks(row):
    """The row's improved and regressed tasks, each with its external id and a link to its test in the run."""
    wanted = [*row["improved"], *row["regressed"]]
    if not wanted or row["run"] is None:
        return {"improved": [], "regressed": []}
    tests = {}
    for test_id, task_id, external_id in (
        Test.objects.filter(run_id=row["run"], task_id__in=wanted).order_by("repetition").values_list("pk", "task_id", "task_external_id")
    ):
        tests.setdefault(str(task_id), (test_id, external_id))

    def entry(task_id):
        test_id, external_id = tests.get(task_id, (None, None))
        url = page_url(f"/runs/{row['run']}/tests/{test_id}/") if test_id else None
        return {"task": task_id, "external_id": external_id, "url": url}

    return {
        kind: sorted((entry(task) for task in row[kind]), key=lambda item: item["external_id"] or "") for kind in ("improved", "regressed")
    }


def metric_tradeoffs(row, baseline_row):
    """{metric: {baseline, variant, delta}} of the means, for every metric either side reported."""
    mine, theirs = row.get("metrics") or {}, (baseline_row or {}).get("metrics") or {}
    figures = {}
    for name in sorted(mine.keys() | theirs.keys()):
        new, old = mine.get(name, {}).get("mean"), theirs.get(name, {}).get("mean")
        figures[name] = {"baseline": old, "variant": new, "delta": new - old if new is not None and old is not None else None}
    return figures


def row_warnings(row, max_error_rate):
    """The row's own warnings (SPEC §7) plus what this report notices about the run."""
    warnings = list(row.get("warnings") or [])
    if row.get("status") == "failed":
        warnings.append({"code": "run_failed", "detail": f"The run failed: more than {max_error_rate:.0%} of its tests errored."})
    elif row.get("errored"):
        warnings.append({"code": "errored_tests", "detail": f"{row['errored']} of {row['total']} tests errored (counted as not passed)."})
    return warnings


def decision(experiment):
    """The winner, who picked it and when: from the Transition that completed the experiment."""
    transition = (
        Transition.objects.filter(experiment=experiment, to_status=State.COMPLETED).select_related("by").order_by("-at", "-id").first()
    )
    # The audit row names the winner as it was picked (its name too, should the variant go later).
    picked = (transition.detail or {}) if transition else {}
    winner = experiment.winner
    if picked.get("winner"):
        winner_part = {
            "id": picked["winner"],
            "name": winner.name if winner and str(winner.pk) == picked["winner"] else picked.get("winner_name"),
        }
    else:
        winner_part = {"id": str(winner.pk), "name": winner.name} if winner else None
    return {
        "status": experiment.status,
        "completed": transition is not None,
        "winner": winner_part,
        "picked_by": transition.by.get_username() if transition and transition.by else None,
        "picked_at": transition.at if transition else None,
    }


def variant_entry(variant, row, configs, baseline, baseline_row, experiment, alpha):
    parent_config = configs.get(variant.parent_id, configs[variant.pk]) if variant.parent_id else configs[variant.pk]
    judgement = decisions.judge(row, default_alpha=alpha) if not variant.is_baseline else None
    return {
        "variant": str(variant.pk),
        "name": variant.name,
        "parent": str(variant.parent_id) if variant.parent_id else None,
        "parent_name": variant.parent.name if variant.parent_id else None,
        "is_baseline": variant.is_baseline,
        "is_control": bool(getattr(variant, "is_control", False)),
        "change": variant.change(),
        "config": configs[variant.pk],
        "diff_vs_parent": config_diff(parent_config, configs[variant.pk]),
        "diff_vs_baseline": config_diff(configs[baseline.pk], configs[variant.pk]),
        "run": row["run"],
        "run_url": page_url(f"/runs/{row['run']}/") if row["run"] else None,
        "status": row["status"],
        "completed_at": row["completed_at"],
        "pass_rate": row["pass_rate"],
        "ci_low": row["ci_low"],
        "ci_high": row["ci_high"],
        "delta_pp": row["delta_pp"],
        "delta_ci_low": row.get("delta_ci_low"),
        "delta_ci_high": row.get("delta_ci_high"),
        "p_value": row["p_value"],
        "p_value_adjusted": row.get("p_value_adjusted"),
        "significant": row.get("significant"),
        "verdict": judgement.verdict if judgement else None,
        "mde_pp": row.get("mde_pp"),
        "tasks_needed": row.get("tasks_needed"),
        "total": row["total"],
        "passed": row["passed"],
        "failed": row["failed"],
        "errored": row["errored"],
        "skipped": row.get("skipped"),
        "stopped_early": row.get("stopped_early"),
        "flaky": row.get("flaky"),
        "pass_at_k": row.get("pass_at_k"),
        "pass_hat_k": row.get("pass_hat_k"),
        "flipped": flipped_tasks(row) if not variant.is_baseline else {"improved": [], "regressed": []},
        "metrics": metric_tradeoffs(row, baseline_row),
        "evaluators": row.get("evaluators") or {},
        "guardrails": row.get("guardrails") or [],
        "ship": row.get("ship"),
        "warnings": row_warnings(row, experiment.max_error_rate),
    }


def build_report(experiment):
    """The decision report of one experiment as plain JSON-ready data."""
    variants = list(experiment.variants.select_related("inference_step", "parent").order_by("created_at", "pk"))
    baseline = next(variant for variant in variants if variant.is_baseline)
    configs = effective_configs(variants, baseline.config or {})
    table = experiment_results(experiment)
    rows = {row["variant"]: row for row in [table["baseline"], *table["variants"]] if row}
    names = evaluator_names(experiment.evaluators)
    alpha = decisions.experiment_alpha(experiment)
    entries = [variant_entry(v, rows[str(v.pk)], configs, baseline, table["baseline"], experiment, alpha) for v in variants]
    warnings = []
    if table["baseline"] is None or table["baseline"]["run"] is None:
        warnings.append({"code": "no_baseline_result", "detail": "The baseline has no result yet: nothing can be compared."})
    report = {
        "version": VERSION,
        "generated_at": timezone.now(),
        "experiment": {
            "id": str(experiment.pk),
            "name": experiment.name,
            "url": page_url(f"/experiments/{experiment.pk}/"),
            "status": experiment.status,
            "hypothesis": experiment.description,
            "application": {"id": str(experiment.application_id), "name": experiment.application.name},
        },
        "scope": {
            "inference_steps": sorted(experiment.inference_steps.values_list("external_id", flat=True)),
            "tasks": experiment.task_count(),
            "repetitions": experiment.repetitions,
            "evaluators": names,
            "alpha": alpha,
            "max_error_rate": experiment.max_error_rate,
            "locked_at": experiment.locked_at,
        },
        "baseline": entries[variants.index(baseline)],
        "variants": [entry for entry in entries if not entry["is_baseline"]],
        "warnings": warnings,
        "decision": decision(experiment),
    }
    for entry in report["variants"]:
        entry["winner"] = bool(experiment.winner_id and entry["variant"] == str(experiment.winner_id))
    report["baseline"]["winner"] = bool(experiment.winner_id and experiment.winner_id == baseline.pk)
    return json.loads(json.dumps(report, cls=DjangoJSONEncoder))


# --- rendering ------------------------------------------------------------------


def percent(value):
    return "—" if value is None else f"{value * 100:.1f}%"


def signed_pp(value):
    return "—" if value is None else f"{value:+.1f} pp"


def number(value):
    return "—" if value is None else f"{value:.3g}"


def shown(value):
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


def md_escape(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def change_text(changes):
    return "; ".join(f"`{c['step']}.{c['parameter']}`: {md_escape(shown(c['from']))} → {md_escape(shown(c['to']))}" for c in changes) or "—"


def interval(low, high, fmt):
    return "" if low is None or high is None else f" [{fmt(low)}, {fmt(high)}]"


def to_markdown(report):
    """The report as GitHub-flavoured Markdown."""
    experiment, scope, decided = report["experiment"], report["scope"], report["decision"]
    lines = [f"# Decision report: {md_escape(experiment['name'])}", ""]
    lines += [f"**Hypothesis.** {md_escape(experiment['hypothesis']) or '_none written_'}", ""]
    lines += [
        f"- Application: {md_escape(experiment['application']['name'])} · status `{experiment['status']}` · [open the experiment]({experiment['url']})",
        f"- Scope: steps {', '.join(f'`{s}`' for s in scope['inference_steps']) or '—'} · {scope['tasks']} tasks × {scope['repetitions']} repetition(s)"
        f" · evaluators {', '.join(scope['evaluators']) or 'default'} · α = {scope['alpha']:g}",
        f"- Locked: {scope['locked_at'] or 'not yet'}",
        "",
        "## Decision",
        "",
    ]
    if decided["winner"]:
        lines.append(
            f"Winner: **{md_escape(decided['winner']['name'])}**, picked by {decided['picked_by'] or 'automation'} at {decided['picked_at']}."
        )
    elif decided["completed"]:
        lines.append(f"Completed without a winner by {decided['picked_by'] or 'automation'} at {decided['picked_at']}.")
    else:
        lines.append("Not decided yet: the experiment is not completed.")
    base = report["baseline"]
    lines += [
        "",
        "## Results",
        "",
        f"Baseline: {percent(base['pass_rate'])}{interval(base['ci_low'], base['ci_high'], percent)} ({base['passed'] or 0}/{base['total'] or 0} passed)",
        "",
    ]
    if base["flaky"] is not None:
        lines += [flaky_text(base), ""]
    confidence = f"{100 * (1 - scope['alpha']):.10g}%"
    lines += [
        f"Δ is the paired difference over common tasks with its {confidence} interval; p is Holm-adjusted over the"
        " variants (the control included), and verdicts use the adjusted p.",
        "",
        f"| Variant | Change vs parent | Pass rate [95% CI] | Δ vs baseline [{confidence} CI] | p (raw) | p (adjusted) | Verdict | Ship |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in report["variants"]:
        verdict = entry["verdict"]["code"].replace("_", " ") if entry["verdict"] else "—"
        name = f"[{md_escape(entry['name'])}]({entry['run_url']})" if entry["run_url"] else md_escape(entry["name"])
        marks = (" 🏆" if entry["winner"] else "") + (" (control)" if entry["is_control"] else "")
        lines.append(
            f"| {name}{marks} | {change_text(entry['diff_vs_parent'])} "
            f"| {percent(entry['pass_rate'])}{interval(entry['ci_low'], entry['ci_high'], percent)} "
            f"| {signed_pp(entry['delta_pp'])}{interval(entry['delta_ci_low'], entry['delta_ci_high'], signed_pp)} "
            f"| {number(entry['p_value'])} | {number(entry['p_value_adjusted'])} | {verdict} | {ship_text(entry['ship'])} |"
        )
    for entry in report["variants"]:
        lines += ["", f"### {md_escape(entry['name'])}", ""]
        if entry["verdict"]:
            lines.append(f"> {md_escape(entry['verdict']['text'])}")
            lines.append("")
        lines.append(f"- Changes vs baseline: {change_text(entry['diff_vs_baseline'])}")
        if entry["stopped_early"]:
            lines.append(f"- Stopped early once decided: {entry['skipped']} tests skipped (never sent).")
        if entry["flaky"] is not None:
            lines.append(f"- {flaky_text(entry)}")
        for kind in ("improved", "regressed"):
            tasks = entry["flipped"][kind]
            if tasks:
                links = ", ".join(
                    f"[{md_escape(t['external_id'] or t['task'])}]({t['url']})" if t["url"] else md_escape(t["task"]) for t in tasks
                )
                lines.append(f"- {kind.capitalize()} ({len(tasks)}): {links}")
        metrics = [
            f"{name} {number(m['baseline'])} → {number(m['variant'])}" for name, m in entry["metrics"].items() if m["variant"] is not None
        ]
        if metrics:
            lines.append(f"- Metrics (mean, baseline → variant): {'; '.join(metrics)}")
        for guardrail in entry["guardrails"]:
            state = "non-inferior" if guardrail.get("non_inferior") else "not shown non-inferior"
            bounds = interval(guardrail.get("ci_low"), guardrail.get("ci_high"), number)
            lines.append(
                f"- Guardrail {md_escape(guardrail.get('name'))}: {state}"
                f" ({number(guardrail.get('baseline'))} → {number(guardrail.get('variant'))}, Δ {number(guardrail.get('delta'))}{bounds})"
            )
        for warning in entry["warnings"]:
            lines.append(f"- ⚠️ `{warning['code']}`: {md_escape(warning['detail'])}")
    if report["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- ⚠️ `{w['code']}`: {md_escape(w['detail'])}" for w in report["warnings"]]
    lines += ["", f"_Generated {report['generated_at']}._", ""]
    return "\n".join(lines)


def ship_text(ship):
    return "—" if ship is None else ("yes" if ship else "no")


def flaky_text(entry):
    return (
        f"Flaky tasks: {entry['flaky']} · pass@k {percent(entry['pass_at_k'])} · pass^k {percent(entry['pass_hat_k'])}"
        " (at least one / every repetition passes)"
    )


def guardrails_cell(guardrails):
    """name:non_inferior|not_non_inferior for each guardrail, ';'-separated (the figures are in the JSON)."""
    return ";".join(f"{g.get('name')}:{'non_inferior' if g.get('non_inferior') else 'not_non_inferior'}" for g in guardrails)


def csv_cell(value):
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return "" if value is None else value


def to_csv(report):
    """One row per variant, the baseline first."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for entry in [report["baseline"], *report["variants"]]:
        values = {
            **entry,
            "change": change_text(entry["diff_vs_parent"]) if not entry["is_baseline"] else "",
            "diff_vs_baseline": change_text(entry["diff_vs_baseline"]) if not entry["is_baseline"] else "",
            "verdict": entry["verdict"]["code"] if entry["verdict"] else "",
            "verdict_text": entry["verdict"]["text"] if entry["verdict"] else "",
            "guardrails": guardrails_cell(entry["guardrails"]),
            "improved": len(entry["flipped"]["improved"]),
            "regressed": len(entry["flipped"]["regressed"]),
            "warnings": ";".join(w["code"] for w in entry["warnings"]),
        }
        writer.writerow([csv_cell(values.get(column)) for column in CSV_COLUMNS])
    return out.getvalue()
