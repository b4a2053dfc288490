"""Delivery policy: which answers are retried and how long to wait. Its values are settings (dashboard/settings.py)."""

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from django.conf import settings

RETRYABLE_STATUSES = frozenset({408, 429})


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
    base = float(settings.WEBHOOK_RETRY_BASE_SECONDS)
    cap = float(settings.WEBHOOK_RETRY_MAX_SECONDS)
    delay = min(cap, base * 2 ** (attempt - 1)) * (0.5 + rng())
    delay = min(delay, cap)
    if retry_after is not None:
        delay = max(delay, min(float(retry_after), float(settings.WEBHOOK_RETRY_AFTER_MAX_SECONDS)))
    return delay
