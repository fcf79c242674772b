"""The trace id helpers: ``new_trace_id`` keeps uuid4's format, ``trace`` binds and restores."""

from __future__ import annotations

import uuid

from automate_core.tracing import get_trace_id, new_trace_id, trace


def test_new_trace_id_is_a_uuid4_in_hex() -> None:
    ids = {new_trace_id() for _ in range(500)}
    assert len(ids) == 500
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert parsed.hex == value
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


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
