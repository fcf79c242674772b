"""A server's tool listing as plain values: one listed tool, and its schema's digest.

Free of the SDK and of the database: the client produces :class:`ToolInfo`, tool sync
mirrors it in ``MCPTool`` rows, and the models re-export :func:`schema_hash`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolInfo:
    """A tool as listed by the server."""

    name: str
    description: str
    input_schema: dict[str, Any]
    annotations: dict[str, Any] = field(default_factory=dict)


def schema_hash(schema: dict[str, Any]) -> str:
    """A stable digest of an input schema, to see at a glance when a tool changed."""
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
