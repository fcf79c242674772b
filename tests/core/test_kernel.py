"""AutomateError, ProviderContext, tracing and the outbox admin."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from django.contrib.auth.models import User

from automate_core.models import OutboxItem, OutboxStatus, Secret
from automate_core.providers.base import ProviderContext
from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_core.secrets import SecretResolver, SecretValue
from automate_core.tracing import TraceIdFilter, get_trace_id, trace


def test_error__retryable_defaults_follow_the_code():
    assert AutomateError(ErrorCodes.RATE_LIMITED, "slow down").retryable is True
    assert AutomateError(ErrorCodes.TIMEOUT, "t").retryable is True
    assert AutomateError(ErrorCodes.INVALID_ARGUMENT, "bad").retryable is False
    assert AutomateError("unavailable", "down", retryable=False).retryable is False


def test_error__str_repr_and_dict():
    error = AutomateError(ErrorCodes.NOT_FOUND, "no issue", provider="jira", details={"k": 1})
    assert str(error) == "[jira:not_found] no issue"
    assert "code='not_found'" in repr(error)
    assert error.as_dict() == {
        "code": "not_found",
        "message": "no issue",
        "provider": "jira",
        "retryable": False,
        "details": {"k": 1},
    }


def test_error__unknown_code_is_refused():
    with pytest.raises(ValueError, match="not_a_code"):
        AutomateError("not_a_code", "x")


def test_provider_context__is_frozen_and_resolves_through_its_resolver():
    class Backend:
        def get(self, name):
            return {"token": "abc123xyz"}.get(name)

    ctx = ProviderContext(trace_id="t1", secrets=SecretResolver([Backend()]))
    value = ctx.resolve_secret("secret://token")
    assert value == "abc123xyz" and isinstance(value, SecretValue)
    assert "abc123xyz" not in repr(value)
    assert ctx.resolve_secret("plain") == "plain"
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.trace_id = "other"  # type: ignore[misc]


def test_tracing__trace_binds_and_restores_and_filter_sets_record_field():
    assert get_trace_id() is None
    record = logging.LogRecord("automate", logging.INFO, __file__, 1, "m", (), None)
    with trace("abc") as trace_id:
        assert trace_id == "abc" == get_trace_id()
        TraceIdFilter().filter(record)
    assert get_trace_id() is None
    assert record.trace_id == "abc"
    outside = logging.LogRecord("automate", logging.INFO, __file__, 1, "m", (), None)
    TraceIdFilter().filter(outside)
    assert outside.trace_id == "-"


@pytest.mark.django_db
def test_outbox_admin__lists_filters_and_replays_dead_items(client):
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    dead = OutboxItem.objects.create(
        connector_key="github", trace_id="t-dead", status=OutboxStatus.DEAD, payload={"a": 1}
    )
    OutboxItem.objects.create(connector_key="github", trace_id="t-done", status=OutboxStatus.DONE)
    page = client.get("/admin/automate_core/outboxitem/?status__exact=dead")
    assert page.status_code == 200
    assert b"t-dead" in page.content and b"t-done" not in page.content
    response = client.post(
        "/admin/automate_core/outboxitem/",
        {"action": "replay_items", "_selected_action": [dead.pk]},
    )
    assert response.status_code == 302
    dead.refresh_from_db()
    assert dead.status == OutboxStatus.PENDING and dead.attempts == 0
    assert client.get(f"/admin/automate_core/outboxitem/{dead.pk}/change/").status_code == 200


@pytest.mark.django_db
def test_secret_admin__value_is_encrypted_and_never_shown(client):
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    response = client.post(
        "/admin/automate_core/secret/add/",
        {"name": "jira-token", "description": "", "value": "very-secret-token"},
    )
    assert response.status_code == 302
    secret = Secret.objects.get(name="jira-token")
    assert "very-secret-token" not in secret.ciphertext
    assert secret.get_value() == "very-secret-token"
    page = client.get(f"/admin/automate_core/secret/{secret.pk}/change/")
    assert b"very-secret-token" not in page.content
    assert b"secret://jira-token" in client.get("/admin/automate_core/secret/").content
