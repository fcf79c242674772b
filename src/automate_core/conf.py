"""Typed settings per app, all read from the one ``settings.AUTOMATE`` dict users write.

Each app declares its own keys, with types and defaults, in one frozen dataclass in its
``conf`` module, and reads them through a lazy object with typed attributes::

    # automate_llm/conf.py
    @dataclass(frozen=True)
    class LLMSettings(AppSettings):
        LLM_HTTP_CLIENT_FACTORY: str | Callable[..., Any] | None = None

    settings = LLMSettings.lazy()

    # anywhere in automate_llm
    from automate_llm.conf import settings as llm_settings
    factory = llm_settings.LLM_HTTP_CLIENT_FACTORY

The app's ``AppConfig`` names the class (``automate_settings = LLMSettings``), so the
system checks know every installed app's keys: ``automate.W100`` warns about a key no
installed app declares, and a value of the wrong type or out of range is an error naming
the key, e.g. ``AUTOMATE["OUTBOX_MAX_ATTEMPTS"] must be a positive integer, not 0.`` (the
field's own check id, ``automate.E105`` by default).

Nothing is read at import time. The first read builds the values from the current
``AUTOMATE`` dict; they are kept until ``setting_changed`` for ``AUTOMATE`` (what
``override_settings`` and pytest-django's ``settings`` fixture send) or until
``settings.AUTOMATE`` is replaced. Reading a key whose value is invalid raises
``ImproperlyConfigured`` naming it; the other keys still read normally.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from django.apps import apps
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

__all__ = [
    "GENERIC_CHECK_ID",
    "AppSettings",
    "CoreSettings",
    "installed_settings_classes",
    "setting",
    "settings",
]

#: The check id of a bad value when its field names no other.
GENERIC_CHECK_ID = "automate.E105"

T = TypeVar("T")
S = TypeVar("S", bound="AppSettings")


def setting(
    default: T,
    *,
    minimum: float | None = None,
    positive: bool = False,
    must: str | None = None,
    check_id: str | None = GENERIC_CHECK_ID,
    hint: str | None = None,
) -> T:
    """A declared key: its default and what a value must be besides its type.

    ``must`` replaces the generated description in messages ("a positive integer");
    ``check_id=None`` leaves a bad value to a check of the app's own that reports it.
    A mutable default is copied each time the values are read from ``AUTOMATE``, so no
    caller can change the declared one.
    """
    metadata = {
        "minimum": minimum,
        "positive": positive,
        "must": must,
        "check_id": check_id,
        "hint": hint,
    }
    if isinstance(default, list | dict | set):
        return cast(
            T, dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
        )
    return cast(T, dataclasses.field(default=default, metadata=metadata))


@dataclass(frozen=True)
class Problem:
    """One bad value: the message names its ``AUTOMATE[...]`` key and never shows a secret."""

    name: str
    message: str
    check_id: str | None
    hint: str | None


class AppSettings:
    """Base of each app's settings dataclass (decorate the subclass ``@dataclass(frozen=True)``).

    Fields are UPPER_CASE keys of ``AUTOMATE`` with a type and a default (plain, or
    :func:`setting` for a range, a check id or a hint).
    """

    def __repr__(self) -> str:
        # Never the values: SECRETS and ENCRYPTION_KEYS live here.
        return f"<{type(self).__name__}: {', '.join(type(self).names())}>"

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cast(Any, cls))]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {f.name: _default(f) for f in dataclasses.fields(cast(Any, cls))}

    @classmethod
    def problems(cls, user: Mapping[str, Any]) -> list[Problem]:
        """What is wrong with the values ``user`` (an AUTOMATE dict) gives this app's keys."""
        return [p for _, _, p in cls._read(user) if p is not None]

    @classmethod
    def lazy(cls: type[S]) -> S:
        """The object an app's modules read: typed like ``cls``, built on first read."""
        return cast(S, LazySettings(cls))

    @classmethod
    def _read(cls, user: Mapping[str, Any]) -> Iterator[tuple[str, Any, Problem | None]]:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cast(Any, cls)):
            if f.name not in user:
                yield f.name, _default(f), None
                continue
            value, problem = _validate(f.name, user[f.name], hints[f.name], f.metadata)
            yield f.name, value, problem


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


# -- Validation ---------------------------------------------------------------------------


def _validate(
    name: str, value: Any, annotation: Any, metadata: Mapping[str, Any]
) -> tuple[Any, Problem | None]:
    """``value`` as the declared type (an int for a float becomes a float), or a problem."""
    ok, converted = _conforms(value, annotation)
    if ok and not _out_of_range(converted, metadata):
        return converted, None
    must = metadata.get("must") or _describe(annotation, metadata)
    message = f'AUTOMATE["{name}"] must be {must}, not {_shown(value, annotation)}.'
    # A plain default (no setting()) has no metadata: the generic id.
    check_id = metadata.get("check_id", GENERIC_CHECK_ID)
    return value, Problem(name, message, check_id, metadata.get("hint"))


