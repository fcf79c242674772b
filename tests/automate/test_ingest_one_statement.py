"""On PostgreSQL, outside a transaction, a new webhook whose signature covers no id (GitHub)
is stored with its replay receipt in one autocommitted statement (automate.replays).

What must not change with it: every field of the row, the receipt, the dedupe of repeated
ids and of replayed bodies (nothing half-written when either conflicts), the transaction
path inside an atomic block, and ``save()`` (with its signals) for projects that listen.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection, transaction
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext

from automate import replays
from automate.replays import WebhookReceipt
from automate_core.models import OutboxItem
from automate_core.outbox import queue

# Every test runs with the GitHub connector set up, whether it posts a webhook or not.
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("postgres", "post_github"),
]

BODY = json.dumps({"action": "opened", "number": 7, "repository": {"full_name": "a/b"}}).encode()


def test_one_statement__a_new_github_webhook_is_one_insert_of_the_row_and_its_receipt(post_github):
    post_github(BODY, "warm-up")  # the connection lookup and the first prune happen once
    body = json.dumps({"action": "closed", "number": 8}).encode()
    with CaptureQueriesContext(connection) as captured:
        response = post_github(body, "d-1")
    assert response.status_code == 202
    statements = [q["sql"] for q in captured.captured_queries]
    assert len(statements) == 1, statements
    assert statements[0].startswith("WITH new_item AS (INSERT INTO")

    item = OutboxItem.objects.get(external_id="d-1")
    assert response.json() == {"trace_id": item.trace_id, "id": item.pk}
    assert item.connector_key == "github"
    assert item.event_type == "pull_request"
    assert item.payload == {"action": "closed", "number": 8}
    assert item.raw_body is None
    assert item.headers == {
        "content-type": "application/json",
        "x-github-delivery": "d-1",
        "x-github-event": "pull_request",
        "x-github-hook-id": "42",
    }
    assert item.status == "pending" and item.attempts == 0
    assert item.created_at is not None and item.updated_at is not None
    receipt = WebhookReceipt.objects.get(outbox_item=item)
    assert receipt.connection == "github"
    assert receipt.digest == hashlib.sha256(body).hexdigest()


def test_one_statement__a_body_that_is_not_json_keeps_its_raw_bytes(post_github):
    body = b"not json \xff"
    response = post_github(body, "raw-1")
    assert response.status_code == 202
    item = OutboxItem.objects.get(external_id="raw-1")
    assert item.payload is None
    assert bytes(item.raw_body) == body
    assert WebhookReceipt.objects.filter(outbox_item=item).exists()


def test_one_statement__a_repeated_delivery_id_writes_nothing_new(post_github):
    assert post_github(BODY, "same").status_code == 202
    other = json.dumps({"action": "edited"}).encode()
    response = post_github(other, "same")
    assert response.status_code == 200 and response.json()["duplicate"] is True
    assert OutboxItem.objects.count() == 1
    # The statement that conflicted on the id wrote no receipt for the other body either.
    assert WebhookReceipt.objects.count() == 1
    assert post_github(other, "new-id").status_code == 202


def test_one_statement__a_replayed_body_writes_no_orphan_row(post_github):
    first = post_github(BODY, "r-1")
    response = post_github(BODY, "r-2")
    assert response.status_code == 200
    assert response.json()["id"] == first.json()["id"]
    assert list(OutboxItem.objects.values_list("external_id", flat=True)) == ["r-1"]
    assert WebhookReceipt.objects.count() == 1


def _prepared(external_id: str) -> OutboxItem:
    return queue.prepare("github", payload={"n": 1}, external_id=external_id, trace_id="t")


def test_one_statement__inside_a_transaction_the_rows_go_with_it():
    with transaction.atomic():
        result = replays.enqueue_once("github", b"content", _prepared("in-tx"))
        assert result.created
        transaction.set_rollback(True)
    assert not OutboxItem.objects.exists()
    assert not WebhookReceipt.objects.exists()


def test_one_statement__a_wrapper_handed_in_is_used_only_for_the_routers_database():
    # The webhook view hands in the default database's wrapper; one of another alias is
    # not where the router writes, and is never touched (it has nothing to touch here).
    elsewhere = SimpleNamespace(alias="elsewhere")
    result = replays.enqueue_once("github", b"handed", _prepared("h-1"), database=elsewhere)
    assert result.created
    with CaptureQueriesContext(connection) as captured:
        result = replays.enqueue_once("github", b"own", _prepared("h-2"), database=connection)
    assert result.created
    assert [q["sql"][:13] for q in captured.captured_queries] == ["WITH new_item"]
    assert WebhookReceipt.objects.count() == 2


def test_one_statement__a_post_save_receiver_still_gets_save():
    seen: list[tuple[int, bool]] = []

    def receiver(sender, instance, created, **kwargs):
        seen.append((instance.pk, created))

    post_save.connect(receiver, sender=OutboxItem, dispatch_uid="test-one-statement")
    try:
        with CaptureQueriesContext(connection) as captured:
            result = replays.enqueue_once("github", b"signal", _prepared("sig-1"))
    finally:
        post_save.disconnect(dispatch_uid="test-one-statement", sender=OutboxItem)
    assert result.created
    assert seen == [(result.item.pk, True)]
    assert not any(q["sql"].startswith("WITH new_item") for q in captured.captured_queries)
    assert WebhookReceipt.objects.get().outbox_item_id == result.item.pk


# -- What every webhook's statement writes besides the two rows ---------------------------


def _indexes(table: str) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [table])
        return dict(cursor.fetchall())


def _plan(sql: str, params: list) -> str:
    # Few rows here, so the planner would pick a sequential scan: forbid it to see whether
    # an index can serve the query at all.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_one_statement__the_outbox_row_pays_for_no_index_that_no_query_uses():
    indexes = _indexes(OutboxItem._meta.db_table)
    # No LIKE-only (varchar_pattern_ops) twin: the trace id is only ever looked up exactly.
    assert not [name for name, definition in indexes.items() if "pattern_ops" in definition]
    trace = OutboxItem.objects.filter(trace_id="t-1")
    assert "automate_outbox_trace" in _plan(*trace.query.sql_with_params())
    repeat = OutboxItem.objects.filter(connector_key="github", external_id="d-1")
    assert "automate_outbox_unique_external_id" in _plan(*repeat.query.sql_with_params())


def test_one_statement__a_new_event_adds_no_entry_to_the_status_index():
    """Only failed and dead rows are in it: operators filter on those; pending and leased
    rows have the claim's partial indexes, and done rows are most of the table."""
    definition = _indexes(OutboxItem._meta.db_table)["automate_outbox_failing"]
    assert "WHERE" in definition and "'failed'" in definition and "'dead'" in definition
    dead = OutboxItem.objects.filter(status="dead", connector_key="github").order_by("-id")
    assert "automate_outbox_failing" in _plan(*dead.query.sql_with_params())
    replayable = OutboxItem.objects.filter(status__in=["dead", "failed"])
    assert "automate_outbox_failing" in _plan(*replayable.query.sql_with_params())
    pending = OutboxItem.objects.filter(status="pending")
    assert "automate_outbox_due" in _plan(*pending.query.sql_with_params())
    leased = OutboxItem.objects.filter(status="leased")
    assert "automate_outbox_lease" in _plan(*leased.query.sql_with_params())


