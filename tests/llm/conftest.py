from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest

from tests.conftest import service_missing
from tests.llm.servers import ScriptedServer


def require_sdk(module: str, extra: str) -> None:
    """Skip (or fail, when CI requires every service) without an optional SDK."""
    try:
        importlib.import_module(module)
    except ImportError:
        service_missing(f"the {module!r} package is not installed (extra: {extra})")


@pytest.fixture(autouse=True)
def llm_may_reach_loopback(settings):
    """The scripted servers listen on 127.0.0.1 at a random port: open both to LLM calls
    only, as an operator does for a local model server (AUTOMATE["HTTP_ALLOW_FOR"])."""
    settings.AUTOMATE = {
        **settings.AUTOMATE,
        "HTTP_ALLOW_FOR": {"llm": {"networks": ["127.0.0.1/32"]}},
        "HTTP_ALLOWED_PORTS": "*",
    }


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """A scripted HTTP server on 127.0.0.1, stopped after the test."""
    srv = ScriptedServer().start()
    try:
        yield srv
    finally:
        srv.stop()
