"""The SSRF-safe client against real servers on 127.0.0.1 (and respx for public APIs)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import respx
from django.core.exceptions import ImproperlyConfigured

from automate_core.http import (
    ResponseTooLarge,
    SafeTransport,
    SSRFError,
    async_safe_client,
    async_ssrf_safe_request,
    safe_client,
    ssrf_safe_request,
)
from automate_core.providers.base import ProviderContext
from automate_core.providers.errors import AutomateError
from automate_core.secrets import SecretNotFound, SecretNotGranted
from tests.core.helpers import automate_settings, gzipped, redirect, self_signed_tls, send
from tests.testapp.connectors import JiraConnector

TOKEN = "canary-token-5f3a9c"


def echo(handler):
    """Answer with the request as JSON: method, path, headers and body."""
    body = handler.body.decode()
    payload = {
        "method": handler.command,
        "path": handler.path,
        "headers": {k.lower(): v for k, v in handler.headers.items()},
        "body": body,
    }
    send(handler, 200, json.dumps(payload).encode(), {"Content-Type": "application/json"})


# -- Happy path ---------------------------------------------------------------------


def test_ssrf_safe_request__reaches_an_allow_listed_server(server):
    server.routes["/echo"] = echo
    with server.allowed():
        response = ssrf_safe_request(
            "POST", server.url("/echo"), params={"q": "1"}, json={"a": 1}, headers={"X-A": "b"}
        )
    assert response.status_code == 200
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["path"] == "/echo?q=1"
    assert json.loads(seen["body"]) == {"a": 1}
    assert seen["headers"]["x-a"] == "b"
    assert seen["headers"]["user-agent"] == "django-automate"
    assert seen["headers"]["accept-encoding"] == "gzip, deflate"


def test_ssrf_safe_request__is_blocked_without_the_allow_list(server):
    server.routes["/echo"] = echo
    with automate_settings(HTTP_ALLOWED_PORTS=[server.port]), pytest.raises(SSRFError):
        ssrf_safe_request("GET", server.url("/echo"))
    assert server.requests == []


def test_ssrf_safe_request__decodes_gzip_within_the_cap(server):
    body = b"hello world " * 1000
    server.routes["/gz"] = lambda h: send(h, 200, gzipped(body), {"Content-Encoding": "gzip"})
    with server.allowed():
        response = ssrf_safe_request("GET", server.url("/gz"), max_size=len(body))
    assert response.content == body
    assert "content-encoding" not in response.headers
    assert response.headers["content-length"] == str(len(body))


def test_ssrf_safe_request__refuses_unasked_encodings(server):
    server.routes["/br"] = lambda h: send(h, 200, b"\x1b\x00", {"Content-Encoding": "br"})
    with server.allowed(), pytest.raises(httpx.DecodingError, match="unsupported"):
        ssrf_safe_request("GET", server.url("/br"))


def test_ssrf_safe_request__rejects_corrupt_gzip(server):
    server.routes["/bad"] = lambda h: send(h, 200, b"not gzip", {"Content-Encoding": "gzip"})
    with server.allowed(), pytest.raises(httpx.DecodingError, match="not valid compressed"):
        ssrf_safe_request("GET", server.url("/bad"))


def test_ssrf_safe_request__returns_error_statuses(server):
    server.routes["/missing"] = lambda h: send(h, 404, b"nope")
    with server.allowed():
        response = ssrf_safe_request("GET", server.url("/missing"))
    assert response.status_code == 404
    with pytest.raises(httpx.HTTPStatusError):
        response.raise_for_status()


def test_ssrf_safe_request__ignores_proxy_environment(server, monkeypatch):
    # A proxy would connect on our behalf, past every address check.
    monkeypatch.setenv("HTTP_PROXY", "http://10.9.9.9:3128")
    monkeypatch.setenv("ALL_PROXY", "http://10.9.9.9:3128")
    server.routes["/echo"] = echo
    with server.allowed():
        assert ssrf_safe_request("GET", server.url("/echo")).status_code == 200


def drip(h):
    """A body that keeps arriving, one byte every 50 ms: no read ever times out alone."""
    h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    try:
        for _ in range(100):
            h.wfile.write(b"x")
            h.wfile.flush()
            time.sleep(0.05)
    except OSError:
        pass


def test_ssrf_safe_request__total_deadline(server):
    server.routes["/slow"] = drip
    with server.allowed(), pytest.raises(AutomateError) as info:
        ssrf_safe_request("GET", server.url("/slow"), timeout=0.3)
    assert info.value.code == "timeout"
    assert info.value.retryable is True


def test_async_ssrf_safe_request__total_deadline(server):
    server.routes["/slow"] = drip
    with server.allowed(), pytest.raises(AutomateError) as info:
        asyncio.run(async_ssrf_safe_request("GET", server.url("/slow"), timeout=0.3))
    assert info.value.code == "timeout"


# -- Allow- and deny-lists ---------------------------------------------------------------


def test_ssrf_safe_request__allow_host_keeps_the_name_in_host_header(server, fake_dns):
    fake_dns.add("mcp.internal", "127.0.0.1")
    server.routes["/echo"] = echo
    with server.allowed(HTTP_ALLOW_NETWORKS=[], HTTP_ALLOW_HOSTS=[".internal"]):
        response = ssrf_safe_request("GET", server.url("/echo", host="mcp.internal"))
    assert response.json()["headers"]["host"] == f"mcp.internal:{server.port}"
    assert fake_dns.lookups == ["mcp.internal"]


def test_ssrf_safe_request__deny_host_wins_before_dns(fake_dns):
    fake_dns.add("evil.example", "93.184.215.14")
    with automate_settings(HTTP_DENY_HOSTS=["*.example"]), pytest.raises(SSRFError) as info:
        ssrf_safe_request("GET", "https://evil.example/")
    assert info.value.details["reason"] == "denied_host"
    assert fake_dns.lookups == []


def test_ssrf_safe_request__deny_network_blocks_public_addresses(fake_dns, net_guard):
    fake_dns.add("partner.example", "203.0.113.9", "93.184.215.14")
    with automate_settings(HTTP_DENY_NETWORKS=["93.184.215.0/24"]), pytest.raises(SSRFError):
        ssrf_safe_request("GET", "https://partner.example/")
    assert net_guard.attempts == []


def test_ssrf_safe_request__deny_network_beats_allow_network(server):
    with server.allowed(HTTP_DENY_NETWORKS=["127.0.0.0/8"]), pytest.raises(SSRFError):
        ssrf_safe_request("GET", server.url("/"))
    assert server.requests == []


def test_ssrf_safe_request__metadata_stays_blocked_when_allow_listed():
    allow = automate_settings(HTTP_ALLOW_NETWORKS=["169.254.0.0/16"])
    with allow, pytest.raises(SSRFError):
        ssrf_safe_request("GET", "http://169.254.169.254/latest/meta-data/")


def test_ssrf_safe_request__wildcard_ports(server):
    server.routes["/echo"] = echo
    with server.allowed(HTTP_ALLOWED_PORTS="*"):
        assert ssrf_safe_request("GET", server.url("/echo")).status_code == 200


def test_ssrf_safe_request__bad_network_setting_is_a_configuration_error(fake_dns):
    fake_dns.add("api.example.com", "93.184.215.14")
    bad = automate_settings(HTTP_DENY_NETWORKS=["not-a-network"])
    with bad, pytest.raises(ImproperlyConfigured, match="HTTP_DENY_NETWORKS"):
        ssrf_safe_request("GET", "https://api.example.com/")


# -- Credentials ---------------------------------------------------------------------


@pytest.mark.django_db  # the grant check reads the profiles' signing secrets
def test_ssrf_safe_request__credentials_ref_becomes_a_bearer_header(server):
    server.routes["/echo"] = echo
    with server.allowed(SECRETS={"my-api-key": TOKEN}):
        response = ssrf_safe_request(
            "GET", server.url("/echo"), credentials_ref="secret://my-api-key"
        )
    assert response.json()["headers"]["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.django_db  # the grant check reads the profiles' signing secrets
def test_ssrf_safe_request__credentials_with_a_scheme_are_sent_as_is(server):
    server.routes["/echo"] = echo
    with server.allowed(SECRETS={"basic": "Basic dXNlcjpwYXNz"}):
        response = ssrf_safe_request("GET", server.url("/echo"), credentials_ref="secret://basic")
    assert response.json()["headers"]["authorization"] == "Basic dXNlcjpwYXNz"


def test_ssrf_safe_request__credentials_ref_must_be_a_reference(server):
    with server.allowed(), pytest.raises(AutomateError) as info:
        ssrf_safe_request("GET", server.url("/"), credentials_ref=TOKEN)
    assert info.value.code == "invalid_argument"
    assert TOKEN not in str(info.value)
    assert server.requests == []


def test_ssrf_safe_request__missing_secret(server, db):
    with server.allowed(), pytest.raises(SecretNotFound):
        ssrf_safe_request("GET", server.url("/"), credentials_ref="secret://nope")
    assert server.requests == []


# -- Redirects -----------------------------------------------------------------------


@pytest.fixture
def other_server():
    from tests.core.helpers import LocalServer

    local = LocalServer().start()
    yield local
    local.stop()


@pytest.mark.django_db  # the grant check reads the profiles' signing secrets
def test_ssrf_safe_request__cross_origin_redirect_drops_credentials(server, other_server):
    other_server.routes["/echo"] = echo
    server.routes["/go"] = redirect(302, other_server.url("/echo"))
    settings = server.allowed(
        HTTP_ALLOWED_PORTS=[server.port, other_server.port], SECRETS={"k": TOKEN}
    )
    with settings:
        response = ssrf_safe_request(
            "GET",
            server.url("/go"),
            credentials_ref="secret://k",
            headers={"Cookie": "s=1", "X-Api-Key": "abcdef", "X-Plain": "kept"},
        )
    headers = response.json()["headers"]
    assert server.requests[0][2]["Authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in headers
    assert "cookie" not in headers
    assert "x-api-key" not in headers
    assert headers["x-plain"] == "kept"


@pytest.mark.django_db  # the grant check reads the profiles' signing secrets
def test_ssrf_safe_request__same_origin_redirect_keeps_credentials(server):
    server.routes["/echo"] = echo
    server.routes["/go"] = redirect(301, "/echo")
    with server.allowed(SECRETS={"k": TOKEN}):
        response = ssrf_safe_request("GET", server.url("/go"), credentials_ref="secret://k")
    assert response.json()["headers"]["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("status", "method", "body"),
    [(301, "GET", ""), (302, "GET", ""), (303, "GET", ""), (307, "POST", "{"), (308, "POST", "{")],
)
def test_ssrf_safe_request__redirect_methods(server, status, method, body):
    server.routes["/echo"] = echo
    server.routes["/go"] = redirect(status, "/echo")
    with server.allowed():
        seen = ssrf_safe_request("POST", server.url("/go"), json={"a": 1}).json()
    assert seen["method"] == method
    assert seen["body"].startswith(body)


def test_ssrf_safe_request__too_many_redirects(server):
    server.routes["/loop"] = redirect(302, "/loop")
    with server.allowed(), pytest.raises(SSRFError, match="more than 2 redirects"):
        ssrf_safe_request("GET", server.url("/loop"), max_redirects=2)
    assert len(server.requests) == 3


def test_ssrf_safe_request__allow_redirects_false_returns_the_redirect(server):
    server.routes["/go"] = redirect(302, "http://10.0.0.1/")
    with server.allowed():
        response = ssrf_safe_request("GET", server.url("/go"), allow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "http://10.0.0.1/"


# -- TLS: SNI and the certificate check stay on the original name -----------------------


def _tls_server(server, hostname):
    server_ctx, client_ctx = self_signed_tls(hostname)
    seen_sni = []
    server_ctx.sni_callback = lambda sock, name, ctx: seen_sni.append(name)
    server.httpd.socket = server_ctx.wrap_socket(server.httpd.socket, server_side=True)
    return client_ctx, seen_sni


def test_safe_transport__tls_uses_the_original_name(fake_dns, net_guard):
    from tests.core.helpers import LocalServer

    fake_dns.add("api.internal.test", "127.0.0.1")
    local = LocalServer()
    client_ctx, seen_sni = _tls_server(local, "api.internal.test")
    local.routes["/echo"] = echo
    local.start()
    try:
        client = httpx.Client(transport=SafeTransport(verify=client_ctx), trust_env=False)
        with local.allowed(), client:
            response = client.get(f"https://api.internal.test:{local.port}/echo")
    finally:
        local.stop()
    assert response.json()["headers"]["host"] == f"api.internal.test:{local.port}"
    assert seen_sni == ["api.internal.test"]
    assert net_guard.attempts == [("127.0.0.1", local.port)]


def test_safe_transport__tls_rejects_a_certificate_for_another_name(fake_dns):
    from tests.core.helpers import LocalServer

    fake_dns.add("api.internal.test", "127.0.0.1")
    local = LocalServer()
    client_ctx, _ = _tls_server(local, "other.test")
    local.start()
    try:
        client = httpx.Client(transport=SafeTransport(verify=client_ctx), trust_env=False)
        with local.allowed(), client, pytest.raises(httpx.ConnectError, match="certificate"):
            client.get(f"https://api.internal.test:{local.port}/")
    finally:
        local.stop()


# -- safe_client and connectors --------------------------------------------------------


@pytest.mark.django_db  # the grant check reads the profiles' signing secrets
def test_safe_client__applies_the_rules_to_every_request(server):
    server.routes["/echo"] = echo
    settings = server.allowed(SECRETS={"k": TOKEN})
    with settings, safe_client(base_url=server.url(""), credentials_ref="secret://k") as client:
        seen = client.get("/echo").json()
        # The credential is bound to base_url's host: another host is refused first.
        with pytest.raises(SecretNotGranted):
            client.get("http://10.0.0.1/")
    with settings, safe_client(base_url=server.url("")) as client:
        with pytest.raises(SSRFError):
            client.get("http://10.0.0.1/")
        with pytest.raises(SSRFError):
            client.get("http://169.254.169.254/", follow_redirects=True)
    assert seen["headers"]["authorization"] == f"Bearer {TOKEN}"


def test_safe_client__checks_redirect_hops(server):
    server.routes["/go"] = redirect(302, "http://localhost/")
    with server.allowed(), safe_client() as client, pytest.raises(SSRFError):
        client.get(server.url("/go"), follow_redirects=True)


def test_safe_client__caps_bodies(server):
    from tests.core.helpers import gzip_bomb

    bomb = gzip_bomb(8 * 1024 * 1024)
    server.routes["/bomb"] = lambda h: send(h, 200, bomb, {"Content-Encoding": "gzip"})
    capped = safe_client(max_size=1024 * 1024)
    with server.allowed(), capped, pytest.raises(ResponseTooLarge):
        capped.get(server.url("/bomb"))


@respx.mock
def test_safe_client__mocked_at_the_transport_needs_no_dns(fake_dns, net_guard):
    route = respx.get("https://api.example.com/data").respond(200, json={"ok": True})
    with safe_client(base_url="https://api.example.com") as client:
        assert client.get("/data").json() == {"ok": True}
        with pytest.raises(SSRFError):
            client.get("gopher://api.example.com/")
    assert route.call_count == 1
    assert fake_dns.lookups == []
    assert net_guard.attempts == []


@respx.mock
def test_connector_client__is_ssrf_safe():
    respx.post("https://test.atlassian.net/rest/api/3/issue").respond(
        201, json={"key": "TEST-1", "id": "1"}
    )
    config = {"url": "https://test.atlassian.net", "email": "a@b.c", "api_token": "t"}
    connector = JiraConnector(config, ctx=ProviderContext())
    assert isinstance(connector.client._transport, SafeTransport)
    assert connector.execute_action("create_issue", {"summary": "x"}) == {
        "key": "TEST-1",
        "id": "1",
    }
    internal = JiraConnector({**config, "url": "http://10.0.0.1"}, ctx=ProviderContext())
    with pytest.raises(AutomateError) as info:
        internal.execute_action("create_issue", {"summary": "x"})
    assert "not a public address" in str(info.value)


# -- async -----------------------------------------------------------------------------


@pytest.mark.django_db  # the grant check reads the profiles' signing secrets
def test_async_ssrf_safe_request__happy_path_with_credentials(server):
    server.routes["/echo"] = echo
    from asgiref.sync import sync_to_async
    from django.db import connections

    async def call():
        try:
            return await async_ssrf_safe_request(
                "POST", server.url("/echo"), json={"a": 1}, credentials_ref="secret://k"
            )
        finally:
            # The grant check ran in asgiref's worker thread: close its connection, or
            # PostgreSQL cannot drop the test database at the end of the session.
            await sync_to_async(connections.close_all)()

    with server.allowed(SECRETS={"k": TOKEN}):
        response = asyncio.run(call())
    seen = response.json()
    assert seen["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(seen["body"]) == {"a": 1}


def test_async_safe_client__blocks_and_serves(server):
    server.routes["/echo"] = echo

    async def run():
        async with async_safe_client(base_url=server.url("")) as client:
            ok = await client.get("/echo")
            with pytest.raises(SSRFError):
                await client.get("http://[::1]/")
            return ok.status_code

    with server.allowed():
        assert asyncio.run(run()) == 200


def test_safe_client__cross_origin_redirect_drops_credentials(server, other_server):
    other_server.routes["/echo"] = echo
    server.routes["/go"] = redirect(302, other_server.url("/echo"))
    server.routes["/echo"] = echo
    server.routes["/here"] = redirect(302, "/echo")
    settings = server.allowed(HTTP_ALLOWED_PORTS=[server.port, other_server.port])
    client = safe_client(headers={"X-Api-Key": "abcdef", "Cookie": "s=1", "X-Plain": "kept"})
    with settings, client:
        away = client.get(server.url("/go"), follow_redirects=True).json()["headers"]
        home = client.get(server.url("/here"), follow_redirects=True).json()["headers"]
    assert "x-api-key" not in away
    assert "cookie" not in away
    assert away["x-plain"] == "kept"
    assert home["x-api-key"] == "abcdef"


def test_ssrf_safe_request__refusal_is_logged_once(caplog):
    with caplog.at_level("WARNING", logger="automate.http"), pytest.raises(SSRFError):
        ssrf_safe_request("GET", "http://10.0.0.1/admin")
    records = [r for r in caplog.records if r.name == "automate.http"]
    assert len(records) == 1
    assert "SSRF protection refused GET http://10.0.0.1/admin" in records[0].getMessage()
    assert records[0].reason == "private_address"


def test_safe_client__refusal_is_logged(caplog):
    client = safe_client()
    with caplog.at_level("WARNING", logger="automate.http"), client, pytest.raises(SSRFError):
        client.get("http://[::1]/")
    assert [r.reason for r in caplog.records if r.name == "automate.http"] == ["private_address"]
