"""send_webhook: fan-out, transactions, idempotency keys, the workflow step."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import transaction

from automate import send_webhook
from automate.outgoing import OUTGOING_KEY, OutgoingMessage, WebhookEndpoint, replay_message
from automate.outgoing.api import owner_label
from automate.services import WorkflowService
from automate_core.outbox.models import OutboxItem

pytestmark = pytest.mark.django_db

URL = "https://hooks.example.com/in"


def endpoint(**fields) -> WebhookEndpoint:
    return WebhookEndpoint.create(fields.pop("url", URL), **fields)[0]


def deliveries() -> list[tuple[int, int]]:
    items = OutboxItem.objects.filter(connector_key=OUTGOING_KEY).order_by("id")
    return [(i.payload["message"], i.payload["endpoint"]) for i in items]


def test_send_webhook__one_item_per_matching_enabled_endpoint():
    everything = endpoint(owner="acme")
    invoices = endpoint(owner="acme", event_types=["invoice.*"])
    endpoint(owner="acme", event_types=["customer.created"])
    endpoint(owner="acme", enabled=False)
    endpoint(owner="other")

    message = send_webhook("invoice.paid", {"id": "in_1"}, owner="acme")

    assert message.uid.startswith("msg_")
    assert message.fanned_out == 2
    assert deliveries() == [(message.pk, everything.pk), (message.pk, invoices.pk)]
    item = OutboxItem.objects.filter(connector_key=OUTGOING_KEY).order_by("id").first()
    assert item.external_id == f"{message.uid}:{everything.pk}"
    assert item.event_type == "invoice.paid"


def test_send_webhook__no_owner_sends_to_the_projects_own_endpoints_only():
    own = endpoint()
    endpoint(owner="acme")
    message = send_webhook("ping", {})
    assert deliveries() == [(message.pk, own.pk)]


def test_send_webhook__model_instance_owner():
    user = User.objects.create(username="alice")
    target = endpoint(owner=owner_label(user))
    message = send_webhook("ping", {}, owner=user)
    assert message.owner == f"auth.user:{user.pk}"
    assert deliveries() == [(message.pk, target.pk)]


def test_send_webhook__rollback_sends_nothing():
    endpoint()

    def failing_view() -> None:
        with transaction.atomic():
            send_webhook("invoice.paid", {"id": "in_1"})
            raise RuntimeError("the caller's transaction fails")

    with pytest.raises(RuntimeError):
        failing_view()
    assert not OutgoingMessage.objects.exists()
    assert deliveries() == []


def test_send_webhook__processing_starts_only_on_commit(django_capture_on_commit_callbacks):
    from automate.signals import event_accepted

    endpoint()
    seen = []

    def receiver(sender, item, **kwargs):
        seen.append((sender, item.connector_key))

    event_accepted.connect(receiver, dispatch_uid="test-outgoing")
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            send_webhook("invoice.paid", {})
        assert seen == []
        for callback in callbacks:
            callback()
    finally:
        event_accepted.disconnect(dispatch_uid="test-outgoing")
    assert seen == [(OUTGOING_KEY, OUTGOING_KEY)]


def test_send_webhook__a_repeated_key_is_a_no_op():
    endpoint(owner="acme")
    first = send_webhook("invoice.paid", {"id": 1}, owner="acme", key="invoice-1-paid")
    again = send_webhook("invoice.paid", {"id": 1}, owner="acme", key="invoice-1-paid")
    assert again.pk == first.pk
    assert again.fanned_out == 0
    assert len(deliveries()) == 1
    # Keys are per owner.
    endpoint(owner="globex")
    other = send_webhook("invoice.paid", {"id": 1}, owner="globex", key="invoice-1-paid")
    assert other.pk != first.pk
    assert len(deliveries()) == 2


def test_send_webhook__no_matching_endpoint_stores_the_message_only():
    message = send_webhook("invoice.paid", {})
    assert message.fanned_out == 0
    assert OutgoingMessage.objects.filter(pk=message.pk).exists()
    assert deliveries() == []


@pytest.mark.parametrize("event_type", ["", None])
def test_send_webhook__needs_an_event_type(event_type):
    with pytest.raises(ValueError, match="event type"):
        send_webhook(event_type, {})


def test_replay_message__queues_again_with_the_same_message():
    target = endpoint()
    message = send_webhook("invoice.paid", {})
    assert replay_message(message) == 1
    assert replay_message(message) == 1
    assert deliveries() == [(message.pk, target.pk)] * 3


def test_endpoint__secret_rotation_keeps_the_previous_secret_for_the_overlap(settings):
    target, first = WebhookEndpoint.create(URL)
    assert first.startswith("whsec_")
    second = target.rotate_secret()
    active = target.active_secrets()
    assert [s.value() for s in active] == [second, first]
    assert active[0].expires_at is None and active[1].expires_at is not None
    # Stored sealed, never as given.
    assert all(first not in s.secret and second not in s.secret for s in active)
    settings.AUTOMATE = {**settings.AUTOMATE, "OUTGOING_WEBHOOK_SECRET_OVERLAP_SECONDS": 0}
    third = target.rotate_secret()
    assert [s.value() for s in target.active_secrets()] == [third]


def test_endpoint__clean_refuses_bad_values(settings):
    from django.core.exceptions import ValidationError

    for fields, field in [
        ({"url": "ftp://example.com/"}, "url"),
        ({"url": "https://example.com:22/"}, "url"),
        ({"url": URL, "rate_limit": "lots"}, "rate_limit"),
        ({"url": URL, "event_types": "invoice.*"}, "event_types"),
    ]:
        with pytest.raises(ValidationError) as info:
            WebhookEndpoint(**fields).full_clean()
        assert field in info.value.message_dict


def test_send_webhook_step__sends_once_per_run_and_step():
    target = endpoint(owner="acme")
    WorkflowService().create_workflow(
        name="Notify",
        trigger="my_service",
        steps=[
            {
                "name": "Tell",
                "type": "send_webhook",
                "config": {
                    "event_type": "order.{{ event.type }}",
                    "payload": {"order": "{{ event.payload.id }}"},
                    "owner": "acme",
                },
            }
        ],
    )
    from automate_core.outbox import queue
    from tests.outgoing.conftest import work

    queue.enqueue("my_service", event_type="created", payload={"id": "o1"}, trace_id="t1")
    work()
    message = OutgoingMessage.objects.get()
    assert message.event_type == "order.created"
    assert message.payload == {"order": "o1"}
    assert message.key.startswith("workflow-run:")
    assert deliveries() == [(message.pk, target.pk)]
    # The delivery was tried: hooks.example.com resolves to nothing here.
    [attempt] = message.attempts.all()
    assert attempt.error_code == "connection_error"
    assert attempt.next_attempt_at is not None


def test_endpoint__key_rotation_re_encrypts_signing_secrets():
    import io

    from cryptography.fernet import Fernet
    from django.core.management import call_command

    from tests.core.helpers import automate_settings

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with automate_settings(ENCRYPTION_KEYS=[old]):
        target, secret = WebhookEndpoint.create(URL)
        before = target.secrets.get().secret
    with automate_settings(ENCRYPTION_KEYS=[new, old]):
        call_command("automate_rotate_secrets", stdout=io.StringIO())
    with automate_settings(ENCRYPTION_KEYS=[new]):
        row = target.secrets.get()
        assert row.secret != before
        assert row.value() == secret


@pytest.mark.parametrize(
    ("overrides", "ids"),
    [
        ({}, []),
        ({"OUTGOING_WEBHOOK_RATE_LIMIT": "10/s", "OUTGOING_WEBHOOK_RETRY_SCHEDULE": [0]}, []),
        ({"OUTGOING_WEBHOOK_RATE_LIMIT": "lots"}, ["automate.E701"]),
        ({"OUTGOING_WEBHOOK_RETRY_SCHEDULE": []}, ["automate.E702"]),
        ({"OUTGOING_WEBHOOK_RETRY_SCHEDULE": [0, -5]}, ["automate.E702"]),
        ({"OUTGOING_WEBHOOK_RATE_LIMIT": 5}, []),  # the type: automate.E105's to report
    ],
)
def test_checks__outgoing_settings(overrides, ids):
    from automate.outgoing.checks import check_outgoing_settings
    from tests.core.helpers import automate_settings

    with automate_settings(**overrides):
        assert [e.id for e in check_outgoing_settings()] == ids
