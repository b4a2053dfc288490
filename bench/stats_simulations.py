"""Seeded simulations of the statistics of issue 9; writes the figures into STATISTICS.md.

    .venv/bin/python bench/stats_simulations.py [--experiments 2000] [--processes 2] [--write STATISTICS.md]

Needs the test extras (numpy generates the data; the statistics are experiments_app.stats,
pure Python). The figures go between the markers <!-- simulations:start --> and
<!-- simulations:end --> of STATISTICS.md, so running it again replaces them.
tests/experiments_app/test_stats_simulations.py runs the same functions with small counts.

Worlds (n tasks, k repetitions, task pass rates p_i ~ Beta(0.6, 0.4): mean 0.6, most tasks
nearly always pass or fail, some in between, so tasks really differ):
- "aa": variant and baseline both run every task at its rate p_i (A/A).
- "mixed_null": the variant helps some tasks and hurts as many: each task gets a second
  rate q_i ~ Beta(0.6, 0.4) and a coin decides which of p_i, q_i the variant gets. The
  average difference is exactly 0 but tasks differ: the null a real variant meets.
- "effect": the variant adds +10 pp to every task (p_i scaled into [0, 0.9]).
- "sparse": the variant fixes 10% of the tasks (they always pass) and leaves the others:
  few, large, one-sided d_i, the skew that worries a t-interval at few tasks (true Δ = +4 pp).
"""

import argparse
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy
from scipy.stats import beta, binom

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiments_app import stats  # noqa: E402
from experiments_app.stats import intervals  # noqa: E402

ALPHA = 0.05
BETA_SHAPE = (0.6, 0.4)
# A second difficulty world for the A/A table: more tasks in between, so more discordant tasks.
FLAKY_SHAPE = (2.0, 2.0)
EFFECT = 0.10
CELLS = [(n, k) for k in (1, 3, 5) for n in (30, 100, 300)]
START, END = "<!-- simulations:start -->", "<!-- simulations:end -->"


def draw_rates(rng, n, world, shape=BETA_SHAPE):
    """(variant rates, baseline rates, true Δ) of one experiment."""
    rates = rng.beta(*shape, n)
    if world == "aa":
        return rates, rates, 0.0
    if world == "mixed_null":
        other = rng.beta(*BETA_SHAPE, n)
        swap = rng.random(n) < 0.5
        return numpy.where(swap, other, rates), numpy.where(swap, rates, other), 0.0
    if world == "effect":
        scaled = rates * (1 - EFFECT)
        return scaled + EFFECT, scaled, EFFECT
    if world == "sparse":
        fixed = rng.random(n) < EFFECT
        return numpy.where(fixed, 1.0, rates), rates, EFFECT * (1 - BETA_SHAPE[0] / sum(BETA_SHAPE))
    raise ValueError(world)


def draw_outcomes(rng, variant_rates, baseline_rates, k):
    """Per-repetition outcomes, arrays of shape (n, k)."""
    n = len(variant_rates)
    return rng.random((n, k)) < variant_rates[:, None], rng.random((n, k)) < baseline_rates[:, None]


def summaries(outcomes):
    passed = outcomes.sum(axis=1)
    k = outcomes.shape[1]
    return {i: {"passed": int(p), "n": k, "errored": 0, "identical": False} for i, p in enumerate(passed)}


def per_repetition_p_value(variant, baseline):
    """The wrong method: every repetition paired with the same repetition of the baseline, as if independent."""
    up = int((variant & ~baseline).sum())
    down = int((~variant & baseline).sum())
    return stats.mcnemar_exact(up, down)


def mid_p_mcnemar(b, c):
    """The mid-p McNemar test (Fagerland, Lydersen & Laake 2013), for comparison only: not what SPEC §7 uses."""
    if b + c == 0:
        return 1.0
    low = min(b, c)
    return min(1.0, 2 * (binom.cdf(low, b + c, 0.5) - 0.5 * binom.pmf(low, b + c, 0.5)))


