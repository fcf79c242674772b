"""System checks for AUTOMATE["MCP_STDIO_SERVERS"] and MCP_STDIO_START_TIMEOUT (E400-E405)."""

from __future__ import annotations

import pytest
from django.core import checks

GOOD = {"command": ["uvx", "mcp-server-time"], "env": {"TZ": "UTC"}, "timeout": 10}


def mcp_check_ids(settings, **automate) -> list[str]:
    settings.AUTOMATE = {**settings.AUTOMATE, **automate}
    return [
        m.id
        for m in checks.run_checks(tags=["automate"])
        if m.id and m.id.startswith("automate.E40")
    ]


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        ([], ["automate.E400"]),
        ({"Bad-Key": GOOD}, ["automate.E401"]),
        ({"time": ["uvx", "mcp-server-time"]}, ["automate.E401"]),
        ({"time": {**GOOD, "args": ["--tz", "UTC"]}}, ["automate.E401"]),
        ({"time": {**GOOD, "name": ""}}, ["automate.E401"]),
        ({"time": {"env": {}}}, ["automate.E402"]),
        ({"time": {"command": "uvx mcp-server-time"}}, ["automate.E402"]),
        ({"time": {"command": []}}, ["automate.E402"]),
        ({"time": {"command": ["uvx", 3]}}, ["automate.E402"]),
        ({"time": {"command": ["uvx", ""]}}, ["automate.E402"]),
        ({"time": {**GOOD, "env": ["TZ=UTC"]}}, ["automate.E403"]),
        ({"time": {**GOOD, "env": {"TZ": 1}}}, ["automate.E403"]),
        ({"time": {**GOOD, "env": {"BAD NAME": "x"}}}, ["automate.E403"]),
        ({"time": {**GOOD, "timeout": 0}}, ["automate.E404"]),
        ({"time": {**GOOD, "timeout": "10"}}, ["automate.E404"]),
        ({"time": {"command": "x", "env": "y"}}, ["automate.E402", "automate.E403"]),
    ],
)
def test_checks__malformed_stdio_entries(settings, servers, expected):
    assert mcp_check_ids(settings, MCP_STDIO_SERVERS=servers) == expected


def test_checks__good_entries_and_env_references_pass(settings):
    servers = {"time": GOOD, "fetch": {"command": ["npx", "-y", "srv"], "env": {"K": "secret://K"}}}
    assert mcp_check_ids(settings, MCP_STDIO_SERVERS=servers) == []


@pytest.mark.parametrize("value", [0, -1, "30", True])
def test_checks__start_timeout_must_be_a_positive_number(settings, value):
    assert mcp_check_ids(settings, MCP_STDIO_START_TIMEOUT=value) == ["automate.E405"]


def test_checks__the_message_names_the_entry_and_shows_an_example(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "MCP_STDIO_SERVERS": {"time": {"command": "uvx"}}}
    (message,) = [m for m in checks.run_checks(tags=["automate"]) if m.id == "automate.E402"]
    assert message.msg.startswith('AUTOMATE["MCP_STDIO_SERVERS"][\'time\']["command"] must be')
    assert '"command": ["uvx", "mcp-server-time"]' in message.hint
