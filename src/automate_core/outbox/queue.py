"""Enqueue, claim, complete, retry and dead-letter outbox items.

Claims are batched: on PostgreSQL one statement leases up to ``batch`` due rows, found
with ``FOR UPDATE SKIP LOCKED``, and returns them; elsewhere one transaction selects them
and marks them leased with one UPDATE (SQLite serialises writers, which is correct for a
single worker). ``attempts`` counts claims, so an item
that crashes every worker that takes it still reaches the dead letters.
"""

from __future__ import annotations

import functools
import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.db import IntegrityError, connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Count, F, Field
from django.utils import timezone

from automate_core import redaction
from automate_core.conf import settings as automate_settings
from automate_core.observability import spans
from automate_core.outbox.models import DUE_STATUSES, OutboxItem, OutboxStatus
from automate_core.providers.errors import AutomateError


@dataclass(frozen=True)
class Enqueued:
    item: OutboxItem
    created: bool


def enqueue(
    connector_key: str,
    *,
    event_type: str = "",
    payload: Any = None,
    raw_body: bytes | None = None,
    external_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    trace_id: str,
) -> Enqueued:
    """Store one event; a repeat of ``(connector_key, external_id)`` returns the first row.

    The INSERT goes first and the unique constraint finds repeats: a new event (the common
    case) costs one round trip in autocommit, not a SELECT, a transaction and an INSERT.
    Inside the caller's transaction it runs in its own savepoint, so a duplicate leaves
    that transaction usable.
    """
    item = prepare(
        connector_key,
        event_type=event_type,
        payload=payload,
        raw_body=raw_body,
        external_id=external_id,
        headers=headers,
        trace_id=trace_id,
    )
    return store(item)


def prepare(
    connector_key: str,
    *,
    event_type: str = "",
    payload: Any = None,
    raw_body: bytes | None = None,
    external_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    trace_id: str,
) -> OutboxItem:
    """The unsaved row :func:`enqueue` would store (headers redacted, traceparent taken)."""
    index, template, defaults, clocked = _layout()
    values = list(template)
    if clocked:  # one reading of the clock for every field whose default it is
        now = _clock()
        for position in clocked:
            values[position] = now
    for position, default in defaults:
        values[position] = default()
    values[index["connector_key"]] = connector_key
    values[index["event_type"]] = event_type[:200]
    values[index["payload"]] = payload
    values[index["raw_body"]] = raw_body
    values[index["external_id"]] = external_id or None
    values[index["headers"]] = redaction.redact_data(dict(headers or {}))
    values[index["trace_id"]] = trace_id
    values[index["trace_context"]] = spans.current_traceparent()
    # Positional, as Django builds rows it reads: what OutboxItem(**kwargs) makes, in a
    # quarter of the time (kwargs are matched to fields one by one). Every webhook and
    # API event is prepared here.
    return cast(Any, OutboxItem)(*values)  # the stubs type its fields as keywords only


_PREPARED = frozenset(
    {"connector_key", "event_type", "payload", "raw_body", "external_id", "headers"}
    | {"trace_id", "trace_context"}
)


#: Django's clock, as the fields name it for their default (a test may replace
#: ``timezone.now`` later: a field's default stays this function).
_clock = timezone.now


@functools.cache
def _layout() -> tuple[
    dict[str, int], tuple[Any, ...], tuple[tuple[int, Any], ...], tuple[int, ...]
]:
    """Each field's position in ``OutboxItem(*values)``; the default of each field
    :func:`prepare` does not set, when it is a constant; the ``get_default`` of each whose
    default is made per row (``dict``, a database default...); and the positions of the
    fields whose default is ``timezone.now``, which share one reading of the clock (the
    row's ``available_at`` and ``created_at`` are the same instant, not two a few
    microseconds apart)."""
    fields = OutboxItem._meta.concrete_fields
    index = {field.attname: position for position, field in enumerate(fields)}
    values: list[Any] = [None] * len(fields)
    defaults, clocked = [], []
    for position, field in enumerate(fields):
        if field.attname in _PREPARED:
            continue
        if field.has_default() and field.default is _clock and not field.has_db_default():
            clocked.append(position)
        elif (field.has_default() and callable(field.default)) or field.has_db_default():
            defaults.append((position, field.get_default))
        else:
            values[position] = field.get_default()
    return index, tuple(values), tuple(defaults), tuple(clocked)


