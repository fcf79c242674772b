"""System checks for the MCP settings (ids ``automate.E40x``).

* ``automate.E400``: ``AUTOMATE["MCP_STDIO_SERVERS"]`` is not a dict;
* ``automate.E401``: an entry's key is not a valid server key, the entry is not a dict,
  or it has unknown keys (or a ``name`` that is not a non-empty string);
* ``automate.E402``: ``command`` is not a non-empty list of non-empty strings;
* ``automate.E403``: ``env`` is not a dict of variable names to strings;
* ``automate.E404``: ``timeout`` is not a positive number;
* ``automate.E405``: ``AUTOMATE["MCP_STDIO_START_TIMEOUT"]`` is not a positive number.

E400 and E405 are the settings' own check ids (``automate.conf``), reported by the
settings check of ``automate_core.checks``. Registered from ``AutomateConfig.ready()``.
Nothing here imports the MCP SDK.
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from automate.conf import MCP_STDIO_EXAMPLE
from automate.conf import settings as app_settings
from automate.mcp import stdio

_IDS = {
    "key": "automate.E401",
    "entry": "automate.E401",
    "name": "automate.E401",
    "command": "automate.E402",
    "env": "automate.E403",
    "timeout": "automate.E404",
}

_EXAMPLE = MCP_STDIO_EXAMPLE


@checks.register("automate")
def check_mcp_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    try:
        declared = app_settings.MCP_STDIO_SERVERS
    except ImproperlyConfigured:
        return []  # not a dict: automate.E400, from the settings check
    for key, entry in declared.items():
        for field, message in stdio.entry_problems(key, entry):
            messages.append(checks.Error(message, hint=_EXAMPLE, id=_IDS[field]))
    return messages
