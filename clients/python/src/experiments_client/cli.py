"""experiments-cli: run a variant, wait for it and gate a pull request, from a CI job.

Exit codes: 0 pass, 1 regression or failed gate, 2 usage or connection error; each failure
prints one line on stderr. EXPERIMENTS_URL and EXPERIMENTS_TOKEN come from the environment
(or --url/--token).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from xml.etree import ElementTree

from experiments_client.client import ApiError, Client, ClientError, ConnectionFailed, RunTimedOut

PASS, FAIL, USAGE = 0, 1, 2
PROG = "experiments-cli"


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def percent(value):
    return "—" if value is None else f"{value * 100:.1f}%"


def signed(value):
    return "—" if value is None else f"{value:+.1f} pp"


def delta_text(row):
    """Δ with its interval: "+8.0 pp [+3.1, +12.9]"."""
    low, high = row.get("delta_ci_low"), row.get("delta_ci_high")
    bounds = f" [{low:+.1f}, {high:+.1f}]" if low is not None and high is not None else ""
    return signed(row.get("delta_pp")) + bounds


def p_text(value):
    return "—" if value is None else f"{value:.3g}"


def ship_text(ship):
    return "—" if ship is None else ("yes" if ship else "no")


def row_notes(row):
    """What else a reader should see about a row: stopped early, failing guardrails, warnings."""
    notes = []
    if row.get("stopped_early"):
        notes.append(f"stopped early ({row.get('skipped') or 0} tests skipped)")
    notes += [f"guardrail {g.get('name')} not shown non-inferior" for g in row.get("guardrails") or [] if not g.get("non_inferior")]
    notes += [f"warning {w.get('code')}" for w in row.get("warnings") or []]
    return notes


# --- outputs ----------------------------------------------------------------------------


def write_junit(path, name, cases):
    """cases: [(case name, passed, message, details)] as one JUnit test suite."""
    suite = ElementTree.Element("testsuite", name=name, tests=str(len(cases)), failures=str(sum(1 for c in cases if not c[1])))
    for case_name, passed, message, details in cases:
        case = ElementTree.SubElement(suite, "testcase", classname=name, name=case_name)
        if not passed:
            failure = ElementTree.SubElement(case, "failure", message=message)
            failure.text = details
        else:
            out = ElementTree.SubElement(case, "system-out")
            out.text = message
    with open(path, "wb") as handle:
        ElementTree.ElementTree(suite).write(handle, encoding="utf-8", xml_declaration=True)


def write_markdown(path, title, lines):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"### {title}\n\n" + "\n".join(lines) + "\n")


def gate_lines(gate, client, experiment_id):
    result = gate["result"]
    mark = "✅ pass" if gate["pass"] else "❌ fail"
    link = f"{client.url}/experiments/{experiment_id}/"
    return [
        f"**{mark}** — {gate['reason']}",
        "",
        "| Variant | Pass rate | Δ vs baseline [CI] | p (adjusted) | Verdict | Ship |",
        "|---|---|---|---|---|---|",
        f"| {result.get('name')} | {percent(result.get('pass_rate'))} | {delta_text(result)} "
        f"| {p_text(result.get('p_value_adjusted', result.get('p_value')))} | {gate['verdict']['code']} | {ship_text(result.get('ship'))} |",
        "",
        *[f"- {note}" for note in row_notes(result)],
        f"[Open the experiment]({link}) · [decision report]({link}report/)",
    ]


def emit_gate(args, client, experiment_id, gate):
    print(f"{'PASS' if gate['pass'] else 'FAIL'}: {gate['reason']}")
    details = json.dumps(gate["result"], indent=2, default=str)
    if args.junit:
        write_junit(
            args.junit, "experiments-gate", [(gate["result"].get("name") or gate["variant"], gate["pass"], gate["reason"], details)]
        )
    if args.markdown:
        write_markdown(args.markdown, "Experiment gate", gate_lines(gate, client, experiment_id))
    return PASS if gate["pass"] else FAIL


# --- commands ---------------------------------------------------------------------------


def judge_run(args, client, run):
    """After a run ended: the gate of its variant (a variant run), or the run's own outcome (the baseline)."""
    variant = client.get_variant(run["variant"])
    if run["status"] == "cancelled":
        raise_fail(args, f"run {run['id']} was cancelled")
    if variant["is_baseline"]:
        passed = run["status"] == "succeeded"
        message = f"baseline run {run['id']} {run['status']}: {run['passed']}/{run['total']} passed"
        print(f"{'PASS' if passed else 'FAIL'}: {message}")
        if args.junit:
            write_junit(args.junit, "experiments-gate", [("baseline", passed, message, "")])
        if args.markdown:
            write_markdown(args.markdown, "Experiment gate", [f"**{'✅ pass' if passed else '❌ fail'}** — {message}"])
        return PASS if passed else FAIL
    gate = client.gate(run["experiment"], variant["id"], max_regression_pp=args.max_regression_pp, alpha=args.alpha)
    if gate["run"] != run["id"]:
        raise_fail(args, f"run {run['id']} is not the variant's latest result (it ended {run['status']})")
    return emit_gate(args, client, run["experiment"], gate)


