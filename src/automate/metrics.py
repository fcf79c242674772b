"""``/metrics`` for Prometheus: the counters and histograms of
:mod:`automate_core.observability.metrics`, plus the queue gauges read from the tables.

Mount the view::

    from automate.metrics import metrics_view
    path("metrics", metrics_view)

and say who may read it: ``AUTOMATE["METRICS_TOKEN"]`` (a bearer token Prometheus sends,
compared in constant time) or ``AUTOMATE["METRICS_PUBLIC"] = True`` (anyone who reaches
the URL: keep it behind a network restriction). With neither it answers 403, except under
``DEBUG`` and to a logged-in staff user: metric labels name workflows, connectors and the
hosts the project calls, which is worth keeping from the internet by default.

or let ``manage.py automate_worker --metrics-port 9100`` serve the same page (it asks for
``METRICS_TOKEN`` too, when set: :func:`serve`). Under
gunicorn or Celery prefork set ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory, the
same for every process of a host) before the processes start: a scrape then sums them.

The gauges (``automate_outbox_items{state}``, ``automate_dead_letters``,
``automate_runs_waiting``) come from one indexed query (a UNION over the outbox's status
index and the runs' status index), cached ``AUTOMATE["METRICS_GAUGE_CACHE_SECONDS"]``.
"""

from __future__ import annotations

import hmac
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.conf import settings as django_settings
from django.db import connection
from django.db.models import Count, IntegerField, Q, Value
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from automate.conf import settings as app_settings
from automate.models import WorkflowRun
from automate_core.observability import metrics as core_metrics
from automate_core.outbox.models import OutboxItem, OutboxStatus
from automate_core.secrets import SecretNotFound, resolve

__all__ = ["QueueGauges", "metrics_view", "read_gauges", "serve"]

_cache_lock = threading.Lock()
_cache: tuple[float, dict[str, int]] | None = None

#: The open statuses, grouped as the outbox's partial indexes hold them.
_OPEN = [
    [OutboxStatus.PENDING, OutboxStatus.FAILED],
    [OutboxStatus.LEASED],
    [OutboxStatus.DEAD],
]


def read_gauges(*, fresh: bool = False) -> dict[str, int]:
    """The queue's state: due, scheduled (waiting for a retry or a timer), leased and dead
    outbox items, and waiting runs. Cached a few seconds per process."""
    global _cache
    now = time.monotonic()
    cached = _cache
    if (
        not fresh
        and cached is not None
        and now - cached[0] < app_settings.METRICS_GAUGE_CACHE_SECONDS
    ):
        return cached[1]
    moment = timezone.now()
    # One query per partial index (due, leased, failing): done rows, most of the table,
    # are in none of them, and a single IN of all four statuses would scan the table.
    by_index = [
        OutboxItem.objects.filter(status__in=statuses)
        .values("status")
        .annotate(n=Count("id"), due=Count("id", filter=Q(available_at__lte=moment)))
        .values_list("status", "n", "due")
        .order_by()
        for statuses in _OPEN
    ]
    waiting = (
        WorkflowRun.objects.filter(status="waiting")
        .values("status")
        .annotate(n=Count("id"), due=Value(0, output_field=IntegerField()))
        .values_list("status", "n", "due")
        .order_by()
    )
    values = dict.fromkeys(("due", "scheduled", "leased", "dead", "waiting_runs"), 0)
    for status, n, due in by_index[0].union(*by_index[1:], waiting, all=True):
        if status in (OutboxStatus.PENDING, OutboxStatus.FAILED):
            values["due"] += due
            values["scheduled"] += n - due
        elif status == "waiting":
            values["waiting_runs"] += n
        else:
            values[str(status)] += n
    with _cache_lock:
        _cache = (now, values)
    return values


