"""WebhookView: status codes, durability, deduplication, headers kept, trace ids."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import pytest
from django.db import transaction
from django.http import JsonResponse
from django.test import override_settings

from automate.models import ConnectionProfile
from automate.views import WebhookView
from automate_core.models import OutboxItem

SECRET = "settings-secret-value"  # tests.settings: AUTOMATE["SECRETS"]["my-service-webhook"]


def sign(body: bytes, secret: str = SECRET) -> str:
    """The sender's algorithm for the spec's MyWebhookConnector: hex HMAC-SHA256."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(client, body: bytes, *, key: str = "my_service", signature: str | None = None, **headers):
    if signature is not None:
        headers["HTTP_X_SIGNATURE"] = signature
    return client.post(f"/webhooks/{key}/", data=body, content_type="application/json", **headers)


pytestmark = pytest.mark.django_db(transaction=True)

SMALL_BODIES = {
    "SECRETS": {"my-service-webhook": SECRET},
    "CONNECTORS": {"my_service": {"secrets": ["secret://my-service-webhook"]}},
    "WEBHOOK_MAX_BODY_BYTES": 100,
}


def test_webhook__signed_request_is_stored_then_202(csrf_client):
    body = json.dumps({"id": "evt_1", "type": "order.paid", "amount": 5}).encode()
    response = post(csrf_client, body, signature=sign(body))
    assert response.status_code == 202
    data = response.json()
    item = OutboxItem.objects.get()
    assert data == {"trace_id": item.trace_id, "id": item.pk}
    # Byte for byte what JsonResponse wrote for it before (the 202 is preformatted now).
    expected = JsonResponse({"trace_id": item.trace_id, "id": item.pk}, status=202)
    assert response.content == expected.content
    assert response["Content-Type"] == expected["Content-Type"] == "application/json"
    assert response["X-Automate-Trace-Id"] == item.trace_id
    assert item.connector_key == "my_service"
    assert item.event_type == "order.paid"
    assert item.external_id == "evt_1"
    assert item.payload == {"id": "evt_1", "type": "order.paid", "amount": 5}
    assert item.status == "pending"


@pytest.mark.parametrize(
    ("case", "signature"),
    [
        ("wrong secret", sign(b'{"a": 1}', "another-secret")),
        ("tampered body", sign(b'{"a": 2}')),
        ("malformed", "not-hex-at-all"),
        ("empty", ""),
    ],
)
def test_webhook__bad_signature_is_401_and_no_row(csrf_client, case, signature):
    response = post(csrf_client, b'{"a": 1}', signature=signature)
    assert response.status_code == 401, case
    assert response.json()["error"] == "signature verification failed"
    assert not OutboxItem.objects.exists()


def test_webhook__verifier_raising_on_missing_header_is_401(csrf_client):
    # The spec's MyWebhookConnector calls compare_digest(None, ...) -> TypeError.
    response = post(csrf_client, b"{}")
    assert response.status_code == 401
    assert not OutboxItem.objects.exists()


def test_webhook__failure_is_logged_with_trace_id_never_the_body(csrf_client, caplog):
    body = b'{"card": "4242424242424242"}'
    with caplog.at_level(logging.WARNING, logger="automate.webhooks"):
        response = post(csrf_client, body, signature="0" * 64)
    assert response.status_code == 401
    [record] = [r for r in caplog.records if r.name == "automate.webhooks"]
    assert record.trace_id == response["X-Automate-Trace-Id"]
    assert "4242" not in caplog.text


def test_webhook__unknown_connector_is_404(csrf_client):
    body = b"{}"
    response = post(csrf_client, body, key="nope", signature=sign(body))
    assert response.status_code == 404
    assert not OutboxItem.objects.exists()


def test_webhook__disabled_profile_is_404(csrf_client):
    ConnectionProfile.objects.create(
        key="my_service",
        connector_key="my_service",
        enabled=False,
        webhook_secrets=["secret://my-service-webhook"],
    )
    body = b"{}"
    assert post(csrf_client, body, signature=sign(body)).status_code == 404


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_webhook__other_methods_are_405(csrf_client, method):
    response = getattr(csrf_client, method)("/webhooks/my_service/")
    assert response.status_code == 405


