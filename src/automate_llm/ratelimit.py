"""A profile's rate limit (``LLMProfile.rate_limit = "60/min"``), enforced before each call.

The kernel's :class:`automate_core.throttling.RateLimiter` is the project's one limiter (the
`limits` moving window, in the storage of ``AUTOMATE["RATE_LIMIT_STORAGE"]``); it raises
``RateLimitExceeded`` (RATE_LIMITED, retryable, ``details["retry_after"]``).
"""

from __future__ import annotations

from automate_core.throttling import RateLimiter, parse_rate


def validate_rate(rate: str) -> None:
    """Raise ``ValueError`` naming the accepted forms unless ``rate`` parses."""
    parse_rate(rate)


def enforce_rate_limit(profile_key: str, rate: str) -> None:
    """Take one call from the profile's budget, or raise RATE_LIMITED."""
    if rate:
        RateLimiter(f"llm:{profile_key}", rate).hit()
