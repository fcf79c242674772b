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
from datetime import timedelta

from django.db import IntegrityError, models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from automate.conf import settings as app_settings
from automate_core.outbox.models import OutboxItem
from automate_core.outbox.queue import Enqueued

__all__ = ["Guarded", "WebhookReceipt", "digest", "enqueue_once", "prune"]

#: Seconds between two deletions of expired receipts by one process.
PRUNE_EVERY = 600.0
_last_prune: float | None = None


class WebhookReceipt(models.Model):
    """One signed content seen lately on one connection (a digest, never the content)."""

    connection = models.CharField(_("connection"), max_length=100)
    digest = models.CharField(_("digest"), max_length=64)
    seen_at = models.DateTimeField(_("seen at"), db_index=True)
    outbox_item = models.ForeignKey(
        "automate_core.OutboxItem",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        app_label = "automate"
        verbose_name = _("webhook receipt")
        verbose_name_plural = _("webhook receipts")
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "digest"], name="automate_webhook_receipt_once"
            )
        ]

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
    connection: str, content: bytes | None, enqueue: Callable[[], Enqueued]
) -> Guarded:
    """Run ``enqueue`` unless ``content`` was seen on ``connection`` within the window.

    ``enqueue`` stores the event (its own id dedupe still applies, and wins: a repeated id
    is a duplicate whatever its content). Both rows are written in one transaction, so a
    receipt never exists without its event: a sender retrying after a failure is not
    turned away.
    """
    window = app_settings.WEBHOOK_REPLAY_WINDOW_SECONDS
    if content is None or window <= 0:
        result = enqueue()
        return Guarded(result.item, result.created)
    key = digest(content)
    now = timezone.now()
    with transaction.atomic():
        result = enqueue()
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
