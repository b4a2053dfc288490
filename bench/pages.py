"""Page speed with thousands of tasks: wall time and SQL queries of the pages that show results.

    VAR_DIR=/tmp/bench-pages-var .venv/bin/python bench/pages.py [--tasks 5000] [--variants 5] [--repeat 7] [--compare-sizes]

Uses DATABASE_URL when set (PostgreSQL), else a fresh SQLite file under VAR_DIR. The data
is built through the domain: catalog import, experiment scope, baseline and variant runs
started by the actions, tests claimed and their outcomes written by the engine
(`claim_tests`, `record_outcomes`: the dispatcher's own functions, fed with answers
made up here instead of HTTP), runs closed by `complete_if_done`, which stores the
per-run aggregates. Pages are then requested with django.test.Client as a signed-in
team admin: median and minimum wall time over --repeat requests (after one warm-up),
the SQL queries of one request, and the size of the answer.
"""

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("VAR_DIR", "/tmp/bench-var")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
os.environ.setdefault("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")
os.environ.setdefault("LOG_LEVEL", "WARNING")

# Each variant changes one parameter of one step; parents index earlier variants (0 = baseline),
# so the tree has branches off the baseline and chains of variants.
VARIANT_PLAN = [
    (0, "answer", "temperature", 0.2),
    (1, "answer", "model", "m-large"),
    (0, "retrieve", "top_p", 0.9),
    (3, "answer", "max_tokens", 512),
    (2, "retrieve", "verbosity", "high"),
    (1, "retrieve", "temperature", 0.0),
    (4, "answer", "system", "Answer briefly and cite the passage."),
    (0, "answer", "verbosity", "low"),
]
EVALUATORS = [
    {"type": "reported", "name": "reported"},
    {"type": "metric_threshold", "name": "latency", "metric": "latency_ms", "max": 4000},
    {"type": "contains", "name": "explains", "value": "because"},
]
WORDS = [
    "the",
    "of",
    "retrieval",
    "passage",
    "answer",
    "model",
    "context",
    "question",
    "source",
    "says",
    "given",
    "that",
    "which",
    "shows",
    "paris",
    "year",
]


def sentence(rng, words):
    return " ".join(rng.choice(WORDS) for _ in range(words))


def build(size, n_variants, seed, extra_experiments):
    """Team, admin, application with 2 steps and `size` tasks, an experiment whose baseline
    and variants each have a closed run of `size` tests. Returns what the pages need."""
    from django.contrib.auth import get_user_model

    from experiments_app import actions, runs
    from experiments_app.models import Experiment, Membership, Role, Task, Team, Test, Variant
    from experiments_app.results import compare_runs
    from experiments_app.runs.complete import complete_if_done

    stamp = time.time_ns()
    team = Team.objects.create(name=f"bench {size}", slug=f"bench-{size}-{stamp}")
    user = get_user_model().objects.create_user(username=f"bench-{size}-{stamp}", password="x")
    Membership.objects.create(team=team, user=user, role=Role.ADMIN)
    application = actions.create_application(
        team, {"name": f"qa {size}", "webhook_url": "http://127.0.0.1:9/hook", "max_concurrency": 100, "timeout_seconds": 30}
    )
    actions.create_step(application, {"external_id": "retrieve", "config": {"model": "m-small", "temperature": 0.3, "top_p": 1.0}})
    actions.create_step(application, {"external_id": "answer", "config": {"model": "m-small", "temperature": 0.7, "max_tokens": 256}})
    rng = random.Random(f"{seed}-tasks-{size}")
    rows = [
        {
            "external_id": f"task-{index:06d}",
            "name": f"Question {index}",
            "input": {"question": sentence(rng, 12) + "?", "context": sentence(rng, 40)},
            "expected": {"answer": sentence(rng, 3)},
            "tags": [rng.choice(["geo", "history", "science", "math"])],
        }
        for index in range(size)
    ]
    for start in range(0, size, 10_000):
        actions.import_tasks(application, rows[start : start + 10_000])
    for index in range(extra_experiments):  # so the experiments list has more than one row
        actions.create_experiment(application, name=f"draft {index + 1}", by=user)

    experiment = actions.create_experiment(application, name=f"bench {size} tasks", by=user)
    actions.update_experiment(experiment, evaluators=EVALUATORS, max_error_rate=0.2, by=user)
    task_ids = list(Task.objects.filter(application=application).values_list("pk", flat=True))
    actions.set_scope(experiment, steps=["retrieve", "answer"], tasks=task_ids, by=user)

    # A task's difficulty stays the same across variants; each run redraws ~15% of the
    # outcomes, so improved/regressed lists are a few hundred tasks, not thousands.
    difficulty = {task_id: rng.random() for task_id in task_ids}
    variants = [experiment.baseline]
    made = []
    for index in range(n_variants + 1):
        if index == 0:
            run = runs.start_baseline_run(experiment, by=user)
        else:
            parent_index, step, parameter, value = VARIANT_PLAN[(index - 1) % len(VARIANT_PLAN)]
            experiment.refresh_from_db()
            variant = actions.create_variant(
                experiment,
                parent=variants[min(parent_index, len(variants) - 1)],
                inference_step=step,
                parameter=parameter,
                value=value,
                name=f"v{index} {step} {parameter}",
                by=user,
            )
            variants.append(variant)
            run = runs.start_variant_run(variant, by=user)
        pass_rate = 0.70 + random.Random(f"{seed}-rate-{index}").uniform(-0.08, 0.08) if index else 0.70
        answer_run(run, application, difficulty, pass_rate, random.Random(f"{seed}-run-{size}-{index}"))
        assert complete_if_done(run.pk), f"run {run.pk} did not close"
        run.refresh_from_db()
        assert run.status == "succeeded" and run.total == size and run.outcomes, (run.status, run.total)
        made.append(run)
    experiment = Experiment.objects.get(pk=experiment.pk)
    assert experiment.status == ("idle" if n_variants else "baseline_complete"), experiment.status
    last = made[-1]
    test = Test.objects.filter(run=last).order_by("task_external_id").first()
    return {
        "user": user,
        "experiment": experiment,
        "baseline_run": made[0],
        "last_run": last,
        "test": test,
        "variants": Variant.objects.filter(experiment=experiment).count() - 1,
        "comparison": compare_runs(last, made[0]),
        "tests": Test.objects.filter(run__experiment=experiment).count(),
    }


