"""The model fields that hold encrypted values, for ``manage.py automate_rotate_secrets``.

Each app lists its own fields from its ``AppConfig.ready()``, so the kernel's rotation
command re-encrypts them without knowing the apps above it::

    from automate_core.crypto import register_sealed

    class BillingConfig(AppConfig):
        def ready(self):
            register_sealed(
                "billing.Account", "api_key", describe=lambda row: f"account {row.slug!r} API key"
            )

Fields are named by model label and looked up with ``apps.get_model`` when the command
runs: the registry never imports a model, so any module may import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.apps import apps
from django.core.exceptions import AppRegistryNotReady, FieldDoesNotExist
from django.db import models


class Shape(StrEnum):
    """What a registered field holds."""

    #: A bare Fernet token (:func:`automate_core.crypto.encrypt`), like ``Secret.ciphertext``.
    TOKEN = "token"
    #: One sealed value (:func:`automate_core.crypto.seal`); a ``secret://`` reference is kept.
    SEALED = "sealed"
    #: A JSON list of sealed values, like a connection profile's webhook secrets.
    SEALED_LIST = "sealed_list"


@dataclass(frozen=True)
class SealedField:
    model: str
    field: str
    shape: Shape
    #: Names a row in the command's report of values no key decrypts (never the value).
    describe: Callable[[Any], str]

    def model_class(self) -> type[models.Model]:
        return apps.get_model(self.model)


_registry: dict[tuple[str, str], SealedField] = {}


def register_sealed(
    model: str,
    field: str,
    *,
    shape: Shape | str = Shape.SEALED,
    describe: Callable[[Any], str] | None = None,
) -> SealedField:
    """Have key rotation re-encrypt ``field`` of the model ``model`` ("app_label.Model").

    Call it from ``AppConfig.ready()``; registering a field again replaces its entry.
    Raises ``ValueError`` for an unknown model, field or shape.
    """
    shape = _shape(shape)
    model_class = _model(model)
    try:
        model_class._meta.get_field(field)
    except FieldDoesNotExist:
        raise ValueError(f"{model} has no field {field!r} to register as sealed") from None
    label = model_class._meta.label
    if describe is None:
        name = str(model_class._meta.verbose_name)

        def describe(row: Any) -> str:
            return f"{name} {row.pk} {field}"

    entry = SealedField(label, field, shape, describe)
    _registry[(label, field)] = entry
    return entry


def unregister_sealed(model: str, field: str) -> None:
    """Forget a registered field (a no-op when it is not registered)."""
    _registry.pop((_model(model)._meta.label, field), None)


def sealed_fields() -> list[SealedField]:
    """Every registered field, in registration order (the apps' order in INSTALLED_APPS)."""
    return list(_registry.values())


def _shape(shape: Shape | str) -> Shape:
    try:
        return Shape(shape)
    except ValueError:
        allowed = ", ".join(s.value for s in Shape)
        raise ValueError(f"unknown sealed field shape {shape!r} (use one of: {allowed})") from None


def _model(label: str) -> type[models.Model]:
    try:
        return apps.get_model(label)
    except AppRegistryNotReady:
        raise AppRegistryNotReady(
            "register sealed fields from AppConfig.ready(), once the models are loaded"
        ) from None
    except (LookupError, ValueError):
        raise ValueError(
            f"{label!r} is not an installed model: name it 'app_label.ModelName'"
        ) from None
