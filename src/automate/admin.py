"""Admin for the ``automate`` app."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from automate import dispatch
from automate.flow.tree import run_tree
from automate.models import (
    FINISHED_RUN_STATUSES,
    ConnectionProfile,
    RunStatus,
    Schedule,
    Workflow,
    WorkflowRun,
    WorkflowStep,
)
from automate.services import WorkflowService, parse_trigger
from automate_core.providers.errors import AutomateError
from automate_core.redaction import redact_data


class ConnectionProfileForm(forms.ModelForm):
    """Secrets are write-only: new ones are added, existing ones only listed or removed."""

    new_webhook_secret = forms.CharField(
        label=_("Add a webhook secret"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_(
            "A secret:// reference, or the secret itself (stored encrypted, never shown "
            "again). It becomes the newest; older ones keep working until removed."
        ),
    )
    remove_webhook_secrets = forms.MultipleChoiceField(
        label=_("Remove webhook secrets"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = ConnectionProfile
        fields = ["key", "connector_key", "name", "enabled", "config"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        remove = self.fields["remove_webhook_secrets"]
        assert isinstance(remove, forms.MultipleChoiceField)
        remove.choices = [
            (str(i), label) for i, label in enumerate(self.instance.describe_webhook_secrets())
        ]

    def clean(self):
        cleaned = super().clean()
        for index in sorted(
            (int(i) for i in cleaned.get("remove_webhook_secrets", [])), reverse=True
        ):
            self.instance.remove_webhook_secret(index)
        if cleaned.get("new_webhook_secret"):
            self.instance.add_webhook_secret(cleaned["new_webhook_secret"])
        return cleaned


@admin.register(ConnectionProfile)
class ConnectionProfileAdmin(admin.ModelAdmin):
    form = ConnectionProfileForm
    list_display = ["key", "connector_key", "name", "enabled", "secret_count", "updated_at"]
    list_filter = ["enabled", "connector_key"]
    search_fields = ["key", "name", "connector_key"]
    readonly_fields = ["created_at", "updated_at"]

    @admin.display(description=_("webhook secrets"))
    def secret_count(self, obj: ConnectionProfile) -> int:
        return len(obj.webhook_secrets)


# -- Workflows ---------------------------------------------------------------------------


class WorkflowForm(forms.ModelForm):
    """Steps are edited as JSON and saved through WorkflowService: validated as a whole,
    and a change of steps becomes a new version."""

    steps = forms.JSONField(
        label=_("Steps"),
        widget=forms.Textarea(attrs={"rows": 16, "cols": 100, "style": "font-family: monospace"}),
        help_text=_(
            'A list of {"name", "type", "config", "retry"} objects. Saving changed steps '
            "creates a new version; runs already started keep theirs."
        ),
    )

    trigger_schedule = forms.JSONField(
        label=_("Schedule"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 100, "style": "font-family: monospace"}),
        help_text=_(
            'Instead of a trigger connector: {"schedule": "0 9 * * 1-5", "timezone": '
            '"Europe/Paris"} or {"every": 30} (seconds), optionally with "catch_up": '
            '"latest", "none" or "all".'
        ),
    )

    class Meta:
        model = Workflow
        fields = [
            "name",
            "key",
            "description",
            "enabled",
            "trigger_connector",
            "trigger_event_types",
            "trigger_schedule",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["key"].required = False
        self.fields["key"].help_text = _("Left empty: made from the name.")
        if self.instance.pk:
            self.fields["key"].disabled = True
            self.initial["steps"] = [_step_dict(s) for s in self.instance.current_steps()]
            schedule = Schedule.objects.filter(workflow=self.instance).first()
            if schedule is not None:
                self.initial["trigger_schedule"] = schedule.spec().as_trigger()

    def clean(self):
        cleaned = super().clean()
        try:
            connector = cleaned.get("trigger_connector") or ""
            events = cleaned.get("trigger_event_types") or []
            schedule = cleaned.get("trigger_schedule")
            cleaned["trigger"] = None
            if schedule and connector:
                raise forms.ValidationError(_("Give a trigger connector or a schedule, not both."))
            if schedule:
                if not isinstance(schedule, dict):
                    raise forms.ValidationError(_("The schedule must be a JSON object."))
                cleaned["trigger"] = schedule
                parse_trigger(schedule)
            elif connector:
                cleaned["trigger"] = {"connector": connector, "events": events}
                parse_trigger(cleaned["trigger"])
            if "steps" in cleaned:
                WorkflowService().validate_steps(cleaned["steps"])
        except AutomateError as exc:
            raise forms.ValidationError(exc.message) from None
        return cleaned


def _step_dict(step: WorkflowStep) -> dict:
    return {
        "name": step.name,
        "type": step.type,
        "config": step.config,
        "retry": {
            "max_attempts": step.max_attempts,
            "backoff_seconds": step.backoff_seconds,
            "max_backoff_seconds": step.max_backoff_seconds,
            "timeout_seconds": step.timeout_seconds,
        },
    }


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    form = WorkflowForm
    list_display = ["name", "key", "enabled", "trigger", "version", "updated_at"]
    list_select_related = ["schedule"]
    list_filter = ["enabled", "trigger_connector"]
    search_fields = ["name", "key"]
    readonly_fields = ["version", "created_at", "updated_at"]
    actions = ["enable_workflows", "disable_workflows"]

    @admin.display(description=_("trigger"))
    def trigger(self, obj: Workflow) -> str:
        schedule = getattr(obj, "schedule", None)
        if schedule is not None:
            return schedule.spec().describe()
        if not obj.trigger_connector:
            return str(_("manual"))
        events = ", ".join(obj.trigger_event_types) or "*"
        return f"{obj.trigger_connector}: {events}"

    def save_model(self, request, obj: Workflow, form: WorkflowForm, change: bool) -> None:
        service = WorkflowService()
        data = form.cleaned_data
        try:
            if not change:
                saved = service.create_workflow(
                    name=obj.name,
                    steps=data["steps"],
                    trigger=data["trigger"],
                    key=obj.key or None,
                    description=obj.description,
                    enabled=obj.enabled,
                )
            else:
                old_steps = [_step_dict(s) for s in Workflow.objects.get(pk=obj.pk).current_steps()]
                saved = service.update_workflow(
                    obj,
                    name=obj.name,
                    steps=data["steps"] if data["steps"] != old_steps else None,
                    trigger=data["trigger"],
                    description=obj.description,
                    enabled=obj.enabled,
                )
        except AutomateError as exc:
            # Only a key taken meanwhile gets here: everything else failed in clean().
            messages.error(request, exc.message)
            raise
        for field in ("id", "key", "version", "created_at", "updated_at"):
            setattr(obj, field, getattr(saved, field))

    # Each action names the permission it needs: Django then hides it from, and refuses
    # it to, a user without it (a view-only staff member sees no action at all).
    @admin.action(description=_("Enable selected workflows"), permissions=["change"])
    def enable_workflows(self, request, queryset) -> None:
        # Through the service, so a schedule starts again from its next tick.
        for workflow in queryset:
            WorkflowService().enable(workflow)

    @admin.action(description=_("Disable selected workflows"), permissions=["change"])
    def disable_workflows(self, request, queryset) -> None:
        for workflow in queryset:
            WorkflowService().disable(workflow)


@admin.register(WorkflowRun)
class WorkflowRunAdmin(admin.ModelAdmin):
    """Runs are records: read-only, shown as a timeline, replayable when dead."""

    list_display = [
        "id",
        "workflow",
        "workflow_version",
        "status",
        "trace_id",
        "created_at",
        "took",
    ]
    list_filter = ["status", "workflow"]
    search_fields = ["=trace_id", "=outbox_item__external_id"]
    list_select_related = ["workflow"]
    date_hierarchy = "created_at"
    actions = ["replay_runs", "cancel_runs"]
    fields = [
        "workflow",
        "workflow_version",
        "status",
        "trace_id",
        "outbox_item",
        "parent_run",
        "replay_count",
        "created_at",
        "started_at",
        "finished_at",
        "took",
        "error_display",
        "event_display",
        "tree",
        "timeline",
    ]
    readonly_fields = [f for f in fields if isinstance(f, str)]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description=_("duration"))
    def took(self, obj: WorkflowRun) -> str:
        return _format_duration(obj.duration)

    @admin.display(description=_("error"))
    def error_display(self, obj: WorkflowRun) -> str:
        return _pre(obj.error) if obj.error else "-"

    @admin.display(description=_("event"))
    def event_display(self, obj: WorkflowRun) -> str:
        return _pre(obj.event)

    @admin.display(description=_("tree"))
    def tree(self, obj: WorkflowRun) -> str:
        """Branches taken, each iteration, waits with their deadline or match, children."""
        return format_html('<div class="automate-tree">{}</div>', _tree_html(run_tree(obj)))

    @admin.display(description=_("steps"))
    def timeline(self, obj: WorkflowRun) -> str:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    sr.step.position + 1,
                    sr.step.name,
                    sr.attempt,
                    sr.get_status_display(),
                    sr.started_at.isoformat(timespec="milliseconds") if sr.started_at else "-",
                    _format_duration(sr.duration),
                    _pre(sr.input),
                    _pre(sr.error) if sr.error else _pre(sr.output),
                )
                for sr in obj.step_runs.select_related("step").order_by("id")
            ),
        )
        header = format_html(
            "<tr><th>#</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>"
            "<th>{}</th><th>{}</th></tr>",
            _("step"), _("attempt"), _("status"), _("started"), _("took"),
            _("input"), _("output / error"),
        )  # fmt: skip
        return format_html('<table class="automate-timeline">{}{}</table>', header, rows)

    def has_replay_permission(self, request) -> bool:
        """Replaying starts runs: ``automate.add_workflowrun``, as in the REST API. (Not
        ``has_add_permission``, which stays False: runs are never added by hand.)"""
        return request.user.has_perm("automate.add_workflowrun")

    @admin.action(description=_("Replay selected dead runs"), permissions=["replay"])
    def replay_runs(self, request, queryset) -> None:
        carriers = queryset.filter(status=RunStatus.DEAD).values_list(
            "resume_item_id", "outbox_item_id"
        )
        ids = sorted({resumed or item for resumed, item in carriers if resumed or item})
        count = dispatch.replay(ids) if ids else 0
        messages.info(request, _("Replayed %(count)d event(s).") % {"count": count})

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("automate.change_workflowrun")

    @admin.action(description=_("Cancel selected runs"), permissions=["cancel"])
    def cancel_runs(self, request, queryset) -> None:
        service = WorkflowService()
        unfinished = queryset.exclude(status__in=FINISHED_RUN_STATUSES)
        count = len([service.cancel_run(run) for run in unfinished])
        messages.info(request, _("Cancelled %(count)d run(s).") % {"count": count})


def _tree_html(nodes: list[dict]) -> str:
    """Nested lists: one item per step that ran, its nested steps under it."""
    items = []
    for node in nodes:
        notes = []
        if "took" in node:
            notes.append(format_html("took {}", node["took"]))
        wait = node.get("wait")
        if wait and wait["status"] == "waiting":
            if wait["kind"] == "event":
                notes.append(
                    format_html(
                        "waiting for {} {} matching {}",
                        wait["connector"],
                        wait["event"],
                        json.dumps(wait["match"], sort_keys=True),
                    )
                )
            else:
                notes.append(format_html("waiting ({}) until {}", wait["kind"], wait["due_at"]))
        elif wait:
            notes.append(format_html("wait {}", wait["status"]))
        child = node.get("child")
        if child:
            url = reverse("admin:automate_workflowrun_change", args=[child["id"]])
            notes.append(
                format_html(
                    'child run <a href="{}">#{}</a> ({}, {})',
                    url,
                    child["id"],
                    child["workflow"],
                    child["status"],
                )
            )
        inner = _tree_html(node.get("steps", []))
        for iteration in node.get("iterations", []):
            inner += format_html(
                "<li>{} {}{}</li>",
                _("iteration"),
                iteration["index"],
                _tree_html(iteration["steps"]),
            )
        items.append(
            format_html(
                "<li><strong>{}</strong> ({}) {}{} {}{}</li>",
                node["step"],
                node["type"],
                node["status"],
                f" x{node['attempts']}" if node["attempts"] > 1 else "",
                format_html_join(" · ", "{}", ((n,) for n in notes)),
                format_html("<ul>{}</ul>", inner) if inner else "",
            )
        )
    return format_html("<ul>{}</ul>", format_html_join("", "{}", ((i,) for i in items)))


def _pre(value) -> str:
    text = json.dumps(redact_data(value), indent=2, sort_keys=True, default=str)
    return format_html('<pre style="margin:0; white-space:pre-wrap">{}</pre>', text)


def _format_duration(value) -> str:
    if value is None:
        return "-"
    seconds = value.total_seconds()
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


# The MCP admin registers itself on import.
# The "Automate overview" page registers itself on import.
from automate import dashboard as _dashboard  # noqa: E402,F401
from automate.mcp import admin as _mcp_admin  # noqa: E402,F401
from automate.outgoing import admin as _outgoing_admin  # noqa: E402,F401