def store(item: OutboxItem) -> Enqueued:
    """Insert a :func:`prepare`-d row; a repeat of its external id returns the first row."""
    try:
        if connection.in_atomic_block:
            with transaction.atomic():
                item.save(force_insert=True)
        else:
            item.save(force_insert=True)
    except IntegrityError:
        # A repeat of the event (or a concurrent delivery of it that won the race).
        if not item.external_id:
            raise
        existing = OutboxItem.objects.filter(
            connector_key=item.connector_key, external_id=item.external_id
        ).first()
        if existing is None:
            raise
        return Enqueued(existing, created=False)
    return Enqueued(item, created=True)


def claim(
    batch: int = 100,
    lease_seconds: int | None = None,
    worker: str = "",
    *,
    only: Sequence[str] = (),
    reclaim: bool = True,
    in_flight: InFlight | None = None,
) -> list[OutboxItem]:
    """Lease up to ``batch`` due items, oldest first, and return them.

    Expired leases are returned to the queue first (or dead-lettered once out of attempts),
    unless ``reclaim`` is False: a caller polling many times a second reclaims on its own
    schedule (:func:`reclaim_expired`). ``only`` names the fields to load (``.only()``): a
    dispatcher that hands the items on needs ``("id", "lease_token")``, not their payloads.
    ``in_flight`` caps the items and batches leased at once, counted by the claim itself
    (on PostgreSQL in its one statement): nothing is claimed when the batches leased reach
    its ``batches``, and no more than its ``items`` minus those leased.
    """
    if batch < 1:
        return []
    lease_seconds = lease_seconds or automate_settings.OUTBOX_LEASE_SECONDS
    if reclaim:
        reclaim_expired()
    now = timezone.now()
    token = uuid.uuid4().hex
    until = now + timedelta(seconds=lease_seconds)
    if connection.vendor == "postgresql":
        return _claim_in_one_statement(batch, now, until, token, worker[:200], only, in_flight)
    with transaction.atomic():
        if in_flight is not None:
            batch = in_flight.room(batch)
            if batch < 1:
                return []
        due = OutboxItem.objects.filter(status__in=DUE_STATUSES, available_at__lte=now)
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        ids = list(due.order_by("available_at", "id").values_list("id", flat=True)[:batch])
        if not ids:
            return []
        OutboxItem.objects.filter(id__in=ids).update(
            status=OutboxStatus.LEASED,
            lease_token=token,
            leased_by=worker[:200],
            lease_expires_at=until,
            attempts=F("attempts") + 1,
        )
    claimed = OutboxItem.objects.filter(id__in=ids).order_by("available_at", "id")
    return list(claimed.only(*only) if only else claimed)


@dataclass(frozen=True)
class InFlight:
    """How much a claim may add to what is leased already (:func:`claim`'s ``in_flight``):
    at most ``items`` items in at most ``batches`` batches (one lease token each)."""

    items: int
    batches: int

    def room(self, batch: int) -> int:
        """How many of ``batch`` may be claimed now (a query; PostgreSQL's claim counts in
        its own statement instead)."""
        leased = OutboxItem.objects.filter(status=OutboxStatus.LEASED).aggregate(
            items=Count("id"), batches=Count("lease_token", distinct=True)
        )
        if leased["batches"] >= self.batches:
            return 0
        return min(batch, self.items - leased["items"])


