"""pytest fixtures, registered through the ``pytest11`` entry point: no conftest import needed.

Loaded at pytest start-up, before Django is configured, in every project that installs
Django Automate, so nothing here imports models, settings or the optional test libraries
(respx, responses, hypothesis) at module level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from automate_core.providers.base import ProviderContext
    from automate_testing.http import MockHTTP


@pytest.fixture
def connector_factory() -> Callable[..., Any]:
    """Build a connector with a test :class:`ProviderContext`::

        jira = connector_factory(JiraConnector, config={...}, secrets=["whsec"],
                                 secret_values={"JIRA_TOKEN": "t0ken"})

    ``secrets`` are the webhook secrets bound to the connector (newest first);
    ``secret_values`` are what ``secret://NAME`` references resolve to. The context's
    resolver knows only those: a test never reads real environment or database secrets.
    """
    from automate_testing.context import make_context

    def build(
        connector_class: type,
        config: Mapping[str, Any] | None = None,
        *,
        secrets: list[str] | None = None,
        secret_values: Mapping[str, str] | None = None,
        ctx: ProviderContext | None = None,
    ) -> Any:
        ctx = ctx or make_context(secret_values)
        connector = connector_class(dict(config or {}), ctx=ctx)
        connector._automate_webhook_secrets = tuple(secrets or ())
        return connector

    return build


@pytest.fixture
def mock_http() -> Iterator[MockHTTP]:
    """Every ``requests`` and ``httpx`` request in the test answered from registered routes::

        def test_x(mock_http):
            mock_http.post("https://test.atlassian.net/rest/api/3/issue", json={...})

    A request no route matches fails the test at teardown, listing what was registered.
    """
    from automate_testing.http import mock_http as start

    with start() as mock:
        yield mock
