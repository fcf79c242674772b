"""A connector that breaks every rule of the contract, each in its own way.

Kept in tests/ to prove the kit catches broken connectors before production: every
inherited contract test must fail on it, naming the rule.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac

import httpx
from pydantic import BaseModel

from automate_connectors.base import ActionSpec, Connector, TriggerSpec

CREATE_SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "count": {"type": "integer"}},
    "required": ["title"],
}


class BrokenConfig(BaseModel):
    # Rule broken: everything is optional, so an empty config is accepted.
    url: str = "https://broken.example"
    token: str = ""


_client = httpx.Client()


def _unguarded_execute(self, action, input_data):
    # Rule broken: HTTP first, no validation of the action or its input.
    data = _client.post(f"{self.base_url}/do/{action}", json=input_data).json()
    if action == "create":
        if input_data.get("count", 0) > 3:
            # Rule broken (found by fuzzing): a result that is not JSON.
            return {"created_at": datetime.datetime.now(tz=datetime.UTC)}
        return {"id": data["id"]}  # KeyError escapes on an unexpected reply
    return data  # Rule broken (samples): "list" returns a JSON list, not an object


# Opt out of the base class's guard, as a connector written against an older base might.
_unguarded_execute._automate_guarded = True


class BrokenConnector(Connector):
    key = "broken"

    @classmethod
    def config_schema(cls):
        return BrokenConfig

    @classmethod
    def actions(cls):
        return [
            ActionSpec(name="create", input_schema=CREATE_SCHEMA),
            # Rules broken: a duplicate name and an invalid JSON Schema.
            ActionSpec(name="create", input_schema=CREATE_SCHEMA),
            ActionSpec(name="list", input_schema={"type": "object", "minProperties": -1}),
        ]

    @classmethod
    def triggers(cls):
        return [TriggerSpec(name="thing_created", verification_method="hmac-sha256")]

    execute_action = _unguarded_execute

    def normalize_error(self, exc):
        return exc  # Rule broken: not an AutomateError

    def verify_webhook(self, headers, raw_body):
        # Rules broken: a missing signature passes, and the body is never checked.
        signature = headers.get("X-Broken-Signature")
        return signature is None or signature.startswith("sha256=")


def sign(raw_body: bytes, secret: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return {"X-Broken-Signature": f"sha256={digest}"}


class SubtlyBrokenConnector(Connector):
    """Right in every way but one that only some inputs reveal: fuzzing must find it."""

    key = "subtly_broken"

    @classmethod
    def config_schema(cls):
        return RequiredConfig

    @classmethod
    def actions(cls):
        return [ActionSpec(name="create", input_schema=CREATE_SCHEMA)]

    def execute_action(self, action, input_data):
        if input_data.get("count", 0) > 3:
            return {"created_at": datetime.datetime.now(tz=datetime.UTC)}
        return {"title": input_data["title"]}


class RequiredConfig(BaseModel):
    url: str


# -- Three connectors that look right and are not (and the one they break away from) ----

TICKET_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "priority": {"enum": ["low", "high"]},
    },
    "required": ["title"],
    "additionalProperties": False,
}


class TicketConfig(BaseModel):
    url: str


class CarefulConnector(Connector):
    """Checks the status, lets failures reach the base, reads optional input with .get()."""

    key = "careful"

    @classmethod
    def config_schema(cls):
        return TicketConfig

    @classmethod
    def actions(cls):
        return [ActionSpec(name="create_ticket", input_schema=TICKET_SCHEMA)]

    def execute_action(self, action, input_data):
        body = {"title": input_data["title"], "priority": input_data.get("priority", "low")}
        with self.http_client() as client:
            response = client.post("/tickets", json=body)
        response.raise_for_status()  # the base maps HTTPStatusError through normalize_error
        return response.json()


class UncheckedStatusConnector(CarefulConnector):
    """Never looks at the status: a 500's error body comes back as the action's result."""

    key = "unchecked_status"

    def execute_action(self, action, input_data):
        with self.http_client() as client:
            return client.post("/tickets", json=input_data).json()


class SwallowingConnector(CarefulConnector):
    """Catches every exception and reports it as a result: the engine never retries."""

    key = "swallowing"

    def execute_action(self, action, input_data):
        try:
            return super().execute_action(action, input_data)
        except Exception:
            return {"ok": False}


class OptionalKeyConnector(CarefulConnector):
    """Reads an optional field with [] : a KeyError on an input its own schema allows."""

    key = "optional_key"

    def execute_action(self, action, input_data):
        body = {"title": input_data["title"], "priority": input_data["priority"]}
        with self.http_client() as client:
            response = client.post("/tickets", json=body)
        response.raise_for_status()
        return response.json()
