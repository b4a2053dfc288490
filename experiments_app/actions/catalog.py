"""Applications, inference steps and tasks: validation, creation, bulk import, guarded edits."""

from contextlib import contextmanager
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from experiments_app import jsonlimits, overrides, webhooks
from experiments_app.actions.experiments import delete_experiment
from experiments_app.errors import Conflict, Locked, ValidationFailed
from experiments_app.models import ACTIVE_RUN_STATUSES, Application, Delivery, InferenceStep, Run, Task

MAX_BULK_TASKS = 10_000
APPLICATION_LIMITS = {
    "timeout_seconds": (1, 600),
    "result_timeout_seconds": (1, 7 * 24 * 3600),
    "max_concurrency": (1, 1000),
}
TASK_FIELDS = {"external_id", "name", "input", "expected", "tags"}
STEP_FIELDS = {"external_id", "name", "description", "config"}


@contextmanager
def unique_external_id(kind, external_id):
    """Turn the database's unique (application, external_id) refusal into a 400 on `external_id`."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError:
        raise ValidationFailed({"external_id": f"A {kind} {external_id!r} already exists in this application."}) from None


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_webhook_url(url):
    webhooks.check_webhook_url(url)  # the SSRF guard resolves the host; it lives with delivery


def validate_application(data, *, partial=False, current=None):
    """Return cleaned application fields; raise ValidationFailed naming each bad field.

    A pull application may have no webhook URL; a push one needs one (`current` is the
    application a partial update changes)."""
    errors, clean = {}, {}
    if not partial or "name" in data:
        name = data.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            errors["name"] = "A name of 1 to 200 characters is required."
        else:
            clean["name"] = name.strip()
    delivery = getattr(current, "delivery", Delivery.PUSH)
    if "delivery" in data and data["delivery"] is not None:
        if data["delivery"] not in Delivery.values:
            errors["delivery"] = "Must be push (webhooks to the application) or pull (the application asks for its tests)."
        else:
            clean["delivery"] = delivery = data["delivery"]
    if not partial or "webhook_url" in data:
        url = data.get("webhook_url")
        if url in (None, "") and delivery == Delivery.PULL:
            clean["webhook_url"] = ""
        elif not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 2000:
            errors["webhook_url"] = "An http(s) URL is required (a pull application may leave it empty)."
        else:
            try:
                check_webhook_url(url)
                clean["webhook_url"] = url
            except ValidationFailed as error:
                errors.update(error.errors)
    elif delivery == Delivery.PUSH and current is not None and not current.webhook_url:
        errors["webhook_url"] = "A push application needs a webhook URL: give one to switch back to push."
    for field, (low, high) in APPLICATION_LIMITS.items():
        if field in data and data[field] is not None:
            value = data[field]
            if not is_int(value) or not low <= value <= high:
                errors[field] = f"Must be an integer from {low} to {high}."
            else:
                clean[field] = value
    if errors:
        raise ValidationFailed(errors)
    return clean


def create_application(team, data):
    """Create an application (a new `whsec_` secret is generated). Raises ValidationFailed."""
    return Application.objects.create(team=team, **validate_application(data))


def update_application(application, data):
    """Edit an application. A new webhook URL clears its "connected" mark until it is pinged again.
    Switching its delivery (push ⇄ pull) is refused (Conflict) while one of its runs is active, so
    no test is both pushed and leased. Raises ValidationFailed."""
    clean = validate_application(data, partial=True, current=application)
    with transaction.atomic():
        locked = Application.objects.select_for_update().get(pk=application.pk)
        if clean.get("delivery", locked.delivery) != locked.delivery and has_active_runs(locked):
            raise Conflict("A run of this application is active: switch its delivery once it has ended (or cancel it).")
        if clean.get("webhook_url", application.webhook_url) != application.webhook_url:
            application.last_ping_ok_at = None
        for field, value in clean.items():
            setattr(application, field, value)
        application.save()
    return application


def has_active_runs(application):
    return Run.objects.filter(experiment__application=application, status__in=ACTIVE_RUN_STATUSES).exists()


def ping_application(application):
    """Send one signed `webhook.ping`; a 2xx answer records `last_ping_ok_at` (the application is connected).

    Returns the answer of `webhooks.ping`: {"status_code", "duration_ms", "ok", "error"}; never raises
    for network trouble.
    """
    result = webhooks.ping(application)
    if result["ok"]:
        now = timezone.now()
        # Only if URL and secret are still the ones pinged: a rotation meanwhile must not read as connected.
        # The secret is compared in clear: stored encrypted, it differs at every write.
        with transaction.atomic():
            current = Application.objects.select_for_update().filter(pk=application.pk).values_list("webhook_url", "webhook_secret")
            if current.first() == (application.webhook_url, application.webhook_secret):
                Application.objects.filter(pk=application.pk).update(last_ping_ok_at=now)
                application.last_ping_ok_at = now
    return result


def delete_application(application):
    """Delete an application and everything under it; refused while one of its runs is active."""
    if application.running_experiments().exists():
        raise Conflict("The application has a running experiment; cancel the run first.")
    with transaction.atomic():
        for experiment in application.experiments.all():
            delete_experiment(experiment)
        application.delete()


def check_identity(data, allowed, *, partial, prefix):
    """Start validating a step or task: refuse a non-object, name unknown fields and check
    `external_id`. Returns (errors, clean) for the caller to extend."""
    if not isinstance(data, dict):
        raise ValidationFailed({prefix.rstrip(".") or "non_field_errors": "Must be an object."})
    errors = {f"{prefix}{key}": "Unknown field." for key in sorted(set(data) - allowed)}
    clean = {}
    if not partial or "external_id" in data:
        external_id = data.get("external_id")
        if not isinstance(external_id, str) or not external_id.strip() or len(external_id) > 200:
            errors[f"{prefix}external_id"] = "A string of 1 to 200 characters is required."
        else:
            clean["external_id"] = external_id.strip()
    return errors, clean


def validate_step(data, *, partial=False, prefix=""):
    errors, clean = check_identity(data, STEP_FIELDS, partial=partial, prefix=prefix)
    for field, limit in (("name", 200), ("description", 20_000)):
        if field in data:
            if not isinstance(data[field], str) or len(data[field]) > limit:
                errors[f"{prefix}{field}"] = f"Must be a string of at most {limit:,} characters."
            else:
                clean[field] = data[field]
    if not partial or "config" in data:
        config = data.get("config", {})
        if config is None:
            config = {}
        if not isinstance(config, dict):
            errors[f"{prefix}config"] = "Must be an object of parameters."
        else:
            for name, value in config.items():
                message = overrides.parameter_error(name, value) if name in overrides.PARAMETERS else overrides.typo_error(name)
                if message:
                    errors[f"{prefix}config.{name}"] = message
            errors.update(jsonlimits.field_errors(f"{prefix}config", config))
            clean["config"] = config
    if errors:
        raise ValidationFailed(errors)
    return clean


def create_step(application, data):
    """Create an inference step; raises ValidationFailed (also for a duplicate external_id)."""
    clean = validate_step(data)
    with unique_external_id("step", clean["external_id"]):
        return InferenceStep.objects.create(application=application, **clean)


def update_step(step, data):
    """Edit a step. Renaming a step that a locked experiment uses is refused (Locked)."""
    clean = validate_step(data, partial=True)
    renamed = "external_id" in clean and clean["external_id"] != step.external_id
    if renamed and step.locking_experiments().exists():
        raise Locked("The step is used by a locked experiment; its external_id cannot change.")
    for field, value in clean.items():
        setattr(step, field, value)
    with unique_external_id("step", step.external_id):
        step.save()
    return step


def delete_step(step):
    """Delete a step that no experiment uses; raise Conflict otherwise."""
    if step.experiments.exists():
        raise Conflict("The step is in the scope of an experiment; remove it there first.")
    step.delete()


def validate_task(data, *, partial=False, prefix=""):
    """Return cleaned task fields; errors are keyed `{prefix}{field}` (e.g. `tasks[3].input`)."""
    errors, clean = check_identity(data, TASK_FIELDS, partial=partial, prefix=prefix)
    if "name" in data:
        if not isinstance(data["name"], str) or len(data["name"]) > 500:
            errors[f"{prefix}name"] = "Must be a string of at most 500 characters."
        else:
            clean["name"] = data["name"]
    if not partial or "input" in data:
        if not isinstance(data.get("input"), dict):
            errors[f"{prefix}input"] = "A JSON object is required."
        else:
            errors.update(jsonlimits.field_errors(f"{prefix}input", data["input"]))
            clean["input"] = data["input"]
    if "expected" in data:
        errors.update(jsonlimits.field_errors(f"{prefix}expected", data["expected"]))
        clean["expected"] = data["expected"]
    if "tags" in data:
        tags = data["tags"]
        if tags is None:
            tags = []
        if not isinstance(tags, list) or not all(isinstance(tag, str) and 0 < len(tag) <= 100 for tag in tags):
            errors[f"{prefix}tags"] = "Must be a list of strings of 1 to 100 characters."
        else:
            clean["tags"] = list(dict.fromkeys(tags))
    if errors:
        raise ValidationFailed(errors)
    return clean


def create_task(application, data):
    """Create a task; raises ValidationFailed (also for a duplicate external_id)."""
    clean = validate_task(data)
    with unique_external_id("task", clean["external_id"]):
        return Task.objects.create(application=application, **clean)


@dataclass(frozen=True)
class ImportResult:
    """What an import did: tasks created, existing ones updated, existing ones skipped, and
    existing ones left unchanged because a locked experiment uses them."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
    locked: int = 0


