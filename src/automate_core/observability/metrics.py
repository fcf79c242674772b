"""Prometheus counters and histograms (the ``prometheus`` extra); no-ops without it.

The metrics are made on first use in ``prometheus_client``'s default registry, so a
process that set ``PROMETHEUS_MULTIPROC_DIR`` before starting (gunicorn workers, Celery
prefork children) writes them to that directory, and a scrape sums every process's files
(:func:`registry_for_scrape`). Labels are bounded: connector keys, workflow keys, step
types, outcomes, status codes, and host names (at most :data:`MAX_HOSTS` per process,
the rest counted as ``other``); never an event id, a URL path or a user value.
"""

from __future__ import annotations

import os
import threading
from types import SimpleNamespace
from typing import Any

__all__ = [
    "MAX_HOSTS",
    "enabled",
    "http_request",
    "queue_lag",
    "registry_for_scrape",
    "run_finished",
    "step_attempt",
    "webhook",
]

#: Distinct ``host`` label values one process reports before counting the rest as "other".
MAX_HOSTS = 100

_UNSET: Any = object()
_m: Any = _UNSET
_lock = threading.Lock()
_hosts: set[str] = set()

STEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)


def _metrics() -> Any:
    global _m
    if _m is _UNSET:
        with _lock:
            if _m is _UNSET:
                _m = _create()
    return _m


def _create() -> Any:
    try:
        import prometheus_client as pc
    except ImportError:
        return None
    return SimpleNamespace(
        pc=pc,
        # Each metric's children by label values: ``labels()`` checks and joins the
        # values and takes a lock on every call, for an object that never changes.
        children={},
        webhooks=pc.Counter(
            "automate_webhooks",
            "Webhook requests answered, by connector key and HTTP status code.",
            ["connector", "status"],
        ),
        webhook_seconds=pc.Histogram(
            "automate_webhook_duration_seconds",
            "Time to answer a webhook request (verify and store), by connector key.",
            ["connector"],
        ),
        runs=pc.Counter(
            "automate_runs",
            "Workflow run passes ended, by workflow key and outcome "
            "(completed, filtered, dead, retrying).",
            ["workflow", "outcome"],
        ),
        steps=pc.Counter(
            "automate_step_attempts",
            "Step attempts, by step type and outcome (succeeded, failed).",
            ["step_type", "outcome"],
        ),
        step_seconds=pc.Histogram(
            "automate_step_duration_seconds",
            "Time one step attempt took, by step type.",
            ["step_type"],
            buckets=STEP_BUCKETS,
        ),
        queue_lag=pc.Histogram(
            "automate_queue_lag_seconds",
            "From an event stored in the outbox to the first start of its run.",
            buckets=LAG_BUCKETS,
        ),
        http=pc.Counter(
            "automate_http_requests",
            "Outbound HTTP requests through the guarded transport, by host and status "
            '(a status code, "refused" by the SSRF rules, or "error").',
            ["host", "status"],
        ),
    )


def enabled() -> bool:
    return _metrics() is not None


def _children(m: Any, kind: str, key: tuple[Any, ...]) -> Any:
    """The metric children of ``kind`` for the label values ``key``, made on first use.

    Bounded as the labels are: each child is also kept by its metric for the process's
    life, so this holds nothing prometheus-client does not.
    """
    found = m.children.get((kind, key))
    if found is None:
        if kind == "webhook":
            connector, status = key
            found = (
                m.webhooks.labels(connector, str(status)),
                m.webhook_seconds.labels(connector),
            )
        elif kind == "run":
            found = m.runs.labels(*key)
        elif kind == "step":
            step_type, outcome = key
            found = (m.steps.labels(step_type, outcome), m.step_seconds.labels(step_type))
        else:
            found = m.http.labels(*key)
        m.children[(kind, key)] = found
    return found


def webhook(connector: str, status: int, seconds: float) -> None:
    m = _metrics()
    if m is not None:
        count, duration = _children(m, "webhook", (connector, status))
        count.inc()
        duration.observe(seconds)


def run_finished(workflow: str, outcome: str) -> None:
    m = _metrics()
    if m is not None:
        _children(m, "run", (workflow, outcome)).inc()


def step_attempt(step_type: str, outcome: str, seconds: float) -> None:
    m = _metrics()
    if m is not None:
        count, duration = _children(m, "step", (step_type, outcome))
        count.inc()
        duration.observe(seconds)


def queue_lag(seconds: float) -> None:
    m = _metrics()
    if m is not None:
        m.queue_lag.observe(max(0.0, seconds))


def http_request(host: str, status: str) -> None:
    m = _metrics()
    if m is not None:
        _children(m, "http", (_bounded_host(host), status)).inc()


def _bounded_host(host: str) -> str:
    host = (host or "").lower()[:253] or "unknown"
    if host in _hosts:
        return host
    with _lock:
        if len(_hosts) < MAX_HOSTS:
            _hosts.add(host)
            return host
    return "other"


def registry_for_scrape() -> Any:
    """The registry a scrape reads: every process's files under
    ``PROMETHEUS_MULTIPROC_DIR`` when it is set, else this process's default registry.
    None without ``prometheus_client``."""
    m = _metrics()
    if m is None:
        return None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = m.pc.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return m.pc.REGISTRY
