"""Tables of SPEC §2, with their constraints in the database, plus single-row behaviour."""

import base64
import hashlib
import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import connections, models
from django.db.models import Q
from django.utils import timezone

from experiments_app import states
from experiments_app.overrides import PARAMETERS
from experiments_app.secrets_at_rest import EncryptedTextField
from experiments_app.states import BRANCHABLE, RUNNING, SCOPE_EDITABLE, State


def percent(fraction):
    """0.4 → "40%", 0.125 → "12.5%": as people write a share."""
    return f"{fraction * 100:.1f}".removesuffix(".0") + "%"


def new_webhook_secret():
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class Role(models.TextChoices):
    VIEWER = "viewer"
    EDITOR = "editor"
    ADMIN = "admin"


ROLE_RANK = {Role.VIEWER: 0, Role.EDITOR: 1, Role.ADMIN: 2}


def role_at_least(role, needed):
    return ROLE_RANK[Role(role)] >= ROLE_RANK[Role(needed)]


class Team(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="membership_unique_team_user")]

    def __str__(self):
        return f"{self.user} in {self.team} ({self.role})"


class ApiToken(models.Model):
    """A team's API token. Only a SHA-256 of it is stored; the prefix stays readable to tell tokens apart."""

    PREFIX_LENGTH = 12

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=200, blank=True)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.EDITOR)
    prefix = models.CharField(max_length=PREFIX_LENGTH, db_index=True)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.prefix}… ({self.team}, {self.role})"

    @staticmethod
    def hash(raw):
        return hashlib.sha256(raw.encode()).hexdigest()

    @classmethod
    def issue(cls, team, *, role=Role.EDITOR, name=""):
        """Create a token; return (token, raw). The raw value is never stored."""
        raw = "edt_" + secrets.token_urlsafe(32)
        token = cls.objects.create(team=team, role=role, name=name, prefix=raw[: cls.PREFIX_LENGTH], token_hash=cls.hash(raw))
        return token, raw

    @classmethod
    def find(cls, raw):
        """The live token whose hash matches `raw`, or None."""
        if not raw:
            return None
        return cls.objects.select_related("team").filter(token_hash=cls.hash(raw), revoked_at__isnull=True).first()


class Delivery(models.TextChoices):
    """How an application gets its tests (SPEC §8): webhooks pushed to it, or pulled by it."""

    PUSH = "push"
    PULL = "pull"