def _claim_in_one_statement(
    batch: int,
    now: datetime,
    until: datetime,
    token: str,
    worker: str,
    only: Sequence[str],
    in_flight: InFlight | None = None,
) -> list[OutboxItem]:
    """:func:`claim` on PostgreSQL as one autocommitted ``UPDATE ... WHERE id IN (SELECT
    ... FOR UPDATE SKIP LOCKED) RETURNING``: one round trip, where BEGIN, the SELECT, the
    UPDATE, COMMIT and the SELECT of the leased rows were five. Every claim of every worker
    and dispatcher poll sends it. The rows come back as leased, in claim order. With
    ``in_flight`` its LIMIT counts the leased rows too: a dispatcher's poll is this one
    statement, not a COUNT and then the claim."""
    fields = _claim_fields(only)
    sql = _claim_sql(connection, fields, limited=in_flight is not None)
    leased = OutboxStatus.LEASED.value
    prep = connection.ops.adapt_datetimefield_value
    limit: list[Any] = [batch]
    if in_flight is not None:
        limit = [in_flight.batches, batch, in_flight.items]
    params = [leased, token, worker, prep(until), prep(now), *limit]
    rows = OutboxItem.objects.raw(sql, params)
    return sorted(rows, key=lambda item: (item.available_at, item.pk))


def _claim_fields(only: Sequence[str]) -> tuple[str, ...]:
    """The attnames a claim returns: ``only`` (with what it sorts by), else every field."""
    if not only:
        return tuple(f.attname for f in OutboxItem._meta.concrete_fields)
    names = {OutboxItem._meta.get_field(name).attname for name in (*only, "id", "available_at")}  # type: ignore[union-attr]
    return tuple(f.attname for f in OutboxItem._meta.concrete_fields if f.attname in names)


#: Per database alias, returned fields and whether the in-flight counts limit it:
#: :func:`_claim_in_one_statement`'s text.
_CLAIM_SQL: dict[tuple[str, tuple[str, ...], bool], str] = {}


def _claim_sql(db: BaseDatabaseWrapper, fields: tuple[str, ...], limited: bool = False) -> str:
    key = (db.alias, fields, limited)
    sql = _CLAIM_SQL.get(key)
    if sql is not None:
        return sql
    meta, quote = OutboxItem._meta, db.ops.quote_name

    def column(name: str) -> str:
        return quote(str(meta.get_field(name).column))  # type: ignore[union-attr]

    table = quote(meta.db_table)
    # The due statuses are written into the text, not bound: the planner then knows the
    # query fits the partial index automate_outbox_due, whose predicate they are. ANY of
    # an ARRAY: the ids are found first, then their rows by primary key (IN (SELECT ...)
    # may be planned as a join that scans the whole table).
    due = ", ".join(f"'{status.value}'" for status in DUE_STATUSES)
    returned = ", ".join(column(name) for name in fields)
    limit = "%s"
    if limited:
        # Parameters: the batches allowed, the batch, the items allowed. Counted in the
        # statement's snapshot, before its own rows are leased; never negative (an error).
        limit = (
            f"(SELECT CASE WHEN COUNT(DISTINCT {column('lease_token')}) >= %s THEN 0 "  # noqa: S608
            f"ELSE GREATEST(0, LEAST(%s, %s - COUNT(*))) END FROM {table} "
            f"WHERE {column('status')} = '{OutboxStatus.LEASED.value}')"
        )
    # Quoted names from the model's meta and the statuses' constant values; every other
    # value is a parameter.
    sql = (
        f"UPDATE {table} SET {column('status')} = %s, {column('lease_token')} = %s, "  # noqa: S608
        f"{column('leased_by')} = %s, {column('lease_expires_at')} = %s, "
        f"{column('attempts')} = {column('attempts')} + 1 "
        f"WHERE {column('id')} = ANY(ARRAY(SELECT {column('id')} FROM {table} "
        f"WHERE {column('status')} IN ({due}) AND {column('available_at')} <= %s "
        f"ORDER BY {column('available_at')}, {column('id')} LIMIT {limit} FOR UPDATE SKIP LOCKED)) "
        f"RETURNING {returned}"
    )
    _CLAIM_SQL[key] = sql
    return sql


