"""``secret://NAME`` references, the backends that resolve them, and where they may go.

Configuration stores references, never values: ``{"api_token": "secret://JIRA_TOKEN"}``.
A :class:`SecretResolver` asks each configured backend in turn. Every value it hands out
is remembered by :mod:`automate_core.redaction`, so it can be scrubbed from log records,
error messages and stored rows. :class:`SecretValue` never shows its value in a repr.

**Grants.** A secret sent as an outbound credential is checked first
(:func:`check_grant`): ``AUTOMATE["SECRET_GRANTS"]`` binds a secret to the hosts it may be
sent to and, optionally, to the uses that may send it::

    AUTOMATE = {"SECRET_GRANTS": {
        "STRIPE_API_KEY": {"hosts": ["api.stripe.com"], "uses": ["http_request"]},
        "CRM_TOKEN": {"hosts": [".crm.example.com"]},  # the domain and below, every use
    }}

A secret with a grant goes only to its hosts, for its uses, whoever configured the call.
A secret with no grant goes only where the place that names it also fixes the host (an
*implicit* grant, chosen by the caller): a connection profile's ``base_url``, an LLM
profile's ``base_url`` (or its provider's own API host), a knowledge base's store host,
an MCP server's URL, or the URL that project code passes to ``ssrf_safe_request``. A
workflow step's ``credentials_ref`` has no implicit grant: the URL of an ``http_request``
step is written by a workflow author or taken from an event payload, so the secret needs
an explicit grant naming ``http_request`` (or no ``uses``) and the URL's host. Webhook
signing secrets (registered by :func:`register_signing_secrets`; the ``automate`` app
registers the ones connection profiles and ``AUTOMATE["CONNECTORS"]`` name) are never
sent anywhere, grant or not. Refusals are :class:`SecretNotGranted` errors that name the
secret, the host and the use, and are raised before any value is read.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Protocol, runtime_checkable

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from automate_core import redaction
from automate_core._netguard import PURPOSES, host_matches, normalize_host
from automate_core.conf import settings as automate_settings
from automate_core.providers.errors import AutomateError, ErrorCodes

SCHEME = "secret://"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,199}$")


class SecretNotFound(AutomateError):
    """A secret reference could not be resolved by any backend."""

    def __init__(self, name: str) -> None:
        super().__init__(
            ErrorCodes.CONFIGURATION,
            f"secret {name!r} was not found in any secret backend",
            details={"secret": name},
        )


def is_reference(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SCHEME)


def parse_reference(reference: str) -> str:
    """Return NAME from ``secret://NAME``; raise ``ValueError`` for anything else."""
    if not is_reference(reference):
        raise ValueError(f"not a secret reference (expected {SCHEME}NAME)")
    name = reference[len(SCHEME) :]
    if not _NAME_RE.match(name):
        raise ValueError(
            f"invalid secret name {name!r}: use letters, digits, '_', '-', '.', '/' (max 200)"
        )
    return name


class SecretValue(str):
    """A resolved secret: a ``str`` whose repr never shows the value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SecretValue('********')"


@runtime_checkable
class SecretBackend(Protocol):
    """Looks a secret up by name; returns ``None`` when it does not hold it.

    This is the whole interface for Vault-like stores (HashiCorp Vault, AWS Secrets
    Manager, GCP Secret Manager, 1Password...). Write a class with a no-argument
    constructor and ``get(name)``, and list its dotted path in
    ``AUTOMATE["SECRET_BACKENDS"]``; backends are asked in that order and the first
    non-``None`` answer wins::

        class VaultBackend:
            def __init__(self):
                self.client = hvac.Client(url=os.environ["VAULT_ADDR"])

            def get(self, name: str) -> str | None:
                try:
                    data = self.client.secrets.kv.v2.read_secret_version(path=name)
                except hvac.exceptions.InvalidPath:
                    return None
                return data["data"]["data"]["value"]

    Rules: return ``None`` for "not here" (so the next backend is asked) and raise only
    for real failures, never with the value in the message; don't log values; the
    resolver registers every value it hands out with :mod:`automate_core.redaction`, so a
    backend needs no redaction of its own. Instances are created once per process and
    shared between threads, so cache clients, not values, unless expiry is handled.
    """

    def get(self, name: str) -> str | None: ...


class EnvironmentBackend:
    """``secret://github-webhook`` -> ``$AUTOMATE_SECRET_GITHUB_WEBHOOK``."""

    def get(self, name: str) -> str | None:
        env_name = automate_settings.SECRET_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()
        return os.environ.get(env_name)


