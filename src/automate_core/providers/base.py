"""What every provider receives (:class:`ProviderContext`) and what every provider is."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel

from automate_core.secrets import SecretResolver, default_resolver


@dataclass(frozen=True)
class ProviderContext:
    """The per-call context handed to every provider.

    ``trace_id`` ties log lines, outbox rows and runs together; ``secrets`` resolves
    ``secret://NAME`` references; ``settings`` holds the provider's own settings (never the
    resolved secrets); ``logger`` already carries the trace id through the tracing filter.
    """

    trace_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    secrets: SecretResolver = field(default_factory=default_resolver)
    settings: Mapping[str, Any] = field(default_factory=dict)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("automate"))

    def resolve_secret(self, reference: str) -> str:
        """Resolve ``secret://NAME`` (or return a plain value unchanged)."""
        return self.secrets.resolve(reference)


class BaseProvider:
    """The shape shared by connectors, LLM, retrieval and embedding providers.

    A provider class names itself with ``key`` (unique in its registry) and
    ``display_name``, and describes its configuration with a pydantic model returned by
    :meth:`config_schema`.
    """

    key: ClassVar[str] = ""
    display_name: ClassVar[str] = ""

    @classmethod
    def config_schema(cls) -> type[BaseModel]:
        """The pydantic model that validates this provider's configuration."""
        return _EmptyConfig

    @classmethod
    def get_display_name(cls) -> str:
        return cls.display_name or cls.key.replace("_", " ").title()


class _EmptyConfig(BaseModel):
    model_config = {"extra": "allow"}