class Failed(Exception):
    pass


def raise_fail(args, message):
    if getattr(args, "junit", None):
        write_junit(args.junit, "experiments-gate", [("run", False, message, "")])
    if getattr(args, "markdown", None):
        write_markdown(args.markdown, "Experiment gate", [f"**❌ fail** — {message}"])
    raise Failed(message)


def wait_and_judge(args, client, run_id):
    try:
        run = client.wait_for_run(run_id, timeout=args.timeout)
    except RunTimedOut as timed_out:
        raise_fail(args, str(timed_out))
    stopped = f", stopped early with {run.get('skipped') or 0} tests skipped" if run.get("stopped_early") else ""
    print(
        f"run {run['id']} {run['status']}: {run['passed']} passed, {run['failed']} failed, {run['errored']} errored of {run['total']}{stopped}"
    )
    return judge_run(args, client, run)


def command_run(args, client):
    run = client.run_variant(args.variant, webhook_url=args.webhook_url, stop_when_decided=args.stop_when_decided or None)
    stops = " (stops once decided)" if run.get("stop_when_decided") else ""
    print(f"started run {run['id']} of variant {args.variant}{stops}: {client.url}/runs/{run['id']}/")
    if not args.wait:
        return PASS
    return wait_and_judge(args, client, run["id"])


def command_wait(args, client):
    return wait_and_judge(args, client, args.run)


def command_gate(args, client):
    gate = client.gate(args.experiment, args.variant, max_regression_pp=args.max_regression_pp, alpha=args.alpha)
    return emit_gate(args, client, args.experiment, gate)


def row_verdict(args, client, row):
    """The row's verdict {code, text}: its own (made at the experiment's alpha), or the gate's at --alpha."""
    if args.alpha is None and isinstance(row.get("verdict"), dict):
        return row["verdict"]
    return client.gate(args.experiment, row["variant"], max_regression_pp=100, alpha=args.alpha)["verdict"]