def _conforms(value: Any, annotation: Any) -> tuple[bool, Any]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return True, value
    if annotation is None or annotation is type(None):
        return value is None, value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            ok, converted = _conforms(value, arg)
            if ok:
                return True, converted
        return False, value
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args), value
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if annotation in (str, bytes, bool):
        return isinstance(value, annotation), value
    if origin is list:
        return _conforms_list(value, args[0] if args else Any)
    if origin is dict:
        key_type, value_type = args or (Any, Any)
        ok = isinstance(value, dict) and all(
            _conforms(k, key_type)[0] and _conforms(v, value_type)[0] for k, v in value.items()
        )
        return ok, value
    if origin is Callable or annotation is Callable:
        return callable(value), value
    raise TypeError(f"AppSettings cannot check values of type {annotation!r}")


def _conforms_list(value: Any, item_type: Any) -> tuple[bool, Any]:
    # Django settings are often written as tuples: accepted, read as a list.
    if not isinstance(value, list | tuple):
        return False, value
    items = [_conforms(item, item_type) for item in value]
    if not all(ok for ok, _ in items):
        return False, value
    return True, [converted for _, converted in items]


def _out_of_range(value: Any, metadata: Mapping[str, Any]) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    minimum = metadata.get("minimum")
    return bool(
        (metadata.get("positive") and value <= 0) or (minimum is not None and value < minimum)
    )


_NOUNS = {int: "integer", float: "number", str: "string", bytes: "bytes", bool: "boolean"}


def _describe(annotation: Any, metadata: Mapping[str, Any]) -> str:
    """What a value must be, in words: "a positive integer", "a list of strings"."""
    if annotation in (int, float):
        noun = _NOUNS[annotation]
        if metadata.get("positive"):
            return f"a positive {noun}"
        if metadata.get("minimum") is not None:
            return f"{'an' if noun == 'integer' else 'a'} {noun}, {metadata['minimum']:g} or more"
    return _phrase(annotation)


def _phrase(annotation: Any, plural: bool = False) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_phrase(a, plural) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if annotation is None or annotation is type(None):
        return "None"
    if annotation is Any:
        return "values" if plural else "any value"
    if origin is list:
        return "lists" if plural else f"a list of {_phrase(args[0], plural=True)}"
    if origin is dict:
        keys, values = (_phrase(a, plural=True) for a in args)
        return "dicts" if plural else f"a dict of {keys} to {values}"
    if origin is Callable or annotation is Callable:
        return "callables" if plural else "a callable"
    noun = _NOUNS.get(annotation, getattr(annotation, "__name__", str(annotation)))
    if plural:
        return noun if noun == "bytes" else noun + "s"
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _shown(value: Any, annotation: Any) -> str:
    """The bad value when it cannot be a secret (a number, a choice); else only its type."""
    literal = any(
        typing.get_origin(a) is Literal for a in (annotation, *typing.get_args(annotation))
    )
    if value is None or isinstance(value, int | float) or (literal and isinstance(value, str)):
        return repr(value)
    return type(value).__name__


# -- Reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Loaded:
    source: object  # the AUTOMATE dict these values came from
    values: dict[str, Any]
    problems: dict[str, Problem]
    valid: dict[str, Any] = dataclasses.field(default_factory=dict)  # values minus problems


_loaded: dict[type[AppSettings], _Loaded] = {}


def _user_dict() -> Any:
    return getattr(django_settings, "AUTOMATE", None)


def _load(cls: type[AppSettings]) -> _Loaded:
    source = _user_dict()
    loaded = _loaded.get(cls)
    if loaded is not None and loaded.source is source:
        return loaded
    user = source or {}
    if not isinstance(user, Mapping):
        raise ImproperlyConfigured("settings.AUTOMATE must be a dict.")
    values: dict[str, Any] = {}
    problems: dict[str, Problem] = {}
    for name, value, problem in cls._read(user):
        values[name] = value
        if problem is not None:
            problems[name] = problem
    valid = {name: value for name, value in values.items() if name not in problems}
    loaded = _loaded[cls] = _Loaded(source, values, problems, valid)
    return loaded


def read(cls: type[AppSettings], name: str) -> Any:
    """The value of one of ``cls``'s keys; ImproperlyConfigured naming it when invalid.

    KeyError when ``cls`` does not declare ``name``.
    """
    loaded = _load(cls)
    problem = loaded.problems.get(name)
    if problem is not None:
        raise ImproperlyConfigured(problem.message)
    return loaded.values[name]


def clear_cache(*, setting: str | None = None, **kwargs: object) -> None:
    """Forget the values read (``setting_changed`` receiver; also callable directly)."""
    if setting in (None, "AUTOMATE"):
        _loaded.clear()


# Connected here rather than in a ready(): whatever process filled the cache imported this
# module, so the cache is cleared in it whichever apps are installed.
setting_changed.connect(clear_cache, dispatch_uid="automate_core.conf.clear_cache")


def installed_settings_classes() -> list[type[AppSettings]]:
    """The settings class of each installed app that declares one (``automate_settings``)."""
    if not apps.apps_ready:
        return []
    found = (getattr(config, "automate_settings", None) for config in apps.get_app_configs())
    return [cls for cls in found if isinstance(cls, type) and issubclass(cls, AppSettings)]


