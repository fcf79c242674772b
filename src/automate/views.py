"""The webhook endpoint: verify, store durably, then acknowledge.

Mount it once for every connector::

    path("webhooks/<str:connector_key>/", WebhookView.as_view())

Status codes are decisions, because every sender reads a 5xx as "retry later":

* 404 unknown connector key or disabled profile; 405 any method but POST;
* 503 ``{"error": "temporarily unavailable"}`` when the profile cannot be built (a secret
  missing, a config invalid): the cause is logged (one WARNING per key per minute), never
  answered;
* 413 body over ``AUTOMATE["WEBHOOK_MAX_BODY_BYTES"]`` (from Content-Length, and while reading);
* 401 verification failed or the verifier raised; nothing is stored, and one WARNING on
  ``automate.webhooks`` gives the reason code (see ``automate_connectors.verdict.Reason``);
* 202 ``{"trace_id", "id"}`` once the outbox row is committed;
* 200 with the first ``trace_id`` for a repeat of an event id already stored, or of the
  signed content of a request whose signature covers no id (see :mod:`automate.replays`).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import classonlymethod
from django.views import View

from automate import instrument, replays, signals
from automate.conf import settings as app_settings
from automate.connections import webhook_connector
from automate.models import API_SOURCE_PREFIX
from automate.prepared import autocommit
from automate_connectors.base import Connector, Headers
from automate_connectors.storable import storable
from automate_connectors.verdict import Reason, WebhookVerdict
from automate_core.outbox import queue
from automate_core.providers.errors import AutomateError
from automate_core.tracing import trace

logger = logging.getLogger("automate.webhooks")

TRACE_HEADER = "X-Automate-Trace-Id"
# Never stored, whatever a connector or the settings ask for.
FORBIDDEN_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


class RequestTooLarge(Exception):
    pass


class WebhookView(View):
    """Receives a webhook for ``connector_key`` and records it in the outbox."""

    http_method_names = ["post"]

    @classonlymethod
    def as_view(cls, **initkwargs: Any) -> Any:
        """The view, exempt from CSRF (a sender has no token: its signature is checked)
        and from ``ATOMIC_REQUESTS`` (the row is committed before the 202).

        Marked as ``csrf_exempt`` and ``transaction.non_atomic_requests`` mark a view,
        on the view function itself: decorating ``dispatch`` with ``method_decorator``
        would apply ``csrf_exempt`` again to a new bound method on every request.
        """
        view = super().as_view(**initkwargs)
        view.csrf_exempt = True  # type: ignore[attr-defined]
        return transaction.non_atomic_requests(view)

    def post(self, request: HttpRequest, connector_key: str) -> HttpResponse:
        with instrument.webhook(connector_key) as obs, trace(obs.trace_id) as trace_id:
            response = obs.answered(self._handle(request, connector_key, trace_id))
        if TRACE_HEADER not in response:
            response[TRACE_HEADER] = trace_id
        return response

    def _handle(self, request: HttpRequest, key: str, trace_id: str) -> HttpResponse:
        max_bytes = app_settings.WEBHOOK_MAX_BODY_BYTES
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _error(400, "invalid Content-Length", trace_id)
        if declared > max_bytes:
            return _error(413, f"body larger than {max_bytes} bytes", trace_id)

        if key.startswith(API_SOURCE_PREFIX):  # the source of API events, never a URL
            return _error(404, "unknown webhook endpoint", trace_id)
        # Looked up once and handed on: each lookup in ``connections`` (a context-local)
        # costs about as much as reading the request's headers.
        db = connections[DEFAULT_DB_ALIAS]
        try:
            connector = webhook_connector(key, trace_id=trace_id, database=db)
        except (AutomateError, ImproperlyConfigured, ValueError) as exc:
            # A profile we cannot build (secret missing, config invalid) is our problem,
            # and the sender must retry once it is fixed: that is what 503 means. The
            # cause goes to the log (once a minute per key: anyone can make this request),
            # never to the caller.
            _log_misconfigured(key, exc, trace_id)
            response = _error(503, "temporarily unavailable", trace_id)
            response["Retry-After"] = "60"
            # Logged above, and throttled: keep django.request from adding an ERROR per
            # request (it logs every 5xx unless the response says it was logged).
            response._has_been_logged = True  # type: ignore[attr-defined]
            return response
        if connector is None:
            return _error(404, "unknown webhook endpoint", trace_id)

        try:
            raw_body = _read_body(request, max_bytes)
        except RequestTooLarge:
            return _error(413, f"body larger than {max_bytes} bytes", trace_id)

        headers = Headers.from_environ(request.META)
        with instrument.verify(key):
            verdict = connector.webhook_verdict(headers, raw_body)
        if not verdict.accepted:
            _log_refusal(key, verdict, trace_id)
            return _error(401, "signature verification failed", trace_id)

        try:
            event = storable(connector.parse_webhook(headers, raw_body), raw_body)
            handshake = connector.webhook_handshake(event)
            content = connector.webhook_replay_content(headers, raw_body, event)
        except Exception:
            logger.exception("could not read a verified webhook for %r", key)
            return _error(400, "the event could not be read", trace_id)
        if handshake is not None:
            return JsonResponse(handshake, status=200)

        # One autocommitted statement on PostgreSQL (see automate.replays): the row is
        # durable when this returns.
        with instrument.store(key, event.event_type):
            prepared = queue.prepare(
                key,
                event_type=event.event_type,
                payload=event.payload,
                raw_body=event.raw_body,
                external_id=event.external_id,
                headers=_kept_headers(connector, headers),
                trace_id=trace_id,
            )
            result = replays.enqueue_once(key, content, prepared, database=db)
        item = result.item
        if item is None:  # a replay of an event whose row has been deleted since
            return JsonResponse({"trace_id": trace_id, "duplicate": True}, status=200)
        if not result.created:
            response = JsonResponse(
                {"trace_id": item.trace_id, "id": item.pk, "duplicate": True}, status=200
            )
            response[TRACE_HEADER] = item.trace_id
            return response
        _on_commit(db, lambda: signals.event_accepted.send(sender=key, item=item))
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "accepted %s event %r as outbox item %s",
                key,
                event.event_type,
                item.pk,
                extra={"trace_id": trace_id},
            )
        return _accepted(item.trace_id, item.pk)


def _on_commit(db: BaseDatabaseWrapper, func: Callable[[], Any]) -> None:
    """``transaction.on_commit(func)`` on the wrapper in hand: outside a transaction, in
    autocommit (the webhook's case, once its row is committed), ``func`` runs now, as
    on_commit runs it; anything else is on_commit's to decide (later, or an error). Its
    own check of autocommit would ask the connection once more (see
    :func:`automate.prepared.autocommit`)."""
    if db.in_atomic_block or not autocommit(db):
        db.on_commit(func)
    else:
        func()


#: When each misconfigured key was last logged (time.monotonic()), per process.
_misconfigured_logged: dict[str, float] = {}
MISCONFIGURED_LOG_EVERY = 60.0
_clock = time.monotonic


def _log_misconfigured(key: str, exc: Exception, trace_id: str) -> None:
    """One WARNING per key per minute: a misconfigured profile answers every request
    (anyone's) with a 503, and one log line each would let them flood the log."""
    now = _clock()
    last = _misconfigured_logged.get(key)
    if last is not None and now - last < MISCONFIGURED_LOG_EVERY:
        return
    if len(_misconfigured_logged) >= 1000:  # keys come from the URL: keep this bounded
        _misconfigured_logged.clear()
    _misconfigured_logged[key] = now
    logger.warning(
        "connector %r cannot be built, its webhooks get 503 until it is fixed: %s",
        key,
        exc,
        extra={"trace_id": trace_id, "connector_key": key},
    )


def _log_refusal(key: str, verdict: WebhookVerdict, trace_id: str) -> None:
    """One WARNING per refused request: the reason code, never the body or a header value.

    The same facts are attributes of the record (``trace_id``, ``connector_key``,
    ``reason``, ``exception_type``) for structured handlers.
    """
    reason = str(verdict.reason or Reason.REJECTED)
    suffix = f" exception={verdict.exception}" if verdict.exception else ""
    logger.warning(
        "webhook refused: connector=%s reason=%s%s",
        key,
        reason,
        suffix,
        extra={
            "trace_id": trace_id,
            "connector_key": key,
            "reason": reason,
            "exception_type": verdict.exception,
        },
    )


def _read_body(request: HttpRequest, max_bytes: int) -> bytes:
    # Read one byte past the cap: a body that lied about (or omitted) its length is caught
    # without ever holding more than max_bytes + 1 in memory.
    chunks, size = [], 0
    while True:
        chunk = request.read(min(64 * 1024, max_bytes + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise RequestTooLarge
    return b"".join(chunks)


def _kept_headers(connector: Connector, headers: Headers) -> dict[str, str]:
    names = _kept_names(
        tuple(app_settings.WEBHOOK_HEADER_ALLOWLIST),
        tuple(connector.webhook_headers),
        connector.event_id_header,
        connector.event_type_header,
    )
    # The names are lower case already, as Headers keeps them.
    return {name: value for name in names if (value := dict.get(headers, name)) is not None}


@functools.lru_cache(maxsize=256)
def _kept_names(
    allowlist: tuple[str, ...],
    wanted: tuple[str, ...],
    id_header: str | None,
    type_header: str | None,
) -> tuple[str, ...]:
    """The header names one connector keeps, sorted (worked out once, not per request)."""
    names = {h.lower() for h in (*allowlist, *wanted, id_header, type_header) if h}
    return tuple(sorted(names - FORBIDDEN_HEADERS))


def _accepted(trace_id: str, pk: int) -> HttpResponse:
    """The 202: the bytes ``JsonResponse({"trace_id": trace_id, "id": pk})`` writes (its
    separators, its escaping of the string), without building a JSON encoder for every
    accepted webhook."""
    body = f'{{"trace_id": {_json_string(trace_id)}, "id": {int(pk)}}}'
    return HttpResponse(body.encode(), content_type="application/json", status=202)


#: What json.dumps does to a str (ensure_ascii, as JsonResponse's encoder has it).
_json_string = json.encoder.encode_basestring_ascii


def _error(status: int, message: str, trace_id: str) -> JsonResponse:
    body: dict[str, Any] = {"error": message, "trace_id": trace_id}
    return JsonResponse(body, status=status)
