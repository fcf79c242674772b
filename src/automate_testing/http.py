"""``mock_http()``: one fake internet for ``requests`` and ``httpx`` (sync and async).

A connector may use either client library, so a test should not have to know which one
it uses. :func:`mock_http` starts ``responses`` (for ``requests``) and ``respx`` (for
``httpx``, patched at the httpcore layer: no DNS lookup, no socket) together and routes
both to one table of canned replies::

    with mock_http(base_url="https://test.atlassian.net") as mock:
        mock.post("/rest/api/3/issue", json={"key": "TEST-1", "id": "10001"}, status=201)
        connector.execute_action("create_issue", {"summary": "Hi"})
    assert mock.calls[0].json["fields"]["summary"] == "Hi"

The matching is ours, not the libraries' (each library is given one catch-all route), so
both behave the same: the first registered route whose method and URL match answers; a
route registered several times answers with its replies in order and repeats the last.
A request nothing matches fails the test when the block exits, with the list of what was
registered, even if the connector caught the error it received.
"""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from automate_connectors.webhooks import Headers

__all__ = ["MockHTTP", "MockResponse", "RecordedCall", "Route", "UnmatchedRequest", "mock_http"]

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class UnmatchedRequest(AssertionError):
    """A request reached the fake internet and no registered route matched it."""


@dataclass(frozen=True)
class MockResponse:
    """A canned reply: ``json`` (serialised) or ``body`` (bytes or text), status, headers.

    ``timeout=True`` answers nothing: the client raises its read-timeout error
    (``httpx.ReadTimeout``, ``requests.exceptions.ReadTimeout``) as a silent server would.
    """

    json: Any = None
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | str | None = None
    timeout: bool = False

    def content(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if self.body is not None:
            data = self.body.encode() if isinstance(self.body, str) else bytes(self.body)
            return data, headers
        if self.json is None:
            return b"", headers
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
        return jsonlib.dumps(self.json).encode(), headers


@dataclass(frozen=True)
class RecordedCall:
    """One request the code under test made, in the order it was made."""

    method: str
    url: str
    #: Lookups ignore case (``headers["Authorization"]``), whichever client sent it.
    headers: Mapping[str, str]
    body: bytes
    client: str  # "requests" or "httpx"
    route: Route | None = None
    #: The status it was answered with (``None``: unmatched, or a timeout).
    status: int | None = None

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def json(self) -> Any:
        """The request body parsed as JSON (``None`` when it is empty or not JSON)."""
        try:
            return jsonlib.loads(self.body) if self.body else None
        except ValueError:
            return None

    @property
    def params(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True))


class Route:
    """A registered method + URL and the replies it gives."""

    def __init__(self, method: str, url: str, reply: MockResponse) -> None:
        self.method = method
        self.url = url
        self._target = _url_key(url)
        self._query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        self.replies: list[MockResponse] = [reply]
        self.calls: list[RecordedCall] = []

    @property
    def called(self) -> bool:
        return bool(self.calls)

    @property
    def call_count(self) -> int:
        return len(self.calls)

    def matches(self, method: str, url: str) -> bool:
        if method != self.method or _url_key(url) != self._target:
            return False
        params = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        return all(params.get(name) == value for name, value in self._query.items())

    def next_reply(self) -> MockResponse:
        index = min(len(self.calls), len(self.replies) - 1)
        return self.replies[index]

    def __repr__(self) -> str:
        return f"<Route {self.method} {self.url} ({len(self.replies)} replies)>"


