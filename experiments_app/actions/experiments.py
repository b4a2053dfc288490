"""Experiment lifecycle, scope, baseline config and the variant tree."""

import math

import regex
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from experiments_app import jsonlimits, overrides, states
from experiments_app.errors import Conflict, Locked, ValidationFailed
from experiments_app.evaluation import EVALUATOR_TYPES
from experiments_app.events import emit
from experiments_app.models import Experiment, InferenceStep, Run, RunStatus, Task, Transition, Variant
from experiments_app.states import SCOPE_EDITABLE, State

# What decides, not what is measured: alpha and guardrails re-judge stored results, so they stay editable.
EDITABLE_WHEN_LOCKED = {"name", "description", "max_error_rate", "alpha", "guardrails"}
ALPHA_RANGE = (0.001, 0.2)
GUARDRAIL_STATISTICS = ("mean", "p95")
MAX_GUARDRAILS = 20


def user_or_none(by):
    return by if getattr(by, "is_authenticated", False) and getattr(by, "pk", None) else None


def token_of(by):
    """The API token a request acted with (a TokenPrincipal carries it), else None."""
    return getattr(by, "token", None)


def apply_transition(experiment, target, *, by=None, detail=None, **fields):
    """Move `experiment` to `target` with a conditional update and record a Transition
    (who made it, a user or an API token, and `detail`, what the change carried).

    Returns the verb. Raises InvalidTransition when the table refuses it or when
    another request changed the status first (0 rows updated: lost the race).
    """
    current = experiment.status
    verb = states.check(current, target)
    now = timezone.now()
    updated = Experiment.objects.filter(pk=experiment.pk, status=current).update(status=target, updated_at=now, **fields)
    if updated == 0:
        fresh = Experiment.objects.filter(pk=experiment.pk).values_list("status", flat=True).first()
        raise states.InvalidTransition(fresh or current, target, "The experiment changed meanwhile; reload and try again.")
    Transition.objects.create(
        experiment=experiment,
        verb=verb,
        from_status=current,
        to_status=target,
        by=user_or_none(by),
        by_token=token_of(by),
        detail=detail or {},
    )
    experiment.status = target
    for name, value in fields.items():
        setattr(experiment, name, value)
    experiment.updated_at = now
    return verb


def create_experiment(application, *, name, description="", by=None):
    """Create a draft experiment with its baseline (an empty config until steps are picked)."""
    if not name or not str(name).strip():
        raise ValidationFailed({"name": "This field may not be blank."})
    with transaction.atomic():
        experiment = Experiment.objects.create(
            team=application.team, application=application, name=name, description=description or "", created_by=user_or_none(by)
        )
        Variant.objects.create(experiment=experiment, name="Baseline", config={})
    return experiment


def check_editable(experiment):
    if experiment.is_archived():
        raise Conflict("The experiment is archived and read-only.")


def check_unlocked(experiment, what):
    check_editable(experiment)
    if experiment.is_locked:
        raise Locked(f"The {what} is locked since the baseline ran.")


def set_scope(experiment, *, steps=None, tasks=None, by=None):
    """Replace the step scope (external ids) and/or task selection (Task objects or ids).

    Moves draft ⇄ baseline_pending as the scope becomes complete or empty, and keeps the
    baseline config in step with the scope (new steps prefilled from production config).
    Raises Locked after the baseline ran, ValidationFailed for unknown steps/tasks.
    """
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
        check_unlocked(experiment, "scope")
        if experiment.status not in SCOPE_EDITABLE:
            raise states.InvalidTransition(experiment.status, State.BASELINE_PENDING, "The scope can only change before the baseline runs.")
        app = experiment.application
        if steps is not None:
            wanted = list(dict.fromkeys(steps))
            found = {step.external_id: step for step in InferenceStep.objects.filter(application=app, external_id__in=wanted)}
            missing = [external_id for external_id in wanted if external_id not in found]
            if missing:
                raise ValidationFailed({"inference_steps": f"Unknown inference steps: {', '.join(map(str, missing))}."})
            experiment.inference_steps.set(found.values())
            baseline = experiment.variants.select_for_update().get(parent__isnull=True)
            baseline.config = overrides.prefill_config(baseline.config or {}, {key: found[key].config for key in wanted})
            baseline.save(update_fields=["config"])
        if tasks is not None:
            ids = list(dict.fromkeys(str(getattr(task, "pk", task)) for task in tasks))
            found_ids = {str(pk) for pk in Task.objects.filter(application=app, pk__in=ids).values_list("pk", flat=True)}
            missing = [task_id for task_id in ids if task_id not in found_ids]
            if missing:
                raise ValidationFailed({"tasks": f"Unknown tasks: {', '.join(missing[:20])}."})
            experiment.tasks.set(list(found_ids))
        filled = experiment.inference_steps.exists() and experiment.tasks.exists()
        if filled and experiment.status == State.DRAFT:
            apply_transition(experiment, State.BASELINE_PENDING, by=by)
        elif not filled and experiment.status == State.BASELINE_PENDING:
            apply_transition(experiment, State.DRAFT, by=by)
    return experiment


