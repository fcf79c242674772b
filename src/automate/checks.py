"""System checks for connectors, connection profiles and Celery (``automate.E0xx``/``W0xx``)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router

from automate import retention
from automate.conf import settings as app_settings
from automate.dispatch import execution_mode
from automate.models import ConnectionProfile
from automate_connectors.base import Connector
from automate_connectors.registry import connectors
from automate_core.conf import settings as automate_settings
from automate_core.models import Secret
from automate_core.secrets import (
    SCHEME,
    DatabaseBackend,
    EnvironmentBackend,
    SettingsBackend,
    default_resolver,
    is_reference,
    parse_reference,
)


@checks.register("automate")
def check_connector_settings(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    try:
        declared = app_settings.CONNECTORS
    except ImproperlyConfigured:
        return []  # not a dict of keys to entries: automate.E105, from the settings check
    messages: list[checks.CheckMessage] = []
    lookup = SecretLookup(databases)
    for key, entry in sorted(declared.items()):
        if not isinstance(entry, dict):
            messages.append(
                checks.Error(
                    f'AUTOMATE["CONNECTORS"][{key!r}] must be a dict.',
                    hint='e.g. {"secrets": ["secret://NAME"], "config": {...}}',
                    id="automate.E003",
                )
            )
            continue
        messages.extend(
            _check_connection(
                f'AUTOMATE["CONNECTORS"][{key!r}]',
                entry.get("connector", key),
                entry.get("secrets", ()),
                entry.get("enabled", True),
                config=entry.get("config", {}),
                lookup=lookup,
            )
        )
    return messages


@checks.register(checks.Tags.database, "automate")
def check_connection_profiles(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Run by ``manage.py check --database default``: profiles are rows, not settings."""
    if not databases:
        return []
    # `migrate` runs database checks before it migrates: the table may not exist yet.
    if not _has_table(databases[0], ConnectionProfile):
        return []
    messages: list[checks.CheckMessage] = []
    lookup = SecretLookup(databases)
    for profile in ConnectionProfile.objects.using(databases[0]).all():
        messages.extend(
            _check_connection(
                f"Connection profile {profile.key!r}",
                profile.connector_key,
                profile.webhook_secrets,
                profile.enabled,
                config=profile.config,
                lookup=lookup,
                obj=profile,
            )
        )
    return messages


def _check_connection(
    label: str,
    connector_key: str,
    secrets: Any,
    enabled: bool,
    *,
    config: Any,
    lookup: SecretLookup,
    obj: Any = None,
) -> list[checks.CheckMessage]:
    if connector_key not in connectors:
        return [
            checks.Error(
                f"{label} names the connector {connector_key!r}, which is not registered.",
                hint=f"Registered connectors: {', '.join(connectors.keys()) or 'none'}. "
                "Register yours with register_connector() in AppConfig.ready().",
                obj=obj,
                id="automate.E001",
            )
        ]
    if not enabled:  # a disabled connection receives nothing and is never built
        return []
    cls = connectors.get(connector_key)
    verifies = any(t.verification_method != "none" for t in cls.triggers()) or (
        cls.verify_webhook is not _base_verify()
    )
    messages: list[checks.CheckMessage] = []
    if verifies and not secrets:
        messages.append(
            checks.Warning(
                f"{label} has no webhook secret, so every webhook it receives gets a 401.",
                hint='Add "secrets": ["secret://NAME"] (or a secret in the admin).',
                obj=obj,
                id="automate.W001",
            )
        )
    for reference in dict.fromkeys([*_references(secrets), *_references(config)]):
        message = lookup.check(label, reference, obj)
        if message is not None:
            messages.append(message)
    return messages


def _references(value: Any) -> Iterator[str]:
    """Every ``secret://`` string inside a JSON-like value (a secrets list, a config)."""
    if isinstance(value, str):
        if is_reference(value):
            yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _references(item)


