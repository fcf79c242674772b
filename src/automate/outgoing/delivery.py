"""Deliver claimed outgoing-webhook items: sign, send, record, settle.

:func:`automate.dispatch.process_batch` hands the items whose connector key is
:data:`~automate.outgoing.api.OUTGOING_KEY` to :func:`deliver_batch` instead of workflow
matching. Each item is one (message, endpoint) delivery:

* the request goes through :func:`automate_core.http.ssrf_safe_request` with redirects
  off, a total deadline and a response-size cap; the address rules (private, loopback,
  metadata addresses refused unless allow-listed, DNS pinned) are the client's;
* 2xx is success; 410 disables the endpoint; any other answer, a timeout, a connection
  error or a response over the cap is retried on ``OUTGOING_WEBHOOK_RETRY_SCHEDULE``,
  then dead-lettered; an address the SSRF rules refuse is dead-lettered at once;
* an endpoint failing continuously for ``OUTGOING_WEBHOOK_DISABLE_AFTER_SECONDS`` is
  disabled and :data:`~automate.outgoing.signals.endpoint_disabled` sent;
* the deliveries of a batch run in up to ``OUTGOING_WEBHOOK_THREADS`` threads.

A worker killed mid-delivery leaves the item leased; when the lease expires another worker
sends it again with the same ``webhook-id`` (the message's), which is how the receiver
recognises the duplicate.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.db import connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from automate.conf import settings as app_settings
from automate.outgoing.api import OUTGOING_KEY
from automate.outgoing.models import (
    DeliveryAttempt,
    EndpointSecret,
    OutgoingMessage,
    WebhookEndpoint,
)
from automate.outgoing.signals import endpoint_disabled
from automate.outgoing.signing import signature_header
from automate_core import redaction
from automate_core.http import (
    ResponseTooLarge,
    SSRFError,
    shared_safe_client,
    ssrf_safe_request,
)
from automate_core.outbox import queue
from automate_core.outbox.models import OutboxItem, OutboxStatus
from automate_core.providers.errors import AutomateError
from automate_core.throttling import RateLimiter
from automate_core.tracing import trace

__all__ = [
    "EXCERPT_CHARS",
    "Target",
    "deliver_batch",
    "deliver_item",
    "is_delivery",
    "load_targets",
    "retry_delay",
]

logger = logging.getLogger("automate.outgoing")

#: Characters of a response body kept on a delivery attempt (after redaction).
EXCERPT_CHARS = 1000
#: What a pass reports besides outbox statuses.
LOST, RELEASED, POSTPONED, WAITING = "lost", "released", "rate_limited", "waiting"
#: Seconds before a delivery to an ``ordered`` endpoint looks again at the one before it.
ORDER_RECHECK = 1.0


def is_delivery(item: OutboxItem) -> bool:
    return item.connector_key == OUTGOING_KEY


# -- A batch -----------------------------------------------------------------------------


def deliver_batch(
    items: Sequence[OutboxItem], *, should_stop: Callable[[], bool] | None = None
) -> dict[str, int]:
    """Deliver claimed items, several at once; return how many ended in each state.

    The batch's messages, endpoints and secrets are read with one query each; then each
    thread takes the next item when it is done with one, so a slow endpoint holds one
    thread, never the batch.
    """
    counts: dict[str, int] = {}
    held = queue.held(items)
    if len(held) < len(items):
        counts[LOST] = len(items) - len(held)
    ours = [item for item in items if item.pk in held]
    if not ours:
        return counts
    targets = load_targets(ours)
    lock = threading.Lock()
    todo = iter(ours)

    def record(status: str) -> None:
        with lock:
            counts[status] = counts.get(status, 0) + 1

    def next_item() -> OutboxItem | None:
        with lock:
            return next(todo, None)

    def work(own_thread: bool) -> None:
        try:
            while (item := next_item()) is not None:
                if should_stop is not None and should_stop():
                    queue.release(item)
                    record(RELEASED)
                    continue
                record(deliver_item(item, targets.get(item.pk)))
        finally:
            if own_thread:
                connections.close_all()  # this thread's connections only

    threads = min(app_settings.OUTGOING_WEBHOOK_THREADS, len(ours))
    if threads <= 1:
        work(own_thread=False)
        return counts
    pool = [
        threading.Thread(target=work, args=(True,), name=f"automate-webhook-{i}", daemon=True)
        for i in range(threads)
    ]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return counts


@dataclass(frozen=True)
class Target:
    """What one delivery needs: its message, its endpoint (``None`` once deleted) and the
    endpoint's active secrets, sealed."""

    message: OutgoingMessage | None
    endpoint: WebhookEndpoint | None
    secrets: tuple[EndpointSecret, ...] = ()