def one_experiment(seed, n, k, world, shape=BETA_SHAPE):
    """p-value, interval covers, per-repetition p-value, interval method, mid-p (k = 1) of one experiment."""
    rng = numpy.random.default_rng(seed)
    variant_rates, baseline_rates, truth = draw_rates(rng, n, world, shape)
    variant, baseline = draw_outcomes(rng, variant_rates, baseline_rates, k)
    result = stats.compare(summaries(variant), summaries(baseline), alpha=ALPHA)
    covered = result["delta_ci_low"] <= 100 * truth <= result["delta_ci_high"]
    mid_p = mid_p_mcnemar(result["b"], result["c"]) if k == 1 else None
    return result["p_value"], covered, per_repetition_p_value(variant, baseline), result["ci_method"], mid_p


def live_experiment(seed, n, k, world, method="betting"):
    """(decided, tasks used until decided or n) of one monitored run, looked at after every task."""
    rng = numpy.random.default_rng(seed)
    variant_rates, baseline_rates, _ = draw_rates(rng, n, world)
    variant, baseline = draw_outcomes(rng, variant_rates, baseline_rates, k)
    differences = variant.mean(axis=1) - baseline.mean(axis=1)
    state = stats.live_start(n, alpha=ALPHA, method=method)
    for index, difference in enumerate(differences):
        state = stats.live_update(state, float(difference))
        decided = stats.live_summary(state)["decided"]
        if decided:
            return decided, index + 1
    return None, n


def discordant_tasks(seed, n, k, shape=BETA_SHAPE):
    """How many tasks have d_i ≠ 0 in an A/A experiment: what the exact tests' discreteness depends on."""
    rng = numpy.random.default_rng(seed)
    variant_rates, baseline_rates, _ = draw_rates(rng, n, "aa", shape)
    variant, baseline = draw_outcomes(rng, variant_rates, baseline_rates, k)
    return int((variant.sum(axis=1) != baseline.sum(axis=1)).sum())


def holm_experiment(seed, n, k, variants=10):
    """Whether any of `variants` null variants (A/A against one shared baseline) is significant after Holm."""
    rng = numpy.random.default_rng(seed)
    rates = rng.beta(*BETA_SHAPE, n)
    baseline = summaries(rng.random((n, k)) < rates[:, None])
    p_values = [stats.compare(summaries(rng.random((n, k)) < rates[:, None]), baseline, alpha=ALPHA)["p_value"] for _ in range(variants)]
    adjusted = stats.holm(p_values)
    return any(p < ALPHA for p in adjusted), any(p < ALPHA for p in p_values)


def interval_experiment(seed, n, k, world):
    """Coverage of the t-interval and of the bootstrap interval on the same experiment."""
    rng = numpy.random.default_rng(seed)
    variant_rates, baseline_rates, truth = draw_rates(rng, n, world)
    variant, baseline = draw_outcomes(rng, variant_rates, baseline_rates, k)
    differences = list(variant.mean(axis=1) - baseline.mean(axis=1))
    count, mean, variance = intervals.mean_and_variance(differences)
    t_low, t_high = intervals.t_interval(mean, variance, count, ALPHA)
    b_low, b_high = intervals.bootstrap_interval(differences, ALPHA)
    return t_low <= truth <= t_high, b_low <= truth <= b_high, min(t_low, b_low) <= truth <= max(t_high, b_high)


def seeds(base, count):
    return [base * 1_000_003 + i for i in range(count)]


