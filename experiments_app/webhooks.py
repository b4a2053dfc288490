"""Outbound webhooks (SPEC §4): Standard Webhooks signing, the payloads, the SSRF guard and ping.

The dispatcher in `experiments_app.runs` sends test deliveries; this module holds
what one request needs and nothing about the database beyond reading rows it is given.
"""

import base64
import hashlib
import hmac
import ipaddress
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings

from experiments_app import jsonlimits
from experiments_app.errors import ValidationFailed

SIGNATURE_TOLERANCE_SECONDS = 5 * 60
USER_AGENT = "experiments-dashboard-webhooks/1"


class BlockedAddress(Exception):
    """The webhook host resolves to an address we refuse to connect to (SSRF guard)."""


# --- signing -----------------------------------------------------------------


def secret_key(secret):
    """The HMAC key of a `whsec_...` secret: the base64-decoded part after the prefix."""
    if secret.startswith("whsec_"):
        secret = secret[len("whsec_") :]
    return base64.b64decode(secret + "==")


def sign(secret, msg_id, timestamp, body):
    """The `webhook-signature` value (`v1,<base64 HMAC-SHA256>`) for one message."""
    if isinstance(body, str):
        body = body.encode()
    signed = f"{msg_id}.{int(timestamp)}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret, msg_id, body, *, timestamp=None):
    """The three Standard Webhooks headers plus content type for `body` (bytes).

    `secret` may be a list (during a rotation): `webhook-signature` then carries one signature
    per secret, space-separated, as the specification allows; a verifier accepts any."""
    timestamp = int(time.time() if timestamp is None else timestamp)
    secrets_now = [secret] if isinstance(secret, str) else list(secret)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(each, msg_id, timestamp, body) for each in secrets_now),
    }


def verify_signature(secret, headers, body):
    """True when `headers` carry a valid, fresh (±5 min) Standard Webhooks signature of `body`,
    made with `secret` (or any of a list of secrets: the current and, during a rotation, the previous).

    `headers` is any mapping (Django's request.headers, a dict); names are case-insensitive.
    """
    if not isinstance(secret, str):
        return any(verify_signature(each, headers, body) for each in secret if each)
    lowered = {str(key).lower(): value for key, value in dict(headers).items()}
    msg_id = lowered.get("webhook-id")
    timestamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (msg_id and timestamp and signatures and secret):
        return False
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(time.time() - stamp) > SIGNATURE_TOLERANCE_SECONDS:
        return False
    try:
        expected = sign(secret, msg_id, stamp, body).split(",", 1)[1]
    except (ValueError, TypeError):
        return False
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            return True
    return False


# --- payloads ----------------------------------------------------------------


_iso_second = (None, "")  # (whole second, its text): one strftime a second, not one per request