class Application(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="applications")
    name = models.CharField(max_length=200)
    # Empty only for a pull application, which needs no address the dashboard can reach.
    webhook_url = models.URLField(max_length=2000, blank=True)
    delivery = models.CharField(max_length=4, choices=Delivery.choices, default=Delivery.PUSH)
    webhook_secret = EncryptedTextField(default=new_webhook_secret)
    # After a rotation the old secret keeps signing (beside the new one) and verifying until then.
    previous_webhook_secret = EncryptedTextField(blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    timeout_seconds = models.PositiveIntegerField(default=30)
    result_timeout_seconds = models.PositiveIntegerField(default=300)
    max_concurrency = models.PositiveIntegerField(default=20)
    # Only one dispatcher at a time sends to an application, so max_concurrency
    # holds across every worker: it holds this lease while it works.
    dispatch_lease_until = models.DateTimeField(null=True, blank=True)
    # When a signed ping to the current URL with the current secret last got a 2xx:
    # the "connected" mark of the application page. A new URL or secret clears it.
    last_ping_ok_at = models.DateTimeField(null=True, blank=True)
    # Written with the lease: when the dispatcher last moved (claimed, recorded, idled), and
    # its current in-flight limit (AIMD, at most max_concurrency). A lease held without
    # progress is taken away by the sweeper, which marks the application stalled (runs/health.py).
    dispatch_progress_at = models.DateTimeField(null=True, blank=True)
    dispatch_limit = models.PositiveIntegerField(null=True, blank=True)
    dispatch_stalled_since = models.DateTimeField(null=True, blank=True)
    # Every delivery failing since `failing_since` (reset by any success); past the limits in
    # settings the application is disabled, with the reason, until someone re-enables it.
    failing_since = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(timeout_seconds__gte=1), name="application_timeout_positive"),
            models.CheckConstraint(condition=Q(result_timeout_seconds__gte=1), name="application_result_timeout_positive"),
            models.CheckConstraint(condition=Q(max_concurrency__gte=1), name="application_concurrency_positive"),
            models.CheckConstraint(condition=Q(delivery=Delivery.PULL) | ~Q(webhook_url=""), name="application_push_needs_url"),
        ]

    def __str__(self):
        return self.name

    def is_disabled(self):
        return self.disabled_at is not None

    def is_pull(self):
        return self.delivery == Delivery.PULL

    def running_experiments(self):
        """Its experiments with a run in progress: while there is one, it cannot be deleted."""
        return self.experiments.filter(status__in=RUNNING)

    def rotate_secret(self):
        """A new secret; the old one stays valid for WEBHOOK_SECRET_ROTATION_SECONDS (both sign meanwhile).
        The application must be configured again, so it is no longer "connected"."""
        self.previous_webhook_secret = self.webhook_secret
        self.previous_secret_expires_at = timezone.now() + timedelta(seconds=settings.WEBHOOK_SECRET_ROTATION_SECONDS)
        self.webhook_secret = new_webhook_secret()
        self.last_ping_ok_at = None
        fields = ["webhook_secret", "previous_webhook_secret", "previous_secret_expires_at", "last_ping_ok_at", "updated_at"]
        self.save(update_fields=fields)
        return self.webhook_secret

    def signing_secrets(self):
        """The secrets that sign deliveries and verify results now: the current one, then the
        previous one while its rotation window lasts."""
        secrets_now = [self.webhook_secret]
        if self.previous_webhook_secret and self.previous_secret_expires_at and self.previous_secret_expires_at > timezone.now():
            secrets_now.append(self.previous_webhook_secret)
        return secrets_now


class InferenceStep(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="inference_steps")
    external_id = models.CharField(max_length=200)
    name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    config = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["external_id"]
        constraints = [
            models.UniqueConstraint(fields=["application", "external_id"], name="step_unique_external_id"),
        ]

    def __str__(self):
        return self.external_id

    def locking_experiments(self):
        """The locked, non-archived experiments whose scope holds this step: while there is one,
        its external_id (the name in `overrides`) cannot change."""
        return self.experiments.filter(locked_at__isnull=False).exclude(status=State.ARCHIVED)


class TaskQuerySet(models.QuerySet):
    def with_tag(self, tag):
        """Tasks carrying `tag`: JSON containment where the database has it (PostgreSQL);
        SQLite has none, so there one application's tag lists are matched in Python."""
        if connections[self.db].features.supports_json_field_contains:
            return self.filter(tags__contains=[tag])
        ids = [pk for pk, tags in self.values_list("pk", "tags") if isinstance(tags, list) and tag in tags]
        return self.filter(pk__in=ids)

    def with_locked(self):
        """Annotate `locked`: whether a locked, non-archived experiment selected the task, so its
        input and expected keep their meaning (SPEC §2: changing them is refused)."""
        locking = Experiment.tasks.through.objects.filter(task_id=models.OuterRef("pk"), experiment__locked_at__isnull=False).exclude(
            experiment__status=State.ARCHIVED
        )
        return self.annotate(locked=models.Exists(locking))

    def tag_names(self):
        """Every tag these tasks carry, sorted, each once."""
        return sorted(
            {tag for tags in self.values_list("tags", flat=True) if isinstance(tags, list) for tag in tags if isinstance(tag, str)}
        )