def change_task_selection(experiment, *, add=(), remove=(), by=None):
    """Add tasks to and remove tasks from the selection (Task objects or ids), keeping the rest.

    The experiment row is locked first, so concurrent changes queue and none overwrites
    another's; then the whole selection goes through set_scope (lock, draft ⇄ baseline_pending).
    """
    with transaction.atomic():
        list(Experiment.objects.select_for_update().filter(pk=experiment.pk).values_list("pk", flat=True))
        selected = {str(pk) for pk in experiment.tasks.values_list("pk", flat=True)}
        selected |= {str(getattr(task, "pk", task)) for task in add}
        selected -= {str(getattr(task, "pk", task)) for task in remove}
        return set_scope(experiment, tasks=sorted(selected), by=by)


def validate_evaluators(evaluators):
    if not isinstance(evaluators, list):
        raise ValidationFailed({"evaluators": "Must be a list of evaluator objects."})
    too_deep = jsonlimits.field_errors("evaluators", evaluators)
    if too_deep:
        raise ValidationFailed(too_deep)
    errors, names = {}, set()
    for index, evaluator in enumerate(evaluators):
        field = f"evaluators[{index}]"
        if not isinstance(evaluator, dict):
            errors[field] = "Must be an object with a `type`."
            continue
        kind = evaluator.get("type")
        if kind not in EVALUATOR_TYPES:
            errors[f"{field}.type"] = f"Must be one of {', '.join(sorted(EVALUATOR_TYPES))}."
            continue
        name = evaluator.get("name", kind)
        if not isinstance(name, str) or not name:
            errors[f"{field}.name"] = "Must be a non-empty string."
        elif name in names:
            errors[f"{field}.name"] = f"Evaluator names must be unique; {name!r} is used twice."
        else:
            names.add(name)
        errors.update(evaluator_field_errors(field, kind, evaluator))
    if errors:
        raise ValidationFailed(errors)


def evaluator_field_errors(field, kind, evaluator):
    errors = {}
    if kind == "contains" and not isinstance(evaluator.get("value"), str):
        errors[f"{field}.value"] = "A `contains` evaluator needs a string `value`."
    if kind == "regex":
        pattern = evaluator.get("pattern")
        try:
            regex.compile(pattern) if isinstance(pattern, str) else None
        except regex.error as error:
            errors[f"{field}.pattern"] = f"Not a valid regular expression: {error}."
        if not isinstance(pattern, str):
            errors[f"{field}.pattern"] = "A `regex` evaluator needs a string `pattern`."
    if kind == "metric_threshold":
        if not isinstance(evaluator.get("metric"), str):
            errors[f"{field}.metric"] = "A `metric_threshold` evaluator needs the `metric` name."
        bounds = {key: evaluator.get(key) for key in ("min", "max") if evaluator.get(key) is not None}
        if not bounds:
            errors[f"{field}.min"] = "Give `min`, `max` or both."
        for key, value in bounds.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                errors[f"{field}.{key}"] = "Must be a number."
    if "field" in evaluator and not isinstance(evaluator["field"], str):
        errors[f"{field}.field"] = "Must be a string."
    return errors