def answer_run(run, application, difficulty, pass_rate, rng):
    """Claim every test of the run as the dispatcher does, then record one made-up answer
    each through the dispatcher's outcome writer: 200 with a result (passed or failed by
    the evaluators) or 422 (errored, not retried)."""
    from django.conf import settings
    from django.utils import timezone

    from experiments_app.runs.claim import claim_tests
    from experiments_app.runs.dispatch import record_outcomes
    from experiments_app.runs.send import Job, Outcome

    tests = claim_tests(application, run.total)
    assert len(tests) == run.total, (len(tests), run.total)
    evaluators = {run.pk: run.experiment.evaluators}
    started = timezone.now() - timedelta(seconds=30)
    outcomes = []
    for test in tests:
        job = Job(
            test_id=test.pk,
            run_id=run.pk,
            attempt=test.attempts,
            url=application.webhook_url,
            secret="",
            msg_id=test.webhook_id,
            payload={},
            timeout=30.0,
        )
        draw = rng.random()
        if draw < 0.03:
            outcomes.append(
                Outcome(job=job, started_at=started, duration_ms=rng.uniform(5, 50), status_code=422, body=b'{"detail": "input rejected"}')
            )
            continue
        point = difficulty[test.task_id] if rng.random() > 0.15 else rng.random()
        passed = point < pass_rate
        latency = rng.lognormvariate(6.6, 0.5)  # ~700 ms median, a tail past the 4 s threshold
        tokens = rng.randint(300, 2400)
        explanation = "because " if passed or rng.random() < 0.5 else ""
        result = {
            "output": f"The answer is {sentence(rng, 3)} {explanation}{sentence(rng, 45)}.",
            "passed": passed,
            "metrics": {"latency_ms": round(latency, 1), "prompt_tokens": tokens, "cost_usd": round(tokens * 2.5e-6, 6)},
            "traceId": f"trace-{test.pk.hex[:16]}",
        }
        outcomes.append(Outcome(job=job, started_at=started, duration_ms=latency, status_code=200, body=json.dumps(result).encode()))
    max_attempts = settings.WEBHOOK_MAX_ATTEMPTS
    for start in range(0, len(outcomes), 500):
        record_outcomes(outcomes[start : start + 500], application, evaluators, max_attempts)