class Task(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="tasks")
    external_id = models.CharField(max_length=200)
    name = models.CharField(max_length=500, blank=True)
    input = models.JSONField(default=dict)
    expected = models.JSONField(null=True, blank=True)
    tags = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ["external_id"]
        constraints = [
            models.UniqueConstraint(fields=["application", "external_id"], name="task_unique_external_id"),
        ]

    def __str__(self):
        return self.external_id

    def locking_experiments(self):
        """The locked, non-archived experiments that selected this task: while there is one, its
        input and expected cannot change and it cannot be deleted."""
        return self.experiments.filter(locked_at__isnull=False).exclude(status=State.ARCHIVED)


class Experiment(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="experiments")
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="experiments")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=State.choices, default=State.DRAFT, db_index=True)
    inference_steps = models.ManyToManyField(InferenceStep, blank=True, related_name="experiments")
    tasks = models.ManyToManyField(Task, blank=True, related_name="experiments")
    evaluators = models.JSONField(default=list, blank=True)
    repetitions = models.PositiveSmallIntegerField(default=1)
    max_error_rate = models.FloatField(default=0.2)
    # Significance level of every comparison (SPEC §7): intervals at 1 − alpha, Holm at alpha.
    alpha = models.FloatField(default=0.05)
    # Non-inferiority margins a variant must hold to ship (SPEC §7 `guardrails`).
    guardrails = models.JSONField(default=list, blank=True)
    locked_at = models.DateTimeField(null=True, blank=True)
    winner = models.ForeignKey("Variant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    completed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(repetitions__gte=1, repetitions__lte=20), name="experiment_repetitions_1_20"),
            models.CheckConstraint(condition=Q(max_error_rate__gte=0, max_error_rate__lte=1), name="experiment_error_rate_0_1"),
            models.CheckConstraint(condition=Q(alpha__gte=0.001, alpha__lte=0.2), name="experiment_alpha_range"),
        ]

    def __str__(self):
        return self.name

    @property
    def is_locked(self):
        return self.locked_at is not None

    def is_running(self):
        return self.status in RUNNING

    def is_archived(self):
        return self.status == State.ARCHIVED

    def is_scope_editable(self):
        """Steps, tasks and the baseline config change only before the baseline has run."""
        return not self.is_locked and self.status in SCOPE_EDITABLE

    def task_count(self):
        """How many tasks the experiment has, counted on the link table's (experiment) index alone:
        `tasks.count()` joins the task table (~0.4 s at 100,000 tasks on PostgreSQL)."""
        return Experiment.tasks.through.objects.filter(experiment_id=self.pk).count()

    def can_branch(self):
        """Variants are created once the baseline has results, and until the experiment completes."""
        return self.status in BRANCHABLE

    def allows(self, target):
        """Whether the lifecycle allows going to `target` now (states.TRANSITIONS)."""
        return states.is_allowed(self.status, target)

    @property
    def baseline(self):
        return self.variants.get(parent__isnull=True)


class Variant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="variants")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    name = models.CharField(max_length=200)
    inference_step = models.ForeignKey(InferenceStep, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    parameter = models.CharField(max_length=20, blank=True)
    value = models.JSONField(null=True, blank=True)
    # Only the baseline holds a config: {step external_id: {parameter: value}}.
    config = models.JSONField(null=True, blank=True)
    # The control (SPEC §3): a child of the baseline changing nothing, the noise floor.
    is_control = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["experiment"], condition=Q(parent__isnull=True), name="variant_one_baseline"),
            models.UniqueConstraint(fields=["experiment"], condition=Q(is_control=True), name="variant_one_control"),
            models.CheckConstraint(
                condition=(
                    Q(parent__isnull=True, inference_step__isnull=True, parameter="", config__isnull=False, is_control=False)
                    | Q(
                        parent__isnull=False,
                        inference_step__isnull=False,
                        parameter__in=list(PARAMETERS),
                        config__isnull=True,
                        is_control=False,
                    )
                    | Q(parent__isnull=False, inference_step__isnull=True, parameter="", config__isnull=True, is_control=True)
                ),
                name="variant_baseline_or_one_change",
            ),
        ]

    def __str__(self):
        return self.name

    @property
    def is_baseline(self):
        return self.parent_id is None

    def is_deletable(self, *, has_runs, has_children):
        """Only a variant without runs and without children may be deleted (SPEC §2); never the baseline."""
        return not self.is_baseline and not has_runs and not has_children

    def change(self):
        """{step, parameter, value} of this variant's one change; None for the baseline and the control."""
        if self.is_baseline or self.is_control:
            return None
        return {"step": self.inference_step.external_id, "parameter": self.parameter, "value": self.value}


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
# A run's columns that grow with its tasks (or its config): left out by pages that list runs.
RUN_LARGE_FIELDS = ("aggregates", "outcomes", "config", "comparison_improved", "comparison_regressed")


