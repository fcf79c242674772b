"""Our receiver verifies our sender: the project sends to its own ``standard_webhooks``
connection over HTTP (pytest-django's live server on 127.0.0.1), and several deliveries
of one batch run at once so a slow endpoint delays no other."""

from __future__ import annotations

import threading
from urllib.parse import urlparse

import pytest

from automate import send_webhook
from automate.outgoing import OUTGOING_KEY, WebhookEndpoint, replay_message
from automate.outgoing.signing import generate_secret
from automate_core.outbox.models import OutboxItem
from tests.core.helpers import automate_settings, send
from tests.outgoing.conftest import outgoing_settings, work

pytestmark = pytest.mark.django_db(transaction=True)


def test_self__the_standard_webhooks_connector_accepts_what_send_webhook_sends(live_server):
    port = urlparse(live_server.url).port
    url = f"http://127.0.0.1:{port}/webhooks/standard_webhooks/"
    with automate_settings(HTTP_ALLOW_NETWORKS=["127.0.0.1/32"], HTTP_ALLOWED_PORTS=[port]):
        endpoint, secret = WebhookEndpoint.create(url)
    receiving = {
        "SECRETS": {"outgoing-self": secret},
        "CONNECTORS": {"standard_webhooks": {"secrets": ["secret://outgoing-self"]}},
        "HTTP_ALLOW_NETWORKS": ["127.0.0.1/32"],
        "HTTP_ALLOWED_PORTS": [port],
    }
    with automate_settings(**receiving):
        message = send_webhook("invoice.paid", {"id": "in_1"})
        [delivery] = OutboxItem.objects.filter(connector_key=OUTGOING_KEY)
        work()
        received = OutboxItem.objects.get(connector_key="standard_webhooks")
        # A replay is the same webhook-id: the receiver stores it once.
        assert replay_message(message) == 1
        work()

    delivery.refresh_from_db()
    assert delivery.status == "done"
    assert received.external_id == message.uid
    assert received.event_type == "invoice.paid"
    assert received.payload["data"] == {"id": "in_1"}
    assert OutboxItem.objects.filter(connector_key="standard_webhooks").count() == 1
    # The first delivery is accepted (202), the repeat recognised (200, nothing stored).
    assert [a.status_code for a in endpoint.attempts.order_by("id")] == [202, 200]


def test_self__a_wrong_secret_is_refused_by_our_receiver(live_server):
    port = urlparse(live_server.url).port
    url = f"http://127.0.0.1:{port}/webhooks/standard_webhooks/"
    with automate_settings(HTTP_ALLOW_NETWORKS=["127.0.0.1/32"], HTTP_ALLOWED_PORTS=[port]):
        endpoint, _ = WebhookEndpoint.create(url)
    receiving = {
        "SECRETS": {"outgoing-self": generate_secret()},  # not the endpoint's
        "CONNECTORS": {"standard_webhooks": {"secrets": ["secret://outgoing-self"]}},
        "HTTP_ALLOW_NETWORKS": ["127.0.0.1/32"],
        "HTTP_ALLOWED_PORTS": [port],
        "OUTGOING_WEBHOOK_RETRY_SCHEDULE": [0],
    }
    with automate_settings(**receiving):
        send_webhook("ping", {}, owner="")
        work()
    assert [a.status_code for a in endpoint.attempts.all()] == [401]
    assert not OutboxItem.objects.filter(connector_key="standard_webhooks").exists()


def test_delivery__a_slow_endpoint_delays_no_other(receiver, postgres):
    """The slow endpoint answers only once the fast one was served: if the batch's
    deliveries ran one after the other (slow first), the fast request would never come
    while the slow one waits, and the slow one would fail.

    PostgreSQL only: SQLite's shared in-memory test database locks whole tables, so
    threads writing at once fail there (a file database waits instead)."""
    fast_served = threading.Event()

    def slow(handler):
        fast_served.wait(10)
        send(handler, 200 if fast_served.is_set() else 503)

    def fast(handler):
        send(handler, 200)
        fast_served.set()

    receiver.routes.update({"/slow": slow, "/fast": fast})
    slow_endpoint, _ = WebhookEndpoint.create(receiver.url("/slow"))
    fast_endpoint, _ = WebhookEndpoint.create(receiver.url("/fast"))
    send_webhook("invoice.paid", {})

    with outgoing_settings(receiver, OUTGOING_WEBHOOK_THREADS=4):
        assert work() == {"done": 2}
    assert [r[1] for r in receiver.requests] in (["/slow", "/fast"], ["/fast", "/slow"])
    assert slow_endpoint.attempts.get().status_code == 200
    assert fast_endpoint.attempts.get().status_code == 200
