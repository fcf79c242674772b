"""Findings 2, 7, 10, 12 and 17b of issue 18: outbound paths that skipped the guard.

The attacker controls a server the system calls (a URL in a step, a profile's base_url
pointed at an internal address, a redirect target, a malicious or slow answer). Each test
reproduces the finding on the code before the fix:

2. LLM providers and the Pinecone store reached loopback/metadata addresses with the API
   key, and sent it to ``HTTP_PROXY``;
7. vendor credential headers (``Ocp-Apim-Subscription-Key``, ``Api_Key``...) survived a
   cross-origin redirect;
10. an LLM call had no total deadline (a dripping server held it) and no size cap;
12. 1,500 stacked ``Content-Encoding: gzip`` layers raised ``RecursionError``;
17b. opening a network for MCP needed the global allow-list, which opened it to
   payload-templated ``http_request`` URLs as well.

Only loopback servers are reached; socket connects and DNS are guarded as in tests/core.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from automate.models import RunStatus
from automate.services import WorkflowService
from automate_core.http import ssrf_safe_request
from automate_core.providers.errors import AutomateError, ErrorCodes
from tests.core.conftest import fake_dns, net_guard  # noqa: F401  (autouse guards)
from tests.core.helpers import LocalServer, automate_settings, redirect, send
from tests.llm.conftest import require_sdk
from tests.llm.servers import CHAT_COMPLETION, Reply, ScriptedServer
from tests.mcp.conftest import TOKEN, mcp_server  # noqa: F401  (a real MCP server)

pytestmark = pytest.mark.django_db

API_KEY = "sk-CANARY-llm-key-0042"
LOOPBACK_LLM = {"HTTP_ALLOW_FOR": {"llm": {"networks": ["127.0.0.1/32"]}}}
USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer().start()
    yield server
    server.stop()


@pytest.fixture
def llm_settings(settings):
    def apply(**overrides):
        settings.AUTOMATE = {
            **settings.AUTOMATE,
            "SECRETS": {**settings.AUTOMATE["SECRETS"], "OPENAI_KEY": API_KEY},
            "HTTP_ALLOWED_PORTS": "*",
            "RATE_LIMIT_STORAGE": "memory://",
            **overrides,
        }

    return apply


def _profile(base_url: str, **config):
    from automate_llm.models import LLMProfile

    require_sdk("openai", "openai")
    return LLMProfile.objects.create(
        key="chat",
        provider_key="openai",
        config={"api_key": "secret://OPENAI_KEY", "base_url": base_url, "model": "gpt-test"}
        | config,
    )


def _chat(profile, **params):
    from automate_llm.calls import run_chat

    return run_chat(profile, USER, **params)


# -- Finding 2: LLM providers and Pinecone bypassed the guard ------------------------------


def test_outbound__llm_base_url_on_loopback_is_refused_without_the_llm_allow_list(
    scripted, llm_settings
):
    llm_settings()
    scripted.add(Reply(body=CHAT_COMPLETION))
    with pytest.raises(AutomateError) as refused:
        _chat(_profile(f"{scripted.url}/v1"))
    assert refused.value.code == ErrorCodes.PERMISSION_DENIED
    assert refused.value.details["reason"] == "private_address"
    assert scripted.requests == []  # the key never left


def test_outbound__llm_base_url_on_a_metadata_address_is_refused_even_when_allowed(
    llm_settings,
):
    llm_settings(HTTP_ALLOW_FOR={"llm": {"networks": ["169.254.0.0/16"]}})
    with pytest.raises(AutomateError) as refused:
        _chat(_profile("http://169.254.169.254/v1"))
    assert refused.value.code == ErrorCodes.PERMISSION_DENIED
    assert refused.value.details["reason"] == "denied_address"


def test_outbound__llm_calls_ignore_proxies_from_the_environment(
    scripted, llm_settings, monkeypatch
):
    from automate_llm.providers import _sdk

    # A sync client is shared per provider: start from none, so the one under test is
    # built while the proxy variables are set.
    monkeypatch.setattr(_sdk, "_sync_clients", {})
    proxy = ScriptedServer().start()
    try:
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        llm_settings(**LOOPBACK_LLM)
        scripted.add(Reply(body=CHAT_COMPLETION))
        assert _chat(_profile(f"{scripted.url}/v1")).result.content == "hi"
    finally:
        proxy.stop()
    assert proxy.requests == []
    [request] = scripted.requests
    assert request.headers["authorization"] == f"Bearer {API_KEY}"


def test_outbound__llm_allow_list_opens_loopback_to_llm_calls_only(
    scripted, llm_settings, settings
):
    """The other side: HTTP_ALLOW_FOR["llm"] admits the model server, and nothing else."""
    llm_settings(**LOOPBACK_LLM)
    scripted.add(Reply(body=CHAT_COMPLETION))
    assert _chat(_profile(f"{scripted.url}/v1")).result.content == "hi"
    with pytest.raises(AutomateError) as refused:
        ssrf_safe_request("GET", f"{scripted.url}/v1", purpose="http_request")
    assert refused.value.details["reason"] == "private_address"
    assert len(scripted.requests) == 1


def test_outbound__pinecone_host_on_loopback_never_receives_the_api_key(scripted, settings):
    from rag.providers.pinecone import PineconeRetrievalProvider

    settings.AUTOMATE = {
        **settings.AUTOMATE,
        "SECRETS": {**settings.AUTOMATE["SECRETS"], "PC_KEY": "pc-CANARY-key-0042"},
        "HTTP_ALLOWED_PORTS": "*",
    }
    scripted.add(Reply(body={"matches": [], "namespace": ""}))
    store = PineconeRetrievalProvider({"api_key": "secret://PC_KEY", "host": scripted.url})
    with pytest.raises(AutomateError) as refused:
        store.retrieve([0.1], top_k=1)
    assert refused.value.code == ErrorCodes.PERMISSION_DENIED
    assert scripted.requests == []


def test_outbound__pinecone_reaches_a_host_the_rag_allow_list_admits(scripted, settings):
    """The other side: the store works through the guarded client once admitted."""
    from rag.providers.pinecone import PineconeRetrievalProvider

    settings.AUTOMATE = {
        **settings.AUTOMATE,
        "SECRETS": {**settings.AUTOMATE["SECRETS"], "PC_KEY": "pc-CANARY-key-0042"},
        "HTTP_ALLOWED_PORTS": "*",
        "HTTP_ALLOW_FOR": {"rag": {"networks": ["127.0.0.1/32"]}},
    }
    scripted.add(Reply(body={"matches": [], "namespace": ""}))
    store = PineconeRetrievalProvider({"api_key": "secret://PC_KEY", "host": scripted.url})
    assert store.retrieve([0.1], top_k=1) == []
    assert scripted.requests[0].headers["api-key"] == "pc-CANARY-key-0042"


# -- Finding 7: credential headers by substring on a cross-origin redirect ----------------

VENDOR_HEADERS = {
    "Ocp-Apim-Subscription-Key": "k1-CANARY",
    "X-Functions-Key": "k2-CANARY",
    "X-Access-Key": "k3-CANARY",
    "Api_Key": "k4-CANARY",
    "X-Hub-Signature-256": "k5-CANARY",
}


def test_outbound__vendor_credential_headers_do_not_follow_a_cross_origin_redirect():
    landing = LocalServer()
    landing.routes["/land"] = lambda h: send(h, 200, b"ok")
    origin = LocalServer()
    landing.start()
    origin.routes["/go"] = redirect(302, landing.url("/land"))
    origin.start()
    try:
        allowed = automate_settings(HTTP_ALLOW_NETWORKS=["127.0.0.1/32"], HTTP_ALLOWED_PORTS="*")
        with allowed:
            response = ssrf_safe_request(
                "GET", origin.url("/go"), headers={**VENDOR_HEADERS, "X-Trace": "t-1"}
            )
    finally:
        origin.stop()
        landing.stop()
    assert response.status_code == 200
    [(_method, _path, first, _body)] = origin.requests
    assert first["Ocp-Apim-Subscription-Key"] == "k1-CANARY"  # same origin: sent
    [(_method, _path, headers, _body)] = landing.requests
    lowered = {name.lower() for name in headers}
    assert not lowered & {name.lower() for name in VENDOR_HEADERS}
    assert headers["X-Trace"] == "t-1"  # an ordinary header still follows


# -- Finding 10: LLM calls under a total deadline and a size cap ---------------------------


class DrippingServer:
    """Answers with headers at once, then one body byte every ``interval`` seconds."""

    def __init__(self, body: bytes, interval: float) -> None:
        self.body, self.interval = body, interval
        self.finished = threading.Event()
        self.requests = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(rest) < length:
                rest += conn.recv(65536)
            self.requests += 1
            header = (
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n"
            )
            try:
                conn.sendall(header.encode())
                for byte in self.body:
                    conn.sendall(bytes([byte]))
                    time.sleep(self.interval)
                self.finished.set()
            except OSError:  # the client gave up: the point
                return

    def start(self) -> DrippingServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.sock.close()
        self.thread.join(30)


def test_outbound__a_dripping_llm_server_cannot_hold_a_call_past_its_timeout(llm_settings):
    # Every byte comes well within the per-read timeout; only a total deadline ends it.
    server = DrippingServer(json.dumps(CHAT_COMPLETION).encode(), interval=0.05).start()
    try:
        llm_settings(**LOOPBACK_LLM)
        with pytest.raises(AutomateError) as timed_out:
            _chat(_profile(f"{server.url}/v1", timeout=1), timeout=1)
    finally:
        server.stop()
    assert timed_out.value.code == ErrorCodes.TIMEOUT
    assert server.requests == 1
    assert not server.finished.is_set()  # the client left before the drip ended


def test_outbound__an_llm_answer_past_the_size_cap_is_refused(scripted, llm_settings):
    llm_settings(**LOOPBACK_LLM, LLM_MAX_RESPONSE_BYTES=4096)
    huge = {
        **CHAT_COMPLETION,
        "choices": [{**CHAT_COMPLETION["choices"][0], "message": {"role": "assistant"}}],
    }
    huge["choices"][0]["message"]["content"] = "x" * 100_000
    scripted.add(Reply(body=huge))
    with pytest.raises(AutomateError) as refused:
        _chat(_profile(f"{scripted.url}/v1"))
    assert refused.value.details.get("reason") == "too_large"


# -- Finding 12: stacked content encodings -------------------------------------------------


def test_outbound__thousands_of_stacked_gzip_layers_are_refused_not_a_recursion_error():
    body = b"ok"
    for _ in range(1500):
        body = gzip.compress(body, compresslevel=1)
    encoding = ", ".join(["gzip"] * 1500)
    server = LocalServer()
    server.routes["/layers"] = lambda h: send(h, 200, body, {"Content-Encoding": encoding})
    server.start()
    try:
        with (
            server.allowed(),
            pytest.raises(httpx.DecodingError, match="stacked Content-Encoding"),
        ):
            ssrf_safe_request("GET", server.url("/layers"))
    finally:
        server.stop()


def test_outbound__two_gzip_layers_still_decode():
    """The other side: a legitimately double-encoded body is still read."""
    body = gzip.compress(gzip.compress(b"hello"))
    server = LocalServer()
    server.routes["/two"] = lambda h: send(h, 200, body, {"Content-Encoding": "gzip, gzip"})
    server.start()
    try:
        with server.allowed():
            assert ssrf_safe_request("GET", server.url("/two")).content == b"hello"
    finally:
        server.stop()


# -- Finding 17b: allow-lists per purpose --------------------------------------------------


def test_outbound__opening_loopback_for_mcp_does_not_open_it_to_http_request_urls(
    mcp_server,  # noqa: F811
    settings,
):
    from automate.models import MCPServer
    from automate.worker import EmbeddedWorker

    settings.AUTOMATE = {
        **settings.AUTOMATE,
        "HTTP_ALLOWED_PORTS": "*",
        "HTTP_ALLOW_FOR": {"mcp": {"networks": ["127.0.0.0/8"]}},
    }
    # MCP reaches its server on loopback...
    tools = MCPServer.objects.create(name="My Tools", url=mcp_server.url, api_key=TOKEN)
    assert tools.sync_tools().total >= 1
    # ...while an http_request URL taken from a payload cannot reach the same address.
    before = len(mcp_server.calls())
    workflow = WorkflowService().create_workflow(
        name="Probe",
        steps=[
            {
                "name": "Probe",
                "type": "http_request",
                "config": {"method": "GET", "url": "{{ event.payload.url }}"},
            }
        ],
    )
    run = WorkflowService().run_workflow(workflow, {"payload": {"url": mcp_server.url}})
    EmbeddedWorker(threads=1, poll_seconds=0).run(once=True)
    run.refresh_from_db()
    assert run.status != RunStatus.COMPLETED
    error = run.step_runs.get().error
    assert error["code"] == "permission_denied"
    assert error["details"]["reason"] == "private_address"
    assert len(mcp_server.calls()) == before
