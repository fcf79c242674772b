"""The admin's "Automate overview" page: is it keeping up, and what is failing since when?

Charts drawn as SVG on the server (no JavaScript, no CDN) over the last hour (one bar a
minute) or the last day (one bar per 15 minutes):

* events received (outbox rows, by ``created_at``, indexed);
* runs finished, and failures (failed step attempts) with dead-lettered runs (runs by the
  ``finished_at`` index, steps by theirs);
* queue lag p50/p95 (event stored -> run started) over the latest 5,000 finished runs;
* the slowest steps, and the connectors with the most 401s (from
  :class:`~automate.models.WebhookRefusalMinute`, a per-minute aggregate: a refused
  request stores no outbox row).

Every count is grouped by minute in the database, so a query returns at most one row per
minute and bucket whatever the table holds. Each chart links to the filtered changelist.
Visible to staff with the view permission on workflow runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Max, Sum
from django.db.models.functions import TruncMinute
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from automate.models import (
    Overview,
    RunStatus,
    StepRun,
    StepStatus,
    WebhookRefusalMinute,
    WorkflowRun,
)
from automate_core.outbox.models import OutboxItem

__all__ = ["OverviewAdmin", "collect", "svg_bars", "svg_lines"]

WINDOWS = {"hour": (timedelta(hours=1), 60), "day": (timedelta(days=1), 15 * 60)}
LAG_SAMPLE = 5000


# -- Data ------------------------------------------------------------------------------


@dataclass
class Window:
    name: str
    since: datetime
    until: datetime
    bucket_seconds: int

    @property
    def buckets(self) -> list[datetime]:
        count = math.ceil((self.until - self.since).total_seconds() / self.bucket_seconds)
        return [self.since + timedelta(seconds=i * self.bucket_seconds) for i in range(count)]

    def index(self, moment: datetime) -> int:
        return int((moment - self.since).total_seconds() // self.bucket_seconds)


def window(name: str, now: datetime | None = None) -> Window:
    span, bucket = WINDOWS.get(name, WINDOWS["hour"])
    now = now or timezone.now()
    until = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if bucket > 60:
        epoch = int(until.timestamp())
        until = until + timedelta(seconds=(-epoch) % bucket)
    return Window(name if name in WINDOWS else "hour", until - span, until, bucket)


def _per_bucket(win: Window, qs: Any, field: str) -> list[int]:
    """Counts of ``qs`` rows per bucket of ``field``: grouped by minute in the database."""
    values = [0] * len(win.buckets)
    rows = (
        qs.filter(**{f"{field}__gte": win.since, f"{field}__lt": win.until})
        .annotate(m=TruncMinute(field))
        .values("m")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        i = win.index(row["m"])
        if 0 <= i < len(values):
            values[i] += row["n"]
    return values


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def collect(name: str = "hour", now: datetime | None = None) -> dict[str, Any]:
    """Everything the page shows, for the window ``name`` ("hour" or "day")."""
    win = window(name, now)
    received = _per_bucket(win, OutboxItem.objects.all(), "created_at")
    finished = _per_bucket(
        win,
        WorkflowRun.objects.filter(status__in=[RunStatus.COMPLETED, RunStatus.FILTERED]),
        "finished_at",
    )
    dead = _per_bucket(win, WorkflowRun.objects.filter(status=RunStatus.DEAD), "finished_at")
    failed = _per_bucket(win, StepRun.objects.filter(status=StepStatus.FAILED), "finished_at")

    sample = (
        WorkflowRun.objects.filter(finished_at__gte=win.since, started_at__isnull=False)
        .order_by("-finished_at")
        .values_list("finished_at", "started_at", "outbox_item__created_at")[:LAG_SAMPLE]
    )
    lags: list[list[float]] = [[] for _ in win.buckets]
    for finished_at, started_at, created_at in sample:
        if finished_at is None or started_at is None or created_at is None:
            continue
        i = win.index(finished_at)
        if 0 <= i < len(lags):
            lags[i].append(max(0.0, (started_at - created_at).total_seconds()))
    all_lags = [lag for bucket in lags for lag in bucket]

    took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    slowest = list(
        StepRun.objects.filter(finished_at__gte=win.since, started_at__isnull=False)
        .values("step__name", "step__type", "run__workflow__key", "run__workflow_id")
        .annotate(avg=Avg(took), max=Max(took), n=Count("id"))
        .order_by("-avg")[:10]
    )
    refusals = list(
        WebhookRefusalMinute.objects.filter(minute__gte=win.since, status=401)
        .values("connector_key")
        .annotate(n=Sum("count"))
        .order_by("-n")[:10]
    )
    return {
        "window": win,
        "received": received,
        "finished": finished,
        "dead": dead,
        "failed": failed,
        "lag_p50": [_percentile(b, 0.5) for b in lags],
        "lag_p95": [_percentile(b, 0.95) for b in lags],
        "lag_overall": (_percentile(all_lags, 0.5), _percentile(all_lags, 0.95), len(all_lags)),
        "slowest": slowest,
        "refusals": refusals,
    }


# -- SVG -------------------------------------------------------------------------------

WIDTH, HEIGHT, PAD = 640, 160, 28


def _axis(peak: float, unit: str, labels: Sequence[str]) -> list[str]:
    parts = [
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH}" y2="{HEIGHT - PAD}" '
        'stroke="#999" stroke-width="1"/>',
        f'<text x="2" y="{PAD - 8}" font-size="11" fill="#666">{escape(_fmt(peak))}{unit}</text>',
    ]
    if labels:
        parts.append(
            f'<text x="{PAD}" y="{HEIGHT - 8}" font-size="11" fill="#666">{escape(labels[0])}'
            "</text>"
        )
        parts.append(
            f'<text x="{WIDTH}" y="{HEIGHT - 8}" font-size="11" fill="#666" '
            f'text-anchor="end">{escape(labels[-1])}</text>'
        )
    return parts


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.2f}"


def svg_bars(
    series: Sequence[tuple[str, Sequence[float], str]],
    labels: Sequence[str],
    title: str,
    unit: str = "",
) -> SafeString:
    """Stacked bars, one per bucket: ``series`` is ``(name, values, colour)``."""
    count = max((len(values) for _, values, _ in series), default=0)
    totals = [float(sum(values[i] for _, values, _ in series)) for i in range(count)]
    peak = max(totals, default=0) or 1
    plot_w, plot_h = WIDTH - PAD, HEIGHT - 2 * PAD
    bar_w = plot_w / max(count, 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="automate-chart" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(count):
        y = float(HEIGHT - PAD)
        for name, values, colour in series:
            value = values[i]
            if not value:
                continue
            h = plot_h * value / peak
            y -= h
            parts.append(
                f'<rect class="bar" x="{PAD + i * bar_w:.1f}" y="{y:.1f}" '
                f'width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{escape(labels[i])} {escape(name)}: {escape(_fmt(value))}{unit}</title>"
                "</rect>"
            )
    parts += _axis(peak, unit, labels)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308  (every text part is escaped above)


def svg_lines(
    series: Sequence[tuple[str, Sequence[float], str]],
    labels: Sequence[str],
    title: str,
    unit: str = "",
) -> SafeString:
    """Lines, one point per bucket: ``series`` is ``(name, values, colour)``."""
    count = max((len(values) for _, values, _ in series), default=0)
    peak = max((max(values, default=0) for _, values, _ in series), default=0) or 1
    plot_w, plot_h = WIDTH - PAD, HEIGHT - 2 * PAD
    step = plot_w / max(count - 1, 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="automate-chart" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for name, values, colour in series:
        points = " ".join(
            f"{PAD + i * step:.1f},{HEIGHT - PAD - plot_h * v / peak:.1f}"
            for i, v in enumerate(values)
        )
        parts.append(
            f'<polyline class="line" fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{points}"><title>{escape(name)}</title></polyline>'
        )
    parts += _axis(peak, unit, labels)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308  (every text part is escaped above)


# -- The admin page --------------------------------------------------------------------


def _changelist(model: str, **filters: Any) -> str:
    url = reverse(f"admin:{model}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def _ms(value: timedelta | None) -> str:
    if value is None:
        return "-"
    seconds = value.total_seconds()
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _since(moment: datetime) -> dict[str, str]:
    """The changelist filter for rows made in the window: from its start on. (The date
    hierarchy's one day missed the window's rows after midnight.)"""
    return {"created_at__gte": timezone.localtime(moment).replace(microsecond=0).isoformat()}


@admin.register(Overview)
class OverviewAdmin(admin.ModelAdmin):
    """The overview as the changelist of a proxy model: listed under "Automate" in the
    admin index for whoever may view workflow runs."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return (
            request.user.is_active
            and request.user.is_staff
            and request.user.has_perm("automate.view_workflowrun")
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        name = request.GET.get("window", "hour")
        data = collect(name)
        win: Window = data["window"]
        fmt = "%H:%M" if win.name == "hour" else "%d %H:%M"
        local = [timezone.localtime(b).strftime(fmt) for b in win.buckets]
        bucket = "minute" if win.bucket_seconds == 60 else f"{win.bucket_seconds // 60} minutes"
        charts = [
            {
                "id": "events",
                "title": f"Events received per {bucket}",
                "svg": svg_bars([("events", data["received"], "#417690")], local, "Events"),
                "total": sum(data["received"]),
                "link": _changelist("automate_core_outboxitem", **_since(win.since)),
            },
            {
                "id": "runs",
                "title": f"Runs finished per {bucket}",
                "svg": svg_bars([("runs", data["finished"], "#2e7d32")], local, "Runs"),
                "total": sum(data["finished"]),
                "link": _changelist(
                    "automate_workflowrun", status__exact="completed", **_since(win.since)
                ),
            },
            {
                "id": "failures",
                "title": f"Failed step attempts and dead letters per {bucket}",
                "svg": svg_bars(
                    [
                        ("failed attempts", data["failed"], "#ef6c00"),
                        ("dead letters", data["dead"], "#b71c1c"),
                    ],
                    local,
                    "Failures",
                ),
                "total": sum(data["failed"]) + sum(data["dead"]),
                "link": _changelist(
                    "automate_workflowrun", status__exact="dead", **_since(win.since)
                ),
            },
            {
                "id": "lag",
                "title": "Queue lag p50 / p95 (event stored to run started)",
                "svg": svg_lines(
                    [("p50", data["lag_p50"], "#417690"), ("p95", data["lag_p95"], "#b71c1c")],
                    local,
                    "Queue lag",
                    unit=" s",
                ),
                "total": None,
                "link": _changelist("automate_workflowrun", **_since(win.since)),
            },
        ]
        slowest = [
            {
                **row,
                "avg": _ms(row["avg"]),
                "max": _ms(row["max"]),
                "link": _changelist(
                    "automate_workflowrun", workflow__id__exact=row["run__workflow_id"]
                ),
            }
            for row in data["slowest"]
        ]
        refusals = [
            {
                **row,
                "link": _changelist("automate_core_outboxitem", connector_key=row["connector_key"]),
            }
            for row in data["refusals"]
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Automate overview",
            "opts": self.model._meta,
            "window": win.name,
            "windows": list(WINDOWS),
            "charts": charts,
            "slowest": slowest,
            "refusals": refusals,
            "lag_overall": data["lag_overall"],
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/automate/overview.html", context)
