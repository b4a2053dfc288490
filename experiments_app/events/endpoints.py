"""What a team's admins do with event endpoints: create, change, delete, rotate, redeliver."""

from django.db import transaction
from django.utils import timezone

from experiments_app import webhooks
from experiments_app.errors import ValidationFailed
from experiments_app.events.emit import wake_sender
from experiments_app.models import Application, EventDelivery, EventEndpoint, EventType

MAX_DESCRIPTION = 2000


def check_url(url):
    """The SSRF rules of an application's webhook_url, reported on `url`."""
    if not isinstance(url, str) or not url or len(url) > 2000:
        raise ValidationFailed({"url": "Must be an http(s) URL of at most 2,000 characters."})
    try:
        webhooks.check_webhook_url(url)
    except ValidationFailed as error:
        raise ValidationFailed({"url": error.errors["webhook_url"]}) from None


def clean(team, data, *, partial):
    """Checked fields of an endpoint; raises ValidationFailed naming each bad one."""
    errors, fields = {}, {}
    if "url" in data or not partial:
        try:
            check_url(data.get("url"))
            fields["url"] = data["url"]
        except ValidationFailed as error:
            errors.update(error.errors)
    if "events" in data or not partial:
        events = data.get("events")
        if not isinstance(events, list) or not events or any(kind not in EventType.values for kind in events):
            errors["events"] = f"Must be a non-empty list of: {', '.join(EventType.values)}."
        else:
            fields["events"] = list(dict.fromkeys(events))
    if "application" in data:
        application_id = data["application"]
        if application_id is None:
            fields["application"] = None
        else:
            application = Application.objects.filter(team=team, pk=application_id).first()
            if application is None:
                errors["application"] = "No such application in this team."
            fields["application"] = application
    if "description" in data:
        description = data["description"] or ""
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            errors["description"] = f"Must be a string of at most {MAX_DESCRIPTION:,} characters."
        fields["description"] = description
    if errors:
        raise ValidationFailed(errors)
    return fields


def create_endpoint(team, data):
    """A new endpoint of `team` with its own `whsec_` secret. Raises ValidationFailed."""
    fields = clean(team, data, partial=False)
    with transaction.atomic():
        return EventEndpoint.objects.create(team=team, **fields)


def update_endpoint(endpoint, data):
    """Change url, events, application, description; `enabled: true` re-enables a disabled
    endpoint (its failure streak starts over), `enabled: false` disables it by hand."""
    fields = clean(endpoint.team, data, partial=True)
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            raise ValidationFailed({"enabled": "Must be true or false."})
        if data["enabled"]:
            fields.update(disabled_at=None, disabled_reason="", failed_deliveries=0, failing_since=None)
        elif endpoint.is_enabled:
            fields.update(disabled_at=timezone.now(), disabled_reason="Disabled by hand.")
    with transaction.atomic():
        for name, value in fields.items():
            setattr(endpoint, name, value)
        endpoint.save()
    return endpoint


def delete_endpoint(endpoint):
    with transaction.atomic():
        endpoint.delete()


def rotate_secret(endpoint):
    """A new secret; the old one no longer signs anything. Returns the endpoint."""
    with transaction.atomic():
        endpoint.rotate_secret()
    return endpoint


def redeliver(delivery):
    """Send the delivery's event to its endpoint again, by hand: a new delivery (same event,
    same `webhook-id`, so receivers can de-duplicate) with a fresh retry budget, sent once
    this transaction commits, even to a disabled endpoint. Returns the new delivery."""
    with transaction.atomic():
        again = EventDelivery.objects.create(event=delivery.event, endpoint=delivery.endpoint, manual=True, next_attempt_at=timezone.now())
        wake_sender(again.pk)
    return again
