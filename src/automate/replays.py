"""Replays of signed webhooks whose signature covers no event id.

GitHub, Jira and most generic HMAC senders sign the body only; the delivery id they send
(``X-GitHub-Delivery``...) is a plain header. Anyone holding one signed request could send
it again with a new id, or none, and every copy would be accepted as a new event. Slack
interactions (``block_actions``...) carry no id at all.

So for such a request the webhook view stores, next to the outbox row and in the same
transaction, a :class:`WebhookReceipt`: a SHA-256 digest of what the signature covered
(the connector's :meth:`~automate_connectors.base.Connector.webhook_replay_content`: the
body, plus the signed timestamp where there is one). The same signed content again within
``AUTOMATE["WEBHOOK_REPLAY_WINDOW_SECONDS"]`` is a duplicate: nothing is stored and the
sender gets the first event's ids. A receipt older than the window is taken over by the
next request with that content (one conditional UPDATE decides between two at once), and
old receipts are deleted now and then by the view itself.

Why a table and not the outbox's unique id: the id dedupe is permanent and keyed on what
the sender calls an id; this one must expire (two genuine events may have identical
bodies a day apart) and is keyed on a digest the sender never chose.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings as django_settings
from django.db import IntegrityError, connections, models, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, signals
from django.db.models.sql import InsertQuery
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from automate import prepared
from automate.conf import settings as app_settings
from automate_core.outbox import queue
from automate_core.outbox.models import OutboxItem

__all__ = ["Guarded", "WebhookReceipt", "digest", "enqueue_once", "prune"]

#: Seconds between two deletions of expired receipts by one process.
PRUNE_EVERY = 600.0
_last_prune: float | None = None


class WebhookReceipt(models.Model):
    """One signed content seen lately on one connection (a digest, never the content)."""

    # The key is what a receipt is looked up by: no surrogate id, whose index every
    # webhook would pay for and no query reads.
    pk = models.CompositePrimaryKey("connection", "digest")
    connection = models.CharField(_("connection"), max_length=100)
    digest = models.CharField(_("digest"), max_length=64)
    seen_at = models.DateTimeField(_("seen at"), db_index=True)
    # Only read to answer a duplicate with the first event's ids, through a LEFT JOIN
    # (select_related) that gives None once that row is gone: so no constraint and no
    # index. Every webhook writes a receipt, and both cost it (a foreign key check at
    # commit, an index entry); deleting outbox rows no longer updates receipts either.
    outbox_item = models.ForeignKey(
        "automate_core.OutboxItem",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        app_label = "automate"
        verbose_name = _("webhook receipt")
        verbose_name_plural = _("webhook receipts")

    def __str__(self) -> str:
        return f"{self.connection}:{self.digest[:12]}"


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@dataclass(frozen=True)
class Guarded:
    """What :func:`enqueue_once` did: ``item`` is the stored row, or the first one when
    ``created`` is False (``None`` if that row has been deleted since)."""

    item: OutboxItem | None
    created: bool


def enqueue_once(
    connection: str,
    content: bytes | None,
    item: OutboxItem,
    *,
    database: BaseDatabaseWrapper | None = None,
) -> Guarded:
    """Store ``item`` (from :func:`~automate_core.outbox.queue.prepare`) unless ``content``
    was seen on ``connection`` within the window.

    The item's own id dedupe still applies, and wins: a repeated id is a duplicate whatever
    its content. Both rows are written in one transaction, so a receipt never exists
    without its event: a sender retrying after a failure is not turned away.

    On PostgreSQL outside a transaction (the webhook view's case) a new event and its
    receipt are one statement in autocommit (:func:`_insert_with_receipt`); if either row
    conflicts with one already stored, nothing was written and the steps below decide,
    one at a time, in a transaction. ``database``: a database wrapper the caller has looked
    up already (the webhook view's, the default one), used if the router writes there.
    """
    window = app_settings.WEBHOOK_REPLAY_WINDOW_SECONDS
    if content is None or window <= 0:
        result = queue.store(item)
        return Guarded(result.item, result.created)
    key = digest(content)
    now = timezone.now()
    if _insert_with_receipt(item, connection, key, now, database):
        _maybe_prune(window)
        return Guarded(item, created=True)
    with transaction.atomic():
        result = queue.store(item)
        if not result.created:
            return Guarded(result.item, created=False)
        try:
            with transaction.atomic():
                WebhookReceipt.objects.create(
                    connection=connection, digest=key, seen_at=now, outbox_item=result.item
                )
        except IntegrityError:
            expired = WebhookReceipt.objects.filter(
                connection=connection, digest=key, seen_at__lte=now - timedelta(seconds=window)
            )
            if not expired.update(seen_at=now, outbox_item=result.item):
                first = (
                    WebhookReceipt.objects.filter(connection=connection, digest=key)
                    .select_related("outbox_item")
                    .first()
                )
                transaction.set_rollback(True)  # the event we just wrote goes too
                return Guarded(first.outbox_item if first else None, created=False)
    _maybe_prune(window)
    return Guarded(result.item, created=True)


def _insert_with_receipt(
    item: OutboxItem,
    connection: str,
    key: str,
    now: datetime,
    database: BaseDatabaseWrapper | None = None,
) -> bool:
    """Insert ``item`` and its receipt in one statement; False when that is not possible
    here (not PostgreSQL, inside a transaction) or a row conflicted (nothing is written).

    The outbox INSERT is Django's own (compiled once, see :func:`_statement`), its values
    prepared as ``item.save()`` prepares them (defaults, ``auto_now``, JSON adaptation),
    and a data-modifying ``WITH`` feeds the new id to the receipt's INSERT: one round trip
    and one commit instead of BEGIN, two INSERTs in savepoints and COMMIT. A project with
    ``pre_save`` or ``post_save`` receivers on ``OutboxItem`` gets ``save()`` (this path
    sends no model signals).
    """
    alias = router.db_for_write(OutboxItem)
    # A lookup in ``connections`` costs as much as the rest of these checks.
    db = database if database is not None and database.alias == alias else connections[alias]
    if db.vendor != "postgresql" or db.in_atomic_block or not prepared.autocommit(db):
        return False
    if not item._state.adding or router.db_for_write(WebhookReceipt) != alias:
        return False
    if signals.pre_save.has_listeners(OutboxItem) or signals.post_save.has_listeners(OutboxItem):
        return False
    statement = _statement(db)
    if statement is None:
        return False
    fields, sql = statement
    found = _sql_and_params(item, fields, sql, db, now)
    if found is None:
        return False
    sql, params = found
    seen_at = _seen_at(now, db)
    try:
        # Repeatable: run again after it took effect, it conflicts on the receipt's key,
        # and the steps in enqueue_once answer it as the repeat it is.
        (item.pk,) = prepared.fetchone(
            db, sql, [*params, connection, key, seen_at], repeatable=True
        )
    except IntegrityError:
        return False
    item._state.adding, item._state.db = False, alias
    return True


def _seen_at(now: datetime, db: BaseDatabaseWrapper) -> Any:
    """The receipt's ``seen_at`` as its field prepares it, by the field's shortcut."""
    known = _receipt_shortcuts.get(db.alias)
    if known is None:
        found = cast(Field, WebhookReceipt._meta.get_field("seen_at"))
        known = _receipt_shortcuts[db.alias] = (found, _shortcut(found, db))
    field, shortcut = known
    prepared = _SLOW if shortcut is None else shortcut(now)
    return field.get_db_prep_save(now, db) if prepared is _SLOW else prepared


#: Per database alias: WebhookReceipt.seen_at and its shortcut (None: none).
_receipt_shortcuts: dict[str, tuple[Field, Any]] = {}


def _prepared(
    item: OutboxItem,
    field: Field,
    shortcut: Any,
    db: BaseDatabaseWrapper,
    stamped: bool,
    now: datetime | None,
) -> Any:
    if stamped:  # auto_now: pre_save sets the value, the shortcut adapts it
        if now is None:
            value = field.pre_save(item, True)
        else:  # what DateTimeField.pre_save does, with the clock read once per row
            value = now
            setattr(item, field.attname, value)
        prepared = _SLOW if shortcut is None else shortcut(value)
    elif shortcut is None:
        value, prepared = field.pre_save(item, True), _SLOW
    else:
        value = item.__dict__[field.attname]
        prepared = shortcut(value)
    return _unknown(value, field, db) if prepared is _SLOW else prepared


def _unknown(value: Any, field: Field, db: BaseDatabaseWrapper) -> Any:
    """A value its field's shortcut does not know, prepared by the field's own calls."""
    if hasattr(value, "resolve_expression"):  # an expression: let save() compile it
        return _EXPRESSION
    return field.get_db_prep_save(value, connection=db)


def _sql_and_params(
    item: OutboxItem,
    fields: list[Field],
    sql: str,
    db: BaseDatabaseWrapper,
    now: datetime | None = None,
) -> tuple[str, list[Any]] | None:
    """The statement and the values of ``item``'s INSERT, as ``SQLInsertCompiler``
    prepares them (each field's ``pre_save``, then ``get_db_prep_save``); None when a
    value is an expression, which ``save()`` compiles. ``now``: the time a ``DateTimeField``
    with ``auto_now`` (or ``auto_now_add``) is set to, as its ``pre_save`` would set it to
    the clock's (one reading per row instead of one per such field and one for the receipt).

    Most of a webhook's values need no preparing (a ``str`` for a ``CharField``, an aware
    ``datetime`` for a ``DateTimeField`` on PostgreSQL) or one adaptation: each field's
    shortcut (:func:`_shortcut`) does just that, and hands any other value to the field's
    own calls. Those calls, 18 per webhook, were half of this path's CPU. A value that is
    its field's constant default (the status of a new row, its zero attempts, its empty
    lease...) is written into the statement as a literal instead of sent: a webhook's
    INSERT has 10 parameters instead of 21, each of which the driver adapts in Python. One
    statement is compiled per set of fields so written (a handful: with a payload or
    with raw bytes, with an id or without...)."""
    plan = _plan(fields, sql, db)
    values = item.__dict__
    params, written = [], 0
    for bit, field, attname, shortcut, constant, stamped in plan.entries:
        if constant is not _NO_CONSTANT:
            value = values[attname]
            if value is constant or (type(value) is type(constant) and value == constant):
                written |= bit
                continue
        if shortcut is not None and not stamped:  # most values: _prepared's third case
            value = values[attname]
            prepared = shortcut(value)
            if prepared is _SLOW:
                prepared = _unknown(value, field, db)
        else:
            prepared = _prepared(item, field, shortcut, db, stamped, now)
        if prepared is _EXPRESSION:
            return None
        params.append(prepared)
    statement = plan.statements.get(written)
    if statement is None:
        statement = plan.compile(written)
    return statement, params


_NO_CONSTANT: Any = object()
_EXPRESSION: Any = object()


class _Plan:
    """Per database alias and statement: each field's bit, shortcut and constant default
    (with its SQL literal), and the statements compiled so far by written bits."""

    def __init__(self, fields: list[Field], sql: str, db: BaseDatabaseWrapper) -> None:
        self.fields, self.sql = fields, sql
        self.parts = sql.split("%s")  # the fields' placeholders come first, in order
        self.entries: list[tuple[int, Field, str, Any, Any, bool]] = []
        self.literals: list[str | None] = []
        for position, (field, shortcut) in enumerate(_shortcuts(fields, db)):
            constant, literal = _NO_CONSTANT, None
            made_per_row = field.has_default() and callable(field.default)
            stamped = _stamped(field)
            if (
                shortcut is not None
                and not stamped
                and not made_per_row
                and not field.has_db_default()
            ):
                constant = field.get_default()
                prepared = shortcut(constant)
                if prepared is _SLOW:
                    prepared = field.get_db_prep_save(constant, connection=db)
                # Quoted by the driver, as it quotes a parameter; % doubled for the
                # parameters still to come.
                literal = cast(Any, db.ops).compose_sql("%s", [prepared]).replace("%", "%%")
            entry = (1 << position, field, field.attname, shortcut, constant, stamped)
            self.entries.append(entry)
            self.literals.append(literal)
        self.statements: dict[int, str] = {}

    def compile(self, written: int) -> str:
        pieces = [self.parts[0]]
        for position, part in enumerate(self.parts[1:]):
            literal = self.literals[position] if position < len(self.literals) else None
            pieces.append(literal if literal is not None and written >> position & 1 else "%s")
            pieces.append(part)
        statement = "".join(pieces)
        if len(self.statements) < 64:  # a handful in practice; never unbounded
            self.statements[written] = statement
        return statement


#: Per database alias: the plan of the statement of :func:`_statement`.
_plans: dict[str, _Plan] = {}


def _plan(fields: list[Field], sql: str, db: BaseDatabaseWrapper) -> _Plan:
    plan = _plans.get(db.alias)
    if plan is None or plan.fields is not fields or plan.sql is not sql:
        plan = _plans[db.alias] = _Plan(fields, sql, db)
    return plan


def _stamped(field: Field) -> bool:
    """A ``DateTimeField`` whose ``pre_save`` sets the value (``auto_now``...): its
    shortcut adapts what ``pre_save`` returns."""
    return type(field) is models.DateTimeField and bool(
        cast(Any, field).auto_now or cast(Any, field).auto_now_add
    )


#: What a shortcut returns for a value it does not know: the field's own calls prepare it.
_SLOW: Any = object()


def _shortcut(field: Field, db: BaseDatabaseWrapper) -> Callable[[Any], Any] | None:
    """What ``field.pre_save`` and ``field.get_db_prep_save`` do on PostgreSQL for the
    values a webhook stores, without their calls (for a field whose ``pre_save`` sets the
    value, ``auto_now``, what ``get_db_prep_save`` does to it: see :func:`_stamped`); None
    for a class without a shortcut. Exact classes only: a subclass may prepare its values
    otherwise.
    """
    kind = type(field)
    if kind is models.CharField:

        def text(value: Any) -> Any:  # CharField.to_python keeps any str (and None)
            return value if value is None or isinstance(value, str) else _SLOW

        return text
    if kind in (models.PositiveIntegerField, models.IntegerField, models.BigIntegerField):
        adapt_int, internal_type = db.ops.adapt_integerfield_value, field.get_internal_type()

        def integer(value: Any) -> Any:
            return adapt_int(value, internal_type) if type(value) is int else _SLOW

        return integer
    if kind is models.DateTimeField:
        if not django_settings.USE_TZ:
            return None
        adapt_datetime = db.ops.adapt_datetimefield_value

        def aware(value: Any) -> Any:  # a naive one is made aware, with a warning
            if value is None or (type(value) is datetime and value.tzinfo is not None):
                return adapt_datetime(value)
            return _SLOW

        return aware
    if kind is models.JSONField:
        adapt_json, encoder = db.ops.adapt_json_value, cast(Any, field).encoder

        def json(value: Any) -> Any:
            if value is None:  # SQL NULL, as JSONField.get_db_prep_save gives it
                return None
            return adapt_json(value, encoder) if type(value) in _JSON_TYPES else _SLOW

        return json
    if kind is models.BinaryField:
        binary = cast(Any, db).Database.Binary  # the driver's, as BinaryField uses it

        def raw(value: Any) -> Any:
            if value is None:
                return None
            return binary(value) if type(value) is bytes else _SLOW

        return raw
    return None


_JSON_TYPES = frozenset({dict, list, str, int, float, bool})

#: Per database alias: the fields of :func:`_statement` with their shortcuts.
_shortcuts_by_alias: dict[str, tuple[list[Field], list[tuple[Field, Any]]]] = {}


def _shortcuts(fields: list[Field], db: BaseDatabaseWrapper) -> list[tuple[Field, Any]]:
    known = _shortcuts_by_alias.get(db.alias)
    if known is None or known[0] is not fields:
        known = (fields, [(field, _shortcut(field, db)) for field in fields])
        _shortcuts_by_alias[db.alias] = known
    return known[1]


#: Per database alias: the outbox fields inserted, and the statement inserting both rows.
_statements: dict[str, tuple[list[Field], str] | None] = {}


def _statement(db: BaseDatabaseWrapper) -> tuple[list[Field], str] | None:
    """The fields and the SQL of :func:`_insert_with_receipt`, compiled once per database
    by Django's own INSERT compiler (the text depends on the models, not on the values);
    None if that INSERT is not one plain placeholder per field."""
    if db.alias in _statements:
        return _statements[db.alias]
    opts, receipt = OutboxItem._meta, WebhookReceipt._meta
    fields = [f for f in opts.local_concrete_fields if f is not opts.auto_field]
    query = InsertQuery(OutboxItem)
    query.insert_values(fields, [OutboxItem()])
    ((insert_sql, params),) = query.get_compiler(connection=db).as_sql()
    if len(params) != len(fields) or insert_sql.count("%s") != len(fields):
        _statements[db.alias] = None  # not one plain placeholder per field: save() it is
        return None
    q = db.ops.quote_name
    item_columns = {f.name: q(f.column) for f in opts.concrete_fields if f.column}
    receipt_columns = {f.name: q(f.column) for f in receipt.concrete_fields if f.column}
    pk = item_columns["id"]
    columns = [receipt_columns[n] for n in ("connection", "digest", "seen_at", "outbox_item")]
    # Table and column names from the models' meta, quoted; every value is a parameter.
    sql = (
        f"WITH new_item AS ({insert_sql} RETURNING {pk}) "  # noqa: S608
        f"INSERT INTO {q(receipt.db_table)} ({', '.join(columns)}) "
        f"SELECT %s, %s, %s, {pk} FROM new_item RETURNING {columns[-1]}"
    )
    _statements[db.alias] = (fields, sql)
    return fields, sql


def prune(window: float | None = None) -> int:
    """Delete the receipts older than the window; returns how many."""
    seconds = app_settings.WEBHOOK_REPLAY_WINDOW_SECONDS if window is None else window
    cutoff = timezone.now() - timedelta(seconds=seconds)
    deleted, _ = WebhookReceipt.objects.filter(seen_at__lt=cutoff).delete()
    return deleted


def _maybe_prune(window: float) -> None:
    global _last_prune
    now = time.monotonic()
    if _last_prune is not None and now - _last_prune < PRUNE_EVERY:
        return
    _last_prune = now
    prune(window)
