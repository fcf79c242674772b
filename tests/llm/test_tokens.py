"""Token counting with the network closed: estimate unless tiktoken's file is cached."""

from __future__ import annotations

import hashlib
import socket

import pytest

from automate_llm import tokens
from automate_llm.providers.openai import OpenAIProvider
from automate_llm.retry import RetryPolicy, parse_retry_after
from tests.llm.conftest import require_sdk


@pytest.fixture
def network_closed(monkeypatch):
    """Any attempt to open a socket fails the test, and is recorded."""
    attempts: list[object] = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network closed in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    return tmp_path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("hello", 2),
        ("the cat sat", 3),
        ("Hello, world!", 6),
        ("1234567", 3),
        ("   \n\t ", 0),
        ("日本語", 3),
    ],
)
def test_estimate_tokens__follows_its_documented_rules(text, expected):
    assert tokens.estimate_tokens(text) == expected


def test_count_tokens__with_no_cached_encoding_estimates_and_opens_no_socket(
    network_closed, empty_cache
):
    text = "The quick brown fox jumps over the lazy dog."
    assert tokens.count_tokens(text, model="gpt-4o") == tokens.estimate_tokens(text)
    assert tokens.count_tokens(text, encoding="cl100k_base") == tokens.estimate_tokens(text)
    assert network_closed == []


def test_count_tokens__a_cached_file_with_the_wrong_hash_is_not_trusted(
    network_closed, empty_cache
):
    url, _ = tokens.ENCODING_FILES["cl100k_base"]
    (empty_cache / hashlib.sha1(url.encode()).hexdigest()).write_bytes(b"dGVzdA== 0\n")
    assert tokens.cached_encoding_path("cl100k_base") is None
    assert tokens.count_tokens("some text here") == tokens.estimate_tokens("some text here")
    assert network_closed == []


def test_cached_encoding_path__finds_a_file_whose_hash_matches(empty_cache, monkeypatch):
    content = b"dGVzdA== 0\n"
    monkeypatch.setitem(
        tokens.ENCODING_FILES,
        "tiny_base",
        ("https://example.invalid/tiny.tiktoken", hashlib.sha256(content).hexdigest()),
    )
    path = empty_cache / hashlib.sha1(b"https://example.invalid/tiny.tiktoken").hexdigest()
    path.write_bytes(content)
    assert tokens.cached_encoding_path("tiny_base") == str(path)
    assert tokens.cached_encoding_path("unknown_base") is None


def test_encoding_for_model__knows_openai_models_and_defaults_otherwise():
    require_sdk("tiktoken", "openai")
    assert tokens.encoding_for_model("gpt-4o") == "o200k_base"
    assert tokens.encoding_for_model("gpt-4") == "cl100k_base"
    assert tokens.encoding_for_model("llama-3-70b") == tokens.DEFAULT_ENCODING
    assert tokens.encoding_for_model(None) == tokens.DEFAULT_ENCODING


def test_openai_provider__count_tokens_works_offline(network_closed, empty_cache):
    provider = OpenAIProvider({"api_key": "k", "model": "gpt-4o"}, None)
    assert provider.count_tokens("count me please") == tokens.estimate_tokens("count me please")
    assert network_closed == []


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_parse_retry_after__seconds_milliseconds_and_dates(headers, expected):
    assert parse_retry_after(headers) == expected


def test_retry_policy__waits_at_least_retry_after_and_gives_up_on_huge_ones():
    from automate_core.providers.errors import AutomateError, ErrorCodes

    policy = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.02)
    asked = AutomateError(ErrorCodes.RATE_LIMITED, details={"retry_after": 3.0})
    assert policy.delay(1, asked) == 3.0
    assert policy.should_retry(1, asked)
    assert not policy.should_retry(5, asked)
    huge = AutomateError(ErrorCodes.RATE_LIMITED, details={"retry_after": 3600.0})
    assert not policy.should_retry(1, huge)
    plain = AutomateError(ErrorCodes.UNAVAILABLE)
    assert 0 <= policy.delay(3, plain) <= 0.02
    assert not policy.should_retry(1, AutomateError(ErrorCodes.UNAUTHENTICATED))


def test_count_tokens__a_cached_encoding_is_used_by_tiktoken_without_a_network(
    network_closed, empty_cache, monkeypatch
):
    """The whole exact path, with a tiny encoding standing in for cl100k_base's 1.7 MB file:
    our cache check passes, tiktoken reads its cache (no download), and counts exactly."""
    require_sdk("tiktoken", "openai")
    import base64

    import tiktoken.load
    import tiktoken.registry

    url = "https://example.invalid/tiny_base.tiktoken"
    content = b"".join(
        base64.b64encode(tok) + b" %d\n" % rank for rank, tok in enumerate([b"a", b"b", b" "])
    )
    digest = hashlib.sha256(content).hexdigest()
    (empty_cache / hashlib.sha1(url.encode()).hexdigest()).write_bytes(content)
    monkeypatch.setitem(tokens.ENCODING_FILES, "tiny_base", (url, digest))

    def tiny_base():
        return {
            "name": "tiny_base",
            "pat_str": r"\S+|\s+",
            "mergeable_ranks": tiktoken.load.load_tiktoken_bpe(url, expected_hash=digest),
            "special_tokens": {},
        }

    tiktoken.registry._find_constructors()
    monkeypatch.setitem(tiktoken.registry.ENCODING_CONSTRUCTORS, "tiny_base", tiny_base)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})

    assert tokens.count_tokens("aaaa bb", encoding="tiny_base") == 7  # one token per byte
    assert tokens.estimate_tokens("aaaa bb") == 2
    assert network_closed == []
