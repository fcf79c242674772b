from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.llm.servers import ScriptedServer


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """A scripted HTTP server on 127.0.0.1, stopped after the test."""
    srv = ScriptedServer().start()
    try:
        yield srv
    finally:
        srv.stop()
