"""A :class:`ProviderContext` for tests, whose secret resolver knows only test secrets.

Connectors under test must never read the developer's environment or database for a
``secret://NAME`` reference: :class:`FakeSecretBackend` holds the values a test gives it
and nothing else, so a reference the test did not provide fails as it would in production.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automate_core.providers.base import ProviderContext
from automate_core.secrets import SecretResolver

__all__ = ["FakeSecretBackend", "make_context"]

#: The trace id of every context built here, so tests can look for it in logs and rows.
TEST_TRACE_ID = "test-trace"


class FakeSecretBackend:
    """An in-memory secret backend: ``secret://NAME`` -> ``values[NAME]``."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.values = dict(values or {})

    def get(self, name: str) -> str | None:
        return self.values.get(name)


def make_context(
    secrets: Mapping[str, str] | None = None,
    *,
    trace_id: str = TEST_TRACE_ID,
    settings: Mapping[str, Any] | None = None,
) -> ProviderContext:
    """A context resolving only ``secrets`` (name -> value), never real backends."""
    return ProviderContext(
        trace_id=trace_id,
        secrets=SecretResolver([FakeSecretBackend(secrets)]),
        settings=dict(settings or {}),
    )
