"""A workflow author who registers (or controls) an MCP server.

Finding 13: a tool sync looked for duplicate names with ``names.count(n)`` for each name,
which is quadratic: 16k tools took 7.6 s of CPU in the request that synced them. The
check now counts once. Measured in comparisons, not seconds: no wall clock in unit tests.
"""

from __future__ import annotations

import pytest

from automate.mcp import sync
from automate.models import MCPServer
from automate_core.providers.errors import AutomateError

pytestmark = pytest.mark.django_db


class CountedName(str):
    """A tool name that counts how often it is compared for equality."""

    comparisons = 0

    def __eq__(self, other: object) -> bool:
        CountedName.comparisons += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def _server() -> MCPServer:
    return MCPServer.objects.create(name="Big", url="https://tools.example.com/mcp")


def test_workflow_author_mcp__duplicate_check_is_linear_in_the_number_of_tools():
    names = [CountedName(f"tool_{i}") for i in range(2000)]
    CountedName.comparisons = 0
    sync._check_unique(_server(), names)
    # Quadratic was ~4,000,000 comparisons here; one pass makes a few per name at most.
    assert CountedName.comparisons <= 2 * len(names)


def test_workflow_author_mcp__duplicates_are_still_refused_by_name():
    names = ["b", "a", "b", "c", "a"]
    with pytest.raises(AutomateError, match="more than once: a, b"):
        sync._check_unique(_server(), names)