class SecretLookup:
    """Asks the configured secret backends whether they hold a name; keeps no value.

    A check may use a database only when Django hands it one (``check --database``,
    ``migrate``), so without one the backends that read the database are not asked and a
    name the others lack gets ``automate.W003`` ("perhaps in the database") rather than
    ``automate.W002`` ("nowhere").
    """

    def __init__(self, databases: Any) -> None:
        self.backends: list[Any] | None
        try:
            self.backends = default_resolver().backends
        except Exception:
            # automate.E102 reports a path that cannot be imported; a backend that cannot
            # be built here (its store unreachable from a build machine) must not fail the
            # check, and the resolver raises the same error where a secret is needed.
            self.backends = None
        # None: the database may not be used; False: it may, and holds no secrets table
        # (`migrate` runs the checks before it migrates), so no backend finds a row there.
        self.secret_table = _secret_table(databases)
        self._found: dict[str, tuple[bool, list[str]]] = {}

    def check(self, label: str, reference: str, obj: Any) -> checks.CheckMessage | None:
        if self.backends is None:
            return None
        try:
            name = parse_reference(reference)
        except ValueError as exc:
            return checks.Warning(
                f"{label} refers to {reference!r}: {exc}.",
                hint=f"Write it as {SCHEME}NAME.",
                obj=obj,
                id="automate.W002",
            )
        found, failures = self._lookup(name)
        if found:
            return None
        problem = f"{label} refers to {reference!r}, which no secret backend resolves"
        if self._skipped_database():
            problem += " without the database"
        if failures:
            problem += f" ({'; '.join(failures)})"
        effect = "every webhook it receives gets a 503 and its actions fail until it is provided"
        if self._skipped_database():
            return checks.Warning(
                f"{problem}: {effect}.",
                hint=self.how_to_provide(name)
                + " If it is a Secret row, `manage.py check --database default` asks the "
                "database too; silence automate.W003 then.",
                obj=obj,
                id="automate.W003",
            )
        return checks.Warning(
            f"{problem}: {effect}.", hint=self.how_to_provide(name), obj=obj, id="automate.W002"
        )

    def how_to_provide(self, name: str) -> str:
        ways = []
        for backend in self.backends or ():
            if isinstance(backend, DatabaseBackend):
                ways.append(f"store an automate_core Secret row named {name!r} (admin)")
            elif isinstance(backend, EnvironmentBackend):
                ways.append(f"set the environment variable {environment_variable(name)}")
            elif isinstance(backend, SettingsBackend):
                ways.append(f'add {name!r} to AUTOMATE["SECRETS"]')
            else:
                ways.append(f"add {name!r} to {type(backend).__name__}")
        if not ways:
            return 'AUTOMATE["SECRET_BACKENDS"] is empty: list the backends to ask.'
        return "Provide it: " + "; or ".join(ways) + "."

    def _lookup(self, name: str) -> tuple[bool, list[str]]:
        if name not in self._found:
            self._found[name] = self._ask_backends(name)
        return self._found[name]

    def _ask_backends(self, name: str) -> tuple[bool, list[str]]:
        failures: list[str] = []
        for backend in self.backends or ():
            if isinstance(backend, DatabaseBackend) and not self.secret_table:
                continue
            try:
                # The value is dropped at once: only "is there one" matters here.
                if backend.get(name) is not None:
                    return True, failures
            except Exception as exc:
                # The exception's text may quote what the backend read: name its type only.
                failures.append(f"{type(backend).__name__} raised {type(exc).__name__}")
        return False, failures

    def _skipped_database(self) -> bool:
        return self.secret_table is None and any(
            isinstance(b, DatabaseBackend) for b in self.backends or ()
        )


def environment_variable(name: str) -> str:
    """The variable ``EnvironmentBackend`` reads for ``secret://NAME``."""
    return automate_settings.SECRET_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def _secret_table(databases: Any) -> bool | None:
    alias = router.db_for_read(Secret)
    if not databases or alias not in databases:
        return None
    return _has_table(alias, Secret)


def _has_table(alias: str, model: Any) -> bool:
    with connections[alias].cursor() as cursor:
        return model._meta.db_table in connections[alias].introspection.table_names(cursor)


