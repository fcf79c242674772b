"""automate_core.offloop: the helper threads that run what a thread with a running event
loop may not do itself (automate.connections' reads, automate.mcp.client's sessions)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from automate_core.offloop import HelperThread, in_event_loop


def test_in_event_loop():
    async def inside() -> bool:
        return in_event_loop()

    assert not in_event_loop()
    assert asyncio.run(inside())


def test_helper__one_thread_for_every_call_and_errors_come_back():
    helper = HelperThread("test-helper")
    before = set(threading.enumerate())
    ran_in = {helper.call(threading.current_thread) for _ in range(50)}
    (thread,) = ran_in
    assert thread is not threading.current_thread() and thread.name.startswith("test-helper")
    assert set(threading.enumerate()) - before == {thread}

    def fails() -> None:
        raise ValueError("from the helper")

    with pytest.raises(ValueError, match="from the helper"):
        helper.call(fails)
    assert helper.call(threading.current_thread) is thread  # still the one thread


def test_helper__a_call_from_its_own_thread_is_refused_rather_than_waiting_forever():
    helper = HelperThread("test-helper")
    with pytest.raises(RuntimeError, match="wait for itself"):
        helper.call(lambda: helper.call(lambda: None))
    other = HelperThread("test-other")
    assert helper.call(lambda: other.call(lambda: 7)) == 7  # another helper is fine


def test_helper__several_threads_take_the_calls_in_order_and_refuse_their_own_calls():
    helper = HelperThread("test-pool", threads=2)
    pool = helper.executor()
    both_running = threading.Barrier(2, timeout=30)
    started: list[int] = []

    def meet(i: int) -> int:
        started.append(i)
        both_running.wait()  # passes only with two calls running at once
        return threading.get_ident()

    idents = list(pool.map(meet, range(4)))
    assert len(set(idents)) == 2
    assert started[:2] in ([0, 1], [1, 0])
    with pytest.raises(RuntimeError, match="wait for itself"):
        helper.call(lambda: helper.call(lambda: None))
    with pytest.raises(ValueError, match="at least one thread"):
        HelperThread("test-none", threads=0)
