"""Admin for the outbox and the encrypted secrets."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from automate_core import redaction
from automate_core.models import OutboxItem, OutboxStatus, Secret
from automate_core.outbox import queue


@admin.register(OutboxItem)
class OutboxItemAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "connector_key",
        "event_type",
        "status",
        "attempts",
        "available_at",
        "created_at",
        "trace_id",
    ]
    list_filter = ["status", "connector_key", "event_type"]
    search_fields = ["=trace_id", "=external_id", "event_type"]
    date_hierarchy = "created_at"
    ordering = ["-id"]
    actions = ["replay_items"]
    readonly_fields = [
        "connector_key",
        "event_type",
        "external_id",
        "shown_payload",
        "headers",
        "trace_id",
        "status",
        "attempts",
        "available_at",
        "lease_expires_at",
        "leased_by",
        "last_error",
        "created_at",
        "updated_at",
        "completed_at",
    ]
    exclude = ["payload", "raw_body"]

    def has_add_permission(self, request) -> bool:
        # Events arrive through webhooks or the API, never typed in by hand.
        return False

    @admin.display(description=_("payload"))
    def shown_payload(self, obj: OutboxItem):
        if obj.payload is None and obj.raw_body is not None:
            return f"<{len(obj.raw_body)} bytes, not JSON>"
        return redaction.redact_data(obj.payload)

    @admin.action(description=_("Replay selected dead or failed items"), permissions=["change"])
    def replay_items(self, request, queryset) -> None:
        count = queue.replay(queryset.filter(status__in=[OutboxStatus.DEAD, OutboxStatus.FAILED]))
        self.message_user(
            request,
            ngettext("%d item sent back to the queue.", "%d items sent back to the queue.", count)
            % count,
            messages.SUCCESS,
        )


class SecretForm(forms.ModelForm):
    value = forms.CharField(
        label=_("Value"),
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text=_("Stored encrypted and never shown again. Leave empty to keep the current one."),
    )

    class Meta:
        model = Secret
        fields = ["name", "description"]

    def clean(self):
        cleaned = super().clean()
        if not self.instance.pk and not cleaned.get("value"):
            self.add_error("value", _("A new secret needs a value."))
        return cleaned

    def save(self, commit: bool = True) -> Secret:
        secret = super().save(commit=False)
        if self.cleaned_data.get("value"):
            secret.set_value(self.cleaned_data["value"])
        if commit:
            secret.save()
        return secret


@admin.register(Secret)
class SecretAdmin(admin.ModelAdmin):
    form = SecretForm
    list_display = ["name", "description", "reference", "updated_at"]
    search_fields = ["name", "description"]

    @admin.display(description=_("reference"))
    def reference(self, obj: Secret) -> str:
        return f"secret://{obj.name}"
