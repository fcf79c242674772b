"""The trace id helpers: ``new_trace_id`` makes time-ordered UUIDs (version 7), ``trace``
binds and restores."""

from __future__ import annotations

import time
import uuid

from automate_core.tracing import get_trace_id, new_trace_id, trace


def test_new_trace_id_is_a_uuid7_in_hex() -> None:
    ids = {new_trace_id() for _ in range(500)}
    assert len(ids) == 500
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert parsed.hex == value
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122


def test_new_trace_id_starts_with_the_time_in_milliseconds(monkeypatch) -> None:
    # 2026-11-30 15:00:00.123 UTC
    monkeypatch.setattr(time, "time_ns", lambda: 1_796_050_800_123_456_789)
    value = new_trace_id()
    assert int(value[:12], 16) == 1_796_050_800_123
    assert value[12] == "7"


def test_new_trace_ids_sort_by_the_time_they_were_made(monkeypatch) -> None:
    # What keeps the outbox's trace index growing at its right edge, not at random pages.
    clock = iter(range(1_796_050_800_000_000_000, 1_796_050_900_000_000_000, 1_000_000))
    monkeypatch.setattr(time, "time_ns", lambda: next(clock))
    ids = [new_trace_id() for _ in range(200)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 200


def test_new_trace_ids_made_in_one_millisecond_differ(monkeypatch) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: 1_796_050_800_123_456_789)
    ids = {new_trace_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert {value[:12] for value in ids} == {format(1_796_050_800_123, "012x")}


def test_trace_binds_the_id_and_restores_the_outer_one() -> None:
    assert get_trace_id() is None
    with trace("outer") as outer:
        assert outer == get_trace_id() == "outer"
        with trace() as inner:
            assert get_trace_id() == inner != "outer"
            assert len(inner) == 32
        assert get_trace_id() == "outer"
    assert get_trace_id() is None


def test_trace_restores_when_the_block_raises() -> None:
    try:
        with trace("failing"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert get_trace_id() is None
