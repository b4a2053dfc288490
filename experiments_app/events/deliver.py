"""Sending one event delivery (SPEC §4): signed and guarded like a test delivery, retried by
the same policy (runs/policy.py), every attempt logged, and an endpoint that keeps failing
disabled with its reason.

A delivery is claimed by a conditional update of its due time, so the task that a commit
woke, a retry's countdown and the sweep may all try it: exactly one sends each attempt.
"""

import logging
import time
from datetime import UTC, datetime, timedelta

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from experiments_app import webhooks
from experiments_app.events.emit import wake_sender
from experiments_app.models import DeliveryStatus, EventAttempt, EventDelivery, EventEndpoint
from experiments_app.runs import policy

logger = logging.getLogger(__name__)


def claim(delivery_id, now):
    """Take the delivery for one attempt if it is pending and due; True if this caller got it."""
    lease = now + timedelta(seconds=settings.EVENT_TIMEOUT_SECONDS + 30)
    return bool(
        EventDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now).update(next_attempt_at=lease)
    )


def post(url, secret, msg_id, body):
    """POST `body` once. Returns (status_code | None, retry_after | None, error, blocked)."""
    try:
        target = webhooks.resolve_target(url)
    except webhooks.BlockedAddress as blocked:
        return None, None, str(blocked), True
    headers = webhooks.signed_headers(secret, msg_id, body)
    timeout = settings.EVENT_TIMEOUT_SECONDS
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            response = client.post(target.url, content=body, **webhooks.request_options(target, headers))
    except httpx.TimeoutException:
        return None, None, f"Timed out after {timeout:g}s.", False
    except httpx.HTTPError as failure:
        return None, None, f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__, False
    code = response.status_code
    error = "" if 200 <= code < 300 else f"HTTP {code} from the endpoint."
    if 300 <= code < 400:
        error = f"HTTP {code}: redirects are not followed."
    return code, response.headers.get("retry-after"), error, False


def deliver(delivery_id):
    """Make the next attempt of a delivery if it is pending and due. Returns the delivery's
    status afterwards, or None when there was nothing to do (not due, done, or another sender has it)."""
    now = timezone.now()
    if not claim(delivery_id, now):
        return None
    delivery = EventDelivery.objects.select_related("event", "endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    if not endpoint.is_enabled and not delivery.manual:
        finish(delivery, DeliveryStatus.FAILED, f"Not sent: the endpoint is disabled ({endpoint.disabled_reason}).", now)
        return DeliveryStatus.FAILED
    body = webhooks.encode(delivery.event.payload)
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    code, retry_after, error, blocked = post(endpoint.url, endpoint.secret, delivery.event.webhook_id, body)
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    return record_attempt(delivery, started_at, code, retry_after, error, blocked, duration_ms)


def record_attempt(delivery, started_at, code, retry_after, error, blocked, duration_ms):
    """Log the attempt and move the delivery on: delivered, retried later, or failed for good."""
    now = timezone.now()
    number = delivery.attempts + 1
    attempt = EventAttempt(delivery=delivery, number=number, started_at=started_at, status_code=code, duration_ms=duration_ms, error=error)
    with transaction.atomic():
        delivery.attempts = number
        if not error:
            attempt.save()
            finish(delivery, DeliveryStatus.DELIVERED, "", now)
            return DeliveryStatus.DELIVERED
        retryable = not blocked and (code is None or policy.is_retryable_status(code))
        if retryable and number < settings.WEBHOOK_MAX_ATTEMPTS:
            delay = policy.retry_delay(number, policy.parse_retry_after(retry_after))
            attempt.retry_at = now + timedelta(seconds=delay)
            attempt.save()
            delivery.next_attempt_at, delivery.last_error = attempt.retry_at, error
            delivery.save(update_fields=["attempts", "next_attempt_at", "last_error"])
            wake_sender(delivery.pk, countdown=delay)
            return DeliveryStatus.PENDING
        attempt.save()
        reason = error + (f" Gave up after {number} attempts." if retryable else " Not retried.")
        finish(delivery, DeliveryStatus.FAILED, reason, now)
        return DeliveryStatus.FAILED


def finish(delivery, status, error, now):
    delivery.status, delivery.last_error, delivery.completed_at, delivery.next_attempt_at = status, error, now, None
    delivery.save(update_fields=["status", "last_error", "completed_at", "next_attempt_at", "attempts"])
    if status == DeliveryStatus.DELIVERED:
        EventEndpoint.objects.filter(pk=delivery.endpoint_id).update(failed_deliveries=0, failing_since=None)
    elif delivery.attempts:
        count_failure(delivery.endpoint_id, delivery.created_at, now)


def count_failure(endpoint_id, since, now):
    """One more delivery given up on: disable the endpoint after EVENT_DISABLE_AFTER_FAILURES in a
    row, or when it has failed without a success for EVENT_DISABLE_AFTER_DAYS."""
    with transaction.atomic():
        endpoint = EventEndpoint.objects.select_for_update().get(pk=endpoint_id)
        endpoint.failed_deliveries = F("failed_deliveries") + 1
        endpoint.failing_since = endpoint.failing_since or since
        endpoint.save(update_fields=["failed_deliveries", "failing_since", "updated_at"])
        endpoint.refresh_from_db()
        if endpoint.disabled_at is not None:
            return
        limit, days = settings.EVENT_DISABLE_AFTER_FAILURES, settings.EVENT_DISABLE_AFTER_DAYS
        reason = ""
        if endpoint.failed_deliveries >= limit:
            reason = f"Disabled after {endpoint.failed_deliveries} failed deliveries in a row."
        elif now - endpoint.failing_since >= timedelta(days=days):
            reason = f"Disabled after failing for {days:g} days without a successful delivery (since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC)."
        if reason:
            EventEndpoint.objects.filter(pk=endpoint_id, disabled_at__isnull=True).update(disabled_at=now, disabled_reason=reason)
            logger.warning("event endpoint %s disabled: %s", endpoint_id, reason)


def due_deliveries(now=None, limit=500):
    """Ids of pending deliveries whose attempt is due (their wake-up was lost, or a retry fell due)."""
    now = now or timezone.now()
    return list(
        EventDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
