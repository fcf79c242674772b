"""The rows behind schedule triggers (imported by :mod:`automate.models`)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from automate.schedules.spec import ScheduleSpec


class CatchUp(models.TextChoices):
    LATEST = "latest", _("One run for the latest missed tick")
    NONE = "none", _("Skip missed ticks")
    ALL = "all", _("One run per missed tick (bounded)")


class Schedule(models.Model):
    """The schedule trigger of one workflow, and when it is next due.

    ``next_tick_at`` is what a poll reads (an index serves ``next_tick_at <= now``); it
    is empty while the workflow is disabled. Written by :mod:`automate.services`, moved on
    by :mod:`automate.schedules.fire`.
    """

    workflow = models.OneToOneField(
        "automate.Workflow", on_delete=models.CASCADE, related_name="schedule"
    )
    cron = models.CharField(_("cron expression"), max_length=200, blank=True, default="")
    every_seconds = models.PositiveIntegerField(_("every (seconds)"), null=True, blank=True)
    timezone = models.CharField(_("time zone"), max_length=64, default="UTC")
    catch_up = models.CharField(
        _("catch up"), max_length=10, choices=CatchUp.choices, default=CatchUp.LATEST
    )
    next_tick_at = models.DateTimeField(_("next tick at"), null=True, blank=True)
    last_tick_at = models.DateTimeField(_("last tick fired"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("schedule")
        verbose_name_plural = _("schedules")
        indexes = [
            models.Index(
                fields=["next_tick_at"],
                condition=Q(next_tick_at__isnull=False),
                name="automate_schedule_due",
            )
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id}: {self.spec().describe()}"

    def spec(self) -> ScheduleSpec:
        return ScheduleSpec(
            cron=self.cron,
            every=self.every_seconds,
            timezone=self.timezone,
            catch_up=self.catch_up,
        )


class ScheduleTick(models.Model):
    """One fired tick: unique on (workflow, scheduled_for), so it fires once however many
    workers see it due at the same time."""

    workflow = models.ForeignKey(
        "automate.Workflow", on_delete=models.CASCADE, related_name="schedule_ticks"
    )
    scheduled_for = models.DateTimeField(_("scheduled for"))
    outbox_item = models.ForeignKey(
        "automate_core.OutboxItem",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(_("fired at"), default=timezone.now)

    class Meta:
        verbose_name = _("schedule tick")
        verbose_name_plural = _("schedule ticks")
        ordering = ["-scheduled_for"]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "scheduled_for"], name="automate_schedule_tick_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} @ {self.scheduled_for.isoformat()}"
