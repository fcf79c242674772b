"""What a connector declares about itself: actions, triggers and capabilities."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CapabilitySpec(BaseModel):
    """A capability and the modalities it offers, e.g. ``{"action", "trigger"}``."""

    model_config = ConfigDict(frozen=True)

    name: str
    modalities: frozenset[str] = Field(default_factory=frozenset)
    description: str = ""


class ActionSpec(BaseModel):
    """An action a connector performs; its input is validated against ``input_schema``.

    ``idempotent=False`` tells the engine never to repeat the action once it succeeded,
    even when a later step fails and the run is retried.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    output_schema: dict[str, Any] | None = None
    idempotent: bool = False
    description: str = ""


class TriggerSpec(BaseModel):
    """An event the connector receives, and how its webhooks are verified."""

    model_config = ConfigDict(frozen=True)

    name: str
    verification_method: str = "none"
    event_types: list[str] = Field(default_factory=list)
    description: str = ""