def test_one_statement__the_receipt_has_no_foreign_key_check_and_no_index_on_its_item():
    table = WebhookReceipt._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
            [table],
        )
        assert cursor.fetchone()[0] == 0
    assert not [d for d in _indexes(table).values() if "outbox_item_id" in d]
    # The lookups a webhook makes are still index scans: a repeated body, and pruning.
    seen = WebhookReceipt.objects.filter(connection="github", digest="0" * 64)
    assert "automate_webhookreceipt_pkey" in _plan(*seen.query.sql_with_params())
    # Keyed by what it is looked up by: the key and the prune's index, nothing else.
    indexes = _indexes(table)
    assert len(indexes) == 2, indexes
    assert "(connection, digest)" in indexes["automate_webhookreceipt_pkey"]
    pruned = WebhookReceipt.objects.filter(seen_at__lt="2026-01-01T00:00:00Z")
    assert "seen_at" in _plan(*pruned.query.sql_with_params())


def test_one_statement__a_receipt_whose_row_was_deleted_answers_a_replay_without_ids(post_github):
    first = post_github(BODY, "gone-1")
    assert first.status_code == 202
    OutboxItem.objects.all().delete()
    assert WebhookReceipt.objects.get().outbox_item_id == first.json()["id"]  # dangling
    replay = post_github(BODY, "gone-2")
    assert replay.status_code == 200
    assert replay.json() == {"trace_id": replay.json()["trace_id"], "duplicate": True}
    assert not OutboxItem.objects.exists()


