"""On PostgreSQL the webhook view's INSERT of an event and its receipt is prepared on the
server once per connection (automate.prepared), so later webhooks skip its parse and plan.

What must hold with it: the statement really is prepared and reused; a setting turns it
off; a column added by a migration does not break it; a statement the server has lost (a
pooler, ``DEALLOCATE ALL``) is sent again unprepared with the event stored exactly once;
conflicts still come back as Django's IntegrityError; and the statement is logged as any
other.
"""

from __future__ import annotations

import contextlib
import json
from unittest import mock

import pytest
from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, connections, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automate import prepared, replays
from automate_core.models import OutboxItem
from automate_core.outbox import queue


def _opened(number: int) -> bytes:
    return json.dumps({"action": "opened", "number": number}).encode()


def _prepared_inserts() -> list[tuple[int, int]]:
    """(generic plans, custom plans) of this session's prepared webhook INSERTs."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE 'WITH new_item AS (INSERT INTO%%'"
        )
        return cursor.fetchall()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("postgres")
def test_prepared__webhooks_reuse_one_server_side_statement_and_its_generic_plan(post_github):
    for n in range(8):
        assert post_github(_opened(n), f"d-{n}").status_code == 202
    ((generic, custom),) = _prepared_inserts()
    # PostgreSQL plans the first five executions with their values, then keeps a generic
    # plan: no parse and no plan per webhook from then on.
    assert generic + custom == 8 and generic >= 3
    assert OutboxItem.objects.filter(external_id__startswith="d-").count() == 8


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("postgres")
def test_prepared__the_setting_turns_it_off(post_github):
    with override_settings(AUTOMATE={**settings.AUTOMATE, "DATABASE_PREPARED_STATEMENTS": False}):
        for n in range(3):
            assert post_github(_opened(n), f"off-{n}").status_code == 202
    assert _prepared_inserts() == []
    assert OutboxItem.objects.filter(external_id__startswith="off-").count() == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("postgres")
def test_prepared__a_column_added_by_a_migration_meanwhile_does_not_break_it(post_github):
    assert post_github(_opened(1), "before").status_code == 202
    other = connections.create_connection("default")  # another process migrating
    try:
        with other.cursor() as cursor:
            cursor.execute(
                "ALTER TABLE automate_core_outboxitem ADD COLUMN added_later text DEFAULT 'x'"
            )
        assert post_github(_opened(2), "after").status_code == 202
        with other.cursor() as cursor:
            cursor.execute("ALTER TABLE automate_core_outboxitem DROP COLUMN added_later")
        assert post_github(_opened(3), "after-drop").status_code == 202
    finally:
        other.close()
    assert set(OutboxItem.objects.values_list("external_id", flat=True)) == {
        "before",
        "after",
        "after-drop",
    }
    ((generic, custom),) = _prepared_inserts()
    assert generic + custom == 3  # still the one prepared statement, re-planned


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("postgres")
def test_prepared__a_statement_the_server_lost_is_sent_again_and_stored_once(post_github):
    assert post_github(_opened(1), "first").status_code == 202
    assert len(_prepared_inserts()) == 1
    with connection.cursor() as cursor:  # behind psycopg's back, as a pooler would
        cursor.execute("DEALLOCATE ALL")
    with CaptureQueriesContext(connection) as captured:
        response = post_github(_opened(2), "second")
    assert response.status_code == 202
    assert OutboxItem.objects.filter(external_id="second").count() == 1
    assert response.json()["id"] == OutboxItem.objects.get(external_id="second").pk
    inserts = [q for q in captured.captured_queries if q["sql"].startswith("WITH new_item")]
    assert len(inserts) == 2  # the refused prepared one, then the plain one
    # This connection no longer prepares: nothing is re-created on the server.
    assert post_github(_opened(3), "third").status_code == 202
    assert _prepared_inserts() == []
    assert OutboxItem.objects.filter(external_id__in=["first", "second", "third"]).count() == 3


def _terminate(pid: int) -> None:
    """Ends a server process from another connection, as a server restart would."""
    killer = connection.copy()
    try:
        with killer.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        killer.close()


@contextlib.contextmanager
def _health_checks_due(enabled: bool = True):
    """What CONN_HEALTH_CHECKS and a new request's close_old_connections() leave behind
    (the test client does not send request_started to close_old_connections), with
    Django's own check spied on."""
    before = connection.health_check_enabled
    connection.health_check_enabled, connection.health_check_done = enabled, False
    try:
        with mock.patch.object(connection, "is_usable", wraps=connection.is_usable) as spy:
            yield spy
    finally:
        connection.health_check_enabled = before
        if connection.connection is not None and connection.connection.closed:
            connection.close()  # left dead by a failure: not the next test's problem


def _inserts(captured: CaptureQueriesContext) -> int:
    return sum(q["sql"].startswith("WITH new_item") for q in captured.captured_queries)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("postgres")
