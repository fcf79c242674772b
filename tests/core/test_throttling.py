"""RateLimiter on the `limits` moving window: memory by default, Redis across processes."""

from __future__ import annotations

import multiprocessing
import uuid
from datetime import UTC, datetime

import limits.storage.memory
import pytest
from django.core.exceptions import ImproperlyConfigured

from automate_core import throttling
from automate_core.throttling import RateLimiter, RateLimitExceeded, parse_rate
from tests.core.helpers import automate_settings


class Clock:
    """Stands in for the ``time`` module inside `limits`' memory storage."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(limits.storage.memory, "time", fake)
    monkeypatch.setattr(throttling, "time", fake)
    return fake


def key() -> str:
    return f"test-{uuid.uuid4().hex}"


# -- Rates -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "amount", "seconds"),
    [
        ("100/min", 100, 60),
        ("100/minute", 100, 60),
        ("100 / minutes", 100, 60),
        ("10/s", 10, 1),
        ("10/second", 10, 1),
        ("5000/hour", 5000, 3600),
        ("5000/h", 5000, 3600),
        ("1000/day", 1000, 86400),
        ("3/5min", 3, 300),
    ],
)
def test_parse_rate__accepted_forms(rate, amount, seconds):
    item = parse_rate(rate)
    assert item.amount == amount
    assert item.get_expiry() == seconds


@pytest.mark.parametrize(
    "rate", ["100", "100/fortnight", "abc/min", "0/min", "10/0s", "", "/min", "100/min/x", None]
)
def test_parse_rate__rejects_with_the_accepted_forms(rate):
    with pytest.raises(ValueError, match=r'"100/min", "100/minute", "10/s"'):
        RateLimiter(key(), rate)


# -- Memory --------------------------------------------------------------------------


def test_rate_limiter__admits_exactly_the_limit_per_window(clock):
    limiter = RateLimiter(key(), "100/min")
    results = [limiter.allow() for _ in range(150)]
    assert results.count(True) == 100
    assert results[:100] == [True] * 100
    assert limiter.remaining == 0
    clock.now += 60.01
    assert limiter.remaining == 100
    assert limiter.allow()


def test_rate_limiter__keys_are_independent(clock):
    first, second = RateLimiter(key(), "2/min"), RateLimiter(key(), "2/min")
    assert [first.allow() for _ in range(3)] == [True, True, False]
    assert [second.allow() for _ in range(3)] == [True, True, False]


def test_rate_limiter__same_key_shares_one_budget(clock):
    name = key()
    assert RateLimiter(name, "2/min").allow()
    assert RateLimiter(name, "2/min").allow()
    assert not RateLimiter(name, "2/min").allow()


def test_rate_limiter__no_double_burst_at_a_window_edge(clock):
    limiter = RateLimiter(key(), "10/s")
    clock.now = 1_000_000.9  # late in one fixed second
    assert all(limiter.allow() for _ in range(10))
    clock.now = 1_000_001.1  # early in the next: a fixed window would admit 10 more
    assert not limiter.allow()
    clock.now = 1_000_001.95  # the first hits are now more than a second old
    assert limiter.allow()


def test_rate_limiter__cost_takes_nothing_when_it_does_not_fit(clock):
    limiter = RateLimiter(key(), "100/min")
    assert limiter.allow(cost=60)
    assert not limiter.allow(cost=60)
    assert limiter.remaining == 40
    assert limiter.allow(cost=40)
    with pytest.raises(ValueError, match="at least 1"):
        limiter.allow(cost=0)


def test_rate_limiter__hit_raises_with_retry_after(clock):
    limiter = RateLimiter(key(), "2/min")
    limiter.hit()
    clock.now += 15
    limiter.hit()
    with pytest.raises(RateLimitExceeded) as info:
        limiter.hit()
    error = info.value
    assert error.code == "rate_limited"
    assert error.retryable is True
    assert error.retry_after == pytest.approx(45, abs=0.01)  # the first hit leaves first
    assert error.details["key"] == limiter.key
    assert limiter.reset_at == datetime.fromtimestamp(clock.now + 45, tz=UTC)


def test_rate_limit_exceeded__takes_a_message_alone():
    error = RateLimitExceeded("External API rate limit")
    assert str(error) == "[rate_limited] External API rate limit"
    assert error.retry_after is None
    assert error.as_dict()["code"] == "rate_limited"
    assert str(RateLimitExceeded()) == "[rate_limited] Rate limit exceeded."


def test_rate_limiter__reset_forgets_the_hits(clock):
    limiter = RateLimiter(key(), "1/min")
    assert limiter.allow()
    limiter.reset()
    assert limiter.allow()


def test_rate_limiter__rejects_an_empty_key():
    with pytest.raises(ValueError, match="non-empty key"):
        RateLimiter("", "1/min")


def test_rate_limiter__unusable_storage_is_a_configuration_error():
    with automate_settings(RATE_LIMIT_STORAGE="nosuch://x"), pytest.raises(ImproperlyConfigured):
        RateLimiter(key(), "1/min")


# -- Redis -------------------------------------------------------------------------------


@pytest.mark.redis
def test_rate_limiter__redis_from_settings(redis_url):
    name = key()
    with automate_settings(RATE_LIMIT_STORAGE=redis_url):
        limiter = RateLimiter(name, "100/min")
        assert "Redis" in type(limiter.storage).__name__
        results = [limiter.allow() for _ in range(120)]
        other = RateLimiter(key(), "100/min")
        assert other.allow()
    assert results.count(True) == 100
    assert results[:100] == [True] * 100
    assert limiter.remaining == 0
    with pytest.raises(RateLimitExceeded) as info:
        limiter.hit()
    assert 0 < info.value.retry_after <= 60
    limiter.reset()
    other.reset()


def _hammer(url: str, name: str, barrier, results) -> None:
    limiter = RateLimiter(name, "50/min", storage=url)
    barrier.wait(30)
    results.put(sum(limiter.allow() for _ in range(40)))


@pytest.mark.redis
def test_rate_limiter__redis_four_processes_never_exceed_the_limit(redis_url):
    ctx = multiprocessing.get_context("spawn")
    name = key()
    barrier, results = ctx.Barrier(4), ctx.Queue()
    processes = [
        ctx.Process(target=_hammer, args=(redis_url, name, barrier, results)) for _ in range(4)
    ]
    for process in processes:
        process.start()
    admitted = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    # 160 attempts from 4 processes at once against "50/min": exactly 50 get through.
    assert sum(admitted) == 50
    RateLimiter(name, "50/min", storage=redis_url).reset()


def test_rate_limiter__async_storage_is_a_configuration_error():
    with pytest.raises(ImproperlyConfigured, match="asynchronous"):
        RateLimiter(key(), "1/min", storage="async+memory://")
