"""Rate limiter: decisions per second, memory and Redis storages.

    python -m benchmarks.ratelimit [--seconds 3]

Ours is ``RateLimiter(key, rate).allow()``; the baseline is the `limits` library it is
built on, called directly (``MovingWindowRateLimiter.hit``) on the same storage, so the
difference is what our wrapper costs. The rate is high enough that every decision is
"allowed" for the whole run; keys are fresh for each measurement.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable

from benchmarks import common

RATE = "100000000/second"


def measure(decide: Callable[[], object], seconds: float) -> tuple[float, float]:
    """Decisions per second and the p99 latency in microseconds of one decision."""
    latencies = []
    deadline = time.perf_counter() + seconds
    while True:
        started = time.perf_counter()
        decide()
        now = time.perf_counter()
        latencies.append(now - started)
        if now >= deadline:
            break
    return len(latencies) / sum(latencies), common.percentile(latencies, 0.99) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3)
    args = parser.parse_args()
    common.setup_django(common.PG_URL)
    from limits.strategies import MovingWindowRateLimiter

    from automate_core.throttling import RateLimiter, get_storage, parse_rate

    rows = []
    for name, uri in (("memory", "memory://"), ("Redis", common.REDIS_URL)):
        storage = get_storage(uri)
        ours = RateLimiter(f"bench-{uuid.uuid4().hex}", RATE, storage=uri)
        item, raw = parse_rate(RATE), MovingWindowRateLimiter(storage)
        base_key = f"bench-{uuid.uuid4().hex}"
        ours_rate, ours_p99 = measure(ours.allow, args.seconds)
        base_rate, base_p99 = measure(lambda: raw.hit(item, base_key), args.seconds)  # noqa: B023
        assert ours.remaining > 0
        rows.append(
            [
                name,
                f"{ours_rate:,.0f}",
                f"{ours_p99:.0f}",
                f"{base_rate:,.0f}",
                f"{base_p99:.0f}",
                f"{ours_rate / base_rate:.2f}",
            ]
        )
    body = common.table(
        [
            "storage",
            "ours decisions/s",
            "ours p99 µs",
            "limits direct decisions/s",
            "limits p99 µs",
            "ours / baseline",
        ],
        rows,
    )
    notes = (
        f"One thread, {args.seconds:g} s per cell, moving window, rate {RATE} (every decision "
        f"allowed). Redis at {common.REDIS_URL} on loopback: one round trip per decision."
    )
    common.report("Rate limiter: decisions per second", body, notes)


if __name__ == "__main__":
    main()
