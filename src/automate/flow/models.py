"""The table of parked runs: one :class:`RunWait` row per park of a run.

A ``delay`` row has a deadline and a timer (an outbox item due then); a
``wait_for_event`` row has the key an incoming event is looked up by, (connector, event
type, hash of the rendered match values), in a partial index over the rows still
waiting, and a timer when it has a timeout; a ``workflow`` row names the child run.
Exactly one outbox item resolves a row (``resolved_by``): a conditional UPDATE on
``status = 'waiting'`` decides which, so a run is resumed once.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class WaitKind(models.TextChoices):
    DELAY = "delay", _("Delay")
    EVENT = "event", _("Event")
    CHILD = "child", _("Child workflow")


class WaitStatus(models.TextChoices):
    WAITING = "waiting", _("Waiting")
    DUE = "due", _("Time reached")
    MATCHED = "matched", _("Event matched")
    TIMED_OUT = "timed_out", _("Timed out")
    CHILD_ENDED = "child_ended", _("Child ended")
    CANCELLED = "cancelled", _("Cancelled")


class RunWait(models.Model):
    """What one parked run waits for, and what ended the wait."""

    run = models.ForeignKey("automate.WorkflowRun", on_delete=models.CASCADE, related_name="waits")
    step_run = models.ForeignKey("automate.StepRun", on_delete=models.CASCADE, related_name="waits")
    kind = models.CharField(_("kind"), max_length=10, choices=WaitKind.choices)
    status = models.CharField(
        _("status"), max_length=12, choices=WaitStatus.choices, default=WaitStatus.WAITING
    )
    due_at = models.DateTimeField(_("deadline"), null=True, blank=True)
    connector_key = models.CharField(_("connector"), max_length=100, blank=True, default="")
    event_type = models.CharField(_("event type"), max_length=200, blank=True, default="")
    match_key = models.CharField(_("match key"), max_length=64, blank=True, default="")
    match = models.JSONField(_("match"), default=dict, blank=True)
    child_run = models.ForeignKey(
        "automate.WorkflowRun",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="parent_waits",
    )
    #: The outbox item due at the deadline (a delay, or a wait's timeout).
    timer = models.ForeignKey(
        "automate_core.OutboxItem",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="timer_of",
    )
    #: The outbox item that ended the wait and resumes the run.
    resolved_by = models.ForeignKey(
        "automate_core.OutboxItem",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="resolved_waits",
    )
    event = models.JSONField(_("matched event"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"))
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)

    class Meta:
        verbose_name = _("run wait")
        verbose_name_plural = _("run waits")
        ordering = ["id"]
        indexes = [
            # An incoming event looks its waiting runs up by this key, once: the key
            # leads (it hashes the connection and the event type too), so a batch's
            # ``match_key IN (...)`` is one probe per key whatever the statistics say,
            # never a scan of every wait of that connection and type filtered by key.
            models.Index(
                fields=["match_key"],
                condition=Q(status="waiting", kind="event"),
                name="automate_wait_match",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} wait of run {self.run_id} ({self.status})"  # type: ignore[attr-defined]