@checks.register("automate")
def check_celery_app(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """In the Celery mode, the tasks must bind to the project's app and its broker, and
    the workers should keep their database connections between tasks.

    ``shared_task`` sends through Celery's current app. Without a project app, imported
    when Django starts, that is Celery's own fallback app, which reads none of the
    ``CELERY_*`` settings and sends to ``amqp://guest@localhost//``.
    """
    try:
        mode = execution_mode()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="automate.E004")]
    if mode != "celery":
        return []
    from celery import current_app

    app = current_app._get_current_object()
    if _is_celery_fallback(app):
        return [
            checks.Warning(
                "Workflows run on Celery, but this project loads no Celery app: tasks go "
                "through Celery's fallback app, which ignores the CELERY_* settings and "
                "sends to amqp://guest@localhost// (or $CELERY_BROKER_URL), where the "
                "workers may not listen.",
                hint="Create yourproject/celery.py with app = Celery('yourproject') and "
                "app.config_from_object('django.conf:settings', namespace='CELERY'), and "
                "import that app in yourproject/__init__.py (see docs/workers.md).",
                id="automate.W004",
            )
        ]
    wanted = getattr(django_settings, "CELERY_BROKER_URL", None)
    actual = app.conf.broker_url
    if wanted and actual != wanted:
        return [
            checks.Warning(
                f"The Celery app {app.main!r} sends tasks to "
                f"{_shown_url(actual) or 'its default broker'}, but the setting "
                f"CELERY_BROKER_URL is {_shown_url(wanted)}: web, dispatcher and workers "
                "may not use the same broker.",
                hint="Configure the app from the Django settings: "
                "app.config_from_object('django.conf:settings', namespace='CELERY'). "
                "The environment variable CELERY_BROKER_URL, when set, wins over both.",
                id="automate.W005",
            )
        ]
    if app.fixups and not app.conf.get("CELERY_DB_REUSE_MAX"):
        # Read as Celery's Django fix-up reads it (from the app's configuration).
        return [
            checks.Warning(
                "CELERY_DB_REUSE_MAX is not set: Celery's Django support closes every "
                "database connection before and after each task, so each batch of events "
                "opens a new database connection (on PostgreSQL a new server process, "
                "and the statements prepared on the old one are lost).",
                hint="Set CELERY_DB_REUSE_MAX = 10_000 in your settings: Django Automate's "
                "tasks still apply CONN_MAX_AGE and CONN_HEALTH_CHECKS once per task, as "
                "Django does per request (see docs/workers.md).",
                id="automate.W006",
            )
        ]
    return []


def _is_celery_fallback(app: Any) -> bool:
    # What celery._state creates when no app is current: Celery("default", fixups=[],
    # set_as_current=False). A project's own app is current and has the Django fix-up.
    return app.main == "default" and not app.set_as_current and not app.fixups


def _shown_url(url: Any) -> str:
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url)) if url else ""


def _base_verify() -> Any:
    return Connector.verify_webhook


@checks.register(checks.Tags.security, "automate", deploy=True)
def check_metrics_access(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``check --deploy``: /metrics served to anyone is worth a second look in production
    (its labels name workflows, connectors and the hosts the project calls)."""
    if app_settings.METRICS_TOKEN or not app_settings.METRICS_PUBLIC:
        return []
    return [
        checks.Warning(
            'AUTOMATE["METRICS_PUBLIC"] is True and no METRICS_TOKEN is set: /metrics '
            "answers anyone who can reach it.",
            hint='Set AUTOMATE["METRICS_TOKEN"] to a secret:// reference and give Prometheus '
            "the token (authorization: {credentials: ...} in its scrape config), or put "
            '"automate.W030" in SILENCED_SYSTEM_CHECKS if a network restriction keeps it '
            "private.",
            id="automate.W030",
        )
    ]


#: The shortest retention of settled outbox items that outlives the senders' retries:
#: Stripe retries an unacknowledged event for up to 3 days.
MIN_SETTLED_RETENTION = timedelta(days=3)


@checks.register("automate")
def check_retention(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``AUTOMATE["RETENTION"]``: known keys and ages (E130); a stored event's id must be
    kept as long as its sender may send it again (W130)."""
    try:
        ages = retention.retention()
    except ImproperlyConfigured:
        return []  # not a dict: automate.E105, from the settings check
    except ValueError as exc:
        return [
            checks.Error(
                f'AUTOMATE["RETENTION"]: {exc}.',
                hint='e.g. AUTOMATE["RETENTION"] = {"DONE": timedelta(days=7), "DEAD": None}',
                id="automate.E130",
            )
        ]
    short = [
        key
        for key in ("DONE", "DEAD")
        if ages[key] is not None and ages[key] < MIN_SETTLED_RETENTION  # type: ignore[operator]
    ]
    if not short:
        return []
    return [
        checks.Warning(
            f'AUTOMATE["RETENTION"] keeps {" and ".join(short)} outbox items less than 3 days: '
            "once an item is pruned, a sender's retry of that event is accepted as a new one "
            "(Stripe retries for up to 3 days).",
            hint="Keep settled items longer than your senders retry, or put "
            '"automate.W130" in SILENCED_SYSTEM_CHECKS if none of them retries that long.',
            id="automate.W130",
        )
    ]
