"""pytest fixtures, registered through the ``pytest11`` entry point: no conftest import needed.

Loaded at pytest start-up, before Django is configured, so nothing here imports models or
settings at module level.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest


@pytest.fixture
def connector_factory() -> Callable[..., Any]:
    """Build a connector with a test :class:`ProviderContext`::

    jira = connector_factory(JiraConnector, config={...}, secrets=["whsec"])
    """
    from automate_core.providers.base import ProviderContext
    from automate_core.secrets import SecretResolver

    def build(
        connector_class: type,
        config: Mapping[str, Any] | None = None,
        *,
        secrets: list[str] | None = None,
        ctx: ProviderContext | None = None,
    ) -> Any:
        ctx = ctx or ProviderContext(trace_id="test-trace", secrets=SecretResolver([]))
        connector = connector_class(dict(config or {}), ctx=ctx)
        connector._automate_webhook_secrets = tuple(secrets or ())
        return connector

    return build