def reclaim_expired(now=None) -> int:
    """Put items whose lease ran out back in the queue; dead-letter those out of attempts."""
    now = now or timezone.now()
    max_attempts = automate_settings.OUTBOX_MAX_ATTEMPTS
    error = {"code": "lease_expired", "message": "the worker's lease expired before it finished"}
    expired = OutboxItem.objects.filter(status=OutboxStatus.LEASED, lease_expires_at__lte=now)
    dead = expired.filter(attempts__gte=max_attempts).update(
        status=OutboxStatus.DEAD,
        completed_at=now,  # its time of death, which retention ages a dead letter by
        lease_token="",
        lease_expires_at=None,
        last_error=error,
    )
    retried = expired.filter(attempts__lt=max_attempts).update(
        status=OutboxStatus.FAILED,
        available_at=now,
        lease_token="",
        lease_expires_at=None,
        last_error=error,
    )
    return dead + retried


def complete(item: OutboxItem) -> bool:
    """Mark a leased item done; False when its lease was lost to another worker."""
    now = timezone.now()
    updated = _own_lease(item).update(
        status=OutboxStatus.DONE, completed_at=now, lease_expires_at=None, last_error=None
    )
    if updated:
        item.status, item.completed_at = OutboxStatus.DONE, now
    return bool(updated)


def complete_many(items: Sequence[OutboxItem]) -> int:
    """:func:`complete` for many items, one UPDATE per lease token (one per claimed batch);
    returns how many were still ours and are now done."""
    now = timezone.now()
    updated = 0
    for group in _by_token(items):
        count = _own_leases(group).update(
            status=OutboxStatus.DONE, completed_at=now, lease_expires_at=None, last_error=None
        )
        if count == len(group):
            for item in group:
                item.status, item.completed_at = OutboxStatus.DONE, now
        updated += count
    return updated


@dataclass(frozen=True)
class Completion:
    """:func:`complete_many` of one claimed batch, all or nothing, as ``WITH`` queries of
    a caller's statement (:mod:`automate.commits` settles a batch with one): ``heads``
    lock the items still leased under the batch's token and mark them done only if that
    is every one of them; ``ours`` is the SQL condition that says so, for the caller's
    other writes and its result. Built by :func:`completion`."""

    heads: list[str]
    params: list[Any]
    ours: str
    items: Sequence[OutboxItem]
    now: datetime

    def done(self) -> None:
        """The statement said ``ours``: the items are done (what :func:`complete` records)."""
        for item in self.items:
            item.status, item.completed_at = OutboxStatus.DONE, self.now


def completion(db: BaseDatabaseWrapper, items: Sequence[OutboxItem]) -> Completion | None:
    """The :class:`Completion` of ``items`` on ``db`` (PostgreSQL); None when they are not
    one claimed batch (several lease tokens) or there are none."""
    tokens = {item.lease_token for item in items}
    if db.vendor != "postgresql" or len(tokens) != 1:
        return None
    meta, quote = OutboxItem._meta, db.ops.quote_name

    def column(name: str) -> str:
        return quote(str(meta.get_field(name).column))  # type: ignore[union-attr]

    table, pk = quote(meta.db_table), column("id")
    # Locked first, then counted: the UPDATE must not complete some items when others
    # are no longer ours, since the caller's records of those must then not be written.
    heads = [
        f"batch_mine AS (SELECT {pk} FROM {table} WHERE {pk} = ANY(%s) "  # noqa: S608
        f"AND {column('status')} = %s AND {column('lease_token')} = %s FOR UPDATE)",
        "batch_ours AS (SELECT count(*) = %s AS yes FROM batch_mine)",
        f"batch_done AS (UPDATE {table} SET {column('status')} = %s, "  # noqa: S608
        f"{column('completed_at')} = %s, {column('lease_expires_at')} = NULL, "
        f"{column('last_error')} = NULL WHERE {pk} IN (SELECT {pk} FROM batch_mine) "
        f"AND (SELECT yes FROM batch_ours))",
    ]
    now = timezone.now()
    ids = [item.pk for item in items]
    params = [ids, OutboxStatus.LEASED.value, tokens.pop(), len(set(ids))]
    params += [OutboxStatus.DONE.value, db.ops.adapt_datetimefield_value(now)]
    return Completion(heads, params, "(SELECT yes FROM batch_ours)", items, now)


