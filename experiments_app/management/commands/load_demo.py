"""Load the demo: a team with a login, the demo application, steps, ~50 tasks and an
experiment whose baseline, control and four variants (and a dry run of one) have really
run through the run engine (`experiments_app.runs`), three repetitions a task.

The experiment shows each part of a verdict (SPEC §7), every figure computed by the
statistics when its run closed: flaky tasks (the baseline samples at temperature 0.9), a
control whose difference is noise, variants that are better, one that is better at raw
p < 0.05 but not after Holm's adjustment for the five comparisons, a guardrail on p95
latency that the faster-but-slower gpt-4o variant fails (so it does not ship), and a
variant run with `stop_when_decided` that stops once its live confidence sequence has
settled and skips the rest of its tests. tests/experiments_app/test_demo_app.py checks that
each is there.

`make run` calls this before the worker and the demo application start, so the runs
here go through the real engine in this process: a demo server on an ephemeral port
(every answer synchronous, since no dashboard is up yet to receive callbacks) and
`runs.dispatch_application` inline. Afterwards the application points at the demo
process `make run` starts (http://127.0.0.1:8100/webhook), where a third of the
answers come back through the callback. Running it again changes nothing.
"""

import os
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from demo_app.catalog import TASKS
from demo_app.server import application_file, secret_file, serve_in_thread
from experiments_app import actions, runs
from experiments_app.models import Application, InferenceStep, Membership, Role, Run, RunStatus, Task, Team
from experiments_app.states import State

EXPERIMENT_NAME = "Make answers more accurate"
DESCRIPTION = "Hypothesis: a cooler, stronger answer model — or a better system prompt — answers more questions correctly."
STEPS = {
    "router": {
        "name": "Question router",
        "description": "Classifies the question before answering.",
        "config": {"model": "gpt-4o-mini", "temperature": 0.0},
    },
    "answer": {
        "name": "Answer generator",
        "description": "Writes the answer.",
        "config": {
            "model": "gpt-4o-mini",
            "temperature": 0.9,
            "max_tokens": 300,
            "system": "You are a helpful assistant.",
            "verbosity": "medium",
        },
    },
}
REPETITIONS = 3
GUARDRAILS = [{"name": "latency p95", "metric": "latency_ms", "statistic": "p95", "margin": 150}]
# The control re-runs the baseline configuration (SPEC §3); its name seeds its sampling.
CONTROL = "Control (baseline again)"
# (name, parent name or None for the baseline, step, parameter, value, stop when decided), run in this order
VARIANTS = [
    ("Cooler answers", None, "answer", "temperature", 0.2, False),
    ("Cooler answers on gpt-4o", "Cooler answers", "answer", "model", "gpt-4o", True),
    (
        "Step-by-step prompt",
        None,
        "answer",
        "system",
        "You are a careful assistant. Think step by step, then give only the answer, concisely.",
        False,
    ),
    ("Answers on claude-3-5-haiku", None, "answer", "model", "claude-3-5-haiku", False),
]
# A smoke test of this variant on a few tasks, as "Try on k tasks" does.
DRY_RUN_VARIANT = "Step-by-step prompt"


def demo_port():
    return int(os.environ.get("DEMO_PORT", 8100))


