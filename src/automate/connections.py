"""Builds connector instances from connection profiles and settings defaults.

A profile row (``ConnectionProfile``) wins over ``AUTOMATE["CONNECTORS"][key]`` in settings:

    AUTOMATE = {"CONNECTORS": {
        "github": {"secrets": ["secret://GITHUB_WEBHOOK_SECRET"]},
        "acme_stripe": {"connector": "stripe", "secrets": ["secret://STRIPE_WHSEC"]},
    }}
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from automate.conf import settings as app_settings
from automate.models import ConnectionProfile
from automate_connectors.base import Connector
from automate_connectors.registry import NotRegistered, get_connector

# resolve_config moved to automate_connectors.resolve; importable from here as before.
from automate_connectors.resolve import resolve_config, resolve_webhook_secret
from automate_core import secrets
from automate_core.providers.base import ProviderContext


@dataclass(frozen=True)
class Connection:
    """The resolved description of one configured connection (not yet instantiated)."""

    key: str
    connector_key: str
    config: Mapping[str, Any] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    enabled: bool = True


#: Connections looked up lately, by key: (good until, per time.monotonic(); connection).
_cache: dict[str, tuple[float, Connection | None]] = {}
_cache_generation = 0
#: Past this many keys the cache starts over: URL keys come from the outside world.
CACHE_MAX_KEYS = 1000


def find_connection(key: str) -> Connection | None:
    """The profile named ``key``, else the settings entry; ``None`` when neither exists.

    Outside a transaction the answer is kept for ``AUTOMATE["CONNECTION_CACHE_SECONDS"]``:
    the webhook view would otherwise read the profile on every request. Inside one it is
    always read, since the transaction may see rows that are never committed (a test's).
    """
    ttl = app_settings.CONNECTION_CACHE_SECONDS
    cached = ttl > 0 and not transaction.get_connection().in_atomic_block
    if cached:
        hit = _cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
    generation = _cache_generation
    connection = _load_connection(key)
    if cached and generation == _cache_generation:  # not cleared while we were reading
        if len(_cache) >= CACHE_MAX_KEYS:
            _cache.clear()
        _cache[key] = (time.monotonic() + ttl, connection)
    return connection


def clear_connection_cache(**kwargs: Any) -> None:
    """Forget every looked-up connection and the signing secret references (a receiver of
    profile and settings changes)."""
    global _cache_generation, _signing_cache
    _cache_generation += 1
    _cache.clear()
    _signing_cache = None


def _load_connection(key: str) -> Connection | None:
    # No profile key holds a NUL (the key validator forbids it, and PostgreSQL text cannot
    # store one); asking PostgreSQL about such a key would raise DataError, a 500.
    profile = None if "\x00" in key else ConnectionProfile.objects.filter(key=key).first()
    if profile is not None:
        return Connection(
            key=profile.key,
            connector_key=profile.connector_key,
            config=profile.config,
            secrets=tuple(profile.webhook_secrets),
            enabled=profile.enabled,
        )
    entry = app_settings.CONNECTORS.get(key)
    if entry is None:
        return None
    return Connection(
        key=key,
        connector_key=entry.get("connector", key),
        config=entry.get("config", {}),
        secrets=tuple(entry.get("secrets", ())),
        enabled=entry.get("enabled", True),
    )


def check_no_signing_secret(connection: Connection) -> None:
    """Refuse a connection whose config (what its actions send out) names a webhook
    signing secret: a signing secret is never an outbound credential, whatever connector
    would carry it (``SecretNotGranted``, before anything is resolved)."""
    pending: list[Any] = [connection.config]
    while pending:
        value = pending.pop()
        if isinstance(value, Mapping):
            pending.extend(value.values())
        elif isinstance(value, list | tuple):
            pending.extend(value)
        elif secrets.is_reference(value):
            secrets.check_not_signing(value, use="connection")


#: The signing secret references of the profiles: (good until, per time.monotonic(); refs).
_signing_cache: tuple[float, tuple[str, ...]] | None = None


def signing_secret_references() -> list[str]:
    """Every webhook signing secret reference of the profiles and ``AUTOMATE["CONNECTORS"]``.

    Registered with :func:`automate_core.secrets.register_signing_secrets`, so none of them
    is ever sent as an outbound credential (a stolen signing secret forges webhooks).

    Asked at every credential check: outside a transaction the profiles' references are
    kept like connections (:func:`find_connection`), for
    ``AUTOMATE["CONNECTION_CACHE_SECONDS"]``, and forgotten at once when this process
    saves or deletes a profile; another process's change is seen within that time.
    """
    global _signing_cache
    ttl = app_settings.CONNECTION_CACHE_SECONDS
    cached = ttl > 0 and not transaction.get_connection().in_atomic_block
    hit = _signing_cache
    if cached and hit is not None and hit[0] > time.monotonic():
        references = list(hit[1])
    else:
        generation = _cache_generation
        references = _profile_signing_references()
        if cached and generation == _cache_generation:  # not cleared while we were reading
            _signing_cache = (time.monotonic() + ttl, tuple(references))
    for entry in app_settings.CONNECTORS.values():
        if isinstance(entry, Mapping):
            references.extend(v for v in entry.get("secrets", ()) if isinstance(v, str))
    return references


def _profile_signing_references() -> list[str]:
    return [
        value
        for secrets in ConnectionProfile.objects.values_list("webhook_secrets", flat=True)
        for value in (secrets or ())
        if isinstance(value, str)
    ]


def build_connector(connection: Connection, *, ctx: ProviderContext | None = None) -> Connector:
    """Instantiate the connection's connector with resolved config and webhook secrets.

    Raises ``NotRegistered`` for an unknown connector and ``AutomateError`` for a config
    that does not validate or a secret that cannot be resolved.
    """
    cls = get_connector(connection.connector_key)
    ctx = ctx or ProviderContext()
    config = resolve_config(connection.config, ctx.secrets)
    connector = cls(config, ctx=ctx)
    # Set after construction: subclasses may define __init__ without calling super().
    connector._automate_webhook_secrets = tuple(
        resolve_webhook_secret(value, ctx.secrets) for value in connection.secrets
    )
    return connector


def connector_for(key: str, *, ctx: ProviderContext | None = None) -> Connector | None:
    """The enabled connector for URL key ``key``, or ``None`` (unknown or disabled)."""
    connection = find_connection(key)
    if connection is None or not connection.enabled:
        return None
    try:
        return build_connector(connection, ctx=ctx)
    except NotRegistered:
        return None
