"""``manage.py sync_mcp_tools [KEY ...]``: refresh the cached tool lists of MCP servers.

Servers declared in ``AUTOMATE["MCP_STDIO_SERVERS"]`` get (or update) their database row
first, so a fresh deploy needs only this command before workflows can use their tools.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from automate.mcp import stdio
from automate.mcp.models import MCPServer, ensure_stdio_server
from automate_core.providers.errors import AutomateError


class Command(BaseCommand):
    help = "Sync the tools of MCP servers (every enabled server, or the given keys)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("keys", nargs="*", help="server keys (default: every enabled server)")

    def handle(self, *args: Any, keys: list[str], **options: Any) -> None:
        self._ensure_stdio_servers(keys)
        if keys:
            servers = list(MCPServer.objects.filter(key__in=keys))
            missing = sorted(set(keys) - {s.key for s in servers})
            if missing:
                raise CommandError(f"no MCP server with key: {', '.join(missing)}")
        else:
            servers = list(MCPServer.objects.filter(enabled=True))
        failed = []
        for server in servers:
            try:
                result = server.sync_tools()
            except AutomateError as exc:
                failed.append(server.key)
                self.stderr.write(f"{server.key}: {exc}")
            else:
                self.stdout.write(f"{server.key}: {result}")
        if failed:
            raise CommandError(f"sync failed for: {', '.join(failed)}")

    def _ensure_stdio_servers(self, keys: list[str]) -> None:
        declared = sorted(k for k in stdio.entries() if not keys or k in keys)
        for key in declared:
            try:
                ensure_stdio_server(key)
            except AutomateError as exc:
                raise CommandError(str(exc)) from None