def renew(item: OutboxItem, seconds: int | None = None) -> bool:
    """Extend our lease on ``item``; False when it is no longer ours (it expired and another
    worker claimed it). One UPDATE: cheap enough for a caller's own transaction."""
    until = timezone.now() + timedelta(seconds=seconds or automate_settings.OUTBOX_LEASE_SECONDS)
    return bool(_own_lease(item).update(lease_expires_at=until))


class Renewal:
    """:func:`renew` of one item: called, or sent as :meth:`sql` within a statement of the
    caller's (:mod:`automate.commits` renews the lease, writes a non-idempotent step's
    ``running`` record and the previous call's outcome in one)."""

    __slots__ = ("item", "seconds")

    def __init__(self, item: OutboxItem, seconds: int | None = None) -> None:
        self.item, self.seconds = item, seconds

    def __call__(self) -> bool:
        return renew(self.item, self.seconds)

    def sql(self, db: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
        """:func:`renew`'s UPDATE, ``RETURNING`` a row only when the item is still ours.

        Sent before every non-idempotent call: its text is made once per database, and
        each call only prepares its values (compiling the queryset each time cost a
        fifth of such a step's CPU)."""
        seconds = self.seconds or automate_settings.OUTBOX_LEASE_SECONDS
        until = timezone.now() + timedelta(seconds=seconds)
        sql = _RENEWAL_SQL.get(db.alias) or _renewal_sql(db)
        item = self.item
        expires = _LEASE_EXPIRES.get_db_prep_save(until, connection=db)
        return sql, [expires, item.pk, OutboxStatus.LEASED.value, item.lease_token]


#: Per database alias: :meth:`Renewal.sql`'s text.
_RENEWAL_SQL: dict[str, str] = {}
_LEASE_EXPIRES: Field = OutboxItem._meta.get_field("lease_expires_at")  # type: ignore[assignment]


def _renewal_sql(db: BaseDatabaseWrapper) -> str:
    """The UPDATE of :func:`renew`, as :func:`_own_lease` filters it."""
    meta, quote = OutboxItem._meta, db.ops.quote_name
    column = {
        name: quote(str(meta.get_field(name).column))  # type: ignore[union-attr]
        for name in ("id", "status", "lease_token")
    }
    # Quoted names from the model's meta; every value is a parameter.
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {quote(str(_LEASE_EXPIRES.column))} = %s "  # noqa: S608
        f"WHERE {column['id']} = %s AND {column['status']} = %s "
        f"AND {column['lease_token']} = %s RETURNING 1"
    )
    _RENEWAL_SQL[db.alias] = sql
    return sql


def renew_many(items: Sequence[OutboxItem], seconds: int | None = None) -> set[int]:
    """:func:`renew` for many items; returns the ids of those still ours."""
    until = timezone.now() + timedelta(seconds=seconds or automate_settings.OUTBOX_LEASE_SECONDS)
    for group in _by_token(items):
        _own_leases(group).update(lease_expires_at=until)
    return held(items)


def held(items: Sequence[OutboxItem], *, lock: bool = False) -> set[int]:
    """The ids of ``items`` still leased under the tokens they carry, in one SELECT; with
    ``lock``, their rows stay locked (``FOR UPDATE``) until the caller's transaction ends."""
    if not items:
        return set()
    tokens = {item.pk: item.lease_token for item in items}
    rows = OutboxItem.objects.filter(pk__in=list(tokens), status=OutboxStatus.LEASED)
    if lock and connection.features.has_select_for_update:
        rows = rows.select_for_update()
    return {pk for pk, token in rows.values_list("pk", "lease_token") if tokens[pk] == token}


