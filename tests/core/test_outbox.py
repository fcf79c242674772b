"""The outbox queue: enqueue, claim, lease expiry, backoff, dead letters, replay."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automate_core.models import OutboxItem, OutboxStatus
from automate_core.outbox import queue
from automate_core.providers.errors import AutomateError, ErrorCodes


def make_items(n: int, **fields) -> list[OutboxItem]:
    return OutboxItem.objects.bulk_create(
        [
            OutboxItem(connector_key="t", trace_id=f"tr{i}", payload={"n": i}, **fields)
            for i in range(n)
        ]
    )


@pytest.mark.django_db
def test_enqueue__same_external_id_returns_first_row():
    first = queue.enqueue("github", external_id="d-1", payload={}, trace_id="a")
    again = queue.enqueue("github", external_id="d-1", payload={}, trace_id="b")
    other_connector = queue.enqueue("stripe", external_id="d-1", payload={}, trace_id="c")
    assert first.created and not again.created and other_connector.created
    assert again.item.pk == first.item.pk and again.item.trace_id == "a"
    assert OutboxItem.objects.count() == 2


@pytest.mark.django_db
def test_enqueue__row_holds_every_field_as_save_would_write_it():
    item = queue.enqueue(
        "github",
        event_type="push",
        payload={"n": [1, "two", None]},
        raw_body=b"\x00raw",
        external_id="d-1",
        headers={"x-github-event": "push"},
        trace_id="t-fields",
    ).item
    stored = OutboxItem.objects.get(pk=item.pk)
    for name in ["connector_key", "event_type", "external_id", "payload", "headers", "trace_id"]:
        assert getattr(stored, name) == getattr(item, name), name
    assert bytes(stored.raw_body) == b"\x00raw"
    assert (stored.status, stored.attempts, stored.lease_token) == ("pending", 0, "")
    assert stored.created_at == item.created_at and stored.updated_at is not None
    assert stored.available_at == item.available_at <= timezone.now()
    # The returned instance is a saved row: saving it again updates, never inserts.
    item.event_type = "push.changed"
    item.save()
    assert OutboxItem.objects.get().event_type == "push.changed"


@pytest.mark.django_db
def test_enqueue__events_without_id_are_all_kept():
    queue.enqueue("t", payload={}, trace_id="a")
    queue.enqueue("t", payload={}, trace_id="b")
    assert OutboxItem.objects.filter(external_id__isnull=True).count() == 2


@pytest.mark.django_db
def test_claim__leases_oldest_due_items_and_counts_attempts():
    items = make_items(5)
    later = OutboxItem.objects.create(
        connector_key="t", trace_id="later", available_at=timezone.now() + timedelta(hours=1)
    )
    claimed = queue.claim(batch=3, lease_seconds=60, worker="w1")
    assert [i.pk for i in claimed] == [i.pk for i in items[:3]]
    assert all(i.status == OutboxStatus.LEASED and i.attempts == 1 for i in claimed)
    assert all(i.leased_by == "w1" and i.lease_expires_at > timezone.now() for i in claimed)
    rest = queue.claim(batch=10)
    assert {i.pk for i in rest} == {i.pk for i in items[3:]}
    assert later.pk not in {i.pk for i in rest}
    assert queue.claim(batch=10) == []


@pytest.mark.django_db
def test_complete__marks_done_only_with_the_current_lease():
    make_items(1)
    [item] = queue.claim(batch=1, lease_seconds=60)
    stale = OutboxItem.objects.get(pk=item.pk)
    stale.lease_token = "someone-elses"
    assert queue.complete(stale) is False
    assert queue.complete(item) is True
    item.refresh_from_db()
    assert item.status == OutboxStatus.DONE and item.completed_at is not None


@pytest.mark.django_db
def test_claim__expired_lease_is_reclaimed():
    make_items(1)
    [first] = queue.claim(batch=1, lease_seconds=60)
    OutboxItem.objects.filter(pk=first.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    [again] = queue.claim(batch=1, lease_seconds=60)
    assert again.pk == first.pk
    assert again.attempts == 2
    assert again.lease_token != first.lease_token
    # The worker that lost its lease can no longer complete the item.
    assert queue.complete(first) is False
    assert queue.complete(again) is True


@pytest.mark.django_db
@override_settings(AUTOMATE={"OUTBOX_MAX_ATTEMPTS": 2})
def test_claim__expired_lease_out_of_attempts_goes_dead():
    make_items(1)
    for _ in range(2):
        [item] = queue.claim(batch=1, lease_seconds=60)
        OutboxItem.objects.filter(pk=item.pk).update(
            lease_expires_at=timezone.now() - timedelta(seconds=1)
        )
    before = timezone.now()
    assert queue.claim(batch=1) == []
    item.refresh_from_db()
    assert item.status == OutboxStatus.DEAD
    assert item.last_error["code"] == "lease_expired"
    assert before <= item.completed_at <= timezone.now()  # its time of death


@pytest.mark.django_db
@override_settings(AUTOMATE={"OUTBOX_MAX_ATTEMPTS": 2})
def test_reclaim_expired__its_time_of_death_in_the_update_that_marks_it_dead():
    make_items(2)
    dying, retried = queue.claim(batch=2, lease_seconds=60)
    OutboxItem.objects.filter(pk=dying.pk).update(attempts=2)
    now = timezone.now() + timedelta(seconds=61)
    with CaptureQueriesContext(connection) as captured:
        assert queue.reclaim_expired(now) == 2
    assert len(captured.captured_queries) == 2  # one UPDATE for the dead, one for the rest
    stored = OutboxItem.objects.in_bulk([dying.pk, retried.pk])
    assert (stored[dying.pk].status, stored[dying.pk].completed_at) == (OutboxStatus.DEAD, now)
    assert (stored[retried.pk].status, stored[retried.pk].completed_at) == ("failed", None)


@override_settings(
    AUTOMATE={"OUTBOX_BACKOFF_BASE_SECONDS": 2.0, "OUTBOX_BACKOFF_MAX_SECONDS": 1000.0}
)
def test_backoff__grows_exponentially_with_bounded_jitter():
    for attempts in range(1, 9):
        delay = 2.0 * 2 ** (attempts - 1)
        samples = [queue.backoff_seconds(attempts) for _ in range(50)]
        assert all(delay / 2 <= s <= delay for s in samples)
        assert len(set(samples)) > 1  # jittered
    # Each attempt's earliest retry is no earlier than the previous one's latest.
    assert queue.backoff_seconds(10) <= 1000.0


@pytest.mark.django_db
@override_settings(
    AUTOMATE={
        "OUTBOX_MAX_ATTEMPTS": 4,
        "OUTBOX_BACKOFF_BASE_SECONDS": 10.0,
        "OUTBOX_BACKOFF_MAX_SECONDS": 10_000.0,
    }
)
def test_fail__backs_off_longer_each_time_then_dead_letters():
    make_items(1)
    delays = []
    for attempt in range(1, 5):
        OutboxItem.objects.update(available_at=timezone.now())
        [item] = queue.claim(batch=1, lease_seconds=60)
        assert item.attempts == attempt
        before = timezone.now()
        status = queue.fail(item, AutomateError(ErrorCodes.UNAVAILABLE, "down"))
        item.refresh_from_db()
        if attempt < 4:
            assert status == OutboxStatus.FAILED
            delays.append((item.available_at - before).total_seconds())
        else:
            assert status == OutboxStatus.DEAD
    # base 10 s: attempt n waits within [5 * 2**(n-1), 10 * 2**(n-1)] seconds.
    for n, delay in enumerate(delays, start=1):
        assert 5 * 2 ** (n - 1) - 1 <= delay <= 10 * 2 ** (n - 1) + 1
    assert delays == sorted(delays)
    assert item.last_error == {
        "code": "unavailable",
        "message": "down",
        "provider": None,
        "retryable": True,
        "details": {},
    }


@pytest.mark.django_db
def test_fail__permanent_error_goes_dead_at_once_and_replay_revives_it():
    make_items(1)
    [item] = queue.claim(batch=1)
    status = queue.fail(item, AutomateError(ErrorCodes.INVALID_ARGUMENT, "bad input"))
    assert status == OutboxStatus.DEAD
    assert queue.claim(batch=1) == []
    assert queue.replay(ids=[item.pk]) == 1
    [again] = queue.claim(batch=1)
    assert again.pk == item.pk and again.attempts == 1 and again.last_error is None


@pytest.mark.django_db
def test_fail__a_dead_letter_records_its_time_of_death_in_the_same_update():
    make_items(1)
    [item] = queue.claim(batch=1)
    before = timezone.now()
    with CaptureQueriesContext(connection) as captured:
        status = queue.fail(item, AutomateError(ErrorCodes.INVALID_ARGUMENT, "bad input"))
    assert status == OutboxStatus.DEAD
    assert len(captured.captured_queries) == 1
    stored = OutboxItem.objects.get(pk=item.pk)
    assert before <= stored.completed_at <= timezone.now()
    assert item.completed_at == stored.completed_at
    assert stored.available_at == item.available_at  # its last attempt's due time, kept
    # Replayed, it is due again and has no time of death; a retry records none either.
    assert queue.replay(ids=[item.pk]) == 1
    assert OutboxItem.objects.get(pk=item.pk).completed_at is None
    [again] = queue.claim(batch=1)
    assert queue.fail(again, ValueError("boom")) == OutboxStatus.FAILED
    assert again.completed_at is None
    assert OutboxItem.objects.get(pk=item.pk).completed_at is None


@pytest.mark.django_db
def test_fail__plain_exception_is_retryable_and_recorded():
    make_items(1)
    [item] = queue.claim(batch=1)
    assert queue.fail(item, ValueError("boom")) == OutboxStatus.FAILED
    item.refresh_from_db()
    assert item.last_error == {"code": "internal", "message": "ValueError: boom"}


@pytest.mark.django_db
def test_release__returns_item_without_spending_an_attempt():
    make_items(1)
    [item] = queue.claim(batch=1)
    assert queue.release(item) is True
    [again] = queue.claim(batch=1)
    assert again.attempts == 1


@pytest.mark.django_db(transaction=True)
def test_claim__four_threads_never_get_the_same_item(postgres):
    make_items(1000)
    claimed: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def work(slot: int) -> None:
        try:
            start.wait()
            while batch := queue.claim(batch=7, lease_seconds=60, worker=f"w{slot}"):
                claimed[slot].extend(i.pk for i in batch)
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    every = [pk for slot in claimed for pk in slot]
    assert len(every) == 1000
    assert len(set(every)) == 1000, "an item was claimed twice"
    assert all(claimed), "a thread got nothing: SKIP LOCKED should spread the work"
    assert OutboxItem.objects.filter(status=OutboxStatus.LEASED, attempts=1).count() == 1000


@pytest.mark.django_db
def test_claim__uses_the_partial_due_index_on_postgres(postgres):
    # The shape the index exists for: settled rows pile up, a few are due. Statistics are
    # gathered first (ANALYZE samples every row of a table this small, so the plan is the
    # same on every machine) instead of forbidding sequential scans and hoping.
    make_items(2000, status=OutboxStatus.DONE)
    make_items(30, status=OutboxStatus.PENDING)
    make_items(20, status=OutboxStatus.FAILED)
    due = (
        OutboxItem.objects.filter(status__in=queue.DUE_STATUSES, available_at__lte=timezone.now())
        .order_by("available_at", "id")
        .values_list("id", flat=True)[:10]
    )
    sql, params = due.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {OutboxItem._meta.db_table}")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "automate_outbox_due" in plan, plan
    assert "Seq Scan" not in plan and "Sort" not in plan, plan  # index order, no full scan
    # The claim's own statement (one UPDATE ... RETURNING on PostgreSQL) reads it the same way.
    now = timezone.now()
    claim_sql = queue._claim_sql(connection, queue._claim_fields(()))
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + claim_sql, ["leased", "t", "w", now, now, 10])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "automate_outbox_due" in plan, plan
    assert "Seq Scan" not in plan and "Sort" not in plan, plan


@pytest.mark.django_db
def test_claim__is_one_statement_on_postgres(postgres):
    """BEGIN, SELECT ... FOR UPDATE, UPDATE, COMMIT and the SELECT of the rows were five."""
    for n in range(3):
        queue.enqueue("github", payload={"n": n}, trace_id=f"t-one-{n}")
    with CaptureQueriesContext(connection) as captured:
        items = queue.claim(10, worker="w1", reclaim=False)
    assert len(captured.captured_queries) == 1, [q["sql"] for q in captured.captured_queries]
    assert [i.payload for i in items] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert all(i.attempts == 1 and i.status == OutboxStatus.LEASED for i in items)
    assert {i.lease_token for i in items} == set(
        OutboxItem.objects.values_list("lease_token", flat=True)
    )


@pytest.mark.django_db
def test_claim__only_loads_the_fields_asked_for():
    queue.enqueue("github", payload={"big": "x" * 1000}, trace_id="t-only")
    [item] = queue.claim(10, only=("id", "lease_token"))
    assert {"payload", "headers", "raw_body"} <= item.get_deferred_fields()
    assert item.lease_token and OutboxItem.objects.get().status == OutboxStatus.LEASED
    assert queue.release(item)  # settling needs nothing more than the id and the token


@pytest.mark.django_db
def test_leases__held_renew_and_renew_many_see_only_our_tokens():
    for n in range(3):
        queue.enqueue("github", payload={"n": n}, trace_id=f"t-lease-{n}")
    items = queue.claim(10, lease_seconds=30)
    OutboxItem.objects.filter(pk=items[2].pk).update(lease_token="another-worker")
    before = {i.pk: i.lease_expires_at for i in OutboxItem.objects.all()}
    assert queue.held(items) == {items[0].pk, items[1].pk}
    assert queue.renew_many(items, seconds=600) == {items[0].pk, items[1].pk}
    after = {i.pk: i.lease_expires_at for i in OutboxItem.objects.all()}
    assert after[items[0].pk] > before[items[0].pk] and after[items[1].pk] > before[items[1].pk]
    assert after[items[2].pk] == before[items[2].pk]  # not ours: left alone
    assert queue.renew(items[0]) and not queue.renew(items[2])
    assert queue.held([]) == set()


@pytest.mark.django_db
def test_leases__renewal_sql_renews_our_lease_and_returns_nothing_for_another_s():
    """The statement a non-idempotent start embeds (automate.commits) is renew() itself."""
    for n in range(2):
        queue.enqueue("github", payload={"n": n}, trace_id=f"t-renewal-{n}")
    ours, theirs = queue.claim(10, lease_seconds=30)
    OutboxItem.objects.filter(pk=theirs.pk).update(lease_token="another-worker")
    before = dict(OutboxItem.objects.values_list("pk", "lease_expires_at"))
    with connection.cursor() as cursor:
        cursor.execute(*queue.Renewal(ours, 600).sql(connection))
        assert cursor.fetchall() == [(1,)]
        cursor.execute(*queue.Renewal(theirs, 600).sql(connection))
        assert cursor.fetchall() == []
    after = dict(OutboxItem.objects.values_list("pk", "lease_expires_at"))
    assert after[ours.pk] >= before[ours.pk] + timedelta(seconds=500)
    assert after[theirs.pk] == before[theirs.pk]


@pytest.mark.django_db
def test_claim__limited_by_in_flight_still_reads_the_due_index(postgres):
    """The dispatcher's claim, whose LIMIT counts the leased rows, finds due rows in the
    partial index like the plain claim, and counts the leased ones in theirs."""
    now = timezone.now()
    claim_sql = queue._claim_sql(connection, queue._claim_fields(("id",)), limited=True)
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # an empty table: plan as for a full one
        cursor.execute("EXPLAIN " + claim_sql, ["leased", "t", "w", now, now, 8, 100, 1000])
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    assert "automate_outbox_due" in plan and "automate_outbox_lease" in plan, plan
