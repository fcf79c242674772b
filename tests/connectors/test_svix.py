"""Svix deliveries reach the ``standard_webhooks`` connector: ``svix-id``, ``svix-timestamp``
and ``svix-signature`` headers, signed by Svix's own library, through WebhookView.

Svix's library reads each header from either family; we read one complete family, so a
request whose three headers do not all come from one family is refused.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from datetime import UTC, datetime

import pytest
from django.test import override_settings
from svix.webhooks import Webhook

from automate_core.models import OutboxItem

pytestmark = pytest.mark.django_db

SECRET = "whsec_" + base64.b64encode(b"svix-delivery-test-key-32-bytes!").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-svix-key-of-32-bytes-ok!").decode()
AUTOMATE = {
    "SECRETS": {"resend": SECRET},
    "CONNECTORS": {"resend": {"connector": "standard_webhooks", "secrets": ["secret://resend"]}},
}
BODY = json.dumps({"type": "email.delivered", "data": {"email_id": "em_1"}}).encode()


@pytest.fixture(autouse=True)
def _automate_settings():
    with override_settings(AUTOMATE=AUTOMATE):
        yield


def svix_headers(msg_id: str = "msg_svix_1", *, secret: str = SECRET, ts: int | None = None):
    """The headers Svix sends, signed by ``svix.webhooks.Webhook.sign``."""
    ts = int(time.time()) if ts is None else ts
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), BODY.decode())
    return {"svix-id": msg_id, "svix-timestamp": str(ts), "svix-signature": signature}


def post(client, headers: dict[str, str], body: bytes = BODY):
    return client.post(
        "/webhooks/resend/", data=body, content_type="application/json", headers=headers
    )


def assert_refused(response) -> None:
    assert response.status_code == 401, response.content
    assert not OutboxItem.objects.exists()


def refusal_reasons(caplog) -> list[str]:
    return [
        r.reason
        for r in caplog.records
        if r.name == "automate.webhooks" and r.levelname == "WARNING"
    ]


def test_svix__headers_from_svix_library_are_what_svix_itself_accepts():
    # The test's sender is genuine: Svix's own verifier accepts what it signed.
    Webhook(SECRET).verify(BODY, svix_headers())


def test_svix__delivery_is_stored_then_202(csrf_client):
    response = post(csrf_client, svix_headers("msg_svix_1"))
    assert response.status_code == 202, response.content
    item = OutboxItem.objects.get()
    assert response.json() == {"trace_id": item.trace_id, "id": item.pk}
    assert item.connector_key == "resend"
    assert item.event_type == "email.delivered"
    assert item.external_id == "msg_svix_1"
    assert item.payload == json.loads(BODY)
    assert item.headers["svix-id"] == "msg_svix_1"
    assert "svix-timestamp" in item.headers
    assert "svix-signature" not in item.headers


def test_svix__retry_with_the_same_svix_id_is_stored_once(csrf_client):
    first = post(csrf_client, svix_headers("msg_retry"))
    # Svix re-signs a retry with a new timestamp; the id stays.
    second = post(csrf_client, svix_headers("msg_retry", ts=int(time.time()) - 5))
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json()["duplicate"] is True
    assert second.json()["trace_id"] == first.json()["trace_id"]
    assert OutboxItem.objects.count() == 1


def test_svix__new_svix_id_is_a_new_row(csrf_client):
    assert post(csrf_client, svix_headers("msg_a")).status_code == 202
    assert post(csrf_client, svix_headers("msg_b")).status_code == 202
    assert sorted(OutboxItem.objects.values_list("external_id", flat=True)) == ["msg_a", "msg_b"]


def test_svix__wrong_secret_is_401(csrf_client, caplog):
    with caplog.at_level(logging.WARNING, logger="automate.webhooks"):
        assert_refused(post(csrf_client, svix_headers(secret=OTHER_SECRET)))
    assert refusal_reasons(caplog) == ["no_secret_matched"]


def test_svix__tampered_body_is_401(csrf_client):
    assert_refused(post(csrf_client, svix_headers(), body=BODY.replace(b"em_1", b"em_2")))


def test_svix__stale_timestamp_is_401(csrf_client, caplog):
    with caplog.at_level(logging.WARNING, logger="automate.webhooks"):
        assert_refused(post(csrf_client, svix_headers(ts=int(time.time()) - 3600)))
    assert refusal_reasons(caplog) == ["timestamp_outside_tolerance"]


@pytest.mark.parametrize("dropped", ["svix-id", "svix-timestamp", "svix-signature"])
def test_svix__missing_one_header_is_401(csrf_client, caplog, dropped):
    headers = {k: v for k, v in svix_headers().items() if k != dropped}
    with caplog.at_level(logging.WARNING, logger="automate.webhooks"):
        assert_refused(post(csrf_client, headers))
    assert refusal_reasons(caplog) == ["missing_header"]


@pytest.mark.parametrize(
    "from_webhook_family",
    [
        ("id",),
        ("timestamp",),
        ("signature",),
        ("timestamp", "signature"),
        ("id", "signature"),
    ],
)
def test_svix__headers_mixed_across_families_are_401(csrf_client, caplog, from_webhook_family):
    # Every value is genuine; only the names mix the families, which no sender does.
    headers = {
        (f"webhook-{name[5:]}" if name[5:] in from_webhook_family else name): value
        for name, value in svix_headers().items()
    }
    with caplog.at_level(logging.WARNING, logger="automate.webhooks"):
        assert_refused(post(csrf_client, headers))
    assert refusal_reasons(caplog) == ["missing_header"]


def test_svix__empty_svix_header_does_not_borrow_from_the_other_family(csrf_client):
    headers = svix_headers()
    mixed = {**headers, "svix-signature": "", "webhook-signature": headers["svix-signature"]}
    assert_refused(post(csrf_client, mixed))


def test_svix__webhook_family_signed_by_svix_is_accepted_too(csrf_client):
    headers = {k.replace("svix-", "webhook-"): v for k, v in svix_headers("msg_std").items()}
    assert post(csrf_client, headers).status_code == 202
    assert OutboxItem.objects.get().external_id == "msg_std"


def test_svix__complete_svix_family_is_read_first_as_svix_does(csrf_client):
    # Both families complete: the svix-* one is verified and names the event, as in Svix's
    # library; the other family's (bad) signature is not looked at.
    headers = {
        **svix_headers("msg_svix_first"),
        "webhook-id": "msg_other",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode(),
    }
    assert post(csrf_client, headers).status_code == 202
    assert OutboxItem.objects.get().external_id == "msg_svix_first"