def load_targets(items: Sequence[OutboxItem]) -> dict[int, Target]:
    """Each item's :class:`Target`, with one query per table for the whole batch."""
    refs = {item.pk: _refs(item) for item in items}
    messages = OutgoingMessage.objects.in_bulk({m for m, _e in refs.values()})
    endpoints = WebhookEndpoint.objects.in_bulk({e for _m, e in refs.values()})
    now = timezone.now()
    active = EndpointSecret.objects.filter(endpoint__in=list(endpoints)).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
    secrets: dict[int, list[EndpointSecret]] = {}
    for secret in active.order_by("-created_at", "-id"):
        secrets.setdefault(secret.endpoint_id, []).append(secret)  # type: ignore[arg-type]
    return {
        pk: Target(messages.get(m), endpoints.get(e), tuple(secrets.get(e, ())))
        for pk, (m, e) in refs.items()
    }


def _refs(item: OutboxItem) -> tuple[int, int]:
    payload = item.payload if isinstance(item.payload, dict) else {}
    return int(payload.get("message") or 0), int(payload.get("endpoint") or 0)


# -- One delivery ------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one request came to."""

    status_code: int | None = None
    excerpt: str = ""
    error_code: str = ""
    error_message: str = ""
    #: False: dead-letter now whatever the schedule says (an address the rules refuse).
    retryable: bool = True

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def deliver_item(item: OutboxItem, target: Target | None = None) -> str:
    """Deliver one leased item and settle it; never raises. Returns its new state.

    ``target`` is what :func:`load_targets` read for it (read here when not given).
    """
    try:
        with trace(item.trace_id):
            if target is None:
                if not queue.held([item]):
                    return LOST
                target = load_targets([item])[item.pk]
            return _deliver(item, target)
    except Exception as exc:  # a bug or a lost database: the item retries later
        logger.exception("delivering outbox item %s failed", item.pk)
        try:
            return str(queue.fail(item, exc, retryable=True))
        except Exception:
            logger.exception("could not settle outbox item %s", item.pk)
            return LOST


def _deliver(item: OutboxItem, target: Target) -> str:
    message, endpoint = target.message, target.endpoint
    if message is None or endpoint is None:
        missing = "message" if message is None else "endpoint"
        return _settle_item(item, OutboxStatus.DEAD, "not_found", f"the {missing} was deleted")
    if not endpoint.enabled:
        reason = f"the endpoint is disabled ({endpoint.disabled_reason or 'by an operator'})"
        return _settle_item(item, OutboxStatus.DEAD, "endpoint_disabled", reason)
    if endpoint.ordered:
        earlier = _earlier_unfinished(item, endpoint)
        if earlier is not None:
            _postpone(item, max(earlier, timezone.now() + timedelta(seconds=ORDER_RECHECK)))
            return WAITING
    rate = endpoint.rate_limit or app_settings.OUTGOING_WEBHOOK_RATE_LIMIT
    if rate:
        limiter = RateLimiter(f"automate.outgoing:{endpoint.pk}", rate)
        if not limiter.allow():
            _postpone(item, limiter.reset_at)
            return POSTPONED
    secrets = [s.value() for s in target.secrets]
    if not secrets:
        return _settle_item(
            item, OutboxStatus.DEAD, "configuration", "the endpoint has no active secret"
        )
    started = time.monotonic()
    outcome = send(endpoint.url, message, secrets)
    duration_ms = int((time.monotonic() - started) * 1000)
    return _settle(item, message, endpoint, outcome, duration_ms)


