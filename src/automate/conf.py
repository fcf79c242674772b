"""The workflow engine's settings: execution, workers, steps, templates, MCP servers.

Read them as ``from automate.conf import settings as app_settings`` (typed attributes, no
casts); the keys of the kernel (outbox, secrets, HTTP, webhooks, connections) are in
``automate_core.conf``. See :mod:`automate_core.conf` for how the values are read and
checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from automate_core.conf import AppSettings, setting

__all__ = ["AutomateSettings", "settings"]

MCP_STDIO_EXAMPLE = (
    'e.g. AUTOMATE["MCP_STDIO_SERVERS"] = {"time": {"command": ["uvx", "mcp-server-time"], '
    '"env": {"API_TOKEN": "secret://TIME_TOKEN"}}}'
)


@dataclass(frozen=True)
class AutomateSettings(AppSettings):
    # Webhooks (WebhookView)
    WEBHOOK_MAX_BODY_BYTES: int = setting(1024 * 1024, positive=True, check_id="automate.E101")
    # Lower-case header names kept on an outbox row besides each connector's own list.
    WEBHOOK_HEADER_ALLOWLIST: list[str] = setting(["content-type", "user-agent"])
    # Seconds a webhook whose signature covers no event id (GitHub, Jira, generic HMAC,
    # Slack interactions) is remembered by a digest of what was signed: a repeat of the
    # same signed content within it is a duplicate. 0 turns it off.
    WEBHOOK_REPLAY_WINDOW_SECONDS: int = setting(24 * 3600, minimum=0)
    # The webhook view's INSERT is prepared on the PostgreSQL server once per connection
    # (automate.prepared). Turn it off behind a pooler in transaction mode that does not
    # track prepared statements (PgBouncer before 1.21, or max_prepared_statements = 0).
    DATABASE_PREPARED_STATEMENTS: bool = True
    # REST API: a "module.function" (or the callable) given (request, queryset) for
    # workflows and runs, returning the rows that request may see (multi-tenant projects).
    API_OBJECT_FILTER: str | Callable[..., Any] | None = setting(
        None, must='None, or a "module.function" path or callable'
    )
    # Connections (automate.connections), by key:
    # {"connector": ..., "config": {...}, "secrets": [...], "enabled": True}
    CONNECTORS: dict[str, Any] = setting({})
    # How long a process reuses a connection it looked up (profile row or settings entry)
    # before reading it again (and the webhook secrets it names, resolved); 0 reads it
    # every time. Saving or deleting a profile or a Secret row clears the cache of the
    # process that did it at once; other processes see it within this.
    CONNECTION_CACHE_SECONDS: float = setting(
        5.0,
        minimum=0,
        must="a number of seconds, 0 or more",
        check_id="automate.E104",
        hint="0 reads the connection on every lookup.",
    )
    # Execution: "auto" (Celery when settings.CELERY_BROKER_URL is set, else embedded),
    # "celery" or "embedded". A bad value is reported by automate.checks.check_celery_app
    # (automate.E004), which resolves "auto" too.
    EXECUTION: Literal["auto", "celery", "embedded"] = setting("auto", check_id=None)
    # Items a worker claims at once (and a Celery task carries).
    WORKER_BATCH_SIZE: int = setting(20, positive=True)
    # The Celery-mode dispatcher stops claiming while this many items are leased: events
    # wait in the outbox, not in the broker where their leases would run out.
    DISPATCH_MAX_IN_FLIGHT: int = setting(200, positive=True)
    # ... and while this many batches (Celery tasks) are leased: set it to about twice the
    # worker processes. While they are all busy, events then gather in the outbox and the
    # next claim takes a full batch, instead of sending a small batch every poll whose
    # fixed cost (a task, a transaction, the workflow lookups) each event would share.
    # The default, 200 / 20, binds only partial batches: full ones meet the item limit.
    DISPATCH_MAX_BATCHES_IN_FLIGHT: int = setting(10, positive=True)
    # Seconds the embedded worker and the dispatcher wait between polls of an empty queue.
    WORKER_POLL_SECONDS: float = setting(1.0, positive=True)
    # automate.emit(): the largest payload (its JSON, in bytes) and nesting depth accepted.
    EMIT_MAX_PAYLOAD_BYTES: int = setting(1024 * 1024, positive=True)
    EMIT_MAX_DEPTH: int = setting(32, positive=True)
    # Schedules: a tick found due more than this many seconds late counts as missed (see
    # the "catch_up" of a schedule trigger) ...
    SCHEDULE_MISFIRE_GRACE_SECONDS: float = setting(60.0, minimum=0)
    # ... and the most ticks of one schedule one poll fires (catch_up "all", or many ticks
    # due at once); older ones are skipped.
    SCHEDULE_MAX_CATCH_UP: int = setting(100, positive=True)
    # Workflows: defaults of each step's retry policy (a step may set its own).
    STEP_MAX_ATTEMPTS: int = setting(3, positive=True)
    STEP_BACKOFF_SECONDS: float = setting(2.0, minimum=0)
    STEP_BACKOFF_MAX_SECONDS: float = setting(300.0, minimum=0)
    STEP_TIMEOUT_SECONDS: float = setting(30.0, positive=True)
    # Largest rendered template output (characters) and step output (JSON bytes) kept.
    TEMPLATE_MAX_OUTPUT: int = setting(256 * 1024, positive=True)
    # Seconds one step's templates may take to render (the step's timeout_seconds when
    # shorter); checked while rendering, see automate.template_budget.
    TEMPLATE_TIMEOUT_SECONDS: float = setting(2.0, positive=True)
    STEP_MAX_OUTPUT_BYTES: int = setting(1024 * 1024, positive=True)
    # Control flow (docs/control-flow.md): how deep branch/for_each may nest, the largest
    # max_items a for_each may declare, how many step records one run may make, how deep
    # child workflows may nest, and how often a running run looks for a cancel_run.
    FLOW_MAX_DEPTH: int = setting(5, positive=True)
    FLOW_MAX_ITEMS: int = setting(10_000, positive=True)
    FLOW_MAX_STEPS_PER_RUN: int = setting(10_000, positive=True)
    FLOW_MAX_CHILD_DEPTH: int = setting(10, positive=True)
    FLOW_CANCEL_CHECK_SECONDS: float = setting(1.0, minimum=0)
    # MCP servers: how many tools/list pages one sync follows before giving up.
    MCP_MAX_TOOL_PAGES: int = setting(100, positive=True)
    # ... and the largest response body (bytes) an MCP server may send to one request.
    MCP_MAX_RESPONSE_BYTES: int = setting(10 * 1024 * 1024, positive=True)
    # MCP servers run as local programs over stdio, by key (never typed in the admin):
    # {"time": {"command": ["uvx", "mcp-server-time"], "env": {...}, "timeout": 30}}.
    # Each entry is checked by automate.mcp.checks (automate.E401-E404).
    MCP_STDIO_SERVERS: dict[str, Any] = setting(
        {},
        must="a dict of server keys to entries",
        check_id="automate.E400",
        hint=MCP_STDIO_EXAMPLE,
    )
    # Seconds a stdio MCP server gets to start and finish the MCP handshake.
    MCP_STDIO_START_TIMEOUT: float = setting(
        30.0,
        positive=True,
        must="a positive number of seconds",
        check_id="automate.E405",
    )
    # Sending webhooks (automate.outgoing). Seconds before each attempt of one delivery:
    # the first at once, then retries; once every attempt failed, the delivery is dead.
    OUTGOING_WEBHOOK_RETRY_SCHEDULE: list[int] = setting(
        [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
    )
    # Each retry delay varies by up to this fraction either way, so retries spread out.
    OUTGOING_WEBHOOK_RETRY_JITTER: float = setting(0.2, minimum=0)
    # Total time one delivery request may take (connect, send, whole response).
    OUTGOING_WEBHOOK_TIMEOUT_SECONDS: float = setting(15.0, positive=True)
    # Largest response body read from an endpoint; a longer one is a failed attempt.
    OUTGOING_WEBHOOK_RESPONSE_MAX_BYTES: int = setting(64 * 1024, positive=True)
    # An endpoint failing every attempt for this long is disabled (endpoint_disabled).
    OUTGOING_WEBHOOK_DISABLE_AFTER_SECONDS: float = setting(5 * 24 * 3600.0, positive=True)
    # How long the previous secrets keep signing after a rotation.
    OUTGOING_WEBHOOK_SECRET_OVERLAP_SECONDS: float = setting(24 * 3600.0, minimum=0)
    # Default per-endpoint rate limit ("10/s", "600/min"); "" for none.
    OUTGOING_WEBHOOK_RATE_LIMIT: str = ""
    # Deliveries of one claimed batch sent at once, so a slow endpoint delays no other.
    OUTGOING_WEBHOOK_THREADS: int = setting(8, positive=True)
    # Observability (automate.health, automate.metrics): how often a polling worker
    # records its heartbeat, how old the newest one may be before /health/ fails (0: no
    # worker check, e.g. a web-only deployment), how long the oldest due outbox item may
    # wait, and how long the outbox gauges of /metrics are cached.
    WORKER_HEARTBEAT_SECONDS: float = setting(10.0, positive=True)
    HEALTH_WORKER_MAX_AGE_SECONDS: float = setting(60.0, minimum=0)
    HEALTH_OUTBOX_MAX_LAG_SECONDS: float = setting(300.0, positive=True)
    METRICS_GAUGE_CACHE_SECONDS: float = setting(5.0, minimum=0)
    # Who may read /metrics (automate.metrics.metrics_view). METRICS_TOKEN: the bearer
    # token Prometheus sends (a secret:// reference or the value); when set, it is
    # required, by automate_worker --metrics-port too. METRICS_PUBLIC: without a token,
    # serve anyone who reaches the URL (keep it behind a network restriction). With
    # neither, only DEBUG and staff users see it.
    METRICS_TOKEN: str = ""
    METRICS_PUBLIC: bool = False
    # How long settled rows are kept before automate.retention.prune() (manage.py
    # automate_prune) deletes them, by kind: {"DONE": timedelta(days=7), "DEAD": None,
    # ...}; None keeps them forever. Keys left out keep automate.retention's defaults;
    # the keys and values are checked by automate.checks (automate.E130, automate.W130).
    RETENTION: dict[str, Any] = setting({})


settings = AutomateSettings.lazy()
