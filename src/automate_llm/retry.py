"""Retries for LLM calls: exactly one layer, and it is ours.

The official SDKs retry by themselves (twice, by default). The built-in providers turn
that off (``max_retries=0``) so a call is retried in one place only: by the workflow
engine for an ``llm`` step (its retry policy backs off per step), or by
:func:`call_with_retry` for code that calls a profile directly. Two layers would multiply
(3 SDK tries x 8 engine attempts = 24 requests) and each would ignore the other's budget.

A rate-limited answer's ``Retry-After`` travels on the error as
``AutomateError.details["retry_after"]`` (seconds), and both layers wait at least that.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from automate_core.providers.errors import AutomateError

T = TypeVar("T")

#: A server asking for a longer pause than this is treated as "not now": the error is
#: raised instead of blocking a worker thread for minutes.
MAX_RETRY_AFTER_SECONDS = 120.0


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``retry-after`` (seconds or an HTTP date)."""
    if not headers:
        return None
    lowered = {str(k).lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(float(raw_ms) / 1000.0, 0.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``max_attempts`` tries; exponential backoff with full jitter, capped.

    The wait before try *n* (n >= 2) is ``random(0, min(max_delay, base * 2**(n-2)))``, or
    the server's ``Retry-After`` when it asks for longer.
    """

    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, error: AutomateError) -> float:
        backoff = random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
        retry_after = error.details.get("retry_after")
        if isinstance(retry_after, int | float) and retry_after > backoff:
            return float(retry_after)
        return backoff

    def should_retry(self, attempt: int, error: AutomateError) -> bool:
        if not error.retryable or attempt >= self.max_attempts:
            return False
        retry_after = error.details.get("retry_after")
        return not (isinstance(retry_after, int | float) and retry_after > MAX_RETRY_AFTER_SECONDS)


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it succeeds, raises a non-retryable error or runs out of tries."""
    attempt = 1
    while True:
        try:
            return fn()
        except AutomateError as exc:
            if not policy.should_retry(attempt, exc):
                exc.details.setdefault("attempts", attempt)
                raise
            sleep(policy.delay(attempt, exc))
            attempt += 1


async def acall_with_retry(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> T:
    """:func:`call_with_retry` for coroutines; waits with ``asyncio.sleep``."""
    import asyncio

    pause = sleep or asyncio.sleep
    attempt = 1
    while True:
        try:
            return await fn()
        except AutomateError as exc:
            if not policy.should_retry(attempt, exc):
                exc.details.setdefault("attempts", attempt)
                raise
            await pause(policy.delay(attempt, exc))
            attempt += 1