def body_of(message: OutgoingMessage) -> bytes:
    """The exact bytes :func:`ssrf_safe_request` sends for ``json=message.envelope()``.

    The SSRF-safe client takes a JSON body, not raw bytes, and encodes it with httpx; the
    signature must cover those very bytes, so they come from httpx's own encoder.
    """
    request = httpx.Request("POST", "https://body.invalid/", json=message.envelope())
    return request.read()


def send(url: str, message: OutgoingMessage, secrets: Sequence[str]) -> Outcome:
    """One signed POST of ``message`` to ``url``; every failure becomes an :class:`Outcome`."""
    body = body_of(message)
    timestamp = int(time.time())
    headers = {
        "webhook-id": message.uid,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, message.uid, timestamp, body),
    }
    for secret in secrets:
        redaction.remember(secret)  # never in an error message or a response excerpt
    try:
        response = ssrf_safe_request(
            "POST",
            url,
            json=message.envelope(),
            headers=headers,
            timeout=app_settings.OUTGOING_WEBHOOK_TIMEOUT_SECONDS,
            max_size=app_settings.OUTGOING_WEBHOOK_RESPONSE_MAX_BYTES,
            allow_redirects=False,
            purpose="webhooks",  # AUTOMATE["HTTP_ALLOW_FOR"]["webhooks"] opens networks
            # One guarded client per process: its connections are reused between deliveries.
            client=shared_safe_client(
                purpose="webhooks", max_size=app_settings.OUTGOING_WEBHOOK_RESPONSE_MAX_BYTES
            ),
        )
    except ResponseTooLarge as exc:
        return Outcome(error_code="response_too_large", error_message=exc.message)
    except SSRFError as exc:
        return Outcome(error_code="ssrf_refused", error_message=exc.message, retryable=False)
    except AutomateError as exc:
        return Outcome(error_code=str(exc.code), error_message=exc.message)
    except httpx.HTTPError as exc:
        return Outcome(error_code="connection_error", error_message=f"{type(exc).__name__}: {exc}")
    outcome = Outcome(status_code=response.status_code, excerpt=_excerpt(response))
    if not outcome.succeeded:
        if 300 <= response.status_code < 400:
            outcome.error_code = "redirect"
            outcome.error_message = "redirects are not followed; register the final URL"
        else:
            outcome.error_code = f"http_{response.status_code}"
    return outcome