class SettingsBackend:
    """``secret://NAME`` -> ``settings.AUTOMATE["SECRETS"]["NAME"]``."""

    def get(self, name: str) -> str | None:
        value = automate_settings.SECRETS.get(name)
        return None if value is None else str(value)


class DatabaseBackend:
    """``secret://NAME`` -> the decrypted :class:`automate_core.models.Secret` row NAME."""

    def get(self, name: str) -> str | None:
        # Here, not at the top: this module serves code that runs before django.setup()
        # (connectors, test contexts), and a model cannot be imported before the apps are.
        from automate_core.models import Secret

        row = Secret.objects.filter(name=name).only("ciphertext").first()
        return None if row is None else row.get_value()


class SecretResolver:
    """Resolves references through an ordered list of backends."""

    def __init__(self, backends: list[SecretBackend]) -> None:
        self.backends = list(backends)

    def resolve(self, value: str) -> str:
        """Resolve ``secret://NAME``; any other string is returned unchanged."""
        if not is_reference(value):
            return value
        name = parse_reference(value)
        for backend in self.backends:
            found = backend.get(name)
            if found is not None:
                redaction.remember(found)
                _remember_name(found, name)
                return SecretValue(found)
        raise SecretNotFound(name)

    def __repr__(self) -> str:
        return f"SecretResolver({[type(b).__name__ for b in self.backends]})"


@lru_cache(maxsize=8)
def _load_backends(paths: tuple[str, ...]) -> tuple[SecretBackend, ...]:
    backends = []
    for path in paths:
        try:
            backends.append(import_string(path)())
        except ImportError as exc:
            raise ImproperlyConfigured(
                f'AUTOMATE["SECRET_BACKENDS"] names {path!r}, which cannot be imported: {exc}'
            ) from exc
    return tuple(backends)


def default_resolver() -> SecretResolver:
    return SecretResolver(list(_load_backends(tuple(automate_settings.SECRET_BACKENDS))))


def resolve(value: str) -> str:
    """Resolve one reference with the configured backends."""
    return default_resolver().resolve(value)


# -- Grants -----------------------------------------------------------------------------

#: What a grant's ``uses`` may name: the outbound purposes, and ``code`` for project code
#: calling :func:`automate_core.http.ssrf_safe_request` or ``safe_client`` itself.
GRANT_USES = ("code", *PURPOSES)

_signing_sources: list[Callable[[], Iterable[str]]] = []

# Resolved value -> the names it was resolved from, for code that receives a config whose
# references were already resolved (connectors): check_value_grant finds the grant by it.
# Bounded like the redaction memory; kept in this process only, never logged.
_names_by_value: dict[str, set[str]] = {}
_MAX_NAMES = 10_000


def _remember_name(value: str, name: str) -> None:
    if len(_names_by_value) >= _MAX_NAMES and value not in _names_by_value:
        _names_by_value.pop(next(iter(_names_by_value)))
    _names_by_value.setdefault(value, set()).add(name)


class SecretNotGranted(AutomateError):
    """A secret was about to be sent where no grant allows it (the value is never read)."""

    def __init__(self, name: str, host: str, use: str, why: str) -> None:
        super().__init__(
            ErrorCodes.PERMISSION_DENIED,
            f"secret {name!r} may not be sent to {host!r} (use {use}): {why}",
            retryable=False,
            details={"secret": name, "host": host, "use": use, "reason": "secret_not_granted"},
        )


_signing_probes: list[Callable[[str], bool]] = []


def register_signing_secrets(
    source: Callable[[], Iterable[str]], *, probe: Callable[[str], bool] | None = None
) -> None:
    """Name a source of webhook signing secrets (``secret://NAME`` references or names).

    ``source()`` is called when a credential is checked; the secrets it returns are never
    sent as outbound credentials. A source may answer from a cache that another process's
    change reaches late; ``probe(name)``, when given, is asked at each credential check
    whose name ``source()`` did not list, and must answer from the stored truth (True: it
    is a signing secret). Registering the same callables twice is harmless.
    """
    if source not in _signing_sources:
        _signing_sources.append(source)
    if probe is not None and probe not in _signing_probes:
        _signing_probes.append(probe)


