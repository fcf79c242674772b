from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class OutboxStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    LEASED = "leased", _("Leased")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed, will retry")
    DEAD = "dead", _("Dead letter")


#: Statuses a claim picks up once ``available_at`` has passed.
DUE_STATUSES = (OutboxStatus.PENDING, OutboxStatus.FAILED)


class OutboxItem(models.Model):
    """One accepted event, written in the same transaction that acknowledges it."""

    connector_key = models.CharField(_("connector"), max_length=100)
    event_type = models.CharField(_("event type"), max_length=200, blank=True, default="")
    # NULL, not "": the unique constraint must ignore events that carry no id.
    external_id = models.CharField(  # noqa: DJ001
        _("external id"),
        max_length=255,
        null=True,
        blank=True,
        help_text=_("The sender's event or delivery id; a repeat of it is not stored twice."),
    )
    payload = models.JSONField(_("payload"), null=True, blank=True)
    raw_body = models.BinaryField(
        _("raw body"), null=True, blank=True, help_text=_("Kept when the body is not JSON.")
    )
    headers = models.JSONField(_("headers"), default=dict, blank=True)
    # Indexed in Meta.indexes, not with db_index: that would add a second, LIKE-only index
    # on PostgreSQL (varchar_pattern_ops) that no query uses and every INSERT pays for.
    trace_id = models.CharField(_("trace id"), max_length=64)
    # The W3C traceparent of the span that stored the event ("" when tracing is off): the
    # worker's spans continue that trace (automate_core.observability).
    trace_context = models.CharField(_("trace context"), max_length=128, blank=True, default="")

    status = models.CharField(
        _("status"), max_length=10, choices=OutboxStatus.choices, default=OutboxStatus.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    available_at = models.DateTimeField(_("available at"), default=timezone.now)
    lease_expires_at = models.DateTimeField(_("lease expires at"), null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True, default="", editable=False)
    leased_by = models.CharField(_("leased by"), max_length=200, blank=True, default="")
    last_error = models.JSONField(_("last error"), null=True, blank=True)

    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("outbox item")
        verbose_name_plural = _("outbox items")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connector_key", "external_id"],
                condition=Q(external_id__isnull=False),
                name="automate_outbox_unique_external_id",
            ),
        ]
        indexes = [
            # The claim reads only due rows; a partial index keeps its plan independent of
            # table statistics and of how many done rows pile up.
            models.Index(
                fields=["available_at", "id"],
                condition=Q(status__in=["pending", "failed"]),
                name="automate_outbox_due",
            ),
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status="leased"),
                name="automate_outbox_lease",
            ),
            # What operators look for by status: failed and dead rows (the admin's filter,
            # replays). Pending and leased rows have the two indexes above, and done rows
            # are most of the table, where a scan is the plan anyway; so a new event (and
            # each non-HOT update of its status) adds no entry here.
            models.Index(
                fields=["status", "connector_key"],
                condition=Q(status__in=["failed", "dead"]),
                name="automate_outbox_failing",
            ),
            # Found by trace id: the admin's exact search, an operator following a 202.
            models.Index(fields=["trace_id"], name="automate_outbox_trace"),
        ]

    def __str__(self) -> str:
        kind = f"{self.connector_key}:{self.event_type}" if self.event_type else self.connector_key
        return f"{kind} #{self.pk} ({self.status})"