def _excerpt(response: httpx.Response) -> str:
    text = response.content[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    # Redacted before the cut: a secret cut in two would leave its prefix unmasked.
    return redaction.redact(text)[:EXCERPT_CHARS]


def retry_delay(attempt: int) -> float | None:
    """Seconds to wait after failed attempt number ``attempt`` (1 is the first), with
    jitter; ``None`` when the schedule has no attempt left."""
    schedule = app_settings.OUTGOING_WEBHOOK_RETRY_SCHEDULE or [0]
    if attempt >= len(schedule):
        return None
    jitter = app_settings.OUTGOING_WEBHOOK_RETRY_JITTER
    delay = float(schedule[attempt])
    return max(0.0, delay * random.uniform(1 - jitter, 1 + jitter))


# -- Settling ----------------------------------------------------------------------------


def _settle(
    item: OutboxItem,
    message: OutgoingMessage,
    endpoint: WebhookEndpoint,
    outcome: Outcome,
    duration_ms: int,
) -> str:
    """Record the attempt, settle the item and the endpoint's health, in one transaction.

    The attempt number is the item's claim count: a claim cut short by a crash counts
    (as the outbox counts it), a rate-limited one does not, and a replay (a new item)
    starts the schedule again.
    """
    now = timezone.now()
    disabled_reason = ""
    number = max(1, item.attempts)
    with transaction.atomic():
        next_at: datetime | None = None
        if outcome.succeeded:
            status = OutboxStatus.DONE if queue.complete(item) else LOST
            if endpoint.failing_since is not None:
                WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
        else:
            delay = retry_delay(number) if outcome.retryable and not outcome.gone else None
            code, text = outcome.error_code, outcome.error_message or outcome.error_code
            if delay is None:
                status = _settle_item(item, OutboxStatus.DEAD, code, text)
            else:
                next_at = now + timedelta(seconds=delay)
                status = _settle_item(item, OutboxStatus.FAILED, code, text, at=next_at)
            disabled_reason = _record_failure(endpoint, outcome, now)
        DeliveryAttempt.objects.create(
            endpoint=endpoint,
            message=message,
            attempt=number,
            status_code=outcome.status_code,
            response_excerpt=outcome.excerpt,
            duration_ms=duration_ms,
            error_code=outcome.error_code[:50],
            error_message=redaction.redact(outcome.error_message)[:500],
            next_attempt_at=next_at,
            created_at=now,
        )
        if disabled_reason:
            transaction.on_commit(
                lambda: endpoint_disabled.send(
                    sender=WebhookEndpoint, endpoint=endpoint, reason=disabled_reason
                )
            )
    return str(status)


def _settle_item(
    item: OutboxItem, status: str, code: str, message: str, *, at: datetime | None = None
) -> str:
    """Dead-letter the item, or give it back to the queue due at ``at`` (the schedule's
    delay, not the outbox's own backoff); ``lost`` when its lease is no longer ours."""
    changes: dict[str, Any] = {
        "status": status,
        "lease_expires_at": None,
        "last_error": redaction.redact_data({"code": code, "message": message}),
    }
    if at is not None:
        changes["available_at"] = at
    if status == OutboxStatus.DEAD:
        changes["completed_at"] = timezone.now()  # its time of death (see queue.fail)
    updated = OutboxItem.objects.filter(
        pk=item.pk, status=OutboxStatus.LEASED, lease_token=item.lease_token
    ).update(**changes)
    return status if updated else LOST


def _postpone(item: OutboxItem, at: datetime) -> None:
    """Rate limited: due again when the limit admits a request; the claim is not counted."""
    OutboxItem.objects.filter(
        pk=item.pk, status=OutboxStatus.LEASED, lease_token=item.lease_token
    ).update(
        status=OutboxStatus.PENDING,
        available_at=at,
        lease_expires_at=None,
        attempts=F("attempts") - 1,
    )


def _earlier_unfinished(item: OutboxItem, endpoint: WebhookEndpoint) -> datetime | None:
    """For an ``ordered`` endpoint: when the oldest earlier delivery to it that is neither
    done nor dead is due (``None`` when there is none). Replays count in queue order."""
    earlier = (
        OutboxItem.objects.filter(
            connector_key=OUTGOING_KEY,
            status__in=[OutboxStatus.PENDING, OutboxStatus.FAILED, OutboxStatus.LEASED],
            id__lt=item.pk,
            payload__endpoint=endpoint.pk,
        )
        .order_by("id")
        .values_list("available_at", flat=True)
        .first()
    )
    return earlier


def _record_failure(endpoint: WebhookEndpoint, outcome: Outcome, now: datetime) -> str:
    """Note a failed attempt on the endpoint; return why it was disabled ("" if it wasn't)."""
    rows = WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True)
    if outcome.gone:
        reason = "gone"
        description = "the endpoint answered 410 Gone"
    else:
        rows.filter(failing_since__isnull=True).update(failing_since=now)
        limit = timedelta(seconds=app_settings.OUTGOING_WEBHOOK_DISABLE_AFTER_SECONDS)
        rows = rows.filter(failing_since__lte=now - limit)
        reason = "failing"
        description = f"every delivery failed for {limit}"
    if rows.update(enabled=False, disabled_reason=description[:200]):
        endpoint.enabled, endpoint.disabled_reason = False, description
        logger.warning("webhook endpoint %s disabled: %s", endpoint.pk, description)
        return reason
    return ""
