"""MCP servers that run as a local program and speak over stdin/stdout (stdio).

Most reference MCP servers (``uvx mcp-server-time``, ``npx -y @modelcontextprotocol/...``)
speak only stdio. Running one means starting a program, so stdio servers are declared in
Django settings, never in the admin (an admin must not be able to run programs)::

    AUTOMATE = {
        "MCP_STDIO_SERVERS": {
            "time": {
                "command": ["uvx", "mcp-server-time", "--local-timezone", "Europe/Paris"],
                "env": {"API_TOKEN": "secret://TIME_API_TOKEN"},   # optional
                "timeout": 30,                                     # optional, seconds
                "name": "Time",                                    # optional
            },
        },
    }

How such a server appears in the database: an :class:`~automate.mcp.models.MCPServer`
row with ``transport="stdio"`` whose ``key`` is the settings key. The row holds what the
rest of the MCP code needs (the key workflow steps name, ``enabled``, the last sync and
the cached :class:`~automate.mcp.models.MCPTool` rows); it never holds the command or the
environment. :func:`automate.mcp.models.ensure_stdio_server` creates or updates the row
from the settings entry (``manage.py sync_mcp_tools`` does it for every entry, and a call
to an unknown key that is declared here does it too); the admin shows the row read-only
except ``enabled``. Every session reads the command and the environment from the
settings again, so changing them needs a deploy, and a row whose entry was removed fails
with CONFIGURATION.

Each session (one sync, one call) starts the program with the SDK's ``stdio_client`` and
stops it afterwards, whatever happened: the SDK closes its stdin, sends SIGTERM to its
process group two seconds later, then SIGKILL. The child gets only the entry's ``env``
(``secret://NAME`` values resolved through :mod:`automate_core.secrets`, never logged)
over the SDK's small non-secret set (``HOME``, ``LOGNAME``, ``PATH``, ``SHELL``,
``TERM``, ``USER``), not the worker's environment. Starting (spawn and MCP handshake) is
bounded by ``AUTOMATE["MCP_STDIO_START_TIMEOUT"]``, each call by the entry's ``timeout``
(or the step's), and each message the program writes by
``AUTOMATE["MCP_MAX_RESPONSE_BYTES"]``.

This module does not import the SDK or the models: the system checks and the models use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from automate.conf import settings as app_settings
from automate_core import secrets
from automate_core.providers.errors import AutomateError, ErrorCodes

STDIO = "stdio"
SETTING = 'AUTOMATE["MCP_STDIO_SERVERS"]'
DEFAULT_TIMEOUT = 30.0
ENTRY_KEYS = frozenset({"command", "env", "timeout", "name"})
_KEY = re.compile(r"^[a-z0-9][a-z0-9_]{0,99}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class StdioCommand:
    """The program to start and its environment, secrets resolved (never in a repr)."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(repr=False)

    @property
    def program(self) -> str:
        return self.argv[0]


# -- The settings -------------------------------------------------------------------------


def entries() -> dict[str, Any]:
    """``AUTOMATE["MCP_STDIO_SERVERS"]`` as written (an empty dict when unset).

    Also empty when it is not a dict: the admin and the sync then show no stdio server,
    and ``manage.py check`` reports automate.E400.
    """
    try:
        return app_settings.MCP_STDIO_SERVERS
    except ImproperlyConfigured:
        return {}


def entry_problems(key: Any, entry: Any) -> list[tuple[str, str]]:
    """What is wrong with one entry, as ``(field, message)`` pairs; empty when it is fine.

    Shared by the system checks (``automate.E401``-``E404``) and :func:`command_for`, so
    a malformed entry reads the same at start-up and at call time.
    """
    where = f"{SETTING}[{key!r}]"
    if not isinstance(key, str) or not _KEY.match(key):
        return [("key", f"{where}: the key must be lower-case letters, digits and '_'")]
    if not isinstance(entry, dict):
        return [("entry", f'{where} must be a dict like {{"command": ["uvx", "mcp-server-time"]}}')]
    problems: list[tuple[str, str]] = []
    unknown = sorted(str(k) for k in set(entry) - ENTRY_KEYS)
    if unknown:
        problems.append(
            (
                "entry",
                f"{where} has unknown key(s) {', '.join(unknown)} (allowed: "
                f"{', '.join(sorted(ENTRY_KEYS))}; arguments belong in the command list)",
            )
        )
    command = entry.get("command")
    if (
        not isinstance(command, list | tuple)
        or not command
        or not all(isinstance(part, str) and part and "\0" not in part for part in command)
    ):
        problems.append(
            (
                "command",
                f'{where}["command"] must be a non-empty list of non-empty strings, '
                'e.g. ["uvx", "mcp-server-time"] (no shell is involved)',
            )
        )
    env = entry.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and _ENV_NAME.match(k) and isinstance(v, str) and "\0" not in v
        for k, v in env.items()
    ):
        problems.append(
            (
                "env",
                f'{where}["env"] must be a dict of variable names to strings '
                '(values may be "secret://NAME")',
            )
        )
    timeout = entry.get("timeout", DEFAULT_TIMEOUT)
    if not _positive_number(timeout):
        problems.append(("timeout", f'{where}["timeout"] must be a positive number of seconds'))
    if not isinstance(entry.get("name", key), str) or not entry.get("name", key).strip():
        problems.append(("name", f'{where}["name"] must be a non-empty string'))
    return problems


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def start_timeout() -> float:
    """The start timeout; a bad value fails the call as a CONFIGURATION error."""
    try:
        return app_settings.MCP_STDIO_START_TIMEOUT
    except ImproperlyConfigured as exc:
        raise AutomateError(ErrorCodes.CONFIGURATION, str(exc), retryable=False) from None


def declared_entry(key: str) -> dict[str, Any]:
    """The valid settings entry for ``key``; CONFIGURATION when missing or malformed."""
    declared = entries()
    if key not in declared:
        raise AutomateError(
            ErrorCodes.CONFIGURATION,
            f"the MCP server {key!r} is a stdio server but {SETTING} has no entry {key!r} "
            "(stdio servers are declared in settings only)",
            provider=key,
            retryable=False,
        )
    problems = entry_problems(key, declared[key])
    if problems:
        raise AutomateError(
            ErrorCodes.CONFIGURATION,
            "; ".join(message for _field, message in problems),
            provider=key,
            retryable=False,
        )
    return declared[key]


def entry_timeout(key: str) -> float:
    return float(declared_entry(key).get("timeout", DEFAULT_TIMEOUT))


def command_for(key: str) -> StdioCommand:
    """The program and environment for ``key``, with ``secret://`` values resolved.

    Runs in the caller's thread (secret backends may query the database). Resolved
    values are remembered by :mod:`automate_core.redaction`, so they are scrubbed from
    any error message that would echo them (the server's stderr included).
    """
    declared = declared_entry(key)
    env = {name: str(secrets.resolve(value)) for name, value in declared.get("env", {}).items()}
    return StdioCommand(argv=tuple(declared["command"]), env=env)
