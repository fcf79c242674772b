"""Admin for MCP servers: write-only API key, tools inline, "Sync tools" action and button.

A stdio server (``transport="stdio"``) runs a program declared in
``AUTOMATE["MCP_STDIO_SERVERS"]``: the admin cannot add one, and shows one read-only
except ``enabled`` (its command is shown, its environment by variable names only). An
admin who could type a command would run programs on the workers.
"""

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

from automate.mcp import stdio
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # stdio servers come from settings only: not a transport an admin can pick. (A
        # view-only user's form has neither field: every field is read-only for them.)
        if "transport" in self.fields:
            field = self.fields["transport"]
            field.choices = [c for c in field.choices if c[0] != MCPServer.Transport.STDIO]  # type: ignore[attr-defined]
        if "url" in self.fields:
            self.fields["url"].required = True

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("clear_api_key"):
            self.instance.api_key = ""
        if cleaned.get("new_api_key"):
            self.instance.api_key = cleaned["new_api_key"]
        return cleaned


class StdioServerForm(forms.ModelForm):
    """A stdio server's row: only ``enabled`` is editable (the rest follows settings)."""

    class Meta:
        model = MCPServer
        fields = ["enabled"]


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
    list_display = ["name", "key", "location", "enabled", "tool_count", "last_synced_at", "status"]
    list_filter = ["enabled", "transport"]
    search_fields = ["name", "key", "url"]
    readonly_fields = ["api_key_status", "status", "last_synced_at", "last_error"]
    inlines = [MCPToolInline]
    actions = ["sync_tools_action"]

    stdio_readonly_fields = [
        "name",
        "key",
        "transport",
        "command",
        "env_names",
        "timeout",
        "status",
        "last_synced_at",
        "last_error",
    ]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):  # type: ignore[no-untyped-def]
        if obj is not None and obj.is_stdio:
            kwargs["form"] = StdioServerForm
            kwargs["fields"] = ["enabled"]
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and obj.is_stdio:
            return ["enabled", *self.stdio_readonly_fields]
        return super().get_fields(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:  # type: ignore[override]
        if obj is not None and obj.is_stdio:
            return list(self.stdio_readonly_fields)
        return list(super().get_readonly_fields(request, obj))

    @admin.display(description=_("URL or command"))
    def location(self, obj: MCPServer) -> str:
        return f"stdio: {self._entry_label(obj.key)}" if obj.is_stdio else obj.url

    @admin.display(description=_("command"))
    def command(self, obj: MCPServer) -> str:
        return self._entry_label(obj.key, full=True)

    @admin.display(description=_("environment"))
    def env_names(self, obj: MCPServer) -> str:
        entry = stdio.entries().get(obj.key)
        env = entry.get("env") if isinstance(entry, dict) else None
        if not isinstance(env, dict) or not env:
            return str(_("none besides PATH, HOME and the like"))
        return ", ".join(sorted(str(name) for name in env))  # names only: values are secrets

    @staticmethod
    def _entry_label(key: str, *, full: bool = False) -> str:
        entry = stdio.entries().get(key)
        command = entry.get("command") if isinstance(entry, dict) else None
        if not isinstance(command, list | tuple) or not command:
            return str(_('missing from AUTOMATE["MCP_STDIO_SERVERS"]'))
        return " ".join(str(part) for part in command) if full else str(command[0])

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

    @admin.action(description=_("Sync tools"), permissions=["change"])
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