def test_one_statement__the_sql_of_an_accepted_webhook_and_of_its_periodic_reads(
    monkeypatch, post_github
):
    """Per accepted webhook: the one INSERT, no BEGIN/COMMIT/SAVEPOINT (Django captures
    those too). Periodically: the connection read again once CONNECTION_CACHE_SECONDS
    have passed (one SELECT, the secrets resolved from settings without a query), old
    receipts deleted every PRUNE_EVERY seconds (one DELETE in its own transaction). The
    signing-secret probe is never asked."""
    from automate import connections as automate_connections
    from automate import signing

    clock = [1000.0]
    monkeypatch.setattr(automate_connections.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(replays.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(replays, "_last_prune", None)  # whatever earlier tests did
    probed: list[str] = []
    original_probe = signing.is_profile_signing_secret
    monkeypatch.setattr(
        signing,
        "is_profile_signing_secret",
        lambda name: probed.append(name) or original_probe(name),
    )
    post_github(BODY, "warm-up")  # the first lookup and the first prune of this process

    def statements(delivery: str) -> list[str]:
        body = json.dumps({"delivery": delivery}).encode()
        with CaptureQueriesContext(connection) as captured:
            assert post_github(body, delivery).status_code == 202
        return [q["sql"].split(" ", 1)[0] for q in captured.captured_queries]

    for n in range(5):
        assert statements(f"steady-{n}") == ["WITH"]
    clock[0] += 5.5  # past CONNECTION_CACHE_SECONDS (5 by default)
    assert statements("expired") == ["SELECT", "WITH"]
    assert statements("kept-again") == ["WITH"]
    clock[0] += replays.PRUNE_EVERY
    assert statements("prune") == ["SELECT", "WITH", "BEGIN", "DELETE", "COMMIT"]
    assert probed == []
    assert connection.get_autocommit()


# -- The INSERT's values: each field's shortcut, or the field's own calls ------------------


def _sent(item: OutboxItem, *, ours: bool) -> str:
    """The SQL text the driver sends for ``item`` (with a receipt), through our values or
    through what SQLInsertCompiler gives (each field's pre_save, then get_db_prep_save)."""
    fields, sql = replays._statement(connection)
    receipt = ["github", "0" * 64, item.created_at]
    if ours:
        statement, params = replays._sql_and_params(item, fields, sql, connection)
    else:
        statement = sql
        params = [f.get_db_prep_save(f.pre_save(item, True), connection=connection) for f in fields]
    return connection.ops.compose_sql(statement, [*params, *receipt])


@pytest.fixture
def frozen(monkeypatch):
    """auto_now's pre_save reads the clock: both ways must read the same time."""
    from django.utils import timezone

    now = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: now)


def test_params__a_webhooks_statement_is_the_text_save_would_send(frozen):
    item = queue.prepare(
        "github",
        event_type="pull_request",
        payload={"a": [1, 2.5, None, True], "b": "c'%s"},
        raw_body=None,
        external_id="p-1",
        headers={"x-github-event": "pull_request"},
        trace_id="t" * 32,
    )
    fields, sql = replays._statement(connection)
    statement, params = replays._sql_and_params(item, fields, sql, connection)
    assert len(params) < len(fields) - 5  # the constant defaults are literals, not sent
    assert "'pending'" in statement
    assert _sent(item, ours=True) == _sent(item, ours=False)


@pytest.mark.parametrize(
    "change",
    [
        {"raw_body": b"\x00raw", "payload": None},  # another set of literals
        {"external_id": None, "event_type": ""},
        {"status": "failed", "attempts": 2, "leased_by": "w%s"},  # not the defaults
        {"status": "pending"},  # a plain str equal to the default: sent, as the same text
    ],
)
def test_params__rows_that_differ_from_a_webhooks_get_the_same_text_as_save(frozen, change):
    item = _prepared("other")
    for name, value in change.items():
        setattr(item, name, value)
    assert _sent(item, ours=True) == _sent(item, ours=False)


def test_params__values_of_other_types_take_the_fields_own_calls_and_are_stored_as_by_save(
    frozen,
):
    from django.utils.translation import gettext_lazy

    item = _prepared("other-types")
    item.event_type = gettext_lazy("lazy label")  # a Promise, not a str
    item.payload = ("a", 1)  # a tuple: JSON's array
    item.raw_body = memoryview(b"bytes in a view")
    item.attempts = True  # bool: IntegerField's int() makes it 1
    assert _sent(item, ours=True) == _sent(item, ours=False)
    with CaptureQueriesContext(connection) as captured:
        result = replays.enqueue_once("github", b"other types", item)
    assert result.created
    assert captured.captured_queries[0]["sql"].startswith("WITH new_item")
    stored = OutboxItem.objects.get(pk=item.pk)
    assert stored.event_type == "lazy label"
    assert stored.payload == ["a", 1]
    assert bytes(stored.raw_body) == b"bytes in a view"
    assert stored.attempts == 1


def test_params__auto_now_is_the_time_handed_in_as_pre_save_would_set_it(monkeypatch):
    from django.utils import timezone

    item = _prepared("stamped")
    now = timezone.now() + timedelta(seconds=7)  # not what the clock reads
    fields, sql = replays._statement(connection)
    statement, params = replays._sql_and_params(item, fields, sql, connection, now)
    assert item.updated_at == now
    receipt = ["github", "0" * 64, item.created_at]
    monkeypatch.setattr(timezone, "now", lambda: now)  # what save()'s pre_save reads
    assert connection.ops.compose_sql(statement, [*params, *receipt]) == _sent(item, ours=False)


def test_prepare__the_fields_defaulting_to_the_clock_share_one_reading():
    item = _prepared("one-reading")
    assert item.available_at == item.created_at
    assert item.created_at.tzinfo is not None


def test_params__an_expression_is_left_to_save_which_compiles_it():
    from django.db.models import Value

    item = _prepared("expression")
    item.attempts = Value(3)
    fields, sql = replays._statement(connection)
    assert replays._sql_and_params(item, fields, sql, connection) is None
    with CaptureQueriesContext(connection) as captured:
        result = replays.enqueue_once("github", b"expression", item)
    assert result.created
    assert not any(q["sql"].startswith("WITH new_item") for q in captured.captured_queries)
    assert OutboxItem.objects.get(pk=result.item.pk).attempts == 3
    assert WebhookReceipt.objects.get().outbox_item_id == result.item.pk


def test_params__a_webhooks_row_is_stored_with_its_defaults(post_github):
    response = post_github(json.dumps({"n": 1}).encode(), "defaults-1")
    assert response.status_code == 202
    row = OutboxItem.objects.values().get(external_id="defaults-1")
    assert row["status"] == "pending" and row["attempts"] == 0
    assert row["lease_expires_at"] is None and row["lease_token"] == "" and row["leased_by"] == ""
    assert row["last_error"] is None and row["completed_at"] is None
    assert row["trace_context"] == "" and row["raw_body"] is None


def test_prepare__is_the_row_outboxitem_kwargs_would_make():
    item = queue.prepare(
        "github", event_type="e" * 300, payload=[1], external_id="", headers={}, trace_id="t"
    )
    made = OutboxItem(
        connector_key="github",
        event_type="e" * 200,
        payload=[1],
        external_id=None,
        headers={},
        trace_id="t",
        trace_context="",
    )
    for field in OutboxItem._meta.concrete_fields:
        if field.name not in ("available_at", "created_at"):
            assert getattr(item, field.attname) == getattr(made, field.attname), field.name
    assert item.available_at is not None and item.created_at is not None
    assert item._state.adding and item.pk is None
    other = queue.prepare("github", trace_id="u")
    assert other.headers == {} and other.headers is not item.headers  # a dict per row


def test_params__the_receipts_seen_at_is_what_its_field_prepares():
    from django.utils import timezone

    field = WebhookReceipt._meta.get_field("seen_at")
    now = timezone.now()
    assert replays._seen_at(now, connection) == field.get_db_prep_save(now, connection)