def owner_of(name: str) -> type[AppSettings] | None:
    """The installed app's settings class declaring ``name``, if any."""
    return next((cls for cls in installed_settings_classes() if name in cls.names()), None)


_UNSET: Any = object()


#: The settings Django's ``settings`` object has returned and keeps: its own __dict__
#: (the same dict for the life of the object; Django empties it, never replaces it).
_DJANGO_CACHED: dict[str, Any] = object.__getattribute__(django_settings, "__dict__")


class LazySettings:
    """Attribute access to one app's keys (what :meth:`AppSettings.lazy` returns)."""

    __slots__ = ("_cls",)

    def __init__(self, cls: type[AppSettings]) -> None:
        self._cls = cls

    def __repr__(self) -> str:
        return f"<lazy {self._cls.__name__}>"

    def __getattribute__(self, name: str) -> Any:
        # Rather than __getattr__: Python would first look the key up on the instance
        # and build the AttributeError that sends it to __getattr__, a third of a read.
        if name[:1] == "_":  # _cls, dunders, copy/pickle probes
            return object.__getattribute__(self, name)
        cls = object.__getattribute__(self, "_cls")
        # The webhook view reads seven keys per request: a read that finds its values
        # loaded from the AUTOMATE dict Django has now takes three dict lookups. Django's
        # settings object keeps each setting it returned in its own __dict__ and empties
        # that on any assignment (override_settings included), so finding there the very
        # dict the values came from is the check read() makes, without going through the
        # settings object's __getattribute__; any other case takes read().
        loaded = _loaded.get(cls)
        if loaded is not None and loaded.source is _DJANGO_CACHED.get("AUTOMATE", _UNSET):
            value = loaded.valid.get(name, _UNSET)
            if value is not _UNSET:
                return value
        try:
            return read(cls, name)
        except KeyError:
            raise AttributeError(_unknown(cls, name)) from None


def _unknown(cls: type[AppSettings], name: str) -> str:
    owner = owner_of(name) if name.isupper() else None
    if owner is not None:
        where = owner.__module__
        return f"{name} is a setting of {where}: read it from {where}.settings"
    return f"{name!r} is not a setting of {cls.__module__}"


# -- Core's own keys ----------------------------------------------------------------------


@dataclass(frozen=True)
class CoreSettings(AppSettings):
    """The kernel's keys: outbox, secrets, outbound HTTP."""

    # Outbox
    OUTBOX_MAX_ATTEMPTS: int = setting(8, positive=True)
    OUTBOX_BACKOFF_BASE_SECONDS: float = setting(2.0, minimum=0)
    OUTBOX_BACKOFF_MAX_SECONDS: float = setting(3600.0, minimum=0)
    OUTBOX_LEASE_SECONDS: int = setting(300, positive=True)
    # Secrets: backends tried in order for secret://NAME references.
    SECRET_BACKENDS: list[str] = setting(
        [
            "automate_core.secrets.EnvironmentBackend",
            "automate_core.secrets.SettingsBackend",
            "automate_core.secrets.DatabaseBackend",
        ]
    )
    SECRETS: dict[str, str] = setting({})
    SECRET_ENV_PREFIX: str = "AUTOMATE_SECRET_"
    # Where each secret may be sent as an outbound credential: {"NAME": {"hosts": [...],
    # "uses": [...]}} (automate_core.secrets.check_grant; "uses" optional, all if absent).
    SECRET_GRANTS: dict[str, dict[str, list[str]]] = setting({})
    # Fernet keys, newest first; the first encrypts, all decrypt (rotation).
    ENCRYPTION_KEYS: list[str | bytes] = setting([])
    # Outbound HTTP (the SSRF-safe client, automate_core.http)
    # Ports any URL may use; "*" allows every port.
    HTTP_ALLOWED_PORTS: list[int] | Literal["*"] = setting([80, 443, 8080, 8443])
    # Non-public addresses that may still be reached: networks ("10.20.0.0/16") and host
    # names ("mcp.internal", or ".internal" for a whole domain).
    HTTP_ALLOW_NETWORKS: list[str] = setting([])
    HTTP_ALLOW_HOSTS: list[str] = setting([])
    # The same, per outbound purpose only: {"mcp": {"networks": [...], "hosts": [...]}};
    # purposes: http_request, connection, llm, rag, mcp, webhooks (automate_core.net).
    HTTP_ALLOW_FOR: dict[str, dict[str, list[str]]] = setting({})
    # Always refused, even when public or allow-listed (cloud metadata addresses always are).
    HTTP_DENY_NETWORKS: list[str] = setting([])
    HTTP_DENY_HOSTS: list[str] = setting([])
    HTTP_USER_AGENT: str = "django-automate"
    # Rate limits: "memory://" or "redis://host:port/db"
    RATE_LIMIT_STORAGE: str = "memory://"
    # Observability (automate_core.observability.logs): the "automate.events" lines as
    # JSON objects, one per line, instead of key=value text.
    LOG_JSON: bool = False


settings = CoreSettings.lazy()
