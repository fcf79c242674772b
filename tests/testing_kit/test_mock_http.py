"""mock_http(): requests and httpx (sync and async) answered from one route table."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import httpx
import pytest
import requests

from automate_testing.http import MockResponse, UnmatchedRequest, mock_http

BASE = "https://api.example.test/v2"


def test_mock_http__answers_requests_and_httpx_sync_and_async():
    async def async_get():
        async with httpx.AsyncClient(base_url=BASE) as client:
            return await client.get("/things/1")

    with mock_http(BASE) as mock:
        mock.get("/things/1", json={"id": 1}, headers={"X-Rate": "9"})
        by_requests = requests.get(f"{BASE}/things/1", timeout=5)
        by_httpx = httpx.Client(base_url=BASE).get("/things/1")
        by_async = asyncio.run(async_get())
    for response in (by_requests, by_httpx, by_async):
        assert response.status_code == 200
        assert response.json() == {"id": 1}
        assert response.headers["X-Rate"] == "9"
    assert [call.client for call in mock.calls] == ["requests", "httpx", "httpx"]


def test_mock_http__never_resolves_or_connects(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("mock_http let a request reach the network layer")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with mock_http() as mock:
        mock.post("https://jira.invalid/rest", status=201, json={})
        assert httpx.post("https://jira.invalid/rest").status_code == 201
        assert requests.post("https://jira.invalid/rest", timeout=5).status_code == 201


def test_mock_http__records_calls_for_assertions():
    with mock_http(BASE) as mock:
        route = mock.post("/things", json={"ok": True}, status=201)
        httpx.post(f"{BASE}/things?dry=1", json={"name": "a"}, headers={"X-Key": "k"})
        requests.post(f"{BASE}/things", data=b"raw bytes", timeout=5)
    first, second = mock.calls
    assert (first.method, first.path, first.params) == ("POST", "/v2/things", {"dry": "1"})
    assert first.json == {"name": "a"}
    assert first.headers["x-key"] == "k"
    assert (second.body, second.json) == (b"raw bytes", None)
    assert route.called
    assert route.call_count == 2
    assert route.calls == [first, second]


def test_mock_http__relative_paths_join_the_base_url_like_httpx():
    with mock_http("https://site.example.test/jira/") as mock:
        route = mock.get("/rest/api/3/myself", json={})
        httpx.Client(base_url="https://site.example.test/jira").get("/rest/api/3/myself")
    assert route.url == "https://site.example.test/jira/rest/api/3/myself"
    assert route.called


def test_mock_http__relative_path_without_base_url_is_a_clear_error():
    with mock_http() as mock, pytest.raises(ValueError, match="has no base_url"):
        mock.get("/things")


def test_mock_http__repeated_registration_answers_in_order_then_repeats_the_last():
    with mock_http(BASE) as mock:
        mock.get("/job", status=429)
        mock.get("/job", json={"state": "done"})
        statuses = [httpx.get(f"{BASE}/job").status_code for _ in range(3)]
    assert statuses == [429, 200, 200]


def test_mock_http__query_in_a_route_must_match():
    with mock_http(BASE) as mock:
        mock.get("/search?q=a", json={"hit": "a"})
        mock.get("/search", json={"hit": "any"})
        assert httpx.get(f"{BASE}/search?q=a&page=2").json() == {"hit": "a"}
        assert httpx.get(f"{BASE}/search?q=b").json() == {"hit": "any"}


def test_mock_http__put_patch_delete_and_raw_body():
    with mock_http(BASE) as mock:
        mock.put("/a", status=204)
        mock.patch("/a", body="plain text", headers={"Content-Type": "text/plain"})
        mock.delete("/a", body=b"\x00\x01")
        assert httpx.put(f"{BASE}/a").status_code == 204
        assert httpx.patch(f"{BASE}/a").text == "plain text"
        assert requests.delete(f"{BASE}/a", timeout=5).content == b"\x00\x01"


def test_mock_http__unmatched_request_fails_listing_the_routes():
    def run():
        with mock_http(BASE) as mock:
            mock.get("/known")
            httpx.get(f"{BASE}/unknown")

    with pytest.raises(UnmatchedRequest) as failed:
        run()
    message = str(failed.value)
    assert f"GET {BASE}/unknown matched no registered route" in message
    assert f"GET {BASE}/known" in message


def test_mock_http__unmatched_request_fails_even_when_the_code_swallowed_it():
    def run():
        with mock_http(BASE) as mock:
            mock.post("/known")
            # A connector catching everything must not hide the missing route.
            with contextlib.suppress(Exception):
                requests.post(f"{BASE}/other", timeout=5)

    with pytest.raises(UnmatchedRequest) as failed:
        run()
    assert "1 request(s) matched no registered route" in str(failed.value)
    assert f"POST {BASE}/other" in str(failed.value)


def test_mock_http__unmatched_request_turned_into_another_error_reports_the_route():
    def run():
        with mock_http(BASE):
            try:
                httpx.get(f"{BASE}/x")
            except Exception as exc:
                raise RuntimeError("connector error") from exc

    with pytest.raises(UnmatchedRequest, match="registered routes"):
        run()


def test_mock_http__fallback_answers_what_no_route_matches():
    with mock_http(BASE, fallback=MockResponse(json={"fallback": True}, status=503)) as mock:
        response = httpx.get(f"{BASE}/anything")
    assert (response.status_code, response.json()) == (503, {"fallback": True})
    assert mock.unmatched == []


def test_mock_http__patches_are_removed_on_exit(monkeypatch):
    with mock_http(BASE) as mock:
        mock.get("/x")
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda *a, **k: (_ for _ in ()).throw(OSError("offline"))
    )
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{BASE}/x")


def test_mock_http_fixture__from_the_plugin(mock_http):
    mock_http.get("https://plugin.example.test/ping", json={"pong": True})
    assert httpx.get("https://plugin.example.test/ping").json() == {"pong": True}


def test_mock_http__a_timeout_route_raises_each_clients_timeout():
    async def async_get():
        async with httpx.AsyncClient(base_url=BASE) as client:
            return await client.get("/slow")

    with mock_http(BASE) as mock:
        mock.get("/slow", timeout=True)
        with pytest.raises(requests.exceptions.ReadTimeout, match="timed out"):
            requests.get(f"{BASE}/slow", timeout=5)
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(f"{BASE}/slow")
        with pytest.raises(httpx.ReadTimeout):
            asyncio.run(async_get())
    assert [call.status for call in mock.calls] == [None, None, None]
    assert mock.routes[0].call_count == 3


def test_mock_http__recorded_headers_ignore_case_and_calls_keep_their_status():
    with mock_http(BASE) as mock:
        mock.post("/a", json={}, status=201)
        requests.post(f"{BASE}/a", headers={"X-Token": "r"}, timeout=5)
        httpx.post(f"{BASE}/a", headers={"X-Token": "h"})
    assert [call.headers["x-token"] for call in mock.calls] == ["r", "h"]
    assert [call.headers["X-TOKEN"] for call in mock.calls] == ["r", "h"]
    assert [call.status for call in mock.calls] == [201, 201]
