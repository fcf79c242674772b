"""A small, explicit registry of provider classes keyed by their ``key``.

Each kind of plugin has one module-level instance (connectors, LLM providers, retrieval
and embedding providers, step types); tests build a fresh :class:`Registry` instead of
mutating those. Registering the same class twice is harmless (``ready()`` may run more than
once in tests); a different class under a key already taken is an error, as is a class of
the wrong shape.

The base owns loading: :meth:`Registry.load`, called from the owning app's
``AppConfig.ready()``, registers the built-ins and imports (autodiscovers) one module of
every installed app; it is idempotent. A lookup before ``django.setup()``
has finished raises :class:`RegistryNotReady`, which says how to fix it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Generic, TypeVar, cast

from django.apps import apps
from django.core.exceptions import AppRegistryNotReady, ImproperlyConfigured
from django.utils.module_loading import import_string, module_has_submodule

__all__ = ["AlreadyRegistered", "NotRegistered", "Registry", "RegistryNotReady"]

T = TypeVar("T", bound=type)


class AlreadyRegistered(ImproperlyConfigured):
    """Another class is already registered under this key."""


class NotRegistered(LookupError):
    """No class is registered under this key."""


class RegistryNotReady(AppRegistryNotReady, ImproperlyConfigured):
    """A registry was read before the ``AppConfig.ready()`` that fills it had run.

    Both Django errors are bases so that code catching either keeps working.
    """

    def __init__(self, kind: str, app: str | None = None) -> None:
        installed = f", with {app!r} in INSTALLED_APPS" if app else ""
        super().__init__(
            f"{kind}s are registered in AppConfig.ready(): look them up after "
            f"django.setup(){installed}. In a script, call django.setup() first; in a "
            "module, look them up inside a function rather than at import time."
        )


class Registry(Generic[T]):
    """Maps ``cls.key`` to ``cls`` for one kind of plugin.

    ``base`` is the class every entry must subclass; ``validate`` may raise ``TypeError``
    for a class of the wrong shape, checked once when it registers. ``app`` is the label of
    the app whose ``ready()`` calls :meth:`load` (named in the not-ready error);
    ``builtins`` are the dotted paths of the built-in classes, imported only by
    :meth:`load`; ``autodiscover`` names the module of each installed app whose classes
    :meth:`load` registers (``"connectors"`` finds ``myapp.connectors``).
    """

    def __init__(
        self,
        kind: str,
        base: type | None = None,
        validate: Callable[[T], None] | None = None,
        *,
        app: str | None = None,
        builtins: Iterable[str] = (),
        autodiscover: str | None = None,
    ) -> None:
        self.kind = kind
        self.base = base
        self.app = app
        self.builtins = tuple(builtins)
        self.autodiscover = autodiscover
        self._validate = validate
        self._entries: dict[str, T] = {}
        self._builtin: set[str] = set()

    # Loading ---------------------------------------------------------------------------

    def load(self) -> None:
        """Register the built-ins, then the classes of every installed app's
        ``autodiscover`` module; idempotent (``ready()`` may run more than once)."""
        for cls in self.builtin_classes():
            self.register(cls, builtin=True)
        for cls in self.discovered_classes():
            self.register(cls)

    def builtin_classes(self) -> Iterator[T]:
        """The built-in classes, imported now (their SDKs load only when they are used)."""
        for path in self.builtins:
            yield import_string(path)

    def discovered_classes(self) -> Iterator[T]:
        """The classes defined in the ``autodiscover`` module of each installed app."""
        if not self.autodiscover:
            return
        for app_config in apps.get_app_configs():
            if module_has_submodule(app_config.module, self.autodiscover):
                module = importlib.import_module(f"{app_config.name}.{self.autodiscover}")
                yield from self.classes_in(module)

    def classes_in(self, module: ModuleType) -> list[T]:
        """The concrete classes with a ``key`` that ``module`` defines (not those it imports)."""
        found: list[T] = []
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ != module.__name__ or inspect.isabstract(obj):
                continue
            if self.base is not None and (obj is self.base or not issubclass(obj, self.base)):
                continue
            if getattr(obj, "key", ""):
                found.append(cast("T", obj))  # the base check above is what T promises
        return found

    def ensure_ready(self) -> None:
        """Raise :class:`RegistryNotReady` if read before ``django.setup()`` has finished.

        Every app's ``ready()`` may register classes, so a lookup is only complete once all
        of them have run, even if this registry's own :meth:`load` already has.
        """
        if not apps.ready:
            raise RegistryNotReady(self.kind, self.app)

    # Registration ----------------------------------------------------------------------

    def register(self, cls: T, *, builtin: bool = False) -> T:
        """Register ``cls`` under ``cls.key``; usable as a class decorator.

        ``builtin=True`` marks an entry a project may replace with its own class under the
        same key (a project that writes its own ``jira`` connector gets it, not ours).
        """
        if not isinstance(cls, type):
            raise TypeError(f"register a {self.kind} class, not {cls!r}")
        if self.base is not None and not issubclass(cls, self.base):
            raise TypeError(
                f"{cls.__module__}.{cls.__qualname__} must subclass "
                f"{self.base.__module__}.{self.base.__qualname__} to be registered as a {self.kind}"
            )
        key = getattr(cls, "key", "")
        if not isinstance(key, str) or not key:
            raise TypeError(f"{cls.__qualname__} needs a non-empty string `key` to be registered")
        if self._validate is not None:
            self._validate(cls)
        existing = self._entries.get(key)
        if existing is not None and existing is not cls:
            if key in self._builtin and not builtin:
                self._builtin.discard(key)
                self._entries[key] = cls
                return cls
            if builtin and key not in self._builtin:
                return existing  # the project's own class already took the key
            if _same_definition(existing, cls):
                # The same class imported twice (autoreload, importlib.reload in tests).
                self._entries[key] = cls
                return cls
            taken_by = f"{existing.__module__}.{existing.__qualname__}"
            raise AlreadyRegistered(
                f"{self.kind} key {key!r} is taken by {taken_by}; "
                f"{cls.__module__}.{cls.__qualname__} needs another key"
            )
        self._entries[key] = cls
        if builtin:
            self._builtin.add(key)
        return cls

    def unregister(self, key: str) -> None:
        self._entries.pop(key, None)
        self._builtin.discard(key)

    def is_builtin(self, key: str) -> bool:
        return key in self._builtin

    def get(self, key: str) -> T:
        self.ensure_ready()
        try:
            return self._entries[key]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise NotRegistered(
                f"no {self.kind} is registered as {key!r} (registered: {known})"
            ) from None

    def all(self) -> list[T]:
        self.ensure_ready()
        return [self._entries[key] for key in sorted(self._entries)]

    def keys(self) -> list[str]:
        self.ensure_ready()
        return sorted(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[T]:
        return iter(self.all())

    def __len__(self) -> int:
        return len(self._entries)


def _same_definition(a: type, b: type) -> bool:
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)
