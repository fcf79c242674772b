"""A small, explicit registry of provider classes keyed by their ``key``.

Each kind of provider has one module-level instance (connectors, LLM providers, retrieval
and embedding providers); tests build a fresh :class:`Registry` instead of mutating those.
Registering the same class twice is harmless (``ready()`` may run more than once in tests);
a different class under a key already taken is an error, as is a class of the wrong shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from django.core.exceptions import ImproperlyConfigured

T = TypeVar("T", bound=type)


class AlreadyRegistered(ImproperlyConfigured):
    """Another class is already registered under this key."""


class NotRegistered(LookupError):
    """No class is registered under this key."""


class Registry(Generic[T]):
    """Maps ``cls.key`` to ``cls`` for one kind of provider.

    ``base`` is the class every entry must subclass; ``validate`` may raise ``TypeError``
    for a class of the wrong shape, checked once when it registers.
    """

    def __init__(
        self,
        kind: str,
        base: type | None = None,
        validate: Callable[[type], None] | None = None,
    ) -> None:
        self.kind = kind
        self.base = base
        self._validate = validate
        self._entries: dict[str, T] = {}
        self._builtin: set[str] = set()

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
        try:
            return self._entries[key]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise NotRegistered(
                f"no {self.kind} is registered as {key!r} (registered: {known})"
            ) from None

    def all(self) -> list[T]:
        return [self._entries[key] for key in sorted(self._entries)]

    def keys(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[T]:
        return iter(self.all())

    def __len__(self) -> int:
        return len(self._entries)


def _same_definition(a: type, b: type) -> bool:
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)
