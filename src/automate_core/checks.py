"""System checks for ``settings.AUTOMATE`` (ids ``automate.E1xx``, ``W100``).

Every installed app's keys are checked here, with the check id each field declares
(``automate.E105`` by default): the apps only declare them (see :mod:`automate_core.conf`).
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from automate_core import conf
from automate_core._netguard import PURPOSES, allowed_for
from automate_core.conf import settings as automate_settings
from automate_core.secrets import GRANT_USES


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
    if "HTTP_ALLOW_FOR" not in bad:
        errors.extend(_check_allow_for())
    errors.extend(_warn_global_allow_lists(bad))
    if "SECRET_GRANTS" not in bad:
        errors.extend(_check_secret_grants())
    return errors


def _check_allow_for() -> list[checks.CheckMessage]:
    """``HTTP_ALLOW_FOR``: known purposes, only ``networks`` / ``hosts``, real networks."""
    errors: list[checks.CheckMessage] = []
    for purpose, entry in automate_settings.HTTP_ALLOW_FOR.items():
        problem = None
        if purpose not in PURPOSES:
            problem = f"names {purpose!r}, which is not an outbound purpose"
        elif set(entry) - {"networks", "hosts"}:
            problem = f"[{purpose!r}] has keys other than 'networks' and 'hosts'"
        else:
            try:
                allowed_for(purpose)
            except ImproperlyConfigured as exc:
                problem = f"[{purpose!r}]: {exc}"
        if problem is not None:
            errors.append(
                checks.Error(
                    f'AUTOMATE["HTTP_ALLOW_FOR"] {problem}.',
                    hint=f"Purposes: {', '.join(PURPOSES)}; each maps to "
                    '{"networks": ["10.0.0.0/8"], "hosts": ["svc.internal"]}.',
                    id="automate.E110",
                )
            )
    return errors


def _warn_global_allow_lists(bad: set[str]) -> list[checks.CheckMessage]:
    """The global allow-lists open a network to every outbound path, http_request included."""
    names = [
        name
        for name in ("HTTP_ALLOW_NETWORKS", "HTTP_ALLOW_HOSTS")
        if name not in bad and getattr(automate_settings, name)
    ]
    if not names:
        return []
    return [
        checks.Warning(
            f"AUTOMATE[{' and '.join(repr(n) for n in names)}] open non-public addresses to "
            "every outbound path, including http_request steps whose URL comes from an "
            "event payload.",
            hint='Move each entry to AUTOMATE["HTTP_ALLOW_FOR"] under the purpose that needs '
            'it ("mcp", "llm", "connection"...); see docs/outbound-http.md.',
            id="automate.W110",
        )
    ]


def _check_secret_grants() -> list[checks.CheckMessage]:
    """``SECRET_GRANTS``: every entry names hosts, and only known uses."""
    errors: list[checks.CheckMessage] = []
    for name, grant in automate_settings.SECRET_GRANTS.items():
        problem = None
        if set(grant) - {"hosts", "uses"}:
            problem = "has keys other than 'hosts' and 'uses'"
        elif not grant.get("hosts"):
            problem = "names no hosts: a grant binds the secret to the hosts it may be sent to"
        elif set(grant.get("uses", ())) - set(GRANT_USES):
            problem = f"has uses other than {', '.join(GRANT_USES)}"
        if problem is not None:
            errors.append(
                checks.Error(
                    f'AUTOMATE["SECRET_GRANTS"][{name!r}] {problem}.',
                    hint='e.g. {"STRIPE_API_KEY": {"hosts": ["api.stripe.com"], '
                    '"uses": ["http_request"]}}; see docs/secrets.md.',
                    id="automate.E111",
                )
            )
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