class QueueGauges:
    """A Prometheus collector of :func:`read_gauges` (read at scrape time)."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        values = read_gauges()
        items = GaugeMetricFamily(
            "automate_outbox_items",
            "Outbox items by state: due, scheduled (a retry or timer not yet due), leased, dead.",
            labels=["state"],
        )
        for state in ("due", "scheduled", "leased", "dead"):
            items.add_metric([state], values[state])
        yield items
        yield GaugeMetricFamily(
            "automate_dead_letters", "Dead-lettered outbox items.", value=values["dead"]
        )
        yield GaugeMetricFamily(
            "automate_runs_waiting",
            "Runs parked waiting for an event or a timer.",
            value=values["waiting_runs"],
        )


class _Scrape:
    """Everything one scrape shows: this process's (or every process's) metrics and the
    queue gauges. ``close_db``: close the thread's database connection afterwards (the
    standalone server answers each scrape in a new thread)."""

    def __init__(self, close_db: bool = False) -> None:
        self.close_db = close_db

    def collect(self) -> Iterator[Any]:
        registry = core_metrics.registry_for_scrape()
        if registry is not None:
            yield from registry.collect()
        try:
            yield from QueueGauges().collect()
        finally:
            if self.close_db:
                connection.close()


def scrape_registry(*, close_db: bool = False) -> Any:
    """A registry holding :class:`_Scrape`; None without ``prometheus_client``."""
    if not core_metrics.enabled():
        return None
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape(close_db))
    return registry


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus text format to those ``METRICS_TOKEN`` / ``METRICS_PUBLIC`` allow
    (401 or 403 to others); 404 when ``prometheus_client`` is not installed."""
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    registry = scrape_registry()
    if registry is None:
        return HttpResponse(
            "prometheus-client is not installed (pip install django-automate[prometheus])",
            status=404,
            content_type="text/plain",
        )
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


#: What a 401 answers, for a client that would ask how to authenticate.
_CHALLENGE = 'Bearer realm="metrics"'


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the request may read the metrics, else the response that refuses it."""
    if _is_staff(request):
        return None
    token = app_settings.METRICS_TOKEN
    if not token:
        if app_settings.METRICS_PUBLIC or django_settings.DEBUG:
            return None
        return _text(
            403,
            'Set AUTOMATE["METRICS_TOKEN"] (a bearer token for Prometheus) or '
            'AUTOMATE["METRICS_PUBLIC"] = True to serve the metrics.',
        )
    refused = _token_refusal(token, request.headers.get("Authorization", ""))
    if refused is None:
        return None
    response = _text(*refused)
    if refused[0] == 401:
        response["WWW-Authenticate"] = _CHALLENGE
    return response


def _token_refusal(token: str, authorization: str) -> tuple[int, str] | None:
    """None when ``authorization`` (the header) carries the bearer ``token`` (the
    ``METRICS_TOKEN`` setting, resolved now: a rotated secret counts at once), else the
    status and message that refuse it."""
    try:
        expected = resolve(token)
    except SecretNotFound:
        expected = ""
    if not expected:  # an empty token would let an empty header in
        return 503, 'AUTOMATE["METRICS_TOKEN"] names no secret a backend holds.'
    scheme, _, credentials = authorization.partition(" ")
    given = credentials.strip() if scheme.lower() == "bearer" else ""
    if hmac.compare_digest(given.encode(), expected.encode()):
        return None
    return 401, "A valid bearer token is required."


def _is_staff(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


def _text(status: int, message: str) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain")


def serve(port: int, addr: str = "127.0.0.1") -> Any:
    """Serve the scrape page on ``addr:port`` from a daemon thread (``automate_worker
    --metrics-port``). Returns the server, or None without ``prometheus_client``.

    When ``AUTOMATE["METRICS_TOKEN"]`` is set, a scrape must carry it, as for
    :func:`metrics_view` (401 without it, 503 when it names no secret). Without one the
    page is served to whoever reaches the address: there are no staff users here, and
    the address (loopback by default) is the restriction ``METRICS_PUBLIC`` stands for.
    """
    registry = scrape_registry(close_db=True)
    if registry is None:
        return None
    from prometheus_client import make_wsgi_app

    # prometheus_client's own server takes a registry, not an application to put a check
    # in front of: the same stdlib server, with the check.
    family, _, _, _, sockaddr = socket.getaddrinfo(
        addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    server_class = type("MetricsServer", (_MetricsServer,), {"address_family": family})
    app = _TokenChecked(make_wsgi_app(registry))
    server: WSGIServer = make_server(
        str(sockaddr[0]), port, app, server_class, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="automate-metrics", daemon=True).start()
    return server


class _MetricsServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape never holds up the worker's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Nothing: a line per scrape would bury the worker's own output."""


class _TokenChecked:
    """A WSGI application that answers only scrapes carrying ``METRICS_TOKEN`` (if set)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        token = app_settings.METRICS_TOKEN
        if not token:
            return self.app(environ, start_response)
        try:
            refused = _token_refusal(token, environ.get("HTTP_AUTHORIZATION", ""))
        finally:
            connection.close()  # a secret:// reference may read the database
        if refused is None:
            return self.app(environ, start_response)
        status, message = refused
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        if status == 401:
            headers.append(("WWW-Authenticate", _CHALLENGE))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [message.encode()]
