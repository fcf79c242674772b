"""Admin for MCP servers: write-only API key, tools inline, "Sync tools" action and button."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from automate.mcp.models import MCPServer, MCPTool
from automate_core.providers.errors import AutomateError


class MCPServerForm(forms.ModelForm):
    """The API key is write-only: it can be replaced or cleared, never read back."""

    new_api_key = forms.CharField(
        label=_("API key"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_(
            "A secret:// reference, or the key itself (stored encrypted, never shown again). "
            "Leave empty to keep the current one."
        ),
    )
    clear_api_key = forms.BooleanField(label=_("Remove the API key"), required=False)

    class Meta:
        model = MCPServer
        fields = ["name", "key", "url", "transport", "headers", "timeout", "enabled"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("clear_api_key"):
            self.instance.api_key = ""
        if cleaned.get("new_api_key"):
            self.instance.api_key = cleaned["new_api_key"]
        return cleaned


class MCPToolInline(admin.TabularInline):
    model = MCPTool
    extra = 0
    can_delete = False
    fields = (
        "name",
        "enabled",
        "description",
        "annotations",
        "schema_hash_short",
        "discovered_at",
        "updated_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("schema"))
    def schema_hash_short(self, obj: MCPTool) -> str:
        return obj.schema_hash[:12]


@admin.register(MCPServer)
class MCPServerAdmin(admin.ModelAdmin):
    form = MCPServerForm
    change_form_template = "admin/automate/mcpserver/change_form.html"
    list_display = ["name", "key", "url", "enabled", "tool_count", "last_synced_at", "status"]
    list_filter = ["enabled", "transport"]
    search_fields = ["name", "key", "url"]
    readonly_fields = ["api_key_status", "status", "last_synced_at", "last_error"]
    inlines = [MCPToolInline]
    actions = ["sync_tools_action"]

    @admin.display(description=_("API key"))
    def api_key_status(self, obj: MCPServer) -> str:
        return obj.describe_api_key()

    @admin.display(description=_("tools"))
    def tool_count(self, obj: MCPServer) -> int:
        return obj.tools.filter(enabled=True).count()

    @admin.display(description=_("status"))
    def status(self, obj: MCPServer) -> str:
        if obj.last_error:
            return str(_("error"))
        if obj.last_synced_at is None:
            return str(_("never synced"))
        return str(_("ok"))

    def get_urls(self) -> list[Any]:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path(
                "<path:object_id>/sync/",
                self.admin_site.admin_view(self.sync_view),
                name=f"{prefix}_sync",
            ),
            *super().get_urls(),
        ]

    def _sync(self, request: HttpRequest, server: MCPServer) -> bool:
        try:
            result = server.sync_tools()
        except AutomateError as exc:
            self.message_user(
                request,
                _("%(server)s: sync failed: %(error)s") % {"server": server, "error": exc},
                messages.ERROR,
            )
            return False
        self.message_user(
            request,
            _("%(server)s: synced %(result)s") % {"server": server, "result": result},
            messages.SUCCESS,
        )
        return True

    @admin.action(description=_("Sync tools"))
    def sync_tools_action(self, request: HttpRequest, queryset: QuerySet[MCPServer]) -> None:
        for server in queryset:
            self._sync(request, server)

    def sync_view(self, request: HttpRequest, object_id: str) -> HttpResponseRedirect:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])  # type: ignore[return-value]
        server = get_object_or_404(MCPServer, pk=object_id)
        if not self.has_change_permission(request, server):
            raise PermissionDenied
        self._sync(request, server)
        change = f"admin:{self.opts.app_label}_{self.opts.model_name}_change"
        return HttpResponseRedirect(reverse(change, args=[server.pk]))
