"""pytest fixtures, registered through the ``pytest11`` entry point: no conftest import needed.

Loaded at pytest start-up, before Django is configured, in every project that installs
Django Automate, so nothing here imports models, settings or the optional test libraries
(respx, responses, hypothesis) at module level, nor the kit itself: its modules (Django,
httpx, pydantic) take longer to import than pytest does, and load when a test uses a fixture.
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
    As in production, every ``secret://`` reference in the config is resolved before the
    connector is built (an unknown one raises ``SecretNotFound``, CONFIGURATION).
    """
    # plugin start-up: the kit loads when a test uses the fixture (see the docstring)
    from automate_testing.context import build_connector, make_context

    def build(
        connector_class: type,
        config: Mapping[str, Any] | None = None,
        *,
        secrets: list[str] | None = None,
        secret_values: Mapping[str, str] | None = None,
        ctx: ProviderContext | None = None,
    ) -> Any:
        ctx = ctx or make_context(secret_values)
        return build_connector(
            connector_class, config or {}, ctx=ctx, webhook_secrets=secrets or ()
        )

    return build


@pytest.fixture
def mock_http() -> Iterator[MockHTTP]:
    """Every ``requests`` and ``httpx`` request in the test answered from registered routes::

        def test_x(mock_http):
            mock_http.post("https://test.atlassian.net/rest/api/3/issue", json={...})

    A request no route matches fails the test at teardown, listing what was registered.
    """
    # plugin start-up: the kit loads when a test uses the fixture (see the docstring)
    from automate_testing.http import mock_http as start

    with start() as mock:
        yield mock


@pytest.fixture
def fake_llm() -> Iterator[Any]:
    """A :class:`~automate_testing.fakes.FakeLLMProvider`, installed for the test::

        def test_summary(fake_llm):
            fake_llm.add_replies("Short summary")
            LLMProfile.objects.create(key="assistant", provider_key="fake", config={})
            ...  # an ``llm`` step with profile "assistant" gets "Short summary"
            assert fake_llm.calls[0].last_user_message.startswith("Summarise")

    While installed, the provider is registered as ``"fake"`` (when Django is set up) and
    every instance built with an empty config shares this script and its ``calls``.
    """
    # optional app: automate_testing.fakes imports automate_llm and rag, which a project
    # may not install
    from automate_testing.fakes import FakeLLMProvider

    provider = FakeLLMProvider()
    with provider.installed():
        yield provider


@pytest.fixture
def in_memory_retriever() -> Iterator[Any]:
    """An :class:`~automate_testing.fakes.InMemoryRetrievalProvider`, emptied after the test.

    Registered as the retrieval provider ``"in_memory"`` for the test (when Django is set
    up), so ``KnowledgeBase(retrieval_provider="in_memory", ...)`` stores its passages here;
    the fixture's own instance uses the empty namespace, ``InMemoryRetrievalProvider(
    {"namespace": kb.slug})`` reads a knowledge base's.
    """
    # optional app: automate_testing.fakes imports automate_llm and rag, which a project
    # may not install
    from automate_testing.fakes import InMemoryRetrievalProvider

    registry = _rag_registry()
    registered = registry is not None and InMemoryRetrievalProvider.key not in registry
    if registered:
        registry.register(InMemoryRetrievalProvider)
    InMemoryRetrievalProvider.clear_all()
    try:
        yield InMemoryRetrievalProvider()
    finally:
        InMemoryRetrievalProvider.clear_all()
        if registered:
            registry.unregister(InMemoryRetrievalProvider.key)


@pytest.fixture(autouse=True)
def _automate_fresh_connections() -> Iterator[None]:
    """Each test looks its connections (and when schedules are due) up afresh. Outside a
    transaction a process keeps them for ``AUTOMATE["CONNECTION_CACHE_SECONDS"]``, and a
    transactional test's rows are flushed without the model signals that clear that cache."""
    yield
    from django.apps import apps

    if not (apps.ready and apps.is_installed("automate")):
        return  # not a Django project with automate set up: no cache to clear
    # models: automate.connections imports automate.models, and pytest loads this plugin
    # before Django is set up
    from automate.connections import clear_connection_cache
    from automate.schedules.fire import look_next_poll

    clear_connection_cache()
    look_next_poll()  # a test may move a schedule's next tick without the model signals


@pytest.fixture
def run_outbox(request: pytest.FixtureRequest) -> Callable[[], dict[str, int]]:
    """Process the outbox items that are due, synchronously, in the test's thread::

        WorkflowService().run_workflow(workflow, {"payload": {...}})
        assert run_outbox() == {"done": 1}

    Returns how many items ended in each state. Items created while it runs (a run's
    next steps) are processed too; items waiting for a retry later are not. It needs the
    database, so it asks for pytest-django's ``db`` unless the test already has access.
    """
    database = {
        "db",
        "transactional_db",
        "django_db_reset_sequences",
        "django_db_serialized_rollback",
    }
    if request.node.get_closest_marker("django_db") is None and not database & set(
        request.fixturenames
    ):
        request.getfixturevalue("db")

    def run() -> dict[str, int]:
        # models: automate.worker imports automate.models (through automate.dispatch), and
        # pytest loads this plugin before Django is set up
        from automate.worker import EmbeddedWorker

        return EmbeddedWorker(threads=1, poll_seconds=0, name="run_outbox").run(once=True)

    return run


def _rag_registry() -> Any:
    """The retrieval registry when Django is set up with ``rag`` importable, else None."""
    try:
        from django.apps import apps

        if not apps.ready:
            return None
        # optional app: rag may not be installed, and its registry is read once apps are ready
        from rag.registry import retrieval_providers
    except ImportError:  # the rag app is not installed
        return None
    return retrieval_providers