def command_results(args, client):
    table = client.results(args.experiment)
    if args.json:
        print(json.dumps(table, indent=2))
    rows = [table["baseline"], *table["variants"]]
    cases, worse = [], []
    lines = ["| Variant | Pass rate | Δ vs baseline [CI] | p | p (adjusted) | Verdict | Ship |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        verdict = {"code": "baseline", "text": ""}
        if not row["is_baseline"]:
            verdict = row_verdict(args, client, row)
            cases.append((row["name"], verdict["code"] != "worse", verdict["text"], "; ".join(row_notes(row))))
            if verdict["code"] == "worse":
                worse.append(row["name"])
        name = row["name"] + (" (control)" if row.get("is_control") else "")
        if not args.json:
            print(
                f"{name[:40]:40} {percent(row['pass_rate']):>7} {delta_text(row):>26}  p_adj {p_text(row.get('p_value_adjusted')):>8}"
                f"  {verdict['code']:13} ship {ship_text(row.get('ship'))}"
            )
            for line in ([verdict["text"]] if verdict["text"] else []) + row_notes(row):
                print(f"    {line}")
        lines.append(
            f"| {name} | {percent(row['pass_rate'])} | {delta_text(row)} | {p_text(row.get('p_value'))} "
            f"| {p_text(row.get('p_value_adjusted'))} | {verdict['code']} | {ship_text(row.get('ship'))} |"
        )
    if args.junit:
        write_junit(args.junit, "experiments-results", cases)
    if args.markdown:
        write_markdown(args.markdown, "Experiment results", lines)
    if worse:
        print(f"FAIL: significantly worse than the baseline: {', '.join(worse)}", file=sys.stderr)
        return FAIL
    return PASS


def command_report(args, client):
    body = client.report(args.experiment, format=args.format)
    text = json.dumps(body, indent=2, ensure_ascii=False) + "\n" if args.format == "json" else body
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
        print(f"wrote the {args.format} report to {args.output}")
    else:
        sys.stdout.write(text)
    return PASS


# --- arguments --------------------------------------------------------------------------


def gate_options(parser):
    parser.add_argument("--max-regression-pp", type=float, default=0.0, help="tolerated drop in percentage points (default 0)")
    parser.add_argument("--alpha", type=float, help="significance level (default: the experiment's)")


def outputs(parser):
    parser.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    parser.add_argument("--markdown", metavar="FILE", help="write a Markdown summary (for a pull-request comment)")


def build_parser():
    parser = Parser(prog=PROG, description="Run, wait for and gate experiments of the experiments dashboard.")
    parser.add_argument("--url", help="the dashboard's address (default $EXPERIMENTS_URL)")
    parser.add_argument("--token", help="an API token (default $EXPERIMENTS_TOKEN)")
    commands = parser.add_subparsers(dest="command", parser_class=Parser)

    run = commands.add_parser("run", help="start a variant run; --wait waits for it and gates it")
    run.add_argument("variant", help="variant id")
    run.add_argument("--webhook-url", help="send this run's tests here (e.g. a preview deployment)")
    run.add_argument("--stop-when-decided", action="store_true", help="stop once the verdict is settled")
    run.add_argument("--wait", action="store_true", help="wait for the run to end, then gate it")
    run.add_argument("--timeout", type=float, default=3600, help="seconds to wait at most (default 3600)")
    gate_options(run)
    outputs(run)
    run.set_defaults(handler=command_run)

    wait = commands.add_parser("wait", help="wait for a run to end, then gate it")
    wait.add_argument("run", help="run id")
    wait.add_argument("--timeout", type=float, default=3600, help="seconds to wait at most (default 3600)")
    gate_options(wait)
    outputs(wait)
    wait.set_defaults(handler=command_wait)

    gate = commands.add_parser("gate", help="pass or fail one variant of an experiment")
    gate.add_argument("experiment", help="experiment id")
    gate.add_argument("--variant", required=True, help="variant id")
    gate_options(gate)
    outputs(gate)
    gate.set_defaults(handler=command_gate)

    results = commands.add_parser("results", help="the results table; exit 1 when a variant is significantly worse")
    results.add_argument("experiment", help="experiment id")
    results.add_argument("--alpha", type=float, help="significance level (default: the experiment's)")
    results.add_argument("--json", action="store_true", help="print the results as JSON")
    outputs(results)
    results.set_defaults(handler=command_results)

    report = commands.add_parser("report", help="the decision report")
    report.add_argument("experiment", help="experiment id")
    report.add_argument("--format", choices=["json", "md", "csv"], default="md")
    report.add_argument("--output", metavar="FILE", help="write it here instead of standard output")
    report.set_defaults(handler=command_report)
    return parser


def client_from(args):
    url = args.url or os.environ.get("EXPERIMENTS_URL")
    token = args.token or os.environ.get("EXPERIMENTS_TOKEN")
    if not url:
        raise UsageError("EXPERIMENTS_URL is not set (or pass --url)")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"EXPERIMENTS_URL must start with http:// or https:// (got {url!r})")
    if not token:
        raise UsageError("EXPERIMENTS_TOKEN is not set (or pass --token)")
    return Client(url, token)


def main(argv=None):
    def fail(code, message):
        print(f"{PROG}: {message}", file=sys.stderr)
        return code

    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UsageError("choose a command: run, wait, gate, results or report (see --help)")
        with client_from(args) as client:
            return args.handler(args, client)
    except UsageError as error:
        return fail(USAGE, f"error: {error}")
    except ConnectionFailed as error:
        return fail(USAGE, str(error))
    except ApiError as error:
        return fail(USAGE, str(error))
    except Failed as error:
        return fail(FAIL, f"FAIL: {error}")
    except ClientError as error:
        return fail(USAGE, str(error))
    except OSError as error:
        return fail(USAGE, f"cannot write: {error}")


if __name__ == "__main__":
    sys.exit(main())