@override_settings(
    AUTOMATE={
        "SECRETS": {"my-service-webhook": SECRET},
        "CONNECTORS": {"my_service": {"secrets": ["secret://my-service-webhook"]}},
        "WEBHOOK_MAX_BODY_BYTES": 100,
    }
)
def test_webhook__oversize_by_content_length_is_413(csrf_client):
    body = b'{"x": "' + b"a" * 200 + b'"}'
    response = post(csrf_client, body, signature=sign(body))
    assert response.status_code == 413
    assert not OutboxItem.objects.exists()


@override_settings(
    AUTOMATE={
        "SECRETS": {"my-service-webhook": SECRET},
        "CONNECTORS": {"my_service": {"secrets": ["secret://my-service-webhook"]}},
        "WEBHOOK_MAX_BODY_BYTES": 100,
    }
)
def test_webhook__oversize_with_lying_content_length_is_413(csrf_client):
    body = b'{"x": "' + b"a" * 200 + b'"}'
    # A client that declares less than it sends: the cap is enforced while reading.
    response = csrf_client.generic(
        "POST",
        "/webhooks/my_service/",
        data=body,
        content_type="application/json",
        HTTP_X_SIGNATURE=sign(body),
        CONTENT_LENGTH="50",
    )
    assert response.status_code in (401, 413)
    assert not OutboxItem.objects.exists()


def test_webhook__repeat_event_id_answers_200_with_first_trace_id(csrf_client):
    body = json.dumps({"id": "evt_same", "type": "t"}).encode()
    first = post(csrf_client, body, signature=sign(body))
    second = post(csrf_client, body, signature=sign(body))
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json()["trace_id"] == first.json()["trace_id"]
    assert second.json()["id"] == first.json()["id"]
    assert second["X-Automate-Trace-Id"] == first.json()["trace_id"]
    assert OutboxItem.objects.count() == 1


def test_webhook__non_json_body_is_kept_raw(csrf_client):
    body = b"\xff\xfenot json"
    response = csrf_client.post(
        "/webhooks/my_service/", data=body, content_type="text/plain", HTTP_X_SIGNATURE=sign(body)
    )
    assert response.status_code == 202
    item = OutboxItem.objects.get()
    assert item.payload is None
    assert bytes(item.raw_body) == body


def test_webhook__authorization_and_cookie_are_never_stored(csrf_client):
    body = b"{}"
    response = post(
        csrf_client,
        body,
        signature=sign(body),
        HTTP_AUTHORIZATION="Bearer abc",
        HTTP_COOKIE="session=1",
        HTTP_USER_AGENT="sender/1.0",
    )
    assert response.status_code == 202
    headers = OutboxItem.objects.get().headers
    assert headers["user-agent"] == "sender/1.0"
    assert "authorization" not in headers
    assert "cookie" not in headers


def test_webhook__rotated_secrets_both_verify(csrf_client):
    profile = ConnectionProfile(key="my_service", connector_key="my_service")
    profile.add_webhook_secret("old-secret-value")
    profile.add_webhook_secret("new-secret-value")
    profile.save()
    for secret in ("old-secret-value", "new-secret-value"):
        body = json.dumps({"id": secret}).encode()
        assert post(csrf_client, body, signature=sign(body, secret)).status_code == 202
    body = b'{"id": "x"}'
    assert post(csrf_client, body, signature=sign(body, "retired-secret")).status_code == 401
    assert OutboxItem.objects.count() == 2


def test_webhook__row_is_committed_before_202(csrf_client):
    body = b'{"id": "committed"}'
    response = post(csrf_client, body, signature=sign(body))
    assert response.status_code == 202
    # A fresh connection outside any test transaction sees the row.
    assert not transaction.get_connection().in_atomic_block
    assert OutboxItem.objects.filter(external_id="committed").exists()


@override_settings(AUTOMATE={"CONNECTORS": {"my_service": {"secrets": ["secret://missing"]}}})
def test_webhook__unresolvable_secret_is_503_so_the_sender_retries(csrf_client, caplog):
    body = b"{}"
    with caplog.at_level(logging.WARNING, logger="automate.webhooks"):
        response = post(csrf_client, body, signature=sign(body))
    assert response.status_code == 503
    assert "'missing' was not found" in caplog.text  # the cause is logged, not answered
    assert not OutboxItem.objects.exists()


