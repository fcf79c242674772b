"""The built-in ``http`` connector: passes the kit, and sends real requests to a local server.

The contract class runs on the kit's fake internet like every connector's; the behaviour
tests talk to a real HTTP server on 127.0.0.1, admitted through the SSRF settings, because
the point of this connector is the real client's behaviour (and its refusals).
"""

from __future__ import annotations

import json
import uuid

import pytest

from automate_connectors.builtin.http import HttpConnector
from automate_connectors.registry import get_connector
from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_core.throttling import RateLimitExceeded
from automate_testing.context import make_context
from automate_testing.contracts import ConnectorContractTest
from automate_testing.http import MockResponse
from tests.core.helpers import LocalServer, redirect, send

API = "https://api.example.com/v1"

# A credential's grant is checked against the webhook signing secrets, which profiles hold.
pytestmark = pytest.mark.django_db


class TestBuiltinHttpContract(ConnectorContractTest):
    connector_class = HttpConnector
    secret_values = {"API_TOKEN": "t0ken"}
    # A connector with no base_url and no credentials sends to absolute URLs: {} is valid.
    empty_config_is_valid = True
    sample_inputs = {
        "get": {"url": "/items", "params": {"page": 2}},
        "post": {"url": "/items", "json": {"name": "x"}},
        "put": {"url": "/items/1", "data": {"name": "raw"}},
        "patch": {"url": "/items/1", "json": {"name": "y"}},
        "delete": {"url": f"{API}/items/1"},
        "request": {"method": "POST", "url": "/items", "headers": {"X-Trace": "1"}},
    }
    sample_responses = {
        "get": {"GET /items": {"items": []}},
        "post": {"POST /items": MockResponse(json={"id": 1}, status=201)},
        "put": {"PUT /items/1": MockResponse(body="done", headers={"Content-Type": "text/plain"})},
        "patch": {"PATCH /items/1": {"id": 1}},
        "delete": {"DELETE /items/1": MockResponse(status=204)},
        "request": {"POST /items": {"id": 2}},
    }

    def get_config(self):
        return {"base_url": API, "credentials_ref": "secret://API_TOKEN"}


@pytest.fixture
def server():
    local = LocalServer()

    def echo(handler):
        body = json.dumps(
            {
                "method": handler.command,
                "path": handler.path,
                "body": handler.body.decode(),
                "authorization": handler.headers.get("Authorization"),
                "x_trace": handler.headers.get("X-Trace"),
            }
        ).encode()
        send(handler, 200, body, {"Content-Type": "application/json"})

    local.routes["/echo"] = echo
    local.routes["/text"] = lambda h: send(h, 200, b"plain words")
    local.routes["/busy"] = lambda h: send(h, 429, b"slow down", {"Retry-After": "12"})
    local.routes["/gone"] = lambda h: send(h, 404, b"no such thing")
    local.start()
    with local.allowed():
        yield local
    local.stop()


def build(connector_factory, server, **config):
    return connector_factory(
        HttpConnector,
        config={"base_url": server.url("/"), **config},
        secret_values={"API_TOKEN": "t0ken", "BASIC": "Basic Ym90OnB3"},
    )


def test_http__registered_as_a_builtin():
    assert get_connector("http") is HttpConnector


def test_http__idempotency_follows_the_method():
    declared = {spec.name: spec.idempotent for spec in HttpConnector.actions()}
    assert declared == {
        "get": True,
        "post": False,
        "put": True,
        "patch": False,
        "delete": True,
        "request": False,
    }


def test_http__post_json_with_bearer_credentials(connector_factory, server):
    http = build(connector_factory, server, credentials_ref="secret://API_TOKEN")
    result = http.execute_action(
        "post", {"url": "/echo", "json": {"a": 1}, "headers": {"X-Trace": "t-1"}}
    )
    assert result["status"] == 200
    assert result["text"] is None
    assert result["json"] == {
        "method": "POST",
        "path": "/echo",
        "body": '{"a":1}',
        "authorization": "Bearer t0ken",
        "x_trace": "t-1",
    }


def test_http__credentials_with_a_scheme_are_sent_as_is(connector_factory, server):
    http = build(connector_factory, server, credentials_ref="secret://BASIC")
    result = http.execute_action("get", {"url": "/echo", "params": {"q": "x y", "n": 2}})
    assert result["json"]["authorization"] == "Basic Ym90OnB3"
    assert result["json"]["path"] == "/echo?q=x+y&n=2"


def test_http__request_action_takes_the_method_from_input(connector_factory, server):
    http = build(connector_factory, server)
    result = http.execute_action(
        "request", {"method": "PUT", "url": "/echo", "data": {"name": "a b", "n": 1}}
    )
    assert result["json"]["method"] == "PUT"
    assert result["json"]["body"] == "name=a+b&n=1"
    assert result["json"]["authorization"] is None


def test_http__non_json_body_is_returned_as_text(connector_factory, server):
    http = build(connector_factory, server)
    result = http.execute_action("get", {"url": "/text"})
    assert result["text"] == "plain words"
    assert result["json"] is None


def test_http__error_status_maps_to_a_code_with_retry_after(connector_factory, server):
    http = build(connector_factory, server)
    with pytest.raises(AutomateError) as raised:
        http.execute_action("get", {"url": "/busy"})
    assert raised.value.code == ErrorCodes.RATE_LIMITED
    assert raised.value.details["retry_after"] == 12
    with pytest.raises(AutomateError) as raised:
        http.execute_action("delete", {"url": "/gone"})
    assert raised.value.code == ErrorCodes.NOT_FOUND
    assert raised.value.provider == "http"