def _run(pool, function, jobs):
    chunks = max(1, len(jobs) // 64)
    return list(pool.map(function, *zip(*jobs, strict=True), chunksize=chunks))


def upper_bound(hits, total, confidence=0.95):
    """Clopper-Pearson one-sided upper bound of a rate."""
    return 1.0 if hits == total else float(beta.ppf(confidence, hits + 1, total - hits))


def percent(value):
    return f"{100 * value:.1f}%"


def run(experiments, processes):
    started = time.time()
    lines = []
    with ProcessPoolExecutor(processes) as pool:
        for table, shape in enumerate((BETA_SHAPE, FLAKY_SHAPE)):
            lines += [f"### False-positive rate of `p_value` and coverage of the Δ interval (A/A, task rates ~ Beta{shape})", ""]
            lines += [
                f"{experiments} experiments per cell, alpha = {ALPHA}; the issue asks FPR within [4%, 6%], coverage at least 94%.",
                "",
            ]
            lines += [
                "| k | n | FPR of p_value | coverage of Δ interval | interval | mean discordant tasks | mid-p McNemar FPR (not used) | per-repetition pairing FPR |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for index, (n, k) in enumerate(CELLS):
                rows = _run(pool, one_experiment, [(s, n, k, "aa", shape) for s in seeds(50 * table + index, experiments)])
                fpr = sum(1 for row in rows if row[0] < ALPHA) / len(rows)
                coverage = sum(1 for row in rows if row[1]) / len(rows)
                mid = percent(sum(1 for row in rows if row[4] < ALPHA) / len(rows)) if k == 1 else "-"
                discordant = _run(pool, discordant_tasks, [(s, n, k, shape) for s in seeds(50 * table + index, 200)])
                wrong = percent(sum(1 for row in rows if row[2] < ALPHA) / len(rows))
                lines.append(
                    f"| {k} | {n} | {percent(fpr)} | {percent(coverage)} | {rows[0][3]} | {numpy.mean(discordant):.1f} | {mid} | {wrong} |"
                )
            lines.append("")
        lines += ["", "### The null a real variant meets: it helps some tasks and hurts as many (average Δ = 0)", ""]
        lines += [
            f"{experiments} experiments per cell. The task is the unit: pairing repetitions as if independent inflates the false-positive rate.",
            "",
        ]
        lines += ["| k | n | FPR of p_value (task is the unit) | coverage | FPR pairing per repetition (wrong) |", "|---|---|---|---|---|"]
        for index, (n, k) in enumerate(CELLS):
            rows = _run(pool, one_experiment, [(s, n, k, "mixed_null") for s in seeds(100 + index, experiments)])
            fpr = sum(1 for row in rows if row[0] < ALPHA) / len(rows)
            coverage = sum(1 for row in rows if row[1]) / len(rows)
            wrong = sum(1 for row in rows if row[2] < ALPHA) / len(rows)
            lines.append(f"| {k} | {n} | {percent(fpr)} | {percent(coverage)} | {percent(wrong)} |")
        lines += ["", f"### Coverage of the Δ interval with a true +{100 * EFFECT:.0f} pp effect", ""]
        lines += ["| k | n | coverage | power of p_value |", "|---|---|---|---|"]
        for index, (n, k) in enumerate(CELLS):
            rows = _run(pool, one_experiment, [(s, n, k, "effect") for s in seeds(200 + index, experiments)])
            coverage = sum(1 for row in rows if row[1]) / len(rows)
            power = sum(1 for row in rows if row[0] < ALPHA) / len(rows)
            lines.append(f"| {k} | {n} | {percent(coverage)} | {percent(power)} |")
        lines += ["", "### Few tasks: t-interval, bootstrap, or both (why the hull below 30 tasks)", ""]
        lines += [
            f"{experiments} experiments per cell: coverage of the same experiments' t-interval, expanded percentile bootstrap and their hull.",
            "",
        ]
        lines += ["| world | k | n | t-interval | bootstrap | hull (used below 30 tasks) |", "|---|---|---|---|---|---|"]
        small = [(world, k, n) for world in ("aa", "sparse") for k in (3, 5) for n in (10, 20, 30)]
        for index, (world, k, n) in enumerate(small):
            rows = _run(pool, interval_experiment, [(s, n, k, world) for s in seeds(300 + index, experiments)])
            shares = [percent(sum(row[i] for row in rows) / len(rows)) for i in range(3)]
            lines.append(f"| {world} | {k} | {n} | {' | '.join(shares)} |")
        live_count = max(experiments // 2, 100)
        lines += ["", "### Live monitoring looked at after every task (A/A): false-positive rate", ""]
        lines += [
            f"{live_count} experiments per cell; a run counts as a false positive if `decided` was ever set. Should be at most {percent(ALPHA)}.",
            "",
        ]
        lines += ["| method | k | n | FPR (95% upper bound) |", "|---|---|---|---|"]
        cells = [("betting", n, k) for n, k in CELLS] + [("mixture", n, 1) for n in (30, 100, 300)]
        for index, (method, n, k) in enumerate(cells):
            rows = _run(pool, live_experiment, [(s, n, k, "aa", method) for s in seeds(400 + index, live_count)])
            hits = sum(1 for row in rows if row[0])
            lines.append(f"| {method} | {k} | {n} | {percent(hits / len(rows))} ({percent(upper_bound(hits, len(rows)))}) |")
        lines += ["", f"### Stopping when decided with a true +{100 * EFFECT:.0f} pp effect", ""]
        lines += [
            f"{live_count} experiments per cell. Saved = share of tasks never run; compare with the fixed-size power of `p_value` above.",
            "",
        ]
        lines += ["| method | k | n | decided better | decided worse | tests saved |", "|---|---|---|---|---|---|"]
        cells = [("betting", n, k) for k in (1, 3, 5) for n in (300, 1000)] + [("mixture", n, 1) for n in (300, 1000)]
        for index, (method, n, k) in enumerate(cells):
            rows = _run(pool, live_experiment, [(s, n, k, "effect", method) for s in seeds(500 + index, live_count)])
            better = sum(1 for row in rows if row[0] == "better") / len(rows)
            worse = sum(1 for row in rows if row[0] == "worse") / len(rows)
            saved = 1 - sum(row[1] for row in rows) / (n * len(rows))
            lines.append(f"| {method} | {k} | {n} | {percent(better)} | {percent(worse)} | {percent(saved)} |")
        lines += ["", "### Holm with 10 null variants against one baseline (family-wise error)", ""]
        lines += [
            f"{live_count} experiments per cell; each has 10 A/A variants sharing the baseline run. Should be at most {percent(ALPHA)}.",
            "",
        ]
        lines += ["| k | n | any raw p < alpha | any Holm-adjusted p < alpha (95% upper bound) |", "|---|---|---|---|"]
        for index, (n, k) in enumerate([(100, 1), (100, 3), (300, 5)]):
            rows = _run(pool, holm_experiment, [(s, n, k) for s in seeds(600 + index, live_count)])
            hits = sum(1 for row in rows if row[0])
            raw = sum(1 for row in rows if row[1]) / len(rows)
            lines.append(f"| {k} | {n} | {percent(raw)} | {percent(hits / len(rows))} ({percent(upper_bound(hits, len(rows)))}) |")
    lines += ["", f"Run time: {time.time() - started:.0f} s with {processes} processes."]
    return "\n".join(lines)


def write(path, body, command):
    text = path.read_text() if path.exists() else ""
    block = f"{START}\n\nProduced by `{command}`.\n\n{body}\n\n{END}"
    if START in text and END in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--write", type=Path, default=None, help="Markdown file to write the figures into (between the markers)")
    arguments = parser.parse_args()
    body = run(arguments.experiments, arguments.processes)
    print(body)
    if arguments.write:
        command = f".venv/bin/python bench/stats_simulations.py --experiments {arguments.experiments} --processes {arguments.processes} --write {arguments.write}"
        write(arguments.write, body, command)


if __name__ == "__main__":
    main()