@override_settings(AUTOMATE={"CONNECTORS": {"my_service": {"secrets": ["secret://bad name!"]}}})
def test_webhook__malformed_secret_reference_is_503(csrf_client):
    body = b"{}"
    assert post(csrf_client, body, signature=sign(body)).status_code == 503


def test_webhook__invalid_content_length_is_400(csrf_client):
    response = csrf_client.generic(
        "POST", "/webhooks/my_service/", data=b"{}", CONTENT_LENGTH="abc"
    )
    assert response.status_code == 400
    assert not OutboxItem.objects.exists()


def test_webhook__event_accepted_signal_fires_after_commit(csrf_client):
    from automate.signals import event_accepted

    seen = []

    def receiver(sender, item, **kwargs):
        # Sent on commit: a query from here sees the committed row.
        seen.append((sender, OutboxItem.objects.filter(pk=item.pk).exists()))

    event_accepted.connect(receiver, dispatch_uid="test-signal")
    try:
        body = b'{"id": "sig"}'
        assert post(csrf_client, body, signature=sign(body)).status_code == 202
        assert post(csrf_client, body, signature=sign(body)).status_code == 200
    finally:
        event_accepted.disconnect(dispatch_uid="test-signal")
    assert seen == [("my_service", True)]


def test_webhook__inside_a_transaction_event_accepted_waits_for_its_commit(csrf_client):
    from automate.signals import event_accepted

    seen = []

    def receiver(sender, item, **kwargs):
        seen.append(item.external_id)

    event_accepted.connect(receiver, dispatch_uid="test-signal-in-tx")
    try:
        with transaction.atomic():
            body = b'{"id": "in-tx"}'
            assert post(csrf_client, body, signature=sign(body)).status_code == 202
            assert seen == []  # the row is not committed yet
        assert seen == ["in-tx"]
        with transaction.atomic():
            body = b'{"id": "rolled-back"}'
            assert post(csrf_client, body, signature=sign(body)).status_code == 202
            transaction.set_rollback(True)
    finally:
        event_accepted.disconnect(dispatch_uid="test-signal-in-tx")
    assert seen == ["in-tx"]  # never sent for a row that was never committed


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "nul", "text": "a\\u0000b"}',  # PostgreSQL refuses NUL in jsonb
        b'{"id": "surrogate", "text": "\\ud800"}',  # no driver encodes a lone surrogate
        b'{"id": "nan", "value": NaN}',  # json.loads accepts it; it is not JSON
    ],
)
def test_webhook__signed_but_unstorable_json_from_a_project_connector_is_kept_raw(
    csrf_client, body
):
    response = post(csrf_client, body, signature=sign(body))
    assert response.status_code == 202
    item = OutboxItem.objects.get()
    assert item.payload is None
    assert bytes(item.raw_body) == body


def test_webhook__overlong_event_id_is_hashed_and_still_deduplicates(csrf_client):
    body = json.dumps({"id": "x" * 400}).encode()
    assert post(csrf_client, body, signature=sign(body)).status_code == 202
    assert post(csrf_client, body, signature=sign(body)).status_code == 200
    assert OutboxItem.objects.get().external_id.startswith("sha256:")


def test_the_mounted_view_is_csrf_exempt_and_not_atomic() -> None:
    """What Django's handler reads on the URL's callback: no CSRF check (a sender has no
    token) and no ATOMIC_REQUESTS transaction (the row is committed before the 202)."""
    from django.urls import resolve

    callback = resolve("/webhooks/github/").func
    assert callback.csrf_exempt is True
    assert "default" in callback._non_atomic_requests
    assert WebhookView.as_view().csrf_exempt is True


@pytest.mark.parametrize(
    "trace_id",
    ["0af7651916cd43dd8448eb211c80319c", 'a"b\\c', "tab\tnew\nline", "\x00\x1f", "é✓😀", ""],
)
@pytest.mark.parametrize("pk", [1, 0, 2**63 - 1])
def test_the_202_body_is_what_json_response_writes(trace_id, pk):
    from automate.views import _accepted

    response = _accepted(trace_id, pk)
    expected = JsonResponse({"trace_id": trace_id, "id": pk}, status=202)
    assert response.status_code == 202
    assert response.content == expected.content
    assert response["Content-Type"] == expected["Content-Type"]
    assert json.loads(response.content) == {"trace_id": trace_id, "id": pk}
