"""Tool discovery: list every page of a server's tools and mirror them in MCPTool rows.

A failed refresh changes no tool row: the cached list stays usable, and the error (its
code and message) is saved on the server's ``last_error`` for the admin to show.

The server row is passed in and its tools are reached through it (``server.tools``), so
this module, which the model's ``sync_tools()`` calls, imports nothing from the models.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from automate.conf import settings as app_settings
from automate.mcp import client
from automate.mcp.listing import ToolInfo, schema_hash
from automate_core.providers.errors import AutomateError, ErrorCodes

if TYPE_CHECKING:
    from automate.mcp.models import MCPServer

logger = logging.getLogger("automate.mcp")


@dataclass(frozen=True)
class SyncResult:
    """What one sync changed."""

    added: list[str]
    updated: list[str]
    disabled: list[str]
    total: int

    def __str__(self) -> str:
        return (
            f"{self.total} tools ({len(self.added)} new, {len(self.updated)} changed, "
            f"{len(self.disabled)} disabled)"
        )


def sync_tools(server: MCPServer) -> SyncResult:
    """List the server's tools and upsert them; see :meth:`MCPServer.sync_tools`."""
    if not server.enabled:
        raise AutomateError(
            ErrorCodes.CONFIGURATION,
            f"the MCP server {server.key!r} is disabled; enable it before syncing",
            provider=server.key,
        )
    try:
        listed = client.list_tools(server.endpoint(), max_pages=app_settings.MCP_MAX_TOOL_PAGES)
        _check_unique(server, [t.name for t in listed])
    except AutomateError as exc:
        _record_failure(server, exc)
        raise
    return _store(server, listed)


def _check_unique(server: MCPServer, names: list[str]) -> None:
    counts = Counter(names)  # one pass: a server may list tens of thousands of tools
    duplicates = sorted(n for n, seen in counts.items() if seen > 1)
    if duplicates:
        raise AutomateError(
            ErrorCodes.INTERNAL,
            f"the MCP server listed these tools more than once: {', '.join(duplicates)}",
            provider=server.key,
        )


def _record_failure(server: MCPServer, exc: AutomateError) -> None:
    server.last_error = str(exc)
    type(server).objects.filter(pk=server.pk).update(last_error=server.last_error)
    logger.warning("MCP tool sync of %s failed: %s", server.key, exc)


def _store(server: MCPServer, listed: list[ToolInfo]) -> SyncResult:
    added: list[str] = []
    updated: list[str] = []
    with transaction.atomic():
        existing = {t.name: t for t in server.tools.select_for_update()}
        for info in listed:
            digest = schema_hash(info.input_schema)
            row = existing.pop(info.name, None)
            if row is None:
                server.tools.create(
                    name=info.name,
                    description=info.description,
                    input_schema=info.input_schema,
                    schema_hash=digest,
                    annotations=info.annotations,
                    enabled=True,
                )
                added.append(info.name)
            elif (row.description, row.schema_hash, row.annotations, row.enabled) != (
                info.description,
                digest,
                info.annotations,
                True,
            ):
                row.description, row.input_schema = info.description, info.input_schema
                row.schema_hash, row.annotations, row.enabled = digest, info.annotations, True
                row.save(
                    update_fields=[
                        "description",
                        "input_schema",
                        "schema_hash",
                        "annotations",
                        "enabled",
                        "updated_at",
                    ]
                )
                updated.append(info.name)
        disabled = sorted(name for name, row in existing.items() if row.enabled)
        server.tools.filter(name__in=disabled).update(enabled=False, updated_at=timezone.now())
        server.last_synced_at, server.last_error = timezone.now(), ""
        type(server).objects.filter(pk=server.pk).update(
            last_synced_at=server.last_synced_at, last_error=""
        )
    return SyncResult(added=added, updated=updated, disabled=disabled, total=len(listed))