def pages(data):
    experiment, baseline, last, test = data["experiment"], data["baseline_run"], data["last_run"], data["test"]
    runs_last_page = (last.total + 49) // 50
    return [
        ("experiment page", f"/experiments/{experiment.pk}/", {}),
        ("experiment results (HX)", f"/experiments/{experiment.pk}/results/", {"HX-Request": "true"}),
        ("experiments list", "/experiments/", {}),
        ("run page", f"/runs/{last.pk}/", {}),
        ("run page ?filter=improved", f"/runs/{last.pk}/?filter=improved", {}),
        ("run page ?filter=regressed", f"/runs/{last.pk}/?filter=regressed", {}),
        ("run page, last page", f"/runs/{last.pk}/?page={runs_last_page}", {}),
        ("test detail", f"/runs/{last.pk}/tests/{test.pk}/", {}),
        ("compare page", f"/runs/{last.pk}/compare/{baseline.pk}/", {}),
        ("experiment CSV export", f"/experiments/{experiment.pk}/results.csv", {}),
        ("experiment JSON export", f"/experiments/{experiment.pk}/results.json", {}),
        ("API experiment results", f"/api/v1/experiments/{experiment.pk}/results/", {}),
        ("API run tests (page 1)", f"/api/v1/runs/{last.pk}/tests/", {}),
        ("run CSV export (all tests)", f"/runs/{last.pk}/export.csv", {}),
    ]


def fetch(client, url, headers):
    started = time.perf_counter()
    response = client.get(url, headers=headers)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"GET {url} answered {response.status_code}, not 200:\n{body[:2000].decode(errors='replace')}")
    return elapsed, body


def measure(data, repeat, show_sql):
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(data["user"])
    rows = []
    for name, url, headers in pages(data):
        fetch(client, url, headers)  # warm-up: templates compiled, caches filled
        times = [fetch(client, url, headers)[0] for _ in range(repeat)]
        with CaptureQueriesContext(connection) as captured:
            _, body = fetch(client, url, headers)
        if show_sql:
            print(f"--- {name}: {len(captured.captured_queries)} queries")
            for query in captured.captured_queries:
                print(f"  {query['time']}s  {query['sql'][:300]}")
        rows.append(
            {
                "page": name,
                "url": url,
                "median": statistics.median(times) * 1000,
                "min": min(times) * 1000,
                "queries": len(captured.captured_queries),
                "bytes": len(body),
            }
        )
    return rows


def print_table(rows, title):
    print(f"\n{title}")
    print(f"| {'page':<28} | {'median ms':>9} | {'min ms':>7} | {'queries':>7} | {'bytes':>9} |")
    print(f"|{'-' * 30}|{'-' * 10}:|{'-' * 8}:|{'-' * 8}:|{'-' * 10}:|")
    for row in rows:
        print(f"| {row['page']:<28} | {row['median']:>9.1f} | {row['min']:>7.1f} | {row['queries']:>7} | {row['bytes']:>9,} |")


def print_growth(small, large, small_size, large_size):
    print(f"\nGrowth from {small_size:,} to {large_size:,} tasks")
    print(f"| {'page':<28} | {f'ms @{small_size}':>10} | {f'ms @{large_size}':>10} | {'ratio':>5} | {'queries':>11} |")
    print(f"|{'-' * 30}|{'-' * 11}:|{'-' * 11}:|{'-' * 6}:|{'-' * 12}:|")
    for a, b in zip(small, large, strict=False):
        ratio = b["median"] / a["median"] if a["median"] else float("nan")
        queries = f"{a['queries']} → {b['queries']}"
        print(f"| {a['page']:<28} | {a['median']:>10.1f} | {b['median']:>10.1f} | {ratio:>5.1f} | {queries:>11} |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--variants", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--extra-experiments", type=int, default=20, help="draft experiments beside the measured one, for the list page")
    parser.add_argument("--compare-sizes", action="store_true", help="also build and measure --small-tasks, and print the growth")
    parser.add_argument("--small-tasks", type=int, default=500)
    parser.add_argument("--sql", action="store_true", help="print every query of every page")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    if "WEBHOOK_ALLOWED_HOSTS" in os.environ:
        settings.WEBHOOK_ALLOWED_HOSTS = os.environ["WEBHOOK_ALLOWED_HOSTS"].split(",")
    call_command("migrate", verbosity=0)
    database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]

    sizes = [args.small_tasks, args.tasks] if args.compare_sizes and args.small_tasks != args.tasks else [args.tasks]
    results = {}
    for size in sizes:
        started = time.perf_counter()
        data = build(size, args.variants, args.seed, args.extra_experiments)
        built = time.perf_counter() - started
        comparison = data["comparison"]
        print(
            f"built {size:,} tasks, baseline + {data['variants']} variants, {data['tests']:,} tests in {built:.1f}s ({database}); "
            f"last run vs baseline: {len(comparison['improved'])} improved, {len(comparison['regressed'])} regressed",
            flush=True,
        )
        load_before = os.getloadavg()[0]
        results[size] = measure(data, args.repeat, args.sql)
        title = f"{size:,} tasks, baseline + {data['variants']} variants, {database}, median of {args.repeat} requests"
        print_table(results[size], f"{title} (load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after)")
    if len(sizes) == 2:
        print_growth(results[sizes[0]], results[sizes[1]], *sizes)


if __name__ == "__main__":
    main()
