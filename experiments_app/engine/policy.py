"""Delivery policy as pure functions: which answers are retried and how long to wait."""

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from django.conf import settings

# Each can be set in settings (tests shrink them); these are the production values.
DEFAULTS = {
    "WEBHOOK_MAX_ATTEMPTS": 5,  # SPEC: at least 4 attempts in all
    "WEBHOOK_RETRY_BASE_SECONDS": 2.0,  # first retry within 5 s, jitter included
    "WEBHOOK_RETRY_MAX_SECONDS": 60.0,  # the doubling stops here
    "WEBHOOK_RETRY_AFTER_MAX_SECONDS": 120.0,  # a Retry-After above this is capped
    "DISPATCH_LEASE_SECONDS": 30.0,  # how long a dispatcher owns an application between renewals
    "DISPATCH_IDLE_SECONDS": 15.0,  # a dispatcher waits this long for retries falling due before leaving them to the sweeper
    # a claimed test stays its dispatcher's for 2 × timeout_seconds plus this; past that
    # (its worker died mid-request) another dispatcher takes it back
    "DISPATCH_TEST_LEASE_MARGIN_SECONDS": 15.0,
    "RESULT_MAX_BYTES": 5 * 1024 * 1024,
}

RETRYABLE_STATUSES = frozenset({408, 429})


def setting(name):
    return getattr(settings, name, DEFAULTS[name])


def is_retryable_status(status_code):
    return status_code in RETRYABLE_STATUSES or 500 <= status_code <= 599


def parse_retry_after(value, now=None):
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def retry_delay(attempt, retry_after=None, *, rng=random.random):
    """Seconds before attempt `attempt + 1`, after `attempt` failed (attempt counts from 1).

    Exponential: base × 2^(attempt-1) with ±50 % jitter, capped at the maximum; a
    Retry-After from the application wins when it asks for longer (itself capped).
    """
    base = float(setting("WEBHOOK_RETRY_BASE_SECONDS"))
    cap = float(setting("WEBHOOK_RETRY_MAX_SECONDS"))
    delay = min(cap, base * 2 ** (attempt - 1)) * (0.5 + rng())
    delay = min(delay, cap)
    if retry_after is not None:
        delay = max(delay, min(float(retry_after), float(setting("WEBHOOK_RETRY_AFTER_MAX_SECONDS"))))
    return delay