def test_http__raise_for_status_false_returns_the_error_response(connector_factory, server):
    http = build(connector_factory, server)
    result = http.execute_action("get", {"url": "/gone", "raise_for_status": False})
    assert result["status"] == 404
    assert result["text"] == "no such thing"


def test_http__loopback_is_refused_without_the_allow_list(connector_factory):
    local = LocalServer()
    local.routes["/echo"] = lambda h: send(h, 200, b"reached")
    local.start()
    try:
        http = connector_factory(HttpConnector, config={})
        with pytest.raises(AutomateError) as raised:
            http.execute_action("get", {"url": local.url("/echo")})
    finally:
        local.stop()
    assert raised.value.code == ErrorCodes.PERMISSION_DENIED
    assert raised.value.provider == "http"
    assert local.requests == []


def test_http__oversized_response_is_refused(connector_factory, server):
    server.routes["/big"] = lambda h: send(h, 200, b"x" * 5000)
    http = build(connector_factory, server, max_size=1000)
    with pytest.raises(AutomateError) as raised:
        http.execute_action("get", {"url": "/big"})
    assert raised.value.details["reason"] == "too_large"


def test_http__cross_origin_redirect_drops_credentials(connector_factory, server):
    other = LocalServer()
    seen = []
    other.routes["/landing"] = lambda h: (
        seen.append(h.headers.get("Authorization")),
        send(h, 200, b"{}", {"Content-Type": "application/json"}),
    )
    other.start()
    try:
        # Same address, another port: another origin.
        server.routes["/moved"] = redirect(302, other.url("/landing"))
        http = build(connector_factory, server, credentials_ref="secret://API_TOKEN")
        with server.allowed(HTTP_ALLOWED_PORTS=[server.port, other.port]):
            result = http.execute_action("get", {"url": "/moved"})
    finally:
        other.stop()
    assert result["status"] == 200
    assert seen == [None]


def test_http__absolute_url_must_keep_the_base_origin(connector_factory, server):
    http = build(connector_factory, server, credentials_ref="secret://API_TOKEN")
    with pytest.raises(AutomateError) as raised:
        http.execute_action("get", {"url": "https://elsewhere.example.com/steal"})
    assert raised.value.code == ErrorCodes.INVALID_ARGUMENT
    assert "origin" in raised.value.message
    assert server.requests == []
    same = http.execute_action("get", {"url": server.url("/echo")})
    assert same["json"]["authorization"] == "Bearer t0ken"


@pytest.mark.parametrize("url", ["/echo", "echo", "ftp://example.com/x"])
def test_http__url_without_usable_target_is_invalid(connector_factory, url):
    http = connector_factory(HttpConnector, config={})
    with pytest.raises(AutomateError) as raised:
        http.execute_action("get", {"url": url})
    assert raised.value.code == ErrorCodes.INVALID_ARGUMENT


@pytest.mark.parametrize("header", ["Authorization", "cookie", "Proxy-Authorization"])
def test_http__credential_headers_in_input_are_refused(connector_factory, server, header):
    http = build(connector_factory, server)
    with pytest.raises(AutomateError) as raised:
        http.execute_action("get", {"url": "/echo", "headers": {header: "Bearer stolen"}})
    assert raised.value.code == ErrorCodes.INVALID_ARGUMENT
    assert "credentials_ref" in raised.value.message
    assert server.requests == []


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"credentials_ref": "Bearer pasted"}, "credentials_ref"),
        ({"headers": {"Authorization": "Bearer pasted"}}, "headers"),
        ({"base_url": "example.com"}, "base_url"),
        ({"rate_limit": "1 per day"}, "rate_limit"),
        ({"url": "typo"}, "url"),
    ],
)
def test_http__config_rejects_bad_fields(connector_factory, config, field):
    with pytest.raises(AutomateError) as raised:
        connector_factory(HttpConnector, config=config)
    assert raised.value.code == ErrorCodes.INVALID_ARGUMENT
    assert field in raised.value.message


def test_http__json_and_data_together_are_invalid_before_http(connector_factory, server):
    http = build(connector_factory, server)
    with pytest.raises(AutomateError) as raised:
        http.execute_action("post", {"url": "/echo", "json": {}, "data": {"x": "1"}})
    assert raised.value.code == ErrorCodes.INVALID_ARGUMENT
    assert server.requests == []


def test_http__unresolvable_credentials_fail_before_http(server):
    # Built directly: connector_factory, like a profile, would resolve the reference first.
    config = {"base_url": server.url("/"), "credentials_ref": "secret://MISSING"}
    http = HttpConnector(config, ctx=make_context())
    with pytest.raises(AutomateError) as raised:
        http.execute_action("get", {"url": "/echo"})
    assert raised.value.code == ErrorCodes.CONFIGURATION
    assert server.requests == []


def test_http__rate_limit_is_enforced_before_http(connector_factory, server):
    prefix = f"/{uuid.uuid4().hex}"  # the budget is per base_url: this one is fresh
    server.routes[f"{prefix}/echo"] = server.routes["/echo"]
    http = connector_factory(
        HttpConnector, config={"base_url": server.url(prefix), "rate_limit": "2/hour"}
    )
    for _ in range(2):
        http.execute_action("get", {"url": "/echo"})
    with pytest.raises(RateLimitExceeded) as raised:
        http.execute_action("get", {"url": "/echo"})
    assert len(server.requests) == 2
    assert raised.value.provider == "http"
