"""Typed, lazily read settings under ``settings.AUTOMATE``.

Nothing here is read at import time: every attribute access looks at the current Django
settings, so ``override_settings(AUTOMATE={...})`` works in tests.

    AUTOMATE = {
        "WEBHOOK_MAX_BODY_BYTES": 1024 * 1024,
        "CONNECTORS": {"github": {"secrets": ["secret://GITHUB_WEBHOOK_SECRET"]}},
    }
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings

DEFAULTS: dict[str, Any] = {
    # Webhooks
    "WEBHOOK_MAX_BODY_BYTES": 1024 * 1024,
    # Lower-case header names kept on an outbox row besides each connector's own list.
    "WEBHOOK_HEADER_ALLOWLIST": ["content-type", "user-agent"],
    # Connector defaults by key: {"config": {...}, "secrets": [...], "enabled": True}
    "CONNECTORS": {},
    # How long a process reuses a connection it looked up (profile row or settings entry)
    # before reading it again; 0 reads it every time. Saving or deleting a profile clears
    # the cache of the process that did it at once; other processes see it within this.
    "CONNECTION_CACHE_SECONDS": 5.0,
    # Outbox
    "OUTBOX_MAX_ATTEMPTS": 8,
    "OUTBOX_BACKOFF_BASE_SECONDS": 2.0,
    "OUTBOX_BACKOFF_MAX_SECONDS": 3600.0,
    "OUTBOX_LEASE_SECONDS": 300,
    # Secrets: backends tried in order for secret://NAME references.
    "SECRET_BACKENDS": [
        "automate_core.secrets.EnvironmentBackend",
        "automate_core.secrets.SettingsBackend",
        "automate_core.secrets.DatabaseBackend",
    ],
    "SECRETS": {},
    "SECRET_ENV_PREFIX": "AUTOMATE_SECRET_",
    # Fernet keys, newest first; the first encrypts, all decrypt (rotation).
    "ENCRYPTION_KEYS": [],
    # Outbound HTTP (the SSRF-safe client, automate_core.http)
    # Ports any URL may use; "*" allows every port.
    "HTTP_ALLOWED_PORTS": [80, 443, 8080, 8443],
    # Non-public addresses that may still be reached: networks ("10.20.0.0/16") and host
    # names ("mcp.internal", or ".internal" for a whole domain).
    "HTTP_ALLOW_NETWORKS": [],
    "HTTP_ALLOW_HOSTS": [],
    # Always refused, even when public or allow-listed (cloud metadata addresses always are).
    "HTTP_DENY_NETWORKS": [],
    "HTTP_DENY_HOSTS": [],
    "HTTP_USER_AGENT": "django-automate",
    # Rate limits: "memory://" or "redis://host:port/db"
    "RATE_LIMIT_STORAGE": "memory://",
    # LLM providers: dotted path of factory(provider_key, *, asynchronous, timeout) -> the
    # HTTP client handed to the openai/anthropic SDKs (None: the SDK's default client).
    "LLM_HTTP_CLIENT_FACTORY": None,
    # Workflows: defaults of each step's retry policy (a step may set its own).
    "STEP_MAX_ATTEMPTS": 3,
    "STEP_BACKOFF_SECONDS": 2.0,
    "STEP_BACKOFF_MAX_SECONDS": 300.0,
    "STEP_TIMEOUT_SECONDS": 30.0,
    # Largest rendered template output (characters) and step output (JSON bytes) kept.
    "TEMPLATE_MAX_OUTPUT": 256 * 1024,
    "STEP_MAX_OUTPUT_BYTES": 1024 * 1024,
    # Execution: "auto" (Celery when settings.CELERY_BROKER_URL is set, else embedded),
    # "celery" or "embedded".
    "EXECUTION": "auto",
    # Items a worker claims at once (and a Celery task carries).
    "WORKER_BATCH_SIZE": 20,
    # The Celery-mode dispatcher stops claiming while this many items are leased: events
    # wait in the outbox, not in the broker where their leases would run out.
    "DISPATCH_MAX_IN_FLIGHT": 200,
    # Seconds the embedded worker and the dispatcher wait between polls of an empty queue.
    "WORKER_POLL_SECONDS": 1.0,
    # MCP servers: how many tools/list pages one sync follows before giving up.
    "MCP_MAX_TOOL_PAGES": 100,
    # ... and the largest response body (bytes) an MCP server may send to one request.
    "MCP_MAX_RESPONSE_BYTES": 10 * 1024 * 1024,
    # MCP servers run as local programs over stdio, by key (never typed in the admin):
    # {"time": {"command": ["uvx", "mcp-server-time"], "env": {...}, "timeout": 30}}
    "MCP_STDIO_SERVERS": {},
    # Seconds a stdio MCP server gets to start and finish the MCP handshake.
    "MCP_STDIO_START_TIMEOUT": 30.0,
}


class AutomateSettings:
    """Attribute access to ``settings.AUTOMATE`` with defaults; unknown names raise."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"unknown Django Automate setting {name!r}")
        user = getattr(django_settings, "AUTOMATE", {}) or {}
        return user.get(name, DEFAULTS[name])


settings = AutomateSettings()
