"""Admin for LLM profiles (validated config, secret references) and usage with daily totals."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from automate_llm.models import LLMProfile, LLMUsage
from automate_llm.registry import providers

#: Rows of the per-profile, per-day totals table shown above the usage list.
MAX_TOTAL_ROWS = 60


def _provider_choices() -> list[tuple[str, str]]:
    return [(cls.key, f"{cls.get_display_name()} ({cls.key})") for cls in providers()]


class LLMProfileForm(forms.ModelForm):
    provider_key = forms.ChoiceField(label=_("provider"), choices=_provider_choices)

    class Meta:
        model = LLMProfile
        fields = ["key", "name", "provider_key", "enabled", "config", "rate_limit"]
        help_texts = {
            "config": _(
                'The provider\'s settings as JSON, e.g. {"api_key": "secret://OPENAI_API_KEY", '
                '"model": "gpt-4o-mini"}. API keys are secret:// references, never values.'
            )
        }


@admin.register(LLMProfile)
class LLMProfileAdmin(admin.ModelAdmin):
    form = LLMProfileForm
    list_display = ["key", "name", "provider_key", "enabled", "rate_limit", "updated_at"]
    list_filter = ["enabled", "provider_key"]
    search_fields = ["key", "name", "provider_key"]
    readonly_fields = ["created_at", "updated_at"]


def daily_totals(queryset: Any) -> list[dict[str, Any]]:
    """Calls, tokens in/out, errors and latency per profile and day, newest first."""
    return list(
        queryset.order_by()
        .annotate(day=TruncDate("created_at"))
        .values("day", "profile_key")
        .annotate(
            calls=Count("id"),
            errors=Count("id", filter=Q(status=LLMUsage.Status.ERROR)),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            latency_ms=Sum("latency_ms"),
        )
        .order_by("-day", "profile_key")[:MAX_TOTAL_ROWS]
    )


@admin.register(LLMUsage)
class LLMUsageAdmin(admin.ModelAdmin):
    """Read-only: rows are written by calls, never by hand."""

    change_list_template = "admin/automate_llm/llmusage/change_list.html"
    list_display = [
        "created_at",
        "profile_key",
        "provider_key",
        "model",
        "input_tokens",
        "output_tokens",
        "latency_ms",
        "status",
        "error_code",
        "trace_id",
    ]
    list_filter = ["status", "profile_key", "provider_key", "created_at"]
    search_fields = ["trace_id", "profile_key", "model"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> Any:
        response = super().changelist_view(request, extra_context)
        if isinstance(response, TemplateResponse) and response.context_data is not None:
            changelist = response.context_data.get("cl")
            if changelist is not None:
                response.context_data["daily_totals"] = daily_totals(changelist.queryset)
        return response
