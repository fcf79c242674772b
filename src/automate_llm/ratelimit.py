"""A profile's rate limit (``LLMProfile.rate_limit = "60/min"``), enforced before each call.

The kernel's :class:`automate_core.throttling.RateLimiter` is the one limiter of the
project and is used when it is importable. Until it is (it is being built beside this
app), :class:`_LimitsFallback` applies the same algorithm - the `limits` library's moving
window, in the storage named by ``AUTOMATE["RATE_LIMIT_STORAGE"]`` - so a profile's limit
is never silently ignored. Both raise ``AutomateError(RATE_LIMITED, retryable=True)`` with
``details["retry_after"]``.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

from automate_core.conf import settings as automate_settings
from automate_core.providers.errors import AutomateError, ErrorCodes

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")
_UNITS = {
    "s": "second",
    "sec": "second",
    "second": "second",
    "m": "minute",
    "min": "minute",
    "minute": "minute",
    "h": "hour",
    "hour": "hour",
    "d": "day",
    "day": "day",
}
ACCEPTED_FORMS = '"60/min", "10/s", "1000/hour", "5000/day" (or "N/5min")'


def _limiter_class() -> Any:
    try:
        from automate_core.throttling import RateLimiter
    except ImportError:
        return _LimitsFallback
    return RateLimiter


def validate_rate(rate: str) -> None:
    """Raise ``ValueError`` naming the accepted forms unless ``rate`` parses."""
    try:
        from automate_core.throttling import parse_rate
    except ImportError:
        parse_rate = _parse_rate
    parse_rate(rate)


def enforce_rate_limit(profile_key: str, rate: str) -> None:
    """Take one call from the profile's budget, or raise RATE_LIMITED."""
    if rate:
        _limiter_class()(f"llm:{profile_key}", rate).hit()


def _parse_rate(rate: str) -> Any:
    from limits import (
        RateLimitItemPerDay,
        RateLimitItemPerHour,
        RateLimitItemPerMinute,
        RateLimitItemPerSecond,
    )

    items = {
        "second": RateLimitItemPerSecond,
        "minute": RateLimitItemPerMinute,
        "hour": RateLimitItemPerHour,
        "day": RateLimitItemPerDay,
    }
    match = _RATE_RE.match(rate.lower()) if isinstance(rate, str) else None
    unit = _UNITS.get(match.group(3).rstrip("s") or "s") if match else None
    if match is None or unit is None:
        raise ValueError(f"invalid rate {rate!r}: use a form like {ACCEPTED_FORMS}")
    amount, multiples = int(match.group(1)), int(match.group(2) or 1)
    if amount < 1 or multiples < 1:
        raise ValueError(f"invalid rate {rate!r}: the count and the period must be at least 1")
    return items[unit](amount, multiples)


_storages: dict[str, Any] = {}
_lock = threading.Lock()


class _LimitsFallback:
    """The moving-window limiter from `limits`, for when the kernel's is not installed."""

    def __init__(self, key: str, rate: str) -> None:
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        uri = automate_settings.RATE_LIMIT_STORAGE
        with _lock:
            if uri not in _storages:
                _storages[uri] = storage_from_string(uri)
        self.key, self.rate, self.item = key, rate, _parse_rate(rate)
        self._limiter = MovingWindowRateLimiter(_storages[uri])

    def hit(self) -> None:
        if self._limiter.hit(self.item, "automate", self.key):
            return
        stats = self._limiter.get_window_stats(self.item, "automate", self.key)
        retry_after = max(0.0, stats.reset_time - time.time())
        raise AutomateError(
            ErrorCodes.RATE_LIMITED,
            f"rate limit {self.rate} for {self.key!r} exceeded; retry in {retry_after:.1f} s",
            retryable=True,
            details={"key": self.key, "retry_after": retry_after},
        )

    def reset(self) -> None:
        self._limiter.clear(self.item, "automate", self.key)