class RunQuerySet(models.QuerySet):
    def real(self):
        """Runs of the lifecycle: all but dry runs, which never move it and are never a result."""
        return self.filter(dry_run=False)


class Run(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="runs")
    variant = models.ForeignKey(Variant, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    # A smoke test on a few tasks (SPEC §8 dry-run/): beside other runs, outside the lifecycle and the results.
    dry_run = models.BooleanField(default=False)
    # The effective config sent as `overrides`, frozen when the run starts.
    config = models.JSONField(default=dict)
    total = models.PositiveIntegerField(default=0)
    passed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    errored = models.PositiveIntegerField(default=0)
    # The experiment's max_error_rate the run was judged against when it closed (it may change later).
    max_error_rate = models.FloatField(null=True, blank=True)
    # Per-metric and per-evaluator aggregates, stored once when the run closes.
    aggregates = models.JSONField(default=dict, blank=True)
    # {task id: passed (by majority over repetitions)}, stored at close for comparing runs;
    # read only when two runs are paired, never for the results table.
    outcomes = models.JSONField(default=dict, blank=True)
    # The improved and regressed task ids of the comparison stored in aggregates["vs_baseline"],
    # as JSON text kept apart: the results page never reads them, the API writes them unparsed
    # (at 100,000 tasks they are nearly all of a run's stored bytes). results.py reads and writes them.
    comparison_improved = models.TextField(null=True, blank=True)
    comparison_regressed = models.TextField(null=True, blank=True)
    # Where this run's tests go instead of the application's webhook_url (a preview deployment); empty: the application's.
    webhook_url = models.URLField(max_length=2000, blank=True)
    # SPEC §3: stop sending once the live verdict is settled; then unsent tests are skipped.
    stop_when_decided = models.BooleanField(default=False)
    stopped_early = models.BooleanField(default=False)
    skipped = models.PositiveIntegerField(default=0)
    # The always-valid confidence sequence against the baseline while the run goes (SPEC §7
    # `live`): {"state": stats.live_* state, "baseline_run", "fed": [task ids fed, in order]}.
    live = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["experiment"],
                condition=Q(status__in=["queued", "running"], dry_run=False),
                name="run_one_active_per_experiment",
            ),
        ]

    def __str__(self):
        return f"{self.variant} run {self.id}"

    def is_active(self):
        return self.status in ACTIVE_RUN_STATUSES

    def failure_reason(self):
        """Why the run did not succeed, as a sentence; None when it succeeded or is still active."""
        if self.status == RunStatus.CANCELLED:
            return "The run was cancelled: its unfinished tests were errored."
        if self.status != RunStatus.FAILED:
            return None
        share = self.errored / self.total if self.total else 0
        reason = f"{self.errored} of {self.total} test{'' if self.total == 1 else 's'} errored ({percent(share)})"
        if self.max_error_rate is not None:
            reason += f", above the experiment's max error rate of {percent(self.max_error_rate)}"
        return reason + "."

    def count_awaiting_results(self):
        """{awaiting, next_due}: tests accepted with a 202 still waiting for their callback,
        and the earliest time one of them times out (None when none waits)."""
        return self.tests.filter(AWAITING_RESULT).aggregate(awaiting=models.Count("pk"), next_due=models.Min("result_due_at"))

    def count_tests(self):
        """{total, passed, failed, errored, skipped} counted in one query; total leaves skipped tests out."""
        return self.tests.aggregate(
            total=models.Count("pk", filter=~Q(status=TestStatus.SKIPPED)),
            skipped=models.Count("pk", filter=Q(status=TestStatus.SKIPPED)),
            passed=models.Count("pk", filter=Q(status=TestStatus.PASSED)),
            failed=models.Count("pk", filter=Q(status=TestStatus.FAILED)),
            errored=models.Count("pk", filter=Q(status=TestStatus.ERRORED)),
        )


