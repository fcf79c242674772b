"""Crash test for outgoing webhooks: ``kill -9`` the worker while it delivers, for the
embedded ``manage.py automate_worker`` and for a real ``celery worker`` fed through Redis.

No delivery may be lost: every (message, endpoint) pair reaches its endpoint at least
once, and every request of one message carries the message's ``webhook-id``, so a
duplicate caused by a crash is one the receiver recognises.
"""

from __future__ import annotations

import json
import random
import signal
import time
import uuid
from collections import defaultdict

import pytest

from automate import send_webhook
from automate.outgoing import OUTGOING_KEY, DeliveryAttempt, OutgoingMessage, WebhookEndpoint
from automate_core.models import OutboxItem
from tests.core.helpers import LocalServer, automate_settings, send
from tests.engine_support import start, stop, wait_for, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MESSAGES = 80
KILLS = 10


def slow_ok(handler) -> None:
    time.sleep(0.05)  # a request in flight is what a kill should interrupt
    send(handler, 200)


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
            env = worker_env(AUTOMATE_WORKER_LEASE_SECONDS="2", AUTOMATE_WORKER_EXTRA=extra)
            args = ["-m", "django", "automate_worker", "--threads", "2", "--batch", "5"]
            errors = crash_repeatedly(lambda: start([*args, "--poll", "0.1"], env))
        else:
            errors = crash_celery(request.getfixturevalue("redis_url"), extra)
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


def crash_celery(redis_url: str, extra: str) -> str:
    """A real ``celery worker`` fed by ``automate_worker --dispatch-only`` through Redis,
    killed while it delivers."""
    queue = f"automate-outgoing-crash-{uuid.uuid4().hex[:8]}"
    env = worker_env(
        AUTOMATE_WORKER_BROKER_URL=redis_url,
        AUTOMATE_WORKER_QUEUE=queue,
        AUTOMATE_WORKER_LEASE_SECONDS="4",
        AUTOMATE_WORKER_VISIBILITY_TIMEOUT="5",
        AUTOMATE_WORKER_MAX_IN_FLIGHT="10",
        AUTOMATE_WORKER_EXTRA=extra,
    )
    celery = ["-m", "celery", "-A", "tests.celery_app", "worker", "--pool", "threads"]
    celery += ["--concurrency", "2", "--queues", queue, "--loglevel", "ERROR"]
    celery += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    dispatcher = start(
        ["-m", "django", "automate_worker", "--dispatch-only", "--batch", "5", "--poll", "0.1"],
        env,
    )
    try:
        errors = crash_repeatedly(lambda: start(celery, env))
    finally:
        errors += stop(dispatcher)
    return errors


def crash_repeatedly(start_worker) -> str:
    random.seed(7)
    worker = start_worker()
    try:
        for _ in range(KILLS):
            seen = DeliveryAttempt.objects.count()
            try:
                wait_for(lambda s=seen: DeliveryAttempt.objects.count() > s, 60, "deliveries")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; worker stderr: {stop(worker)[-3000:]}") from None
            time.sleep(random.uniform(0, 0.2))
            stop(worker, signal.SIGKILL)
            worker = start_worker()
        wait_for(
            lambda: (
                not OutboxItem.objects.filter(connector_key=OUTGOING_KEY)
                .exclude(status__in=["done", "dead"])
                .exists()
            ),
            120,
            "every delivery to end",
        )
    finally:
        errors = stop(worker)
    return errors
