"""``storable`` hands back the event itself when it is already storable, and a copy
otherwise; ``Headers.from_environ`` reads a WSGI environ as ``request.headers`` does."""

from __future__ import annotations

import hashlib

import pytest
from django.http import HttpHeaders

from automate_connectors import webhooks
from automate_connectors.storable import MAX_EVENT_TYPE, storable
from automate_connectors.webhooks import Headers, WebhookEvent


def test_storable__an_event_already_storable_is_returned_as_is():
    event = WebhookEvent("pull_request", "d-1", {"action": "opened", "n": [1, 2.5]})
    assert storable(event, b"{}") is event


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (WebhookEvent("a\x00b", "d", {}), WebhookEvent("ab", "d", {})),
        (WebhookEvent("é\ud800", "d", {}), WebhookEvent("é", "d", {})),
        (WebhookEvent("t" * 300, "d", {}), WebhookEvent("t" * MAX_EVENT_TYPE, "d", {})),
        (WebhookEvent(None, "d", {}), WebhookEvent("", "d", {})),  # type: ignore[arg-type]
        (WebhookEvent("t", "", {}), WebhookEvent("t", None, {})),
        (
            WebhookEvent("t", "i" * 256, {}),
            WebhookEvent("t", "sha256:" + hashlib.sha256(b"i" * 256).hexdigest(), {}),
        ),
        (WebhookEvent("t", "d", {"k": "\x00"}), WebhookEvent("t", "d", None, b"raw")),
    ],
)
def test_storable__anything_unstorable_gives_a_cleaned_copy(event, expected):
    cleaned = storable(event, b"raw")
    assert cleaned == expected
    assert cleaned is not event


ENVIRON = {
    "REQUEST_METHOD": "POST",
    "PATH_INFO": "/webhooks/github/",
    "SERVER_NAME": "127.0.0.1",
    "REMOTE_ADDR": "10.0.0.1",
    "wsgi.url_scheme": "http",
    "CONTENT_TYPE": "application/json",
    "CONTENT_LENGTH": "12",
    "HTTP_X_HUB_SIGNATURE_256": "sha256=00",
    "HTTP_X_GITHUB_DELIVERY": "d-1",
    "HTTP_USER_AGENT": "GitHub-Hookshot/1",
    "HTTP_COOKIE": "a=b",
}


ENVIRONS = [
    ENVIRON,
    {},
    # Two keys naming one header: the later one wins, in both.
    {"CONTENT_TYPE": "text/plain", "HTTP_CONTENT_TYPE": "application/json"},
    {"HTTP_CONTENT_TYPE": "application/json", "CONTENT_TYPE": "text/plain"},
    {"HTTP_": "empty name", "HTTP_X__Y": "two underscores", "SERVER_PORT": "80"},
    {"HTTP_X_STRA\u00dfE": "latin-1", "HTTP_X_\u00c9T\u00c9": "d\u00e9j\u00e0"},
]


@pytest.mark.parametrize("environ", ENVIRONS)
def test_headers__from_environ_is_what_request_headers_give(environ):
    headers = Headers.from_environ(environ)
    assert headers == Headers(HttpHeaders(environ).items())
    assert type(headers) is Headers


@pytest.mark.parametrize("environ", ENVIRONS)
def test_headers__from_environ_gives_the_same_headers_once_the_names_are_known(environ):
    # The second read finds every key's name worked out by the first.
    first = Headers.from_environ(environ)
    assert Headers.from_environ(environ) == first == Headers(HttpHeaders(environ).items())


def test_headers__from_environ_keeps_a_bounded_number_of_names(monkeypatch):
    monkeypatch.setattr(webhooks, "_header_names", {})
    for n in range(webhooks.HEADER_NAMES_KEPT + 10):  # a sender inventing headers
        environ = {f"HTTP_X_INVENTED_{n}": "v", "HTTP_X_GITHUB_EVENT": "push"}
        assert Headers.from_environ(environ) == {f"x-invented-{n}": "v", "x-github-event": "push"}
    assert len(webhooks._header_names) <= webhooks.HEADER_NAMES_KEPT


def test_headers__from_environ_looks_up_without_case():
    headers = Headers.from_environ(ENVIRON)
    assert headers["X-Hub-Signature-256"] == "sha256=00"
    assert headers.get("content-type") == "application/json"
    assert "X-GITHUB-DELIVERY" in headers
    assert "REMOTE_ADDR" not in headers and "remote-addr" not in headers
    assert dict.get(headers, "x-github-delivery") == "d-1"  # kept lower case


def _unstorable_by_definition(value):
    """The plain walk: any str (keys included) with a NUL or a lone surrogate, any
    non-finite float, inside dicts and lists (subclasses included)."""
    import math

    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def test_is_storable_agrees_with_the_plain_walk_on_generated_payloads():
    import random

    from automate_connectors.storable import is_storable

    class Text(str):
        pass

    class Mapping(dict):
        pass

    class Number(float):
        pass

    atoms = ["a", "é", "\x00", "\ud800", "x\udfffy", 1, True, None, 1.5, float("nan")]
    atoms += [float("-inf"), Text("\x00"), Text("ok"), Number("nan"), Number(2.0)]
    atoms += [(1, "\x00"), b"\x00"]  # a tuple and bytes are not walked
    keys = ["k", "\x00k", "é", "\ud800", Text("s"), 3, 2.5]
    rnd = random.Random(7)

    def build(depth):
        if depth > 3 or rnd.random() < 0.3:
            return rnd.choice(atoms)
        roll = rnd.random()
        if roll < 0.4:
            return {rnd.choice(keys): build(depth + 1) for _ in range(rnd.randint(0, 4))}
        if roll < 0.5:
            return Mapping({"a": build(depth + 1)})
        return [build(depth + 1) for _ in range(rnd.randint(0, 4))]

    verdicts = set()
    for _ in range(5000):
        payload = build(0)
        expected = not _unstorable_by_definition(payload)
        assert is_storable(payload) is expected, payload
        verdicts.add(expected)
    assert verdicts == {True, False}
