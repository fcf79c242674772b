"""ApiConnector: the one client-caching constructor of the built-in API connectors."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, Field

from automate_connectors.base import ActionSpec
from automate_connectors.builtin._api import ApiConnector, check_service_url, service_error
from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_core.throttling import RateLimitExceeded
from automate_testing.context import make_context
from automate_testing.http import mock_http

BASE = "https://api.acme.example"


class AcmeConfig(BaseModel):
    base_url: str = BASE
    token: str | None = None
    timeout: float = Field(default=30.0, gt=0)
    rate_limit: str | None = None


class AcmeConnector(ApiConnector):
    key = "acme_api_test"
    cfg: AcmeConfig

    @classmethod
    def config_schema(cls) -> type[BaseModel]:
        return AcmeConfig

    @classmethod
    def actions(cls) -> list[ActionSpec]:
        return [ActionSpec(name="ping", input_schema={"type": "object"}, idempotent=True)]

    def execute_action(self, action: str, input_data: dict[str, Any]) -> dict[str, Any]:
        return self.send("GET", "/ping").json()

    def client_credentials(self) -> tuple[dict[str, str], httpx.Auth | None]:
        self.credentials_asked = getattr(self, "credentials_asked", 0) + 1
        if not self.cfg.token:
            raise AutomateError(ErrorCodes.CONFIGURATION, "acme needs token", provider=self.key)
        token = self.ctx.resolve_secret(self.cfg.token)
        return {"X-Acme": "1"}, httpx.BasicAuth("bot", str(token))

    def rate_scope(self) -> tuple[str | None, ...]:
        return self.cfg.base_url, self.cfg.token


def _acme(secret: str = "ACME_TOKEN", **config: Any) -> AcmeConnector:
    return AcmeConnector(config, ctx=make_context({secret: "s3cret"}))


def test_api_connector__builds_one_client_with_the_credentials_and_the_timeout():
    acme = _acme(token="secret://ACME_TOKEN", timeout=7)

    client = acme.client

    assert acme.client is client
    assert acme.credentials_asked == 1
    assert client.headers["X-Acme"] == "1"
    assert isinstance(client.auth, httpx.BasicAuth)
    assert client.timeout == httpx.Timeout(7)
    assert str(client.base_url) == BASE


def test_api_connector__credentials_are_resolved_on_the_first_request_not_at_build():
    acme = _acme(token="secret://ACME_TOKEN")
    assert not hasattr(acme, "credentials_asked")

    with mock_http(BASE) as mock:
        mock.get("/ping", json={"pong": True})
        assert acme.execute_action("ping", {}) == {"pong": True}

    basic = base64.b64encode(b"bot:s3cret").decode()
    assert mock.calls[0].headers["authorization"] == f"Basic {basic}"


def test_api_connector__a_missing_credential_fails_before_any_http_and_builds_no_client():
    acme = _acme()

    with mock_http(BASE) as mock, pytest.raises(AutomateError) as raised:
        acme.execute_action("ping", {})

    assert raised.value.code == ErrorCodes.CONFIGURATION
    assert mock.calls == []
    assert acme._client is None


def test_api_connector__send_raises_on_an_error_status():
    acme = _acme(token="secret://ACME_TOKEN")

    with mock_http(BASE) as mock:
        mock.get("/ping", status=503)
        with pytest.raises(httpx.HTTPStatusError):
            acme.send("GET", "/ping")


def test_api_connector__send_spends_the_rate_budget_before_http():
    name = f"ACME_{uuid.uuid4().hex}"  # a budget of its own, whatever ran before
    acme = _acme(name, token=f"secret://{name}", rate_limit="1/min")

    with mock_http(BASE) as mock:
        mock.get("/ping", json={})
        acme.send("GET", "/ping")
        with pytest.raises(RateLimitExceeded):
            acme.send("GET", "/ping")

    assert len(mock.calls) == 1


def _status_error(status: int, body: bytes = b"", **headers: str) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", f"{BASE}/things")
    response = httpx.Response(status, content=body, headers=headers, request=request)
    return httpx.HTTPStatusError(f"HTTP {status}", request=request, response=response)


def _said(body: dict[str, Any]) -> list[str]:
    return [str(m) for m in body.get("messages", [])]


def test_service_error__adds_the_retry_after_header_and_the_services_own_messages():
    exc = _status_error(429, b'{"messages": ["slow down", "really"]}', **{"Retry-After": "30"})

    error = service_error(exc, provider="acme", messages=_said)

    assert error.code == ErrorCodes.RATE_LIMITED
    assert error.details["retry_after"] == 30
    assert error.message == "HTTP 429 from acme: slow down; really"
    assert str(error) == "[acme:rate_limited] HTTP 429 from acme: slow down; really"


def test_service_error__a_long_message_is_cut_and_a_body_that_is_not_json_adds_nothing():
    long = service_error(
        _status_error(400, b'{"messages": ["' + b"x" * 900 + b'"]}'), provider="a", messages=_said
    )
    html = service_error(
        _status_error(502, b"<html>bad gateway</html>"), provider="a", messages=_said
    )

    assert long.message == "HTTP 400 from a: " + "x" * 500
    assert html.message == "HTTP 502 from a"
    assert "retry_after" not in html.details


def test_service_error__a_custom_wait_reads_the_response():
    exc = _status_error(403, **{"X-Wait": "12"})

    error = service_error(exc, provider="a", retry_after=lambda r: int(r.headers["X-Wait"]))

    assert error.details["retry_after"] == 12
    assert error.code == ErrorCodes.PERMISSION_DENIED


def test_service_error__an_error_without_an_answer_is_only_normalized():
    error = service_error(httpx.ConnectError("refused"), provider="a", messages=_said)

    assert error.code == ErrorCodes.UNAVAILABLE
    assert error.details == {}


def test_check_service_url__keeps_https_without_its_trailing_slash():
    check = check_service_url("https://api.acme.example/v1")

    assert check("https://api.acme.example/v1/") == "https://api.acme.example/v1"
    assert check(None) is None
    with pytest.raises(ValueError, match=r"must be an https URL such as https://api\.acme"):
        check("http://api.acme.example")


def test_check_service_url__allow_http_takes_http_too():
    check = check_service_url("https://jira.example", allow_http=True)

    assert check("http://jira.internal/") == "http://jira.internal"
    with pytest.raises(ValueError, match=r"must be an http\(s\) URL such as https://jira\.example"):
        check("ftp://jira.example")