class TestStatus(models.TextChoices):
    PENDING = "pending"
    DISPATCHED = "dispatched"
    PASSED = "passed"
    FAILED = "failed"
    ERRORED = "errored"
    # Never sent: the run stopped once decided (SPEC §3); left out of every rate.
    SKIPPED = "skipped"


TERMINAL_TEST_STATUSES = (TestStatus.PASSED, TestStatus.FAILED, TestStatus.ERRORED, TestStatus.SKIPPED)
OPEN_TEST_STATUSES = (TestStatus.PENDING, TestStatus.DISPATCHED)
# Accepted with a 202 and waiting for its callback (Test.is_awaiting_result, as a filter).
AWAITING_RESULT = Q(status=TestStatus.DISPATCHED, result_due_at__isnull=False)


class Test(models.Model):
    __test__ = False  # not a pytest test class

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: test_run_status and the unique (run, task, repetition) begin with it. Every
    # test is written three times (made, claimed, answered), and every index is written each time.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="tests", db_index=False)
    task = models.ForeignKey(Task, null=True, on_delete=models.SET_NULL, related_name="tests")
    repetition = models.PositiveSmallIntegerField(default=1)
    # Snapshot of the task when the run started, so results stay explainable.
    task_external_id = models.CharField(max_length=200)
    task_input = models.JSONField(default=dict)
    task_expected = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=TestStatus.choices, default=TestStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Attempts whose worker died before recording an answer (lease expired): a test with any
    # is sent alone, and errored after DISPATCH_MAX_LOST_ATTEMPTS, so that a test that kills
    # its worker costs its neighbours nothing.
    lost_attempts = models.PositiveSmallIntegerField(default=0)
    output = models.JSONField(null=True, blank=True)
    has_output = models.BooleanField(default=False)
    reported_passed = models.BooleanField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    trace_id = models.CharField(max_length=500, blank=True)
    evaluations = models.JSONField(default=list, blank=True)
    # Per-step detail of the result (SPEC §5 `steps`), as reported: {step external_id: {model, output, latency_ms, …}}.
    steps = models.JSONField(default=dict, blank=True)
    # When the next delivery attempt is due (retries wait here, not in the broker),
    # and until when the current holder may work on it before a sweeper takes over.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    # After a 202: when the application accepted the test and by when the result must arrive.
    accepted_at = models.DateTimeField(null=True, blank=True)
    result_due_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["task_external_id", "repetition"]
        constraints = [
            models.UniqueConstraint(fields=["run", "task", "repetition"], name="test_unique_run_task_repetition"),
        ]
        indexes = [
            models.Index(fields=["run", "status"], name="test_run_status"),
            # "Any test of the run still open?" after every batch of answers and every result, and the
            # claim's scans: only open tests are in it. Over test_run_status the planner could take
            # another index of the run and read every test's row (113 ms at 100,000 tests).
            models.Index(
                fields=["run", "status"],
                name="test_open",
                condition=models.Q(status__in=OPEN_TEST_STATUSES),
            ),
            models.Index(fields=["status", "next_attempt_at"], name="test_status_due"),
            # the run page and the API list a run's tests a page at a time in this order
            models.Index(fields=["run", "task_external_id", "repetition"], name="test_run_task_order"),
        ]

    def __str__(self):
        return f"{self.task_external_id}#{self.repetition}"

    def is_terminal(self):
        return self.status in TERMINAL_TEST_STATUSES

    def is_awaiting_result(self):
        """Accepted with a 202 and waiting for its callback."""
        return self.status == TestStatus.DISPATCHED and self.result_due_at is not None

    @property
    def webhook_id(self):
        """The same `webhook-id` on every delivery attempt of this test."""
        return f"msg_{self.id.hex}"


