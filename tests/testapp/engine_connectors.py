"""Connectors the workflow engine's tests drive: an echo, a failure on demand, a
non-idempotent ``record`` action that POSTs to a local counting server, and ``die``,
which ends the worker process on the spot (a poison event's crash or OOM kill)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel

from automate_connectors.base import ActionSpec, Connector
from automate_core.providers.errors import AutomateError


class RecorderConfig(BaseModel):
    url: str = "http://127.0.0.1:9"


class RecorderConnector(Connector):
    key = "recorder"

    #: Every call made in this process, for tests that run the worker in-process.
    calls: ClassVar[list[tuple[str, dict]]] = []
    _lock = threading.Lock()

    @classmethod
    def config_schema(cls) -> type[BaseModel]:
        return RecorderConfig

    @classmethod
    def actions(cls) -> list[ActionSpec]:
        obj = {"type": "object"}
        return [
            ActionSpec(name="echo", input_schema=obj, idempotent=True),
            ActionSpec(
                name="record",
                input_schema={
                    "type": "object",
                    "properties": {"event": {"type": "string"}},
                    "required": ["event"],
                },
                idempotent=False,
            ),
            ActionSpec(
                name="fail",
                input_schema={
                    "type": "object",
                    "properties": {"code": {"type": "string"}, "retryable": {"type": "boolean"}},
                    "required": ["code"],
                },
                idempotent=True,
            ),
            ActionSpec(name="flaky", input_schema=obj, idempotent=False),
            ActionSpec(name="slow", input_schema=obj, idempotent=True),
            ActionSpec(name="slow_charge", input_schema=obj, idempotent=False),
            ActionSpec(name="die", input_schema=obj, idempotent=True),
        ]

    def execute_action(self, action: str, input_data: dict) -> Any:
        with self._lock:
            self.calls.append((action, dict(input_data)))
            count = sum(1 for a, _ in self.calls if a == action)
        if action == "echo":
            return {"echo": input_data}
        if action == "record":
            response = httpx.post(f"{self.cfg.url}/record", json=input_data, timeout=10)
            response.raise_for_status()
            return response.json()
        if action == "fail":
            raise AutomateError(
                input_data["code"], "failing on purpose", retryable=input_data.get("retryable")
            )
        if action == "flaky":
            if count <= int(input_data.get("failures", 1)):
                raise AutomateError("unavailable", f"flaky call {count}")
            return {"call": count}
        if action == "die":
            os._exit(70)  # no cleanup, no settlement: the lease is left to run out
        if action in ("slow", "slow_charge"):
            time.sleep(float(input_data.get("seconds", 1)))
            return {"slept": input_data.get("seconds", 1)}
        raise AutomateError("invalid_argument", f"unknown action {action}")
