"""Crash test for outgoing webhooks: ``kill -9`` the worker while it delivers, for the
embedded ``manage.py automate_worker`` and for a real ``celery worker`` fed through Redis.

No delivery may be lost: every (message, endpoint) pair reaches its endpoint at least
once, and every request of one message carries the message's ``webhook-id``, so a
duplicate caused by a crash is one the receiver recognises.
"""

from __future__ import annotations

import functools
import json
import time
from collections import defaultdict

import pytest

from automate import send_webhook
from automate.outgoing import OUTGOING_KEY, DeliveryAttempt, OutgoingMessage, WebhookEndpoint
from automate_core.models import OutboxItem
from tests.core.helpers import LocalServer, automate_settings, send
from tests.engine_support import crash_celery_repeatedly, crash_repeatedly, start_embedded_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MESSAGES = 80
KILLS = 10


def slow_ok(handler) -> None:
    time.sleep(0.05)  # a request in flight is what a kill should interrupt
    send(handler, 200)


def every_delivery_ended() -> bool:
    deliveries = OutboxItem.objects.filter(connector_key=OUTGOING_KEY)
    return not deliveries.exclude(status__in=["done", "dead"]).exists()


#: How both kinds are killed: KILLS times while they deliver, then one delivers the rest.
#: Four threads, 50 ms a request, killed up to 0.2 s after their first: a life can deliver
#: some twenty of the 160, so the last may end before the last kill. The kills stop there
#: (the next worker would have nothing to progress on).
CRASHES = {
    "kills": KILLS,
    "progress": DeliveryAttempt.objects.count,
    "finished": every_delivery_ended,
    "out_of_work": every_delivery_ended,
    "what": "every delivery to end",
    "pause": 0.2,
}


@pytest.mark.parametrize("kind", ["embedded", "celery"])
def test_crash__worker_killed_mid_delivery_loses_no_message(kind, postgres, request):
    receiver = LocalServer().start()
    receiver.routes.update({"/a": slow_ok, "/b": slow_ok})
    admitted = {"HTTP_ALLOW_NETWORKS": ["127.0.0.1/32"], "HTTP_ALLOWED_PORTS": [receiver.port]}
    extra = json.dumps({**admitted, "OUTGOING_WEBHOOK_THREADS": 4})
    try:
        with automate_settings(**admitted):
            endpoints = [WebhookEndpoint.create(receiver.url(p))[0] for p in ("/a", "/b")]
        for n in range(MESSAGES):
            send_webhook("order.created", {"order": n})
        if kind == "embedded":
            worker = functools.partial(start_embedded_worker, AUTOMATE_WORKER_EXTRA=extra)
            errors = crash_repeatedly(worker, **CRASHES)
        else:
            redis_url = request.getfixturevalue("redis_url")
            errors = crash_celery_repeatedly(redis_url, "outgoing-crash", extra, **CRASHES)
    finally:
        receiver.stop()

    items = list(OutboxItem.objects.filter(connector_key=OUTGOING_KEY))
    assert len(items) == MESSAGES * 2, errors[-2000:]
    assert {item.status for item in items} == {"done"}, errors[-2000:]
    assert any(item.attempts > 1 for item in items)  # the kills interrupted deliveries

    uids = dict(OutgoingMessage.objects.values_list("pk", "uid"))
    by_path = {e.pk: e.url.rsplit("/", 1)[1] for e in endpoints}
    received: dict[tuple[str, int], set[str]] = defaultdict(set)
    cut = 0
    for _method, path, headers, body in receiver.requests:
        try:
            order = json.loads(body)["data"]["order"]
        except ValueError:  # the sender died mid-request: no receiver would accept it
            cut += 1
            continue
        received[(path.strip("/"), order)].add(headers["webhook-id"])
    messages = dict(OutgoingMessage.objects.values_list("payload__order", "pk"))
    duplicates = len(receiver.requests) - cut - len(received)
    total = len(receiver.requests)
    print(f"outgoing crash test: {total} requests, {cut} cut off, {duplicates} duplicates")
    for order, pk in messages.items():
        for path in by_path.values():
            # Delivered (at least once), and always under the message's own webhook-id.
            assert received[(path, order)] == {uids[pk]}
    assert DeliveryAttempt.objects.filter(status_code=200).count() >= MESSAGES * 2
