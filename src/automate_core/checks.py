"""System checks for ``settings.AUTOMATE`` (ids ``automate.E1xx``, ``W100``).

Every installed app's keys are checked here, with the check id each field declares
(``automate.E105`` by default): the apps only declare them (see :mod:`automate_core.conf`).
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.utils.module_loading import import_string

from automate_core import conf
from automate_core.conf import settings as automate_settings


@checks.register(checks.Tags.security, "automate")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``AUTOMATE`` against the keys every installed app declares (automate_core.conf)."""
    from django.conf import settings

    user = getattr(settings, "AUTOMATE", {})
    if not isinstance(user, dict):
        return [checks.Error("AUTOMATE must be a dict.", id="automate.E100")]
    classes = conf.installed_settings_classes()
    known = {key for cls in classes for key in cls.names()}
    errors: list[checks.CheckMessage] = [
        checks.Warning(
            f"AUTOMATE[{name!r}] is not a Django Automate setting.",
            hint="Check the spelling; the settings are listed in docs/reference.md.",
            id="automate.W100",
        )
        for name in sorted(set(user) - known)
    ]
    bad: set[str] = set()
    for cls in classes:
        for problem in cls.problems(user):
            bad.add(problem.name)
            if problem.check_id is not None:  # else the app's own check reports it
                errors.append(checks.Error(problem.message, hint=problem.hint, id=problem.check_id))
    if "SECRET_BACKENDS" not in bad:
        errors.extend(_check_secret_backends())
    if "ENCRYPTION_KEYS" not in bad:
        errors.extend(_check_encryption_keys())
    return errors


def _check_secret_backends() -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
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
