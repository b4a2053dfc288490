"""The experiment lifecycle of SPEC §3: a transition table and one checking function. No ORM."""

from django.db import models

from experiments_app.errors import Conflict


class State(models.TextChoices):
    DRAFT = "draft"
    BASELINE_PENDING = "baseline_pending"
    RUNNING_BASELINE = "running_baseline"
    BASELINE_COMPLETE = "baseline_complete"
    BASELINE_FAILED = "baseline_failed"
    RUNNING_VARIANT = "running_variant"
    IDLE = "idle"
    COMPLETED = "completed"
    ARCHIVED = "archived"


RUNNING = frozenset({State.RUNNING_BASELINE, State.RUNNING_VARIANT})
# Where the scope (steps, tasks, baseline config) may change, and where variants may be created.
SCOPE_EDITABLE = frozenset({State.DRAFT, State.BASELINE_PENDING})
BRANCHABLE = frozenset({State.BASELINE_COMPLETE, State.RUNNING_VARIANT, State.IDLE})

# (from, to) -> verb. Anything not listed is refused.
TRANSITIONS = {
    (State.DRAFT, State.BASELINE_PENDING): "fill_scope",
    (State.BASELINE_PENDING, State.DRAFT): "empty_scope",
    (State.BASELINE_PENDING, State.RUNNING_BASELINE): "run_baseline",
    (State.RUNNING_BASELINE, State.BASELINE_COMPLETE): "pass_baseline",
    (State.RUNNING_BASELINE, State.BASELINE_FAILED): "fail_baseline",
    (State.BASELINE_FAILED, State.RUNNING_BASELINE): "retry_baseline",
    (State.BASELINE_FAILED, State.BASELINE_PENDING): "reopen",
    (State.BASELINE_COMPLETE, State.RUNNING_VARIANT): "run_variant",
    (State.IDLE, State.RUNNING_VARIANT): "run_variant",
    (State.RUNNING_VARIANT, State.IDLE): "finish_variant",
    (State.BASELINE_COMPLETE, State.COMPLETED): "complete",
    (State.IDLE, State.COMPLETED): "complete",
    **{(source, State.ARCHIVED): "archive" for source in State if source not in RUNNING and source != State.ARCHIVED},
}


class InvalidTransition(Conflict):
    """A lifecycle change the table does not allow (409, code `invalid_transition`)."""

    code = "invalid_transition"

    def __init__(self, current, target, detail=None):
        self.current = State(current)
        self.target = State(target)
        super().__init__(detail or f"Cannot go from {self.current.value} to {self.target.value}.")


def is_allowed(current, target):
    return (State(current), State(target)) in TRANSITIONS


def check(current, target):
    """Return the verb of the transition current → target; raise InvalidTransition if it is refused."""
    try:
        return TRANSITIONS[(State(current), State(target))]
    except KeyError:
        raise InvalidTransition(current, target) from None


def sources_of(target):
    """The states from which `target` may be reached (for conditional updates)."""
    return [source for (source, to) in TRANSITIONS if to == State(target)]