def test_prepared__with_health_checks_the_insert_is_the_check_no_select_1_before_it(post_github):
    assert post_github(_opened(1), "warm").status_code == 202
    pid = connection.connection.info.backend_pid
    with _health_checks_due() as is_usable, CaptureQueriesContext(connection) as captured:
        assert post_github(_opened(2), "checked").status_code == 202
    is_usable.assert_not_called()  # no SELECT 1 round trip
    assert _inserts(captured) == 1 and len(captured.captured_queries) == 1
    assert connection.health_check_done  # a later statement of the request skips it too
    assert connection.connection.info.backend_pid == pid


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("postgres")
@pytest.mark.parametrize("prepare", [True, False], ids=["prepared", "not-prepared"])
def test_prepared__with_health_checks_a_connection_the_server_dropped_is_replaced(
    post_github, prepare
):
    preparing = {**settings.AUTOMATE, "DATABASE_PREPARED_STATEMENTS": prepare}
    with override_settings(AUTOMATE=preparing):
        # Also reads the connection's profile, kept for the next request: its INSERT is
        # then that request's first statement.
        assert post_github(_opened(1), "before").status_code == 202
        victim = connection.connection.info.backend_pid
        _terminate(victim)
        with _health_checks_due() as is_usable, CaptureQueriesContext(connection) as captured:
            response = post_github(_opened(2), "after")
        assert len(_prepared_inserts()) == int(prepare)  # on the new connection
    assert response.status_code == 202
    is_usable.assert_not_called()
    assert _inserts(captured) == 2  # found the connection dead, then ran on a new one
    assert connection.connection.info.backend_pid != victim
    assert OutboxItem.objects.filter(external_id__in=["before", "after"]).count() == 2
    assert response.json()["id"] == OutboxItem.objects.get(external_id="after").pk


def _commits_then_dies(execute, sql, params, many, context):
    """The INSERT commits, then the connection dies before its answer is read: the
    server restarted between the two."""
    result = execute(sql, params, many, context)
    if sql.startswith("WITH new_item"):
        db = context["connection"]
        _terminate(db.connection.info.backend_pid)
        with db.wrap_database_errors:  # the answer never comes
            db.connection.execute("SELECT 1")
    return result


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("postgres")
@pytest.mark.parametrize("delivery", ["lost-answer", None], ids=["with-id", "without-id"])
def test_prepared__an_insert_that_committed_before_its_connection_died_is_not_stored_twice(
    post_github, delivery
):
    body = _opened(7)
    assert post_github(_opened(1), "warm").status_code == 202
    with _health_checks_due(), connection.execute_wrapper(_commits_then_dies):
        response = post_github(body, delivery or "")
    # The repeat conflicted with what the first run wrote: answered as the repeat it is,
    # with the stored event's ids.
    assert response.status_code == 200 and response.json()["duplicate"] is True
    (stored,) = OutboxItem.objects.exclude(external_id="warm")
    assert response.json()["id"] == stored.pk
    assert response.json()["trace_id"] == stored.trace_id
    assert replays.WebhookReceipt.objects.filter(outbox_item=stored).count() == 1


def _timed_out(calls: list[str]):
    def wrapper(execute, sql, params, many, context):
        calls.append(sql)
        raise OperationalError("canceling statement due to statement timeout")

    return wrapper


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("postgres")
def test_prepared__an_error_on_a_live_connection_is_raised_not_repeated(post_github):
    assert post_github(_opened(1), "warm").status_code == 202
    pid = connection.connection.info.backend_pid
    calls: list[str] = []
    with (
        _health_checks_due(),
        connection.execute_wrapper(_timed_out(calls)),
        pytest.raises(OperationalError, match="statement timeout"),
    ):
        post_github(_opened(2), "timed-out")
    assert len(calls) == 1 and calls[0].startswith("WITH new_item")  # tried once only
    assert connection.connection.info.backend_pid == pid
    assert not OutboxItem.objects.filter(external_id="timed-out").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("postgres")
def test_prepared__without_health_checks_a_dead_connection_fails_the_request_as_in_django(
    post_github,
):
    assert post_github(_opened(1), "before").status_code == 202
    _terminate(connection.connection.info.backend_pid)
    with (
        _health_checks_due(enabled=False) as is_usable,
        CaptureQueriesContext(connection) as captured,
        pytest.raises(OperationalError),
    ):
        post_github(_opened(2), "after")
    is_usable.assert_not_called()
    assert _inserts(captured) == 1  # CONN_HEALTH_CHECKS off: not run again
    connection.close()
    assert not OutboxItem.objects.filter(external_id="after").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("postgres")
