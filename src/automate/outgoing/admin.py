"""Admin for outgoing webhooks: endpoints (delivery log, "send test event", "rotate
secret"), messages ("replay message") and delivery attempts (read only).

A signing secret is shown once, on the page that answers its creation or rotation (never
through the messages framework, which would keep it in the session), and never again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from automate.conf import settings as app_settings
from automate.outgoing.api import replay_message, send_test_event
from automate.outgoing.models import DeliveryAttempt, OutgoingMessage, WebhookEndpoint

#: Attempts listed on an endpoint's page (the full log is the filtered attempt list).
LOG_ROWS = 25


def secret_page(
    request: HttpRequest, pairs: list[tuple[WebhookEndpoint, str]], continue_url: str
) -> HttpResponse:
    """The one page that shows new secrets; never cached."""
    overlap = timedelta(seconds=app_settings.OUTGOING_WEBHOOK_SECRET_OVERLAP_SECONDS)
    response = TemplateResponse(
        request,
        "admin/automate/webhookendpoint/secret_once.html",
        {
            "secrets": pairs,
            "continue_url": continue_url,
            "overlap": overlap if overlap and len(pairs) else None,
            "title": _("Signing secret"),
            **admin.site.each_context(request),
        },
    )
    add_never_cache_headers(response)
    return response


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(label=_("URL"), max_length=2000, assume_scheme="https")

    class Meta:
        model = WebhookEndpoint
        fields = [
            "owner",
            "url",
            "description",
            "event_types",
            "enabled",
            "rate_limit",
            "ordered",
        ]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["url", "owner", "enabled", "event_types", "failing_since", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["url", "owner", "description"]
    fields = [
        "owner",
        "url",
        "description",
        "event_types",
        "enabled",
        "rate_limit",
        "ordered",
        "disabled_reason",
        "failing_since",
        "secrets_display",
        "delivery_log",
    ]
    readonly_fields = ["disabled_reason", "failing_since", "secrets_display", "delivery_log"]
    actions = ["send_test_event", "rotate_secret", "enable_endpoints", "disable_endpoints"]

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool):
        super().save_model(request, obj, form, change)
        if not change:
            request._automate_new_secret = obj.rotate_secret()  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue=None):
        secret = getattr(request, "_automate_new_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        url = reverse("admin:automate_webhookendpoint_change", args=[obj.pk])
        return secret_page(request, [(obj, secret)], url)

    @admin.display(description=_("signing secrets"))
    def secrets_display(self, obj: WebhookEndpoint) -> str:
        if not obj.pk:
            return str(_("A secret is generated when the endpoint is saved, and shown once."))
        rows = [(s.created_at, s.expires_at or _("until rotated")) for s in obj.active_secrets()]
        if not rows:
            return str(_("none active: rotate to create one"))
        return format_html_join("", "<div>created {}, signs {}</div>", ((c, e) for c, e in rows))

    @admin.display(description=_("delivery log"))
    def delivery_log(self, obj: WebhookEndpoint) -> str:
        if not obj.pk:
            return "-"
        attempts = obj.attempts.select_related("message")[:LOG_ROWS]
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>#{}</td><td>{}</td><td>{} ms</td>"
            "<td>{}</td></tr>",
            (
                (
                    a.created_at,
                    a.message.event_type,
                    a.message.uid,
                    a.attempt,
                    a.status_code or a.error_code,
                    a.duration_ms,
                    a.next_attempt_at or "",
                )
                for a in attempts
            ),
        )
        full = (
            reverse("admin:automate_deliveryattempt_changelist") + f"?endpoint__id__exact={obj.pk}"
        )
        return format_html(
            "<table><tr><th>at</th><th>event</th><th>webhook-id</th><th>attempt</th>"
            "<th>result</th><th>took</th><th>next attempt</th></tr>{}</table>"
            '<p><a href="{}">{}</a></p>',
            body,
            full,
            _("All attempts"),
        )

    @admin.action(description=_("Send a test event"), permissions=["change"])
    def send_test_event(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = 0
        for endpoint in queryset:
            send_test_event(endpoint)
            count += 1
        self.message_user(
            request,
            ngettext("%d test event queued.", "%d test events queued.", count) % count,
            messages.SUCCESS,
        )

    @admin.action(description=_("Rotate the signing secret"), permissions=["change"])
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        pairs = [(endpoint, endpoint.rotate_secret()) for endpoint in queryset]
        return secret_page(request, pairs, reverse("admin:automate_webhookendpoint_changelist"))

    @admin.action(description=_("Enable selected endpoints"), permissions=["change"])
    def enable_endpoints(self, request: HttpRequest, queryset: QuerySet) -> None:
        queryset.update(enabled=True, disabled_reason="", failing_since=None)

    @admin.action(description=_("Disable selected endpoints"), permissions=["change"])
    def disable_endpoints(self, request: HttpRequest, queryset: QuerySet) -> None:
        queryset.update(enabled=False, disabled_reason="disabled by an operator")


@admin.register(OutgoingMessage)
class OutgoingMessageAdmin(admin.ModelAdmin):
    list_display = ["uid", "event_type", "owner", "key", "created_at"]
    list_filter = ["event_type"]
    search_fields = ["uid", "event_type", "owner", "key"]
    readonly_fields = ["uid", "owner", "event_type", "payload", "key", "created_at"]
    actions = ["replay_messages"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # sent by the project's code (send_webhook), never typed in

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(
        description=_("Replay: send again to every matching endpoint"), permissions=["replay"]
    )
    def replay_messages(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = sum(replay_message(message) for message in queryset)
        self.message_user(
            request,
            ngettext("%d delivery queued.", "%d deliveries queued.", count) % count,
            messages.SUCCESS,
        )

    def has_replay_permission(self, request: HttpRequest) -> bool:
        """Replaying sends requests: it takes the right to change endpoints."""
        return request.user.has_perm("automate.change_webhookendpoint")


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "endpoint",
        "message",
        "attempt",
        "status_code",
        "error_code",
        "duration_ms",
        "next_attempt_at",
    ]
    list_filter = ["error_code", "status_code"]
    search_fields = ["message__uid", "message__event_type", "endpoint__url"]
    list_select_related = ["endpoint", "message"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
