"""System checks for the MCP settings (ids ``automate.E40x``).

* ``automate.E400``: ``AUTOMATE["MCP_STDIO_SERVERS"]`` is not a dict;
* ``automate.E401``: an entry's key is not a valid server key, the entry is not a dict,
  or it has unknown keys (or a ``name`` that is not a non-empty string);
* ``automate.E402``: ``command`` is not a non-empty list of non-empty strings;
* ``automate.E403``: ``env`` is not a dict of variable names to strings;
* ``automate.E404``: ``timeout`` is not a positive number;
* ``automate.E405``: ``AUTOMATE["MCP_STDIO_START_TIMEOUT"]`` is not a positive number.

Registered from ``AutomateConfig.ready()``. Nothing here imports the MCP SDK.
"""

from __future__ import annotations

from typing import Any

from django.core import checks

from automate.mcp import stdio
from automate_core.conf import settings as automate_settings

_IDS = {
    "key": "automate.E401",
    "entry": "automate.E401",
    "name": "automate.E401",
    "command": "automate.E402",
    "env": "automate.E403",
    "timeout": "automate.E404",
}

_EXAMPLE = (
    'e.g. AUTOMATE["MCP_STDIO_SERVERS"] = {"time": {"command": ["uvx", "mcp-server-time"], '
    '"env": {"API_TOKEN": "secret://TIME_TOKEN"}}}'
)


@checks.register("automate")
def check_mcp_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    declared = automate_settings.MCP_STDIO_SERVERS
    if not isinstance(declared, dict):
        messages.append(
            checks.Error(
                f"{stdio.SETTING} must be a dict of server keys to entries.",
                hint=_EXAMPLE,
                id="automate.E400",
            )
        )
    else:
        for key, entry in declared.items():
            for field, message in stdio.entry_problems(key, entry):
                messages.append(checks.Error(message, hint=_EXAMPLE, id=_IDS[field]))
    start = automate_settings.MCP_STDIO_START_TIMEOUT
    if not isinstance(start, int | float) or isinstance(start, bool) or start <= 0:
        messages.append(
            checks.Error(
                'AUTOMATE["MCP_STDIO_START_TIMEOUT"] must be a positive number of seconds.',
                id="automate.E405",
            )
        )
    return messages
