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
from dataclasses import dataclass
from datetime import datetime, timedelta

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


def enqueue_once(connection: str, content: bytes | None, item: OutboxItem) -> Guarded:
    """Store ``item`` (from :func:`~automate_core.outbox.queue.prepare`) unless ``content``
    was seen on ``connection`` within the window.

    The item's own id dedupe still applies, and wins: a repeated id is a duplicate whatever
    its content. Both rows are written in one transaction, so a receipt never exists
    without its event: a sender retrying after a failure is not turned away.

    On PostgreSQL outside a transaction (the webhook view's case) a new event and its
    receipt are one statement in autocommit (:func:`_insert_with_receipt`); if either row
    conflicts with one already stored, nothing was written and the steps below decide,
    one at a time, in a transaction.
    """
    window = app_settings.WEBHOOK_REPLAY_WINDOW_SECONDS
    if content is None or window <= 0:
        result = queue.store(item)
        return Guarded(result.item, result.created)
    key = digest(content)
    now = timezone.now()
    if _insert_with_receipt(item, connection, key, now):
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


def _insert_with_receipt(item: OutboxItem, connection: str, key: str, now: datetime) -> bool:
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
    db = connections[alias]
    if db.vendor != "postgresql" or db.in_atomic_block or not db.get_autocommit():
        return False
    if not item._state.adding or router.db_for_write(WebhookReceipt) != alias:
        return False
    if signals.pre_save.has_listeners(OutboxItem) or signals.post_save.has_listeners(OutboxItem):
        return False
    statement = _statement(db)
    if statement is None:
        return False
    fields, sql = statement
    params = []
    for field in fields:  # what SQLInsertCompiler does for each value
        value = field.pre_save(item, True)
        if hasattr(value, "resolve_expression"):  # an expression: let save() compile it
            return False
        params.append(field.get_db_prep_save(value, connection=db))
    seen_at = WebhookReceipt._meta.get_field("seen_at").get_db_prep_save(now, db)
    try:
        (item.pk,) = prepared.fetchone(db, sql, [*params, connection, key, seen_at])
    except IntegrityError:
        return False
    item._state.adding, item._state.db = False, alias
    return True


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
