"""Builds connector instances from connection profiles and settings defaults.

A profile row (``ConnectionProfile``) wins over ``AUTOMATE["CONNECTORS"][key]`` in settings:

    AUTOMATE = {"CONNECTORS": {
        "github": {"secrets": ["secret://GITHUB_WEBHOOK_SECRET"]},
        "acme_stripe": {"connector": "stripe", "secrets": ["secret://STRIPE_WHSEC"]},
    }}
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from automate.conf import settings as app_settings
from automate.models import ConnectionProfile
from automate_connectors.base import VALIDATED, Connector, recorded_validations
from automate_connectors.registry import NotRegistered, get_connector

# resolve_config moved to automate_connectors.resolve; importable from here as before.
from automate_connectors.resolve import resolve_config, resolve_webhook_secret
from automate_core import secrets
from automate_core.offloop import HelperThread, in_event_loop
from automate_core.providers.base import ProviderContext


@dataclass(frozen=True)
class Connection:
    """The resolved description of one configured connection (not yet instantiated)."""

    key: str
    connector_key: str
    config: Mapping[str, Any] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    enabled: bool = True


#: Past this many keys a cache starts over: URL keys come from the outside world.
CACHE_MAX_KEYS = 1000

T = TypeVar("T")


class _Recent(Generic[T]):
    """Answers read from the database, kept per key for
    ``AUTOMATE["CONNECTION_CACHE_SECONDS"]`` (per ``time.monotonic()``).

    Inside a transaction nothing is kept or served: it may see rows that are never
    committed (a test's). An answer read while :meth:`clear` ran is not kept either.
    From a running event loop the answer is read in a thread of its own
    (:func:`_load_off_loop`).
    """

    def __init__(self) -> None:
        self.entries: dict[str, tuple[float, T]] = {}
        self._generation = 0

    def get(
        self,
        key: str,
        load: Callable[[], T],
        *,
        valid: Callable[[T], bool] | None = None,
        ttl: float | None = None,
    ) -> T:
        """The kept answer for ``key`` (if ``valid`` says it still is), else ``load()``.

        ``ttl`` is :func:`_keeping`'s answer when the caller has it already (the webhook
        view makes two lookups per request, and the question costs more than a lookup).
        """
        if ttl is None:
            ttl = _keeping()
        cached = ttl > 0
        if cached:
            hit = self.entries.get(key)
            if hit is not None and hit[0] > time.monotonic() and (valid is None or valid(hit[1])):
                return hit[1]
        generation = self._generation
        value = _load_off_loop(load)
        if cached and generation == self._generation:
            if len(self.entries) >= CACHE_MAX_KEYS:
                self.entries.clear()
            self.entries[key] = (time.monotonic() + ttl, value)
        return value

    def clear(self) -> None:
        self._generation += 1
        self.entries.clear()


def _keeping(database: BaseDatabaseWrapper | None = None) -> float:
    """For how long an answer read now may be kept: 0 inside a transaction, which may see
    rows that are never committed (a test's), else ``CONNECTION_CACHE_SECONDS``.

    ``database`` is the default database's wrapper when the caller has it already (looking
    it up costs as much as the rest of this)."""
    ttl = app_settings.CONNECTION_CACHE_SECONDS
    db = database if database is not None else transaction.get_connection()
    if ttl > 0 and db.in_atomic_block:
        return 0
    return ttl


def _load_off_loop(load: Callable[[], T]) -> T:
    """``load()``, in another thread when this one runs an event loop.

    An async client's per-request credential check reads the signing secret references
    (:func:`signing_secret_references`) in the loop; once their entry has expired, reading
    the table there would raise ``SynchronousOnlyOperation``. The loop waits for that one
    read (once per ``CONNECTION_CACHE_SECONDS``), made by the process's loader thread.
    """
    if not in_event_loop():
        return load()
    return _loader.call(lambda: _load_and_close(load))


def _load_and_close(load: Callable[[], T]) -> T:
    # The loader thread outlives the read by a cache period or more: a connection kept
    # open that long would be stale (nothing calls close_old_connections here).
    try:
        return load()
    finally:
        connections.close_all()


#: The thread those reads run in, made for the first (and again in a forked child). One
#: is enough: a read is short and its loop waits for it.
_loader = HelperThread("automate-connections")


@dataclass(frozen=True)
class _Built:
    """What :func:`webhook_connector` keeps per URL key: the connection it was built for,
    its resolved config and webhook secrets, the context it was resolved with, and the
    config validations building an instance made (each request's instance is built by
    its class, without validating the same config again)."""

    connection: Connection
    config: Any
    secrets: tuple[str, ...]
    ctx: ProviderContext
    validations: tuple[tuple[type, dict[str, Any], Any], ...]


#: Connections by URL key (``None``: no such connection).
_connections: _Recent[Connection | None] = _Recent()
#: The signing secret references of all the profiles, under the one key "".
_signing: _Recent[tuple[str, ...]] = _Recent()
#: By URL key: the connection a webhook connector was last built for, with its config and
#: webhook secrets resolved by the default backends, and the connector built from them
#: (:class:`_Built`).
_resolved: _Recent[_Built] = _Recent()


def find_connection(key: str) -> Connection | None:
    """The profile named ``key``, else the settings entry; ``None`` when neither exists.

    Outside a transaction the answer is kept for ``AUTOMATE["CONNECTION_CACHE_SECONDS"]``:
    the webhook view would otherwise read the profile on every request. Inside one it is
    always read, since the transaction may see rows that are never committed (a test's).
    """
    return _connections.get(key, lambda: _load_connection(key))


def clear_connection_cache(**kwargs: Any) -> None:
    """Forget every looked-up connection, the signing secret references and the resolved
    webhook secrets (a receiver of profile, secret and settings changes)."""
    _connections.clear()
    _signing.clear()
    _resolved.clear()


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


def signing_secret_references() -> list[str]:
    """Every webhook signing secret reference of the profiles and ``AUTOMATE["CONNECTORS"]``.

    Registered with :func:`automate_core.secrets.register_signing_secrets`, so none of them
    is ever sent as an outbound credential (a stolen signing secret forges webhooks).

    Asked at every credential check: outside a transaction the profiles' references are
    kept like connections (:func:`find_connection`), for
    ``AUTOMATE["CONNECTION_CACHE_SECONDS"]``, and forgotten at once when this process
    saves or deletes a profile; another process's change is seen within that time.
    """
    references = list(_signing.get("", _profile_signing_references))
    for entry in app_settings.CONNECTORS.values():
        if isinstance(entry, Mapping):
            references.extend(v for v in entry.get("secrets", ()) if isinstance(v, str))
    return references


def _profile_signing_references() -> tuple[str, ...]:
    return tuple(
        value
        for secrets in ConnectionProfile.objects.values_list("webhook_secrets", flat=True)
        for value in (secrets or ())
        if isinstance(value, str)
    )


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


def webhook_connector(
    key: str, *, trace_id: str, database: BaseDatabaseWrapper | None = None
) -> Connector | None:
    """:func:`connector_for` with the default secret backends, as the webhook view needs it.

    A new instance every call (a connector may keep state while it checks a request), but
    built from a config and webhook secrets resolved once per connection and kept like it
    (:func:`find_connection`): resolving a secret is most of what building one costs, and a
    webhook does it on every request. Its config is validated once per entry too: each
    instance is built by its class, which gets the model validated for the entry.
    Saving a profile or a ``Secret`` row, or changing ``AUTOMATE``, in this process counts
    at once; a secret changed in a backend elsewhere counts within
    ``AUTOMATE["CONNECTION_CACHE_SECONDS"]``. A secret that cannot be resolved is not
    kept: the next request tries again. ``database`` is the default database's wrapper,
    when the caller has it (the webhook view looks it up once per request).
    """
    ttl = _keeping(database)
    connection = _connections.get(key, lambda: _load_connection(key), ttl=ttl)
    if connection is None or not connection.enabled:
        return None
    try:
        cls = get_connector(connection.connector_key)
    except NotRegistered:
        return None

    def resolve() -> _Built:
        ctx = ProviderContext(trace_id=trace_id)
        config = resolve_config(connection.config, ctx.secrets)
        secrets = tuple(resolve_webhook_secret(value, ctx.secrets) for value in connection.secrets)
        # Built once here: a config that does not validate is refused now (and not kept),
        # and the validations it made serve every request of the entry.
        _, validations = recorded_validations(lambda: cls(config, ctx=ctx))
        return _Built(connection, config, secrets, ctx, validations)

    # Only for the connection it was resolved from: the connection read again (expired, or
    # changed) is resolved again.
    built = _resolved.get(key, resolve, valid=lambda entry: entry.connection is connection, ttl=ttl)
    # Built by its class, as cls(config, ctx=ctx) always was; only pydantic's validation of
    # the same config again is skipped (validated): most of what building one costs once
    # its secrets are resolved. The model is shared by the entry's instances, as the
    # config it was made from is; it lives and is forgotten with the entry
    # (CONNECTION_CACHE_SECONDS, cleared on a profile, Secret row or settings change).
    token = VALIDATED.set(built.validations)  # what ``with validated(...)`` does
    try:
        connector = cls(built.config, ctx=_with_trace_id(built.ctx, trace_id))
    finally:
        VALIDATED.reset(token)
    # Set after construction: subclasses may define __init__ without calling super().
    connector._automate_webhook_secrets = built.secrets
    return connector


def _with_trace_id(ctx: ProviderContext, trace_id: str) -> ProviderContext:
    """``ctx`` for another request: its resolver, settings and logger, this trace id (no
    default factory runs: the resolver reads the settings, the logger takes a lock)."""
    copy = object.__new__(ProviderContext)
    copy.__dict__.update(ctx.__dict__)
    object.__setattr__(copy, "trace_id", trace_id)
    return copy