class MockHTTP:
    """The route table and call log behind :func:`mock_http`."""

    def __init__(self, base_url: str = "", *, fallback: MockResponse | None = None) -> None:
        self.base_url = base_url
        #: Answers requests no route matches instead of failing (the fuzz contract uses it).
        self.fallback = fallback
        self.routes: list[Route] = []
        self.calls: list[RecordedCall] = []
        self.unmatched: list[RecordedCall] = []

    # -- Registration ------------------------------------------------------------------

    def add(
        self,
        method: str,
        path_or_url: str,
        *,
        json: Any = None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
        timeout: bool = False,
    ) -> Route:
        """Answer ``method path_or_url`` with this reply; a relative path joins ``base_url``.

        ``timeout=True`` makes the request time out instead of answering.
        """
        reply = MockResponse(
            json=json, status=status, headers=dict(headers or {}), body=body, timeout=timeout
        )
        url = self.resolve(path_or_url)
        method = method.upper()
        for route in self.routes:
            if route.method == method and route.url == url:
                route.replies.append(reply)
                return route
        route = Route(method, url, reply)
        self.routes.append(route)
        return route

    def get(self, path_or_url: str, **reply: Any) -> Route:
        return self.add("GET", path_or_url, **reply)

    def post(self, path_or_url: str, **reply: Any) -> Route:
        return self.add("POST", path_or_url, **reply)

    def put(self, path_or_url: str, **reply: Any) -> Route:
        return self.add("PUT", path_or_url, **reply)

    def patch(self, path_or_url: str, **reply: Any) -> Route:
        return self.add("PATCH", path_or_url, **reply)

    def delete(self, path_or_url: str, **reply: Any) -> Route:
        return self.add("DELETE", path_or_url, **reply)

    def resolve(self, path_or_url: str) -> str:
        """An absolute URL: as given, or ``base_url`` joined with a relative path."""
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path_or_url):
            return path_or_url
        if not self.base_url:
            raise ValueError(
                f"{path_or_url!r} is a relative path but mock_http() has no base_url: "
                "register an absolute URL or pass base_url=..."
            )
        # Joined the way httpx joins a base_url and a request path: by concatenation.
        return self.base_url.rstrip("/") + "/" + path_or_url.lstrip("/")

    def reset(self) -> None:
        """Forget every route and call (the patches stay in place)."""
        self.routes.clear()
        self.calls.clear()
        self.unmatched.clear()

    # -- Assertions --------------------------------------------------------------------

    def describe_routes(self) -> str:
        if not self.routes:
            return "  (no routes registered)"
        return "\n".join(f"  {route.method} {route.url}" for route in self.routes)

    def assert_all_matched(self) -> None:
        """Raise :class:`UnmatchedRequest` if any request found no route."""
        if self.unmatched:
            lines = "\n".join(f"  {call.method} {call.url}" for call in self.unmatched)
            raise UnmatchedRequest(
                f"mock_http: {len(self.unmatched)} request(s) matched no registered route:\n"
                f"{lines}\nregistered routes:\n{self.describe_routes()}"
            )

    # -- Dispatch (called by the library adapters) -------------------------------------

    def dispatch(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, client: str
    ) -> MockResponse:
        method = method.upper()
        route = next((r for r in self.routes if r.matches(method, url)), None)
        reply = route.next_reply() if route is not None else self.fallback
        status = None if reply is None or reply.timeout else reply.status
        call = RecordedCall(method, url, Headers(headers), body, client, route, status)
        self.calls.append(call)
        if route is not None:
            route.calls.append(call)
        if reply is not None:
            return reply
        self.unmatched.append(call)
        raise UnmatchedRequest(
            f"mock_http: {method} {url} matched no registered route; registered routes:\n"
            f"{self.describe_routes()}"
        )


@contextmanager
def mock_http(base_url: str = "", *, fallback: MockResponse | None = None) -> Iterator[MockHTTP]:
    """Intercept every ``requests`` and ``httpx`` request for the duration of the block.

    Nothing leaves the process: an unmatched request raises inside the code under test
    and fails the block when it exits.
    """
    try:
        import responses
        import respx
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            f"mock_http() needs {exc.name}: pip install 'django-automate[testing]'"
        ) from exc

    mock = MockHTTP(base_url, fallback=fallback)
    requests_mock = responses.RequestsMock(assert_all_requests_are_fired=False)
    for method in METHODS:
        requests_mock.add_callback(
            method, re.compile(r".*"), callback=_requests_callback(mock), content_type=None
        )
    httpx_mock = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
    httpx_mock.route().mock(side_effect=_httpx_side_effect(mock))

    requests_mock.start()
    httpx_mock.start()
    try:
        yield mock
    except BaseException as exc:
        if mock.unmatched and not isinstance(exc, UnmatchedRequest):
            # The connector turned the unmatched request into its own error: the real
            # cause is the missing route, so report that.
            mock.assert_all_matched()
        raise
    finally:
        httpx_mock.stop(quiet=True)
        requests_mock.stop()
        requests_mock.reset()
    mock.assert_all_matched()


def _requests_callback(mock: MockHTTP):  # type: ignore[no-untyped-def]
    def callback(request):  # type: ignore[no-untyped-def]
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        reply = mock.dispatch(request.method, request.url, request.headers, body, "requests")
        if reply.timeout:
            from requests.exceptions import ReadTimeout

            raise ReadTimeout(f"mock_http: {request.method} {request.url} timed out")
        content, headers = reply.content()
        return reply.status, headers, content

    return callback


def _httpx_side_effect(mock: MockHTTP):  # type: ignore[no-untyped-def]
    import httpx

    def side_effect(request: httpx.Request) -> httpx.Response:
        # respx hands over the request with its body already read, sync or async.
        reply = mock.dispatch(
            request.method, str(request.url), request.headers, request.content, "httpx"
        )
        if reply.timeout:
            raise httpx.ReadTimeout(
                f"mock_http: {request.method} {request.url} timed out", request=request
            )
        content, headers = reply.content()
        return httpx.Response(reply.status, headers=headers, content=content)

    return side_effect


def _url_key(url: str) -> tuple[str, str, int | None, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme)
    return scheme, (parts.hostname or "").lower(), port, parts.path or "/"