class DeliveryAttempt(models.Model):
    """One outbound webhook attempt for a test: what happened and how long it took."""

    # No index of its own: attempt_test_number begins with it.
    test = models.ForeignKey(Test, on_delete=models.CASCADE, related_name="delivery_attempts", db_index=False)
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    retry_at = models.DateTimeField(null=True, blank=True)
    # A lease handed to a puller (pull mode) instead of a request: started_at is when it was
    # leased, duration_ms how long its result took, error why it expired without one.
    pulled = models.BooleanField(default=False)

    class Meta:
        ordering = ["test", "number"]
        indexes = [models.Index(fields=["test", "number"], name="attempt_test_number")]


class Transition(models.Model):
    """Audit row: one lifecycle change of an experiment."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="transitions")
    verb = models.CharField(max_length=40)
    from_status = models.CharField(max_length=20, choices=State.choices)
    to_status = models.CharField(max_length=20, choices=State.choices)
    # What the change carried, e.g. {"winner": variant id} when an experiment completes.
    detail = models.JSONField(default=dict, blank=True)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # An API token acts without a user: the token is who.
    by_token = models.ForeignKey(ApiToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]

    def actor(self):
        """Who made the change, for the history: a user, a token, or the system (a run ending)."""
        if self.by_id:
            return self.by.get_username()
        if self.by_token_id:
            return f"API token {self.by_token.prefix}… ({self.by_token.role})"
        return "system"


# --- events out of the product (SPEC §4 "Events out of the product") ---------------


class EventType(models.TextChoices):
    RUN_COMPLETED = "run.completed"
    BASELINE_COMPLETED = "baseline.completed"
    VARIANT_COMPLETED = "variant.completed"
    VARIANT_REGRESSED = "variant.regressed"
    EXPERIMENT_COMPLETED = "experiment.completed"


class EventEndpoint(models.Model):
    """Where a team wants its events: a URL, the event types, optionally one application."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="event_endpoints")
    # None: events of every application of the team.
    application = models.ForeignKey(Application, null=True, blank=True, on_delete=models.CASCADE, related_name="event_endpoints")
    url = models.URLField(max_length=2000)
    description = models.TextField(blank=True)
    events = models.JSONField(default=list)
    secret = EncryptedTextField(default=new_webhook_secret)
    # Deliveries given up on since the last success, and when that streak began.
    failing_since = models.DateTimeField(null=True, blank=True)
    failed_deliveries = models.PositiveIntegerField(default=0)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return self.url

    @property
    def is_enabled(self):
        return self.disabled_at is None

    def wants(self, event_type, application_id):
        return event_type in self.events and (self.application_id is None or self.application_id == application_id)

    def rotate_secret(self):
        self.secret = new_webhook_secret()
        self.save(update_fields=["secret", "updated_at"])
        return self.secret


class Event(models.Model):
    """One event as it happened: its type and its body, shared by every endpoint it goes to."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=40, choices=EventType.choices)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    @property
    def webhook_id(self):
        """The `webhook-id` of every delivery of this event, retries and redeliveries included."""
        return f"msg_{self.id.hex}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class EventDelivery(models.Model):
    """One event sent to one endpoint: retried until delivered or given up; a redelivery by hand is a new row."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(EventEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    manual = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    # When the next attempt is due; a sender claims the delivery by moving it past its own deadline.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="event_delivery_due"),
            models.Index(fields=["endpoint", "created_at"], name="event_delivery_endpoint"),
        ]


class EventAttempt(models.Model):
    """One HTTP attempt of an event delivery."""

    delivery = models.ForeignKey(EventDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