def signing_secret_names() -> set[str]:
    """The names of every registered webhook signing secret."""
    names: set[str] = set()
    for source in _signing_sources:
        for value in source():
            if is_reference(value):
                try:
                    names.add(parse_reference(value))
                except ValueError:
                    continue
            elif isinstance(value, str):
                names.add(value)
    return names


def check_not_signing(reference: str, *, use: str, host: str = "") -> str:
    """Return NAME unless ``secret://NAME`` is a webhook signing secret (then refuse)."""
    name = parse_reference(reference)
    if name in signing_secret_names() or _probed_signing(name):
        raise SecretNotGranted(
            name, host, use, "it is a webhook signing secret, never an outbound credential"
        )
    return name


def _probed_signing(name: str) -> bool:
    """Ask the probes, for a name the sources did not list: a signing secret another
    process just stored is refused now, not when a cache expires.

    Not from a running event loop: probes read the database, which async code may not
    (an async client's per-request check); that client's credential was probed when it
    was built, in sync code, and the sources still answer.
    """
    if not _signing_probes:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return any(probe(name) for probe in _signing_probes)
    return False


def check_use(reference: str, *, use: str) -> str:
    """Return NAME when an explicit grant allows ``use`` (its hosts are checked later, by
    :func:`check_grant`, once the host is known); else raise :class:`SecretNotGranted`."""
    name = check_not_signing(reference, use=use)
    grant = automate_settings.SECRET_GRANTS.get(name)
    if grant is None:
        raise SecretNotGranted(name, "", use, f'no AUTOMATE["SECRET_GRANTS"][{name!r}] entry')
    uses = grant.get("uses") or GRANT_USES
    if use not in uses:
        raise SecretNotGranted(name, "", use, f"its grant allows only the uses {', '.join(uses)}")
    return name


def check_grant(reference: str, *, use: str, host: str, implicit_hosts: Iterable[str] = ()) -> str:
    """Return NAME when ``secret://NAME`` may be sent to ``host`` by ``use``, else raise
    :class:`SecretNotGranted` (see the module docstring for the rules).

    ``implicit_hosts`` are the hosts the caller's own configuration fixes together with
    the reference; they count only for a secret ``SECRET_GRANTS`` does not name.
    """
    host = normalize_host(host or "")
    name = check_not_signing(reference, use=use, host=host)
    grant = automate_settings.SECRET_GRANTS.get(name)
    if grant is None:
        if host and host_matches(host, implicit_hosts):
            return name
        raise SecretNotGranted(
            name,
            host,
            use,
            f'no AUTOMATE["SECRET_GRANTS"][{name!r}] entry grants it to this host',
        )
    uses = grant.get("uses") or GRANT_USES
    if use not in uses:
        raise SecretNotGranted(name, host, use, f"its grant allows only the uses {', '.join(uses)}")
    if not host or not host_matches(host, grant.get("hosts", ())):
        raise SecretNotGranted(name, host, use, "its grant does not name this host")
    return name


def resolve_granted(
    reference: str,
    *,
    use: str,
    host: str,
    implicit_hosts: Iterable[str] = (),
    resolver: SecretResolver | None = None,
) -> str:
    """:func:`check_grant`, then resolve the reference (with ``resolver`` if given)."""
    check_grant(reference, use=use, host=host, implicit_hosts=implicit_hosts)
    return (resolver or default_resolver()).resolve(reference)


def check_value_grant(
    value: str, *, use: str, host: str, implicit_hosts: Iterable[str] = ()
) -> None:
    """:func:`check_grant` for an already resolved value (a connector's resolved config).

    Every secret the value was resolved from must not be a signing secret, and one of
    them must be granted to ``host``; a value no reference produced counts as a secret
    with no grant (only ``implicit_hosts``).
    """
    names = sorted(_names_by_value.get(str(value), ()))
    if not names:
        if host_matches(normalize_host(host or ""), implicit_hosts):
            return
        raise SecretNotGranted("(unnamed)", normalize_host(host or ""), use, "no grant covers it")
    refusal: SecretNotGranted | None = None
    for name in names:
        check_not_signing(SCHEME + name, use=use, host=host)
    for name in names:
        try:
            check_grant(SCHEME + name, use=use, host=host, implicit_hosts=implicit_hosts)
            return
        except SecretNotGranted as exc:
            refusal = refusal or exc
    assert refusal is not None
    raise refusal