def fail(item: OutboxItem, error: BaseException | str, *, retryable: bool | None = None) -> str:
    """Record a failure: back off and retry, or dead-letter. Returns the new status.

    ``retryable`` defaults to the error's own flag (``AutomateError.retryable``), else True.
    Items out of attempts go to the dead letters whatever the error says.
    """
    if retryable is None:
        retryable = error.retryable if isinstance(error, AutomateError) else True
    last_error = _error_record(error)
    now = timezone.now()
    if retryable and item.attempts < automate_settings.OUTBOX_MAX_ATTEMPTS:
        status, completed_at = OutboxStatus.FAILED, None
        available_at = now + timedelta(seconds=backoff_seconds(item.attempts))
    else:
        # A dead letter is settled: completed_at is its time of death (retention's age).
        status, available_at, completed_at = OutboxStatus.DEAD, item.available_at, now
    updated = _own_lease(item).update(
        status=status,
        available_at=available_at,
        completed_at=completed_at,
        lease_expires_at=None,
        last_error=last_error,
    )
    if updated:
        item.status, item.available_at, item.last_error = status, available_at, last_error
        item.completed_at = completed_at
    return status if updated else item.status


def release(item: OutboxItem) -> bool:
    """Give a leased item back without counting the attempt (graceful shutdown)."""
    updated = _own_lease(item).update(
        status=OutboxStatus.PENDING,
        available_at=timezone.now(),
        lease_expires_at=None,
        attempts=F("attempts") - 1,
    )
    return bool(updated)


def replay(items: Iterable[OutboxItem] | None = None, *, ids: Iterable[int] | None = None) -> int:
    """Send dead (or failed) items back to the queue with a fresh attempt budget."""
    qs = OutboxItem.objects.filter(status__in=[OutboxStatus.DEAD, OutboxStatus.FAILED])
    if items is not None:
        qs = qs.filter(id__in=[i.pk for i in items])
    if ids is not None:
        qs = qs.filter(id__in=list(ids))
    return qs.update(
        status=OutboxStatus.PENDING,
        attempts=0,
        available_at=timezone.now(),
        completed_at=None,  # a dead letter's time of death; due again, it has none
        last_error=None,
    )


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with equal jitter: in [d/2, d] for d = base * 2**(attempts-1).

    Equal jitter (rather than full jitter) keeps each retry later than the previous one's
    earliest time, so the delays grow while retries of many items still spread out.
    """
    base = automate_settings.OUTBOX_BACKOFF_BASE_SECONDS
    cap = automate_settings.OUTBOX_BACKOFF_MAX_SECONDS
    delay = min(cap, base * (2 ** max(0, attempts - 1)))
    return delay / 2 + random.uniform(0, delay / 2)


def _own_lease(item: OutboxItem):
    return OutboxItem.objects.filter(
        pk=item.pk, status=OutboxStatus.LEASED, lease_token=item.lease_token
    )


def _own_leases(items: Sequence[OutboxItem]):
    """Like :func:`_own_lease`, for items that share one lease token."""
    return OutboxItem.objects.filter(
        pk__in=[item.pk for item in items],
        status=OutboxStatus.LEASED,
        lease_token=items[0].lease_token,
    )


def _by_token(items: Sequence[OutboxItem]) -> list[list[OutboxItem]]:
    """``items`` grouped by lease token: a claimed batch shares one, so one group."""
    groups: dict[str, list[OutboxItem]] = {}
    for item in items:
        groups.setdefault(item.lease_token, []).append(item)
    return list(groups.values())


def _error_record(error: BaseException | str) -> dict[str, Any]:
    if isinstance(error, AutomateError):
        record = error.as_dict()
    elif isinstance(error, BaseException):
        record = {"code": "internal", "message": f"{type(error).__name__}: {error}"}
    else:
        record = {"code": "internal", "message": str(error)}
    return redaction.redact_data(record)
