"""``secret://NAME`` references and the backends that resolve them.

Configuration stores references, never values: ``{"api_token": "secret://JIRA_TOKEN"}``.
A :class:`SecretResolver` asks each configured backend in turn. Every value it hands out
is remembered by :mod:`automate_core.redaction`, so it can be scrubbed from log records,
error messages and stored rows. :class:`SecretValue` never shows its value in a repr.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Protocol, runtime_checkable

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from automate_core import redaction
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
