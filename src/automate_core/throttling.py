"""Rate limits for outbound calls: ``RateLimiter(key="external_api", rate="100/min")``.

The algorithm and the storages come from the `limits` library. We use its *moving window*:
it remembers each admitted hit for the length of the window, so "100/min" admits at most
100 hits in ANY 60-second span, with no 2x burst around a fixed window's edge. Storage is
in-process memory by default; ``AUTOMATE["RATE_LIMIT_STORAGE"] = "redis://host:6379/0"``
(or the ``storage`` argument) shares the counters between processes and machines, where
the check-and-record is one atomic Lua script on the Redis server.

    limiter = RateLimiter(key="external_api", rate="100/min")
    if limiter.allow():
        ...
    else:
        raise RateLimitExceeded("External API rate limit")
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from limits import (
    RateLimitItem,
    RateLimitItemPerDay,
    RateLimitItemPerHour,
    RateLimitItemPerMinute,
    RateLimitItemPerSecond,
)
from limits.errors import ConfigurationError
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from automate_core.conf import settings as automate_settings
from automate_core.providers.errors import AutomateError, ErrorCodes

__all__ = ["RateLimitExceeded", "RateLimiter", "parse_rate"]

_UNITS: dict[str, type[RateLimitItem]] = {}
for _names, _item in (
    (("s", "sec", "secs", "second", "seconds"), RateLimitItemPerSecond),
    (("m", "min", "mins", "minute", "minutes"), RateLimitItemPerMinute),
    (("h", "hr", "hrs", "hour", "hours"), RateLimitItemPerHour),
    (("d", "day", "days"), RateLimitItemPerDay),
):
    for _name in _names:
        _UNITS[_name] = _item

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")
ACCEPTED_FORMS = '"100/min", "100/minute", "10/s", "5000/hour", "1000/day" (or "N/5min")'

_storages: dict[str, Storage] = {}
_storages_lock = threading.Lock()


class RateLimitExceeded(AutomateError):
    """Rate limit exceeded."""

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        key: str | None = None,
        provider: str | None = None,
    ) -> None:
        self.retry_after = retry_after
        details: dict[str, Any] = {}
        if key is not None:
            details["key"] = key
        if retry_after is not None:
            details["retry_after"] = retry_after
        super().__init__(
            ErrorCodes.RATE_LIMITED, message, provider=provider, retryable=True, details=details
        )


def parse_rate(rate: str) -> RateLimitItem:
    """``"100/min"`` -> a `limits` item; anything else raises ``ValueError`` naming the forms."""
    match = _RATE_RE.match(rate.lower()) if isinstance(rate, str) else None
    unit = _UNITS.get(match.group(3)) if match else None
    amount = int(match.group(1)) if match else 0
    multiples = int(match.group(2) or 1) if match else 0
    if unit is None or amount < 1 or multiples < 1:
        raise ValueError(
            f"invalid rate {rate!r}: use a form like {ACCEPTED_FORMS}, with counts of at least 1"
        )
    return unit(amount, multiples)


def get_storage(uri: str) -> Storage:
    """One shared storage per URI, so limiters with the same key share their counters."""
    with _storages_lock:
        cached = _storages.get(uri)
        if cached is not None:
            return cached
        try:
            storage = storage_from_string(uri)
        except ConfigurationError as exc:
            raise ImproperlyConfigured(
                f"rate limit storage {uri!r} is not usable ({exc}); use 'memory://' or "
                "'redis://host:6379/0' (pip install django-automate[redis])"
            ) from exc
        if not isinstance(storage, Storage):  # an "async+..." URI
            raise ImproperlyConfigured(
                f"rate limit storage {uri!r} is asynchronous; RateLimiter needs a sync one"
            )
        _storages[uri] = storage
        return storage


class RateLimiter:
    """A named limit: ``RateLimiter("external_api", "100/min").allow()``.

    Limiters with the same ``key`` and ``rate`` share one budget in the same storage.
    """

    def __init__(self, key: str, rate: str = "100/min", *, storage: str | Storage | None = None):
        if not isinstance(key, str) or not key:
            raise ValueError("RateLimiter needs a non-empty key")
        self.key = key
        self.rate = rate
        self.item = parse_rate(rate)
        if storage is None:
            storage = automate_settings.RATE_LIMIT_STORAGE
        self.storage = get_storage(storage) if isinstance(storage, str) else storage
        self._limiter = MovingWindowRateLimiter(self.storage)

    def allow(self, cost: int = 1) -> bool:
        """Take ``cost`` from the budget if it holds that much; False (and take nothing) if not."""
        if cost < 1:
            raise ValueError("cost must be at least 1")
        return self._limiter.hit(self.item, "automate", self.key, cost=cost)

    def hit(self, cost: int = 1) -> None:
        """Like :meth:`allow`, but raise :class:`RateLimitExceeded` with ``retry_after``."""
        if not self.allow(cost):
            retry_after = max(0.0, self.reset_at.timestamp() - time.time())
            raise RateLimitExceeded(
                f"rate limit {self.rate} for {self.key!r} exceeded; retry in {retry_after:.1f} s",
                retry_after=retry_after,
                key=self.key,
            )

    @property
    def remaining(self) -> int:
        """How many more hits the current window admits."""
        return self._limiter.get_window_stats(self.item, "automate", self.key).remaining

    @property
    def reset_at(self) -> datetime:
        """When the oldest hit leaves the window, freeing budget (UTC)."""
        stats = self._limiter.get_window_stats(self.item, "automate", self.key)
        return datetime.fromtimestamp(stats.reset_time, tz=UTC)

    def reset(self) -> None:
        """Forget every hit of this key (tests, admin actions)."""
        self._limiter.clear(self.item, "automate", self.key)

    def __repr__(self) -> str:
        return f"RateLimiter(key={self.key!r}, rate={self.rate!r})"
