"""Dispatch throughput: N tests against a local application answering in DELAY seconds.

    VAR_DIR=/tmp/bench-var .venv/bin/python bench/dispatch.py [--tests 2000] [--delay 0.5] [--concurrency 100] [--repeat 3]

Uses DATABASE_URL when set (PostgreSQL), else a fresh SQLite file under VAR_DIR. The
engine runs inline (`runs.dispatch_application`), exactly as a worker runs it; the
application is a separate process (bench/slow_app.py).
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("VAR_DIR", "/tmp/bench-var")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
os.environ.setdefault("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")
os.environ.setdefault("LOG_LEVEL", "WARNING")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--delay", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    if "WEBHOOK_ALLOWED_HOSTS" in os.environ:
        settings.WEBHOOK_ALLOWED_HOSTS = os.environ["WEBHOOK_ALLOWED_HOSTS"].split(",")
    call_command("migrate", verbosity=0)

    from experiments_app import actions, runs
    from experiments_app.models import Application, InferenceStep, Run, Task, Team

    port = free_port()
    app_process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "slow_app.py"), str(port), str(args.delay)], stdout=subprocess.PIPE, text=True
    )
    app_process.stdout.readline()
    timings = []
    try:
        for round_number in range(args.repeat):
            team = Team.objects.create(name="bench", slug=f"bench-{time.time_ns()}")
            application = Application.objects.create(
                team=team, name="slow", webhook_url=f"http://127.0.0.1:{port}/hook", max_concurrency=args.concurrency, timeout_seconds=30
            )
            InferenceStep.objects.create(application=application, external_id="main", config={"model": "m", "temperature": 0.5})
            Task.objects.bulk_create(
                [Task(application=application, external_id=f"t{i}", input={"q": i}, expected="ok") for i in range(args.tests)],
                batch_size=1000,
            )
            experiment = actions.create_experiment(application, name="bench")
            actions.set_scope(
                experiment, steps=["main"], tasks=list(Task.objects.filter(application=application).values_list("pk", flat=True))
            )
            run = runs.start_baseline_run(experiment)
            started = time.perf_counter()
            runs.dispatch_application(application.pk)
            elapsed = time.perf_counter() - started
            run = Run.objects.get(pk=run.pk)
            assert run.status == "succeeded" and run.passed == args.tests, (run.status, run.passed)
            timings.append(elapsed)
            ideal = args.tests * args.delay / args.concurrency
            print(
                f"round {round_number + 1}: {args.tests} tests in {elapsed:.2f}s ({args.tests / elapsed:.0f}/s; ideal {ideal:.1f}s)",
                flush=True,
            )
    finally:
        app_process.terminate()
        app_process.wait()
    print(
        f"median {statistics.median(timings):.2f}s over {len(timings)} rounds; database {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}"
    )


if __name__ == "__main__":
    main()