def update_experiment(experiment, *, by=None, **changes):
    """Change settings: name, description, evaluators, repetitions, max_error_rate,
    and the scope (`inference_steps`, `tasks`). What defines the comparison is
    locked once the baseline runs; name, description and max_error_rate stay editable."""
    check_editable(experiment)
    errors = {}
    if "name" in changes and (not isinstance(changes["name"], str) or not changes["name"].strip()):
        errors["name"] = "This field may not be blank."
    if "repetitions" in changes:
        value = changes["repetitions"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 20:
            errors["repetitions"] = "Must be an integer from 1 to 20."
    if "max_error_rate" in changes:
        value = changes["max_error_rate"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            errors["max_error_rate"] = "Must be a number from 0 to 1."
    if "alpha" in changes:
        value = changes["alpha"]
        low, high = ALPHA_RANGE
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            errors["alpha"] = f"Must be a number from {low} to {high}."
    if "guardrails" in changes:
        problem = guardrails_error(changes["guardrails"])
        if problem:
            errors["guardrails"] = problem
        else:
            changes["guardrails"] = normalized_guardrails(changes["guardrails"])
    if errors:
        raise ValidationFailed(errors)
    if "evaluators" in changes:
        validate_evaluators(changes["evaluators"])
    locked_fields = sorted(set(changes) - EDITABLE_WHEN_LOCKED)
    if experiment.is_locked and locked_fields:
        raise Locked(f"{', '.join(locked_fields)} cannot change since the baseline ran.")
    with transaction.atomic():
        scope = {key: changes.pop(key) for key in ("inference_steps", "tasks") if key in changes}
        if scope:
            set_scope(experiment, steps=scope.get("inference_steps"), tasks=scope.get("tasks"), by=by)
            experiment.refresh_from_db()
        for name, value in changes.items():
            setattr(experiment, name, value)
        if changes:
            experiment.save(update_fields=[*changes, "updated_at"])
    return experiment


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def guardrail_error(index, spec):
    """What is wrong with one guardrail of SPEC §7, as a sentence; None when it is well formed."""
    where = f"Guardrail {index + 1}"
    if not isinstance(spec, dict):
        return f"{where} must be an object."
    if "name" in spec and (not isinstance(spec["name"], str) or len(spec["name"]) > 200):
        return f"{where}: name must be a string of at most 200 characters."
    if ("metric" in spec) == ("evaluator" in spec):
        return f"{where} names either a metric or an evaluator."
    if "metric" in spec:
        unknown = set(spec) - {"name", "metric", "statistic", "margin", "higher_is_better"}
        if unknown:
            return f"{where}: unknown field(s) {', '.join(sorted(unknown))}."
        if not isinstance(spec["metric"], str) or not spec["metric"].strip():
            return f"{where}: metric must be a metric name."
        if spec.get("statistic") not in GUARDRAIL_STATISTICS:
            return f"{where}: statistic must be one of {', '.join(GUARDRAIL_STATISTICS)}."
        if not _number(spec.get("margin")) or spec["margin"] < 0:
            return f"{where}: margin must be a number ≥ 0 (in the metric's units)."
        if not isinstance(spec.get("higher_is_better", False), bool):
            return f"{where}: higher_is_better must be true or false."
        return None
    unknown = set(spec) - {"name", "evaluator", "margin_pp"}
    if unknown:
        return f"{where}: unknown field(s) {', '.join(sorted(unknown))}."
    if not isinstance(spec["evaluator"], str) or not spec["evaluator"].strip():
        return f"{where}: evaluator must be an evaluator name."
    if not _number(spec.get("margin_pp")) or not 0 <= spec["margin_pp"] <= 100:
        return f"{where}: margin_pp must be a number from 0 to 100."
    return None


def guardrails_error(guardrails):
    if not isinstance(guardrails, list):
        return "Must be a list of guardrails."
    if len(guardrails) > MAX_GUARDRAILS:
        return f"At most {MAX_GUARDRAILS} guardrails."
    for index, spec in enumerate(guardrails):
        problem = guardrail_error(index, spec)
        if problem:
            return problem
    return None


def normalized_guardrails(guardrails):
    """Each metric guardrail with its default `higher_is_better` written out."""
    return [{**spec, "higher_is_better": spec.get("higher_is_better", False)} if "metric" in spec else dict(spec) for spec in guardrails]


def set_baseline_config(experiment, config, *, by=None):
    """Replace the baseline config. Raises Locked once the baseline ran, ValidationFailed for bad values."""
    check_unlocked(experiment, "baseline config")
    steps = set(experiment.inference_steps.values_list("external_id", flat=True))
    overrides.validate_config(config, steps)
    missing = steps - set(config)
    config = {**{step: {} for step in missing}, **config}
    with transaction.atomic():
        locked = Experiment.objects.select_for_update().filter(pk=experiment.pk, locked_at__isnull=True).exists()
        if not locked:
            raise Locked("The baseline config is locked since the baseline ran.")
        baseline = experiment.variants.get(parent__isnull=True)
        baseline.config = config
        baseline.save(update_fields=["config"])
    return baseline


def variant_changes(variant):
    """The (step, parameter, value) changes from the root down to `variant`."""
    chain = []
    node = variant
    while node is not None and node.parent_id is not None:
        if not node.is_control:  # the control changes nothing
            chain.append((node.inference_step.external_id, node.parameter, node.value))
        node = node.parent
    return list(reversed(chain))


def variant_effective_config(variant, baseline_config=None):
    if baseline_config is None:
        baseline_config = variant.experiment.variants.get(parent__isnull=True).config or {}
    return overrides.effective_config(baseline_config, variant_changes(variant))


def default_variant_name(step, parameter, value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        shown = overrides.written(value)
    else:
        shown = value if not isinstance(value, str) or len(value) <= 30 else value[:27] + "…"
    return f"{step} {parameter} {shown}"


def create_variant(experiment, *, parent, inference_step, parameter, value, name="", by=None):
    """Branch a variant from `parent` changing one parameter of one in-scope step.

    Raises ValidationFailed for an unknown step or parameter, a value out of range
    or a value equal to the inherited one; Conflict before the baseline has results
    or once the experiment is completed or archived.
    """
    if not experiment.can_branch():
        raise Conflict(f"Variants can be created once the baseline has results (status is {experiment.status}).")
    if parent is None or parent.experiment_id != experiment.pk:
        raise ValidationFailed({"parent": "Must be a variant of this experiment."})
    step = experiment.inference_steps.filter(external_id=inference_step).first()
    if step is None:
        raise ValidationFailed({"inference_step": f"{inference_step!r} is not an inference step in this experiment's scope."})
    overrides.validate_value(parameter, value)
    inherited = overrides.inherited_value(experiment.baseline.config or {}, variant_changes(parent), step.external_id, parameter)
    # 0.3 == 0.3 and 1 == 1.0: a number equal to the inherited one changes nothing.
    if inherited is not None and inherited == value:
        raise ValidationFailed({"value": f"{value!r} is the value {parameter} already has here; a variant must change something."})
    name = (name or "").strip() or default_variant_name(step.external_id, parameter, value)
    return Variant.objects.create(
        experiment=experiment, parent=parent, name=name[:200], inference_step=step, parameter=parameter, value=value
    )


def create_control_variant(experiment, *, name="", by=None):
    """Add the control (SPEC §3): a child of the baseline changing nothing, to measure the
    noise floor. At most one per experiment; Conflict when there is one or variants cannot be
    created now."""
    if not experiment.can_branch():
        raise Conflict(f"Variants can be created once the baseline has results (status is {experiment.status}).")
    name = (name or "").strip()[:200] or "control (baseline again)"
    try:
        with transaction.atomic():
            return Variant.objects.create(experiment=experiment, parent=experiment.baseline, name=name, is_control=True)
    except IntegrityError:
        raise Conflict("This experiment already has a control variant.") from None


def delete_variant(variant):
    """Delete a variant that has no runs and no children; raise Conflict otherwise. Its
    finished dry runs, which are never results, go with it; an active one blocks it."""
    if variant.is_baseline:
        raise Conflict("The baseline cannot be deleted.")
    has_children = Variant.objects.filter(parent=OuterRef("pk"))
    has_runs = Run.objects.filter(variant=OuterRef("pk")).exclude(
        dry_run=True, status__in=[RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED]
    )
    with transaction.atomic():
        deletable = (
            Variant.objects.select_for_update()
            .filter(pk=variant.pk)
            .annotate(has_children=Exists(has_children), has_runs=Exists(has_runs))
            .filter(has_children=False, has_runs=False)
        )
        if not deletable.exists():
            raise Conflict("A variant with runs (or an active dry run) or children cannot be deleted.")
        Run.objects.filter(variant=variant, dry_run=True).delete()
        Variant.objects.filter(pk=variant.pk).delete()


def reopen_experiment(experiment, *, by=None):
    """baseline_failed → baseline_pending, unlocking the scope and baseline config."""
    with transaction.atomic():
        apply_transition(experiment, State.BASELINE_PENDING, by=by, locked_at=None)
    return experiment


def complete_experiment(experiment, *, winner=None, by=None):
    """baseline_complete/idle → completed, optionally naming a winner with a succeeded run."""
    if winner is not None:
        if winner.experiment_id != experiment.pk:
            raise ValidationFailed({"winner": "Must be a variant of this experiment."})
        if not winner.runs.real().filter(status=RunStatus.SUCCEEDED).exists():
            raise ValidationFailed({"winner": "The winner must have a succeeded run."})
    with transaction.atomic():
        detail = {"winner": str(winner.pk) if winner else None, "winner_name": winner.name if winner else None}
        apply_transition(experiment, State.COMPLETED, by=by, detail=detail, winner=winner, completed_at=timezone.now())
        emit.experiment_completed(experiment)
    return experiment


def archive_experiment(experiment, *, by=None):
    """Any status but the running ones → archived (final)."""
    with transaction.atomic():
        apply_transition(experiment, State.ARCHIVED, by=by)
    return experiment


def delete_experiment(experiment):
    """Delete an experiment with its variants, runs and tests; refused (Conflict) while a run is active."""
    with transaction.atomic():
        locked = Experiment.objects.select_for_update().filter(pk=experiment.pk).first()
        if locked is None:
            return
        if locked.is_running():
            raise Conflict("The experiment is running; cancel its run first.", status=locked.status)
        # Runs and parents are PROTECTed against deleting a variant alone, so clear the
        # tree explicitly: runs first, then variants leaves first.
        Run.objects.filter(experiment=locked).delete()
        Experiment.objects.filter(pk=locked.pk).update(winner=None)
        variants = Variant.objects.filter(experiment=locked)
        while variants.exists():
            variants.filter(children__isnull=True).delete()
        locked.delete()
