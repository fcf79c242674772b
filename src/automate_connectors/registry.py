"""The connector registry, filled in ``AppConfig.ready()``.

Built-in connectors are registered by this app's ``ready()``; a project registers its own
with :func:`register_connector` from its ``AppConfig.ready()``, or by defining them in a
``connectors`` module of an installed app, which is imported (autodiscovered) at the same
time. Registering the same class twice is harmless; another class under a taken key raises.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel

from automate_connectors.base import Connector
from automate_core.registry import NotRegistered, Registry, RegistryNotReady

__all__ = [
    "ConnectorRegistry",
    "NotRegistered",
    "RegistryNotReady",
    "connector_classes",
    "connectors",
    "get_connector",
    "register_connector",
]

#: Modules whose connectors are registered as built-ins (a project may replace them).
BUILTIN_MODULES: tuple[str, ...] = (
    "automate_connectors.builtin.generic_hmac",
    "automate_connectors.builtin.github",
    "automate_connectors.builtin.http",
    "automate_connectors.builtin.jira",
    "automate_connectors.builtin.stripe",
    "automate_connectors.builtin.slack",
    "automate_connectors.builtin.standard_webhooks",
)


def check_connector_shape(cls: type[Connector]) -> None:
    """Raise ``TypeError`` describing the first thing wrong with a connector class."""
    name = f"{cls.__module__}.{cls.__qualname__}"
    schema = cls.config_schema()
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise TypeError(f"{name}.config_schema() must return a pydantic BaseModel subclass")
    actions = cls.actions()
    seen: set[str] = set()
    for spec in actions:
        if spec.name in seen:
            raise TypeError(f"{name} declares the action {spec.name!r} twice")
        seen.add(spec.name)
        try:
            Draft202012Validator.check_schema(spec.input_schema)
        except SchemaError as exc:
            raise TypeError(
                f"{name} action {spec.name!r} has an invalid input_schema: {exc.message}"
            ) from None
    trigger_names = [t.name for t in cls.triggers()]
    if len(trigger_names) != len(set(trigger_names)):
        raise TypeError(f"{name} declares a trigger twice")


class ConnectorRegistry(Registry[type[Connector]]):
    """Built-ins come from whole modules (every connector class each defines)."""

    def __init__(self) -> None:
        super().__init__(
            "connector",
            base=Connector,
            validate=check_connector_shape,
            app="automate_connectors",
            autodiscover="connectors",
        )

    def builtin_classes(self) -> Iterator[type[Connector]]:
        for path in BUILTIN_MODULES:
            yield from self.classes_in(importlib.import_module(path))


#: The registry every part of Django Automate reads.
connectors = ConnectorRegistry()


def register_connector(cls: type[Connector]) -> type[Connector]:
    """Register a connector class (usable as a decorator)."""
    return connectors.register(cls)


def get_connector(key: str) -> type[Connector]:
    """The connector class registered under ``key``; raises :class:`NotRegistered`."""
    return connectors.get(key)


def connector_classes() -> list[type[Connector]]:
    return connectors.all()