class Command(BaseCommand):
    help = "Create the demo team, login, application, tasks and an experiment with real runs (idempotent)."

    def handle(self, *args, **options):
        password = os.environ.get("DEMO_PASSWORD", "demo")
        with transaction.atomic():
            team, _ = Team.objects.get_or_create(slug="demo", defaults={"name": "Demo team"})
            user, created = get_user_model().objects.get_or_create(username="demo")
            if created or not user.check_password(password):
                user.set_password(password)
                user.save()
            Membership.objects.update_or_create(team=team, user=user, defaults={"role": Role.ADMIN})
            application, _ = Application.objects.get_or_create(
                team=team,
                name="Demo assistant",
                defaults={
                    "webhook_url": f"http://127.0.0.1:{demo_port()}/webhook",
                    "timeout_seconds": 10,
                    "result_timeout_seconds": 60,
                    "max_concurrency": 20,
                },
            )
            for external_id, fields in STEPS.items():
                InferenceStep.objects.get_or_create(application=application, external_id=external_id, defaults=fields)
            existing = set(Task.objects.filter(application=application).values_list("external_id", flat=True))
            Task.objects.bulk_create([Task(application=application, **task) for task in TASKS if task["external_id"] not in existing])
        path = Path(secret_file())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(application.webhook_secret + "\n")
        Path(application_file()).write_text(f"{application.pk}\n")  # for `python -m demo_app --pull`

        experiment = application.experiments.filter(name=EXPERIMENT_NAME).first()
        if experiment is not None and not experiment.runs.filter(status__in=(RunStatus.QUEUED, RunStatus.RUNNING)).exists():
            self.stdout.write(f"Demo already loaded: experiment {experiment.name!r} is {experiment.status}.")
            return
        if experiment is None:
            experiment = actions.create_experiment(application, name=EXPERIMENT_NAME, description=DESCRIPTION)
            actions.set_scope(experiment, steps=list(STEPS), tasks=list(Task.objects.filter(application=application)))
            actions.update_experiment(
                experiment, evaluators=[{"type": "exact_match", "name": "correct"}], repetitions=REPETITIONS, guardrails=GUARDRAILS
            )
        self.run_through_engine(application, experiment)

    def run_through_engine(self, application, experiment):
        # Answers at once (no simulated latency slept: nobody watches these runs, and `make
        # run` waits for them); the latency reported is the simulated one all the same.
        server = serve_in_thread(port=0, secret=application.webhook_secret, async_fraction=0.0, speed=0.0)
        url = application.webhook_url
        Application.objects.filter(pk=application.pk).update(webhook_url=f"http://127.0.0.1:{server.server_address[1]}/webhook")
        allowed, look = settings.WEBHOOK_ALLOWED_HOSTS, settings.LIVE_LOOK_SECONDS
        if "127.0.0.1" not in allowed:
            # Our own demo server on loopback, in this process only.
            settings.WEBHOOK_ALLOWED_HOSTS = [*allowed, "127.0.0.1"]
        # A demo run lasts about a second: look at the live sequence after every batch of
        # results, or the run that stops when decided would finish before the next look.
        settings.LIVE_LOOK_SECONDS = 0
        try:
            self.finish_active_run(application, experiment)
            experiment.refresh_from_db()
            if experiment.status == State.BASELINE_PENDING:
                self.report(self.run(application, runs.start_baseline_run(experiment)))
            by_name = {variant.name: variant for variant in experiment.variants.all()}
            experiment.refresh_from_db()
            if CONTROL not in by_name and experiment.status in (State.BASELINE_COMPLETE, State.IDLE):
                by_name[CONTROL] = control = actions.create_control_variant(experiment, name=CONTROL)
                self.report(self.run(application, runs.start_variant_run(control)))
            for name, parent, step, parameter, value, stop_when_decided in VARIANTS:
                experiment.refresh_from_db()
                if name in by_name or experiment.status not in (State.BASELINE_COMPLETE, State.IDLE):
                    continue
                parent_variant = by_name[parent] if parent else experiment.baseline
                variant = actions.create_variant(
                    experiment, parent=parent_variant, inference_step=step, parameter=parameter, value=value, name=name
                )
                by_name[name] = variant
                self.report(self.run(application, runs.start_variant_run(variant, stop_when_decided=stop_when_decided)))
            if not experiment.runs.filter(dry_run=True).exists() and DRY_RUN_VARIANT in by_name:
                self.report(self.run(application, runs.start_dry_run(by_name[DRY_RUN_VARIANT], tasks=3)))
        finally:
            settings.WEBHOOK_ALLOWED_HOSTS, settings.LIVE_LOOK_SECONDS = allowed, look
            Application.objects.filter(pk=application.pk).update(webhook_url=url)
            server.shutdown()
            server.server_close()

    def finish_active_run(self, application, experiment):
        """A run left active by an interrupted load: send what it still needs."""
        if experiment.runs.filter(status__in=(RunStatus.QUEUED, RunStatus.RUNNING)).exists():
            runs.dispatch_application(application.pk)
            runs.sweep_tests(wake=lambda application_id: None)

    def run(self, application, run):
        # A worker already running may hold the application's lease; then wait for it.
        deadline = time.monotonic() + 300
        while Run.objects.filter(pk=run.pk, status__in=(RunStatus.QUEUED, RunStatus.RUNNING)).exists() and time.monotonic() < deadline:
            if not runs.dispatch_application(application.pk):
                time.sleep(0.5)
        return Run.objects.select_related("variant").get(pk=run.pk)

    def report(self, run):
        rate = run.passed / run.total if run.total else 0  # skipped tests are not in total
        stopped = f", stopped early ({run.skipped} skipped)" if run.stopped_early else ""
        self.stdout.write(
            f"  {run.variant.name}{' (dry run)' if run.dry_run else ''}: {run.status}, {run.passed}/{run.total} passed ({rate:.0%}),"
            f" {run.errored} errored{stopped}"
        )
