"""Pull-mode throughput and long-poll wake-up: N tests leased and answered by P pull workers over HTTP.

    VAR_DIR=/tmp/bench-pull .venv/bin/python bench/pull.py [--tests 2000] [--pullers 4] [--concurrency 25] [--repeat 3]

Uses DATABASE_URL when set (PostgreSQL), else a fresh SQLite file under VAR_DIR. The
dashboard is Django's threaded WSGI server (what runserver uses) in this process; the
pullers are the ready-to-copy `demo_app/pull_worker.py`, each leasing `concurrency` tests
at a time with signed requests and answering at once. Wake-up: the pullers long-poll an
empty queue, a run starts, and the time until its first test is leased is measured.
"""

import argparse
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("VAR_DIR", "/tmp/bench-pull")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--pullers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    call_command("migrate", verbosity=0)

    from demo_app.pull_worker import PullWorker
    from experiments_app import actions, runs
    from experiments_app.models import Application, Delivery, InferenceStep, Run, Task, Team

    class QuietHandler(WSGIRequestHandler):
        def setup(self):
            super().setup()
            # As gunicorn does: without it, Nagle's algorithm and delayed ACKs add ~40 ms to
            # every request of the dev server (a 401 took 46 ms instead of 6), hiding the engine.
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args):
            pass

    class Server(ThreadedWSGIServer):
        request_queue_size = 256  # a hundred puller threads connect at once

    server = Server(("127.0.0.1", 0), QuietHandler)
    server.set_app(get_wsgi_application())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def answer(test):
        return {"output": "ok", "metrics": {"latency_ms": 1.0}}

    def make_experiment(n_tasks):
        team = Team.objects.create(name="bench", slug=f"bench-{time.time_ns()}")
        application = Application.objects.create(
            team=team, name="puller", webhook_url="", delivery=Delivery.PULL, max_concurrency=args.pullers * args.concurrency
        )
        InferenceStep.objects.create(application=application, external_id="main", config={"model": "m", "temperature": 0.5})
        Task.objects.bulk_create(
            [Task(application=application, external_id=f"t{i}", input={"q": i}, expected="ok") for i in range(n_tasks)], batch_size=1000
        )
        experiment = actions.create_experiment(application, name="bench")
        actions.set_scope(experiment, steps=["main"], tasks=list(Task.objects.filter(application=application).values_list("pk", flat=True)))
        return application, experiment

    def start_pullers(application, wait):
        workers = [
            PullWorker(base, str(application.pk), answer, secret=application.webhook_secret, concurrency=args.concurrency, wait=wait)
            for _ in range(args.pullers)
        ]
        threads = [threading.Thread(target=worker.run, daemon=True) for worker in workers]
        for thread in threads:
            thread.start()
        return workers, threads

    def stop(workers, threads):
        for worker in workers:
            worker.stop()
        for worker, thread in zip(workers, threads, strict=True):
            thread.join(40)
            worker.close()

    timings, wakes = [], []
    for round_number in range(args.repeat):
        application, experiment = make_experiment(args.tests)
        workers, threads = start_pullers(application, wait=2)
        run = runs.start_baseline_run(experiment)
        started = time.perf_counter()
        while Run.objects.filter(pk=run.pk, status__in=("queued", "running")).exists():
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        stop(workers, threads)
        run = Run.objects.get(pk=run.pk)
        assert run.status == "succeeded" and run.passed == args.tests, (run.status, run.passed)
        timings.append(elapsed)
        print(f"round {round_number + 1}: {args.tests} tests in {elapsed:.2f}s ({args.tests / elapsed:.0f}/s)", flush=True)

        # Wake-up: pullers wait on an empty queue, then a one-task run starts.
        application, experiment = make_experiment(1)
        workers, threads = start_pullers(application, wait=30)
        time.sleep(1.0)  # every puller is inside its long poll
        run = runs.start_baseline_run(experiment)
        started = time.perf_counter()
        test = run.tests.get()
        while not type(test).objects.filter(pk=test.pk, attempts__gte=1).exists():
            time.sleep(0.005)
        wakes.append((time.perf_counter() - started) * 1000)
        stop(workers, threads)
        print(f"round {round_number + 1}: first test leased {wakes[-1]:.0f} ms after the run started", flush=True)
    server.shutdown()
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(
        f"median {statistics.median(timings):.2f}s ({args.tests / statistics.median(timings):.0f} tests/s), "
        f"wake-up median {statistics.median(wakes):.0f} ms over {len(timings)} rounds; database {engine}"
    )


if __name__ == "__main__":
    main()