# What an import does with a row whose external_id already exists in the application.
ON_EXISTING = ("refuse", "skip", "update")


def import_tasks(application, rows, *, prefix="tasks"):
    """Create every task in `rows` or none. Returns how many were created.

    Raises ValidationFailed naming each bad row and field (`tasks[3].input`), also
    for external ids repeated in the batch or already in the application.
    """
    return import_task_rows(application, rows, prefix=prefix).created


def import_task_rows(application, rows, *, on_existing="refuse", prefix="tasks"):
    """Import `rows`, all or nothing. A row whose external_id already exists is refused (an
    error naming it), skipped, or updated ("update") unless a locked, non-archived experiment
    uses that task (its results must keep their meaning: it is left unchanged and counted).
    Returns an ImportResult; raises ValidationFailed naming each bad row and field."""
    if on_existing not in ON_EXISTING:
        raise ValidationFailed({"on_existing": f"Must be one of {', '.join(ON_EXISTING)}."})
    if not isinstance(rows, list):
        raise ValidationFailed({prefix: "Must be a list of tasks."})
    if len(rows) > MAX_BULK_TASKS:
        raise ValidationFailed({prefix: f"At most {MAX_BULK_TASKS:,} tasks per import; got {len(rows):,}."})
    errors, cleaned, seen = {}, [], {}
    for index, row in enumerate(rows):
        try:
            clean = validate_task(row, prefix=f"{prefix}[{index}].")
        except ValidationFailed as error:
            errors.update(error.errors)
            continue
        external_id = clean["external_id"]
        if external_id in seen:
            errors[f"{prefix}[{index}].external_id"] = [f"Repeats {prefix}[{seen[external_id]}]."]
        seen.setdefault(external_id, index)
        cleaned.append((index, clean))
    existing = {task.external_id: task for task in Task.objects.filter(application=application, external_id__in=list(seen)).with_locked()}
    if on_existing == "refuse":
        for index, clean in cleaned:
            if clean["external_id"] in existing:
                errors[f"{prefix}[{index}].external_id"] = [f"A task {clean['external_id']!r} already exists in this application."]
    if errors:
        raise ValidationFailed(errors)
    new = [clean for _, clean in cleaned if clean["external_id"] not in existing]
    updates = [clean for _, clean in cleaned if clean["external_id"] in existing] if on_existing == "update" else []
    unlocked = [clean for clean in updates if not existing[clean["external_id"]].locked]
    try:
        with transaction.atomic():
            Task.objects.bulk_create([Task(application=application, **clean) for clean in new], batch_size=1000)
            now = timezone.now()
            for clean in unlocked:
                fields = {key: value for key, value in clean.items() if key != "external_id"}
                Task.objects.filter(pk=existing[clean["external_id"]].pk).update(updated_at=now, **fields)
    except IntegrityError:
        raise ValidationFailed({prefix: "Another import created some of these external ids meanwhile; nothing was saved."}) from None
    return ImportResult(
        created=len(new),
        updated=len(unlocked),
        skipped=len(cleaned) - len(new) - len(updates),
        locked=len(updates) - len(unlocked),
    )


def update_task(task, data):
    """Edit a task. Changing the input or expected of a task selected by a locked,
    non-archived experiment raises Locked: results must keep their meaning."""
    clean = validate_task(data, partial=True)
    meaning = {"input", "expected"} & set(clean)
    if meaning and any(getattr(task, key) != clean[key] for key in meaning):
        in_use = task.locking_experiments()
        if in_use.exists():
            names = ", ".join(in_use.values_list("name", flat=True)[:3])
            raise Locked(f"The task is used by locked experiments ({names}); create a new task instead.")
    for key, value in clean.items():
        setattr(task, key, value)
    with unique_external_id("task", task.external_id):
        task.save()
    return task


def delete_task(task):
    """Delete a task unless a locked, non-archived experiment selected it (Locked)."""
    if task.locking_experiments().exists():
        raise Locked("The task is used by a locked experiment; archive the experiment first.")
    task.delete()
