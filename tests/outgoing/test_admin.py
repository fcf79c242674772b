"""Admin of outgoing webhooks: the secret shown once, the delivery log, the actions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User

from automate import send_webhook
from automate.outgoing import OUTGOING_KEY, DeliveryAttempt, OutgoingMessage, WebhookEndpoint
from automate_core.outbox.models import OutboxItem
from tests.outgoing.conftest import work

pytestmark = pytest.mark.django_db

URL = "https://hooks.example.com/in"


def endpoint_form(**overrides):
    data = {
        "owner": "acme",
        "url": URL,
        "description": "",
        "event_types": '["invoice.*"]',
        "enabled": "on",
        "rate_limit": "",
    }
    data.update(overrides)
    return data


def test_admin__adding_an_endpoint_shows_its_secret_once(admin_client):
    response = admin_client.post("/admin/automate/webhookendpoint/add/", endpoint_form())
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    endpoint = WebhookEndpoint.objects.get()
    [secret] = endpoint.active_secrets()
    shown = secret.value()
    assert shown.startswith("whsec_")
    assert shown in response.content.decode()
    # Never again: not on the change page, not in the list.
    for url in (
        f"/admin/automate/webhookendpoint/{endpoint.pk}/change/",
        "/admin/automate/webhookendpoint/",
    ):
        page = admin_client.get(url)
        assert page.status_code == 200
        assert shown not in page.content.decode()
        assert secret.secret not in page.content.decode()


def test_admin__an_invalid_url_is_refused(admin_client):
    response = admin_client.post(
        "/admin/automate/webhookendpoint/add/", endpoint_form(url="https://hooks.example.com:22/")
    )
    assert response.status_code == 200
    assert "HTTP_ALLOWED_PORTS" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_admin__rotate_secret_action_shows_the_new_secret_once(admin_client):
    endpoint, first = WebhookEndpoint.create(URL)
    response = admin_client.post(
        "/admin/automate/webhookendpoint/",
        {"action": "rotate_secret", "_selected_action": [endpoint.pk]},
    )
    assert response.status_code == 200
    new = endpoint.active_secrets()[0].value()
    assert new != first
    assert new in response.content.decode()
    assert first not in response.content.decode()
    assert len(endpoint.active_secrets()) == 2


def test_admin__send_test_event_and_the_delivery_log(admin_client):
    endpoint, _ = WebhookEndpoint.create(URL, event_types=["invoice.*"])
    response = admin_client.post(
        "/admin/automate/webhookendpoint/",
        {"action": "send_test_event", "_selected_action": [endpoint.pk]},
    )
    assert response.status_code == 302
    message = OutgoingMessage.objects.get()
    assert message.event_type == "webhook.test"  # sent whatever the endpoint's filters
    work()  # hooks.example.com resolves to nothing here: a connection error
    page = admin_client.get(f"/admin/automate/webhookendpoint/{endpoint.pk}/change/")
    content = page.content.decode()
    assert message.uid in content
    assert "connection_error" in content
    log = admin_client.get(f"/admin/automate/deliveryattempt/?endpoint__id__exact={endpoint.pk}")
    assert log.status_code == 200
    assert message.uid in log.content.decode()


def test_admin__replay_message(admin_client):
    WebhookEndpoint.create(URL)
    message = send_webhook("invoice.paid", {})
    response = admin_client.post(
        "/admin/automate/outgoingmessage/",
        {"action": "replay_messages", "_selected_action": [message.pk]},
    )
    assert response.status_code == 302
    assert OutboxItem.objects.filter(connector_key=OUTGOING_KEY).count() == 2


def test_admin__actions_need_their_permission(client):
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    for codename in ("view_webhookendpoint", "view_outgoingmessage", "view_deliveryattempt"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    endpoint, _ = WebhookEndpoint.create(URL)
    message = send_webhook("invoice.paid", {})
    before = endpoint.secrets.count()
    for url, action, pk in [
        ("/admin/automate/webhookendpoint/", "rotate_secret", endpoint.pk),
        ("/admin/automate/webhookendpoint/", "send_test_event", endpoint.pk),
        ("/admin/automate/outgoingmessage/", "replay_messages", message.pk),
    ]:
        client.post(url, {"action": action, "_selected_action": [pk]})
    assert endpoint.secrets.count() == before
    assert OutgoingMessage.objects.count() == 1
    assert OutboxItem.objects.filter(connector_key=OUTGOING_KEY).count() == 1
    assert client.get("/admin/automate/deliveryattempt/").status_code == 200
    assert not DeliveryAttempt.objects.exists()
