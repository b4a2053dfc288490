"""Every allowed transition of SPEC §3, and a refusal for every other pair."""

import itertools

import pytest

from experiments_app import states
from experiments_app.states import State

S = State
ALLOWED = {
    (S.DRAFT, S.BASELINE_PENDING),
    (S.BASELINE_PENDING, S.DRAFT),
    (S.BASELINE_PENDING, S.RUNNING_BASELINE),
    (S.RUNNING_BASELINE, S.BASELINE_COMPLETE),
    (S.RUNNING_BASELINE, S.BASELINE_FAILED),
    (S.BASELINE_FAILED, S.RUNNING_BASELINE),
    (S.BASELINE_FAILED, S.BASELINE_PENDING),
    (S.BASELINE_COMPLETE, S.RUNNING_VARIANT),
    (S.IDLE, S.RUNNING_VARIANT),
    (S.RUNNING_VARIANT, S.IDLE),
    (S.BASELINE_COMPLETE, S.COMPLETED),
    (S.IDLE, S.COMPLETED),
    (S.DRAFT, S.ARCHIVED),
    (S.BASELINE_PENDING, S.ARCHIVED),
    (S.BASELINE_COMPLETE, S.ARCHIVED),
    (S.BASELINE_FAILED, S.ARCHIVED),
    (S.IDLE, S.ARCHIVED),
    (S.COMPLETED, S.ARCHIVED),
}
ALL_PAIRS = list(itertools.product(State, State))


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_check_allows_transition(current, target):
    assert states.check(current, target)
    assert states.is_allowed(current, target)


@pytest.mark.parametrize(("current", "target"), [pair for pair in ALL_PAIRS if pair not in ALLOWED])
def test_check_refuses_transition(current, target):
    with pytest.raises(states.InvalidTransition) as caught:
        states.check(current, target)
    assert caught.value.current == current
    assert caught.value.code == "invalid_transition"


def test_table_holds_exactly_the_spec_transitions():
    assert set(states.TRANSITIONS) == ALLOWED


def test_archived_is_final():
    assert not any(source == S.ARCHIVED for source, _ in states.TRANSITIONS)


def test_running_states_cannot_be_archived():
    assert not states.is_allowed(S.RUNNING_BASELINE, S.ARCHIVED)
    assert not states.is_allowed(S.RUNNING_VARIANT, S.ARCHIVED)


def test_baseline_never_runs_again_once_complete():
    assert not states.is_allowed(S.BASELINE_COMPLETE, S.RUNNING_BASELINE)
    assert not states.is_allowed(S.IDLE, S.RUNNING_BASELINE)


def test_transitions_are_named_after_verbs():
    assert states.check(S.BASELINE_FAILED, S.BASELINE_PENDING) == "reopen"
    assert states.check(S.IDLE, S.COMPLETED) == "complete"
    assert states.check(S.COMPLETED, S.ARCHIVED) == "archive"
    assert states.check(S.BASELINE_PENDING, S.RUNNING_BASELINE) == "run_baseline"


def test_sources_of_running_variant():
    assert set(states.sources_of(S.RUNNING_VARIANT)) == {S.BASELINE_COMPLETE, S.IDLE}


def test_check_refuses_unknown_status_value():
    with pytest.raises(ValueError):
        states.check("nonsense", S.DRAFT)