def iso_now():
    global _iso_second
    now = datetime.now(UTC)
    second = int(now.timestamp())
    if _iso_second[0] != second:
        _iso_second = (second, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _iso_second[1]


def callback_url(test_id):
    return f"{settings.PUBLIC_URL.rstrip('/')}/api/v1/tests/{test_id}/result/"


def run_envelope(run):
    """The part of every test payload of `run` that does not depend on the test (SPEC §4)."""
    variant = run.variant
    experiment = run.experiment
    return {
        "id": str(experiment.pk),
        "name": experiment.name,
        "variant": {
            "id": str(variant.pk),
            "name": variant.name,
            "isBaseline": variant.is_baseline,
            "parentId": str(variant.parent_id) if variant.parent_id else None,
            "change": variant.change(),
        },
        "overrides": run.config,
    }


def build_test_payload(test, envelope):
    """The `experiment.test` body of SPEC §4 for one test, given its run's envelope."""
    return {
        "type": "experiment.test",
        "timestamp": iso_now(),
        "data": {
            "testId": str(test.pk),
            "repetition": test.repetition,
            "callbackUrl": callback_url(test.pk),
            "task": {
                "id": str(test.task_id) if test.task_id else None,
                "externalId": test.task_external_id,
                "input": test.task_input,
            },
            "experiment": envelope,
        },
    }


def ping_payload():
    return {"type": "webhook.ping", "timestamp": iso_now(), "data": {}}


def encode(payload):
    return jsonlimits.compact(payload)


# --- SSRF guard --------------------------------------------------------------


# Cloud metadata services: never a webhook target, even for a host in WEBHOOK_ALLOWED_HOSTS.
# Link-local 169.254.0.0/16 holds AWS, GCP, Azure, OCI and DigitalOcean's (and ECS's 169.254.170.2);
# fd00:ec2::254 is AWS's IPv6 one and 100.100.100.200 Alibaba Cloud's.
METADATA_NETWORKS = tuple(
    ipaddress.ip_network(network) for network in ("169.254.0.0/16", "fd00:ec2::254/128", "100.100.100.200/32", "192.0.0.192/32")
)
# NAT64 prefixes (RFC 6052 well-known, RFC 8215 local use): the last 32 bits are an IPv4 address.
NAT64_NETWORKS = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(ip):
    """The IPv4 addresses an IPv6 address stands for: mapped (::ffff:a.b.c.d), IPv4-compatible
    (::a.b.c.d), 6to4 (2002:AABB:CCDD::), NAT64 (64:ff9b::a.b.c.d) and Teredo (both ends)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if any(ip in network for network in NAT64_NETWORKS) or (ip in IPV4_COMPATIBLE and int(ip) > 1):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def is_metadata_address(address):
    ip = ipaddress.ip_address(address)
    return any(candidate in network for candidate in (ip, *embedded_ipv4(ip)) for network in METADATA_NETWORKS)


def is_refused_address(address):
    """Not a public unicast address, in any of its spellings: private, loopback, link-local,
    shared (100.64.0.0/10, carrier-grade NAT), reserved, multicast, unspecified."""
    ip = ipaddress.ip_address(address)
    # A 6to4 or NAT64 address is a translation: where it leads is its IPv4 address, judged alone
    # (Python 3.13 counts all of 2002::/16 as not global, 3.11 does not; the IPv4 decides either way).
    translated = isinstance(ip, ipaddress.IPv6Address) and (ip.sixtofour is not None or any(ip in network for network in NAT64_NETWORKS))
    own = () if translated else (ip,)
    return any(not candidate.is_global or candidate.is_multicast for candidate in (*own, *embedded_ipv4(ip)))


def address_refusal(host, address):
    """Why `host`, resolved to `address`, may not be a webhook target; None when it may.

    The one rule, applied when a URL is saved and again after each resolution at send time."""
    if is_metadata_address(address):
        return f"The host {host!r} resolves to a cloud metadata address ({address}); never allowed, not even through WEBHOOK_ALLOWED_HOSTS."
    if is_refused_address(address) and not is_allowed_host(host):
        return (
            f"The host {host!r} resolves to a private, loopback or link-local address ({address}); "
            "add it to WEBHOOK_ALLOWED_HOSTS to allow it."
        )
    return None


def is_allowed_host(host):
    allowed = {item.lower().strip("[]") for item in getattr(settings, "WEBHOOK_ALLOWED_HOSTS", [])}
    return host.lower().strip("[]") in allowed


@dataclass(frozen=True)
class Target:
    """Where to connect for a webhook URL: a checked IP, plus the name for Host and TLS."""

    url: str  # the URL with the host replaced by the checked IP
    host_header: str
    sni_hostname: str | None


def split_url(url):
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BlockedAddress("The URL must start with http:// or https://.")
    if not parts.hostname:
        raise BlockedAddress("The URL has no host.")
    if "@" in parts.netloc:
        # Credentials in the URL would be sent to the application and logged with it.
        raise BlockedAddress("The URL may not contain a user name or password (user:pass@host).")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BlockedAddress("The URL has an invalid port.") from None
    return parts, parts.hostname, port


def resolve(host, port):
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as error:
        raise BlockedAddress(f"The host {host!r} could not be resolved ({error}).") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise BlockedAddress(f"The host {host!r} could not be resolved.")
    return addresses


def resolve_target(url):
    """Resolve `url`'s host once and return a Target pinned to a checked address.

    Connecting to the checked IP (not the name again) closes the window where DNS
    could change between check and connect. Raises BlockedAddress.
    """
    parts, host, port = split_url(url)
    addresses = resolve(host, port)
    for address in addresses:
        refusal = address_refusal(host, address)
        if refusal:
            raise BlockedAddress(refusal)
    address = addresses[0]
    shown = f"[{address}]" if ":" in address else address
    netloc = f"{shown}:{port}"
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    host_header = parts.netloc
    return Target(url=pinned, host_header=host_header, sni_hostname=host if parts.scheme == "https" else None)


def check_webhook_url(url):
    """Refuse (ValidationFailed on `webhook_url`) a URL with a bad scheme, an unresolvable
    host, or a host resolving to a private/loopback/link-local address not in
    WEBHOOK_ALLOWED_HOSTS. Returns None."""
    try:
        resolve_target(url)
    except BlockedAddress as error:
        raise ValidationFailed({"webhook_url": str(error)}) from None


# --- ping --------------------------------------------------------------------


def request_options(target, headers):
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
    return {"headers": {**headers, "host": target.host_header}, "extensions": extensions}


def ping(application):
    """Send one signed `webhook.ping` to the application.

    Returns {"status_code": int|None, "duration_ms": float, "ok": bool, "error": str}; never raises
    for network trouble (the error is in the answer).
    """
    body = encode(ping_payload())
    msg_id = "msg_ping_" + base64.b32encode(hashlib.sha256(body).digest()[:10]).decode().lower()
    headers = signed_headers(application.signing_secrets(), msg_id, body)
    started = time.perf_counter()
    status_code, error = None, ""
    try:
        target = resolve_target(application.webhook_url)
        timeout = min(application.timeout_seconds, 30)
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.post(target.url, content=body, **request_options(target, headers))
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except BlockedAddress as blocked:
        error = str(blocked)
    except httpx.TimeoutException:
        error = f"Timed out after {application.timeout_seconds}s."
    except httpx.HTTPError as failure:
        error = f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    return {"status_code": status_code, "duration_ms": duration_ms, "ok": not error, "error": error}