def test_prepared__inside_a_transaction_djangos_check_runs_before_a_repeatable_statement():
    sql = "SELECT 1"
    with transaction.atomic(), _health_checks_due() as is_usable:
        assert prepared.fetchone(connection, sql, [], repeatable=True) == (1,)
    is_usable.assert_called_once()  # a repeat could not undo what the transaction lost


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("postgres")
def test_prepared__a_conflict_is_djangos_integrity_error_and_the_statement_stays():
    sql = "INSERT INTO automate_core_outboxitem (id, connector_key, event_type, headers, trace_id, trace_context, status, attempts, available_at, lease_token, leased_by, created_at, updated_at) VALUES (%s, 'c', '', '{}', 't', '', 'pending', 0, now(), '', '', now(), now()) RETURNING id"  # noqa: E501
    assert prepared.fetchone(connection, sql, [424242]) == (424242,)
    with pytest.raises(IntegrityError):
        prepared.fetchone(connection, sql, [424242])
    assert prepared.fetchone(connection, sql, [424243]) == (424243,)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'INSERT INTO%%'"
        )
        assert cursor.fetchone() == (1,)


@pytest.mark.django_db(transaction=True)
def test_prepared__elsewhere_the_statement_runs_as_usual():
    """SQLite (and PostgreSQL inside a transaction): a plain execution, same result."""
    from django.db import transaction

    with transaction.atomic():
        assert prepared.fetchone(connection, "SELECT %s + 1", [41]) == (42,)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_prepared_statements")
                assert cursor.fetchone() == (0,)


def _statement_names(text: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements WHERE statement = %s", [text])
        return [name for (name,) in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("postgres")
def test_prepared__the_name_comes_from_the_statement_not_a_per_connection_counter():
    first, second = "SELECT %s::int + 1", "SELECT %s::int + 2"
    assert prepared.fetchone(connection, first, [1]) == (2,)
    assert prepared.fetchone(connection, second, [1]) == (3,)
    (one,) = _statement_names("SELECT $1::int + 1")
    (two,) = _statement_names("SELECT $1::int + 2")
    assert one.startswith("automate_") and two.startswith("automate_") and one != two
    other = connections.create_connection("default")  # another process, other order
    try:
        assert prepared.fetchone(other, second, [1]) == (3,)
        assert prepared.fetchone(other, first, [1]) == (2,)
        with other.cursor() as cursor:
            cursor.execute("SELECT statement, name FROM pg_prepared_statements")
            assert dict(cursor.fetchall()) == {"SELECT $1::int + 1": one, "SELECT $1::int + 2": two}
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("postgres")
def test_prepared__another_clients_statement_under_its_name_is_refused_and_sent_again():
    """A pooler that does not track prepared statements hands the session a server
    connection where another client prepared a statement under our statement's name, with
    another number of parameters: the bind fails with a protocol violation (08P01), a real
    one from the server here, and the statement is sent again unprepared."""
    sql = "SELECT %s::int + 1"
    assert prepared.fetchone(connection, sql, [41]) == (42,)
    (name,) = _statement_names("SELECT $1::int + 1")
    with connection.cursor() as cursor:  # behind psycopg's back, as a pooler would
        cursor.execute(f"DEALLOCATE {name}")
        cursor.execute(f"PREPARE {name} (int, int) AS SELECT $1 + $2")
    with CaptureQueriesContext(connection) as captured:
        assert prepared.fetchone(connection, sql, [41]) == (42,)
    assert len(captured.captured_queries) == 2  # the refused prepared one, then the plain one
    # This connection no longer prepares, and stays usable.
    assert prepared.fetchone(connection, "SELECT %s::int + 3", [1]) == (4,)
    assert _statement_names("SELECT $1::int + 3") == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("postgres")
def test_prepared__another_clients_statement_of_psycopgs_name_is_never_run():
    """psycopg names a connection's first prepared statement ``_pg3_0``, in every process:
    another client's ``_pg3_0`` taking as many parameters would run with our values."""
    sql = "SELECT %s::int + 1"
    assert prepared.fetchone(connection, sql, [41]) == (42,)
    (name,) = _statement_names("SELECT $1::int + 1")
    with connection.cursor() as cursor:  # the server session is now another client's
        cursor.execute(f"DEALLOCATE {name}")
        cursor.execute("PREPARE _pg3_0 (int) AS SELECT $1 + 1000")
        cursor.execute("PREPARE _pg3_1 (int) AS SELECT $1 + 1000")
    assert prepared.fetchone(connection, sql, [41]) == (42,)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("postgres")
def test_prepared__outside_autocommit_nothing_is_prepared_nor_inserted_in_one_statement():
    item = queue.prepare("github", payload={"n": 1}, external_id="no-autocommit", trace_id="t")
    connection.close()  # the checks connect first, as get_autocommit() does
    assert prepared._prepared_cursor(connection) is not None
    connection.set_autocommit(False)
    try:
        assert prepared._prepared_cursor(connection) is None
        assert not replays._insert_with_receipt(item, "github", "0" * 64, timezone.now())
    finally:
        connection.rollback()
        connection.set_autocommit(True)
    assert not OutboxItem.objects.filter(external_id="no-autocommit").exists()
