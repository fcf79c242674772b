"""Admin: profiles with validated config, usage with totals per profile and day."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from automate_llm.models import LLMProfile, LLMUsage

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    return client


def usage(profile_key, day, input_tokens, output_tokens, status="ok"):
    row = LLMUsage.objects.create(
        profile_key=profile_key,
        provider_key="offline",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        latency_ms=5,
        status=status,
    )
    LLMUsage.objects.filter(pk=row.pk).update(created_at=datetime(2026, 1, day, 12, tzinfo=UTC))


def test_usage_admin__shows_totals_per_profile_and_day(admin_client):
    usage("alpha", 1, 10, 2)
    usage("alpha", 1, 5, 1, status="error")
    usage("alpha", 2, 7, 7)
    usage("beta", 1, 100, 50)
    response = admin_client.get(reverse("admin:automate_llm_llmusage_changelist"))
    assert response.status_code == 200
    totals = {
        (row["profile_key"], row["day"].isoformat()): row
        for row in response.context["daily_totals"]
    }
    alpha_1 = totals[("alpha", "2026-01-01")]
    assert (alpha_1["calls"], alpha_1["errors"]) == (2, 1)
    assert (alpha_1["input_tokens"], alpha_1["output_tokens"]) == (15, 3)
    assert totals[("alpha", "2026-01-02")]["input_tokens"] == 7
    assert totals[("beta", "2026-01-01")]["output_tokens"] == 50
    assert b'id="llm-daily-totals"' in response.content
    assert b'data-profile="beta" data-day="2026-01-01"' in response.content


def test_usage_admin__totals_follow_the_list_filters(admin_client):
    usage("alpha", 1, 10, 2)
    usage("beta", 1, 100, 50)
    url = reverse("admin:automate_llm_llmusage_changelist") + "?profile_key=beta"
    response = admin_client.get(url)
    assert [row["profile_key"] for row in response.context["daily_totals"]] == ["beta"]


def test_usage_admin__rows_are_read_only(admin_client):
    response = admin_client.get(reverse("admin:automate_llm_llmusage_add"))
    assert response.status_code == 403


def test_profile_admin__refuses_a_plain_api_key_and_accepts_a_reference(admin_client):
    url = reverse("admin:automate_llm_llmprofile_add")
    form = {
        "key": "oa",
        "name": "OpenAI",
        "provider_key": "openai",
        "enabled": "on",
        "config": '{"api_key": "sk-plain-value", "model": "gpt-4o-mini"}',
        "rate_limit": "60/min",
    }
    response = admin_client.post(url, form)
    assert response.status_code == 200
    assert "secret://" in response.content.decode()
    assert not LLMProfile.objects.exists()
    form["config"] = '{"api_key": "secret://OPENAI_API_KEY", "model": "gpt-4o-mini"}'
    response = admin_client.post(url, form)
    assert response.status_code == 302
    profile = LLMProfile.objects.get()
    assert profile.config["api_key"] == "secret://OPENAI_API_KEY"
    assert profile.rate_limit == "60/min"


def test_profile_admin__offers_the_registered_providers(admin_client):
    response = admin_client.get(reverse("admin:automate_llm_llmprofile_add"))
    content = response.content.decode()
    for key in ("openai", "anthropic", "offline", "my_llm"):
        assert f'value="{key}"' in content
