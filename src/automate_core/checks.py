"""System checks for ``settings.AUTOMATE`` (ids ``automate.E1xx``)."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.utils.module_loading import import_string

from automate_core.conf import DEFAULTS
from automate_core.conf import settings as automate_settings


@checks.register(checks.Tags.security, "automate")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from django.conf import settings

    errors: list[checks.CheckMessage] = []
    user = getattr(settings, "AUTOMATE", {})
    if not isinstance(user, dict):
        return [checks.Error("AUTOMATE must be a dict.", id="automate.E100")]
    for name in sorted(set(user) - set(DEFAULTS)):
        errors.append(
            checks.Warning(
                f"AUTOMATE[{name!r}] is not a Django Automate setting.",
                hint="Check the spelling; the settings are listed in docs/reference.md.",
                id="automate.W100",
            )
        )
    max_bytes = automate_settings.WEBHOOK_MAX_BODY_BYTES
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes <= 0:
        errors.append(
            checks.Error(
                'AUTOMATE["WEBHOOK_MAX_BODY_BYTES"] must be a positive integer.',
                id="automate.E101",
            )
        )
    cache_seconds = automate_settings.CONNECTION_CACHE_SECONDS
    if (
        not isinstance(cache_seconds, int | float)
        or isinstance(cache_seconds, bool)
        or (cache_seconds < 0)
    ):
        errors.append(
            checks.Error(
                'AUTOMATE["CONNECTION_CACHE_SECONDS"] must be a number of seconds, 0 or more.',
                hint="0 reads the connection on every lookup.",
                id="automate.E104",
            )
        )
    for path in automate_settings.SECRET_BACKENDS:
        try:
            import_string(path)
        except ImportError:
            errors.append(
                checks.Error(
                    f'AUTOMATE["SECRET_BACKENDS"] names {path!r}, which cannot be imported.',
                    hint="Use a dotted path to a class with a get(name) method.",
                    id="automate.E102",
                )
            )
    errors.extend(_check_encryption_keys())
    return errors


def _check_encryption_keys() -> list[checks.CheckMessage]:
    from cryptography.fernet import Fernet

    for key in automate_settings.ENCRYPTION_KEYS:
        try:
            Fernet(key)
        except (ValueError, TypeError):
            return [
                checks.Error(
                    'AUTOMATE["ENCRYPTION_KEYS"] holds a value that is not a Fernet key.',
                    hint="Generate one with cryptography.fernet.Fernet.generate_key().",
                    id="automate.E103",
                )
            ]
    return []
