"""Delivery against a loopback endpoint: signatures, every retry class, SSRF refusals."""

from __future__ import annotations

import json

import pytest
from standardwebhooks.webhooks import Webhook
from svix.webhooks import Webhook as SvixWebhook

from automate import send_webhook
from automate.outgoing import (
    OUTGOING_KEY,
    DeliveryAttempt,
    WebhookEndpoint,
    endpoint_disabled,
    replay_message,
)
from automate.outgoing.delivery import EXCERPT_CHARS, retry_delay
from automate_core.outbox.models import OutboxItem
from tests.core.helpers import send
from tests.outgoing.conftest import outgoing_settings, work

pytestmark = pytest.mark.django_db


def items() -> list[OutboxItem]:
    return list(OutboxItem.objects.filter(connector_key=OUTGOING_KEY).order_by("id"))


def attempts(endpoint: WebhookEndpoint) -> list[DeliveryAttempt]:
    return list(endpoint.attempts.order_by("id"))


# -- Success and the signature -----------------------------------------------------------


def test_delivery__signed_per_standard_webhooks(receiver):
    endpoint, secret = WebhookEndpoint.create(receiver.url("/ok"))
    message = send_webhook("invoice.paid", {"id": "in_1", "amount": 1250, "note": "café"})

    assert work() == {"done": 1}

    [(method, _path, headers, body)] = receiver.hits("/ok")
    assert method == "POST"
    assert headers["webhook-id"] == message.uid
    assert headers["Content-Type"] == "application/json"
    # The reference libraries accept it: the specification's and Svix's.
    verified = Webhook(secret).verify(body, headers)
    assert verified == {
        "type": "invoice.paid",
        "timestamp": message.created_at.isoformat(),
        "data": {"id": "in_1", "amount": 1250, "note": "café"},
    }
    SvixWebhook(secret).verify(body, headers)  # raises unless a signature matches
    [attempt] = attempts(endpoint)
    assert (attempt.attempt, attempt.status_code, attempt.error_code) == (1, 200, "")
    assert attempt.response_excerpt == '{"received": true}'
    assert attempt.next_attempt_at is None
    assert [i.status for i in items()] == ["done"]


def test_delivery__a_wrong_secret_fails_verification(receiver):
    from standardwebhooks.webhooks import WebhookVerificationError

    WebhookEndpoint.create(receiver.url("/ok"))
    send_webhook("invoice.paid", {})
    work()
    [(_m, _p, headers, body)] = receiver.hits("/ok")
    other = WebhookEndpoint.create(receiver.url("/ok"))[1]
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)


def test_delivery__every_active_secret_signs_during_a_rotation(receiver):
    endpoint, old = WebhookEndpoint.create(receiver.url("/ok"))
    new = endpoint.rotate_secret()
    send_webhook("invoice.paid", {})
    work()
    [(_m, _p, headers, body)] = receiver.hits("/ok")
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert all(entry.startswith("v1,") for entry in headers["webhook-signature"].split(" "))
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)


def test_delivery__one_message_to_two_endpoints_shares_its_webhook_id(receiver):
    WebhookEndpoint.create(receiver.url("/ok"))
    WebhookEndpoint.create(receiver.url("/accepted"))
    message = send_webhook("invoice.paid", {})
    assert work() == {"done": 2}
    ids = {r[2]["webhook-id"] for r in receiver.requests}
    assert ids == {message.uid}


# -- Failures ------------------------------------------------------------------------------


def test_delivery__500_is_retried_on_the_schedule_then_dead(receiver):
    endpoint, secret = WebhookEndpoint.create(receiver.url("/fail"))
    message = send_webhook("invoice.paid", {})

    assert work() == {"failed": 2, "dead": 1}  # the schedule here: 3 attempts, no delay

    hits = receiver.hits("/fail")
    assert len(hits) == 3
    # Every retry is signed anew and keeps the message's webhook-id.
    assert {h[2]["webhook-id"] for h in hits} == {message.uid}
    for hit in hits:
        Webhook(secret).verify(hit[3], hit[2])
    log = attempts(endpoint)
    assert [(a.attempt, a.status_code, a.error_code) for a in log] == [
        (1, 500, "http_500"),
        (2, 500, "http_500"),
        (3, 500, "http_500"),
    ]
    assert [a.next_attempt_at is not None for a in log] == [True, True, False]
    [item] = items()
    assert item.status == "dead"
    assert item.last_error["code"] == "http_500"
    # Its time of death, after its last attempt (which retention ages it by).
    assert item.completed_at is not None and item.completed_at >= log[-1].created_at
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.failing_since is not None


def test_delivery__a_replayed_dead_letter_starts_the_schedule_again(receiver):
    endpoint, _ = WebhookEndpoint.create(receiver.url("/fail"))
    message = send_webhook("invoice.paid", {})
    assert work() == {"failed": 2, "dead": 1}
    receiver.routes["/fail"] = receiver.routes["/ok"]  # the owner fixed the endpoint
    assert replay_message(message) == 1
    assert work() == {"done": 1}
    log = attempts(endpoint)
    assert [(a.attempt, a.status_code) for a in log][-1] == (1, 200)
    assert {h[2]["webhook-id"] for h in receiver.hits("/fail")} == {message.uid}


def test_delivery__a_success_clears_the_failing_state(receiver):
    endpoint, _ = WebhookEndpoint.create(receiver.url("/fail"))
    send_webhook("invoice.paid", {})
    work()
    endpoint.refresh_from_db()
    assert endpoint.failing_since is not None
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url=receiver.url("/ok"))
    send_webhook("invoice.paid", {})
    work()
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None


def test_delivery__410_disables_the_endpoint(receiver, django_capture_on_commit_callbacks):
    endpoint, _ = WebhookEndpoint.create(receiver.url("/gone"))
    other, _ = WebhookEndpoint.create(receiver.url("/ok"))
    seen = []
    endpoint_disabled.connect(
        lambda sender, endpoint, reason, **kw: seen.append((endpoint.pk, reason)),
        dispatch_uid="test-410",
        weak=False,
    )
    try:
        send_webhook("invoice.paid", {})
        with django_capture_on_commit_callbacks(execute=True):
            assert work() == {"dead": 1, "done": 1}
    finally:
        endpoint_disabled.disconnect(dispatch_uid="test-410")
    assert seen == [(endpoint.pk, "gone")]
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert "410" in endpoint.disabled_reason
    assert len(receiver.hits("/gone")) == 1  # never retried
    # Later messages go to the endpoints still enabled only.
    send_webhook("invoice.paid", {})
    work()
    assert len(receiver.hits("/gone")) == 1
    assert len(receiver.hits("/ok")) == 2
    assert other.attempts.count() == 2


def test_delivery__queued_deliveries_of_a_disabled_endpoint_are_dead_letters(receiver):
    endpoint, _ = WebhookEndpoint.create(receiver.url("/ok"))
    send_webhook("invoice.paid", {})
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False)
    assert work() == {"dead": 1}
    assert receiver.requests == []
    assert items()[0].last_error["code"] == "endpoint_disabled"


def test_delivery__timeout_is_retried(receiver):
    endpoint, _ = WebhookEndpoint.create(receiver.url("/hang"))
    send_webhook("invoice.paid", {})
    with outgoing_settings(
        receiver, OUTGOING_WEBHOOK_TIMEOUT_SECONDS=0.3, OUTGOING_WEBHOOK_RETRY_SCHEDULE=[0, 60]
    ):
        assert work() == {"failed": 1}
    [attempt] = attempts(endpoint)
    assert attempt.error_code == "timeout"
    assert attempt.status_code is None
    assert attempt.next_attempt_at is not None


def test_delivery__a_huge_response_body_is_a_failed_attempt(receiver):
    endpoint, _ = WebhookEndpoint.create(receiver.url("/huge"))
    send_webhook("invoice.paid", {})
    with outgoing_settings(
        receiver,
        OUTGOING_WEBHOOK_RESPONSE_MAX_BYTES=16 * 1024,
        OUTGOING_WEBHOOK_RETRY_SCHEDULE=[0, 60],
    ):
        assert work() == {"failed": 1}
    [attempt] = attempts(endpoint)
    assert attempt.error_code == "response_too_large"
    assert attempt.response_excerpt == ""


def test_delivery__redirects_are_not_followed(receiver):
    endpoint, _ = WebhookEndpoint.create(receiver.url("/redirect"))
    send_webhook("invoice.paid", {})
    with outgoing_settings(receiver, OUTGOING_WEBHOOK_RETRY_SCHEDULE=[0, 60]):
        assert work() == {"failed": 1}
    assert [r[1] for r in receiver.requests] == ["/redirect"]
    [attempt] = attempts(endpoint)
    assert (attempt.status_code, attempt.error_code) == (302, "redirect")


def test_delivery__connection_refused_is_retried(receiver):
    endpoint, _ = WebhookEndpoint.create(receiver.url("/ok"))
    send_webhook("invoice.paid", {})
    receiver.stop()
    with outgoing_settings(receiver, OUTGOING_WEBHOOK_RETRY_SCHEDULE=[0, 60]):
        assert work() == {"failed": 1}
    assert attempts(endpoint)[0].error_code == "connection_error"


def test_delivery__response_excerpt_is_capped_and_redacted(receiver):
    endpoint, secret = WebhookEndpoint.create(receiver.url("/echo"))

    def echo(handler):
        from tests.core.helpers import send

        headers = json.dumps(dict(handler.headers))
        send(handler, 400, (headers + "y" * 5000).encode())

    receiver.routes["/echo"] = echo
    send_webhook("invoice.paid", {})
    with outgoing_settings(receiver, OUTGOING_WEBHOOK_RETRY_SCHEDULE=[0, 60]):
        work()
    [attempt] = attempts(endpoint)
    assert attempt.status_code == 400
    assert len(attempt.response_excerpt) == EXCERPT_CHARS
    assert "webhook-signature" in attempt.response_excerpt
    assert secret not in attempt.response_excerpt


def test_delivery__an_endpoint_failing_for_too_long_is_disabled(
    receiver, django_capture_on_commit_callbacks
):
    endpoint, _ = WebhookEndpoint.create(receiver.url("/fail"))
    seen = []
    endpoint_disabled.connect(
        lambda sender, endpoint, reason, **kw: seen.append(reason),
        dispatch_uid="test-failing",
        weak=False,
    )
    try:
        with outgoing_settings(receiver, OUTGOING_WEBHOOK_DISABLE_AFTER_SECONDS=3600):
            send_webhook("invoice.paid", {})
            work()
            endpoint.refresh_from_db()
            assert endpoint.enabled  # failing, but not for an hour yet
            # An hour of failures later:
            since = endpoint.failing_since.replace(year=endpoint.failing_since.year - 1)
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=since)
            send_webhook("invoice.paid", {})
            with django_capture_on_commit_callbacks(execute=True):
                work()
    finally:
        endpoint_disabled.disconnect(dispatch_uid="test-failing")
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert seen == ["failing"]


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_delivery__rate_limit_postpones_without_an_attempt(receiver, storage, request):
    from django.utils import timezone

    from automate_core.throttling import RateLimiter

    uri = "memory://" if storage == "memory" else request.getfixturevalue("redis_url")
    endpoint, _ = WebhookEndpoint.create(receiver.url("/ok"), rate_limit="1/min")
    RateLimiter(f"automate.outgoing:{endpoint.pk}", "1/min", storage=uri).reset()
    send_webhook("a", {})
    send_webhook("b", {})
    with outgoing_settings(receiver, RATE_LIMIT_STORAGE=uri):
        assert work() == {"done": 1, "rate_limited": 1}
    assert len(receiver.hits("/ok")) == 1
    postponed = items()[1]
    assert postponed.status == "pending"
    assert postponed.attempts == 0
    assert postponed.available_at > timezone.now()  # when the limit admits one again
    assert endpoint.attempts.count() == 1


def test_delivery__an_ordered_endpoint_holds_later_messages_back(receiver):
    from django.utils import timezone

    endpoint, _ = WebhookEndpoint.create(receiver.url("/flaky"), ordered=True)
    other, _ = WebhookEndpoint.create(receiver.url("/ok"))  # not ordered: not held back
    answers = [500]
    receiver.routes["/flaky"] = lambda h: send(h, answers.pop(0) if answers else 200)
    first = send_webhook("a", {"n": 1})
    second = send_webhook("b", {"n": 2})
    with outgoing_settings(receiver, OUTGOING_WEBHOOK_RETRY_SCHEDULE=[0, 60]):
        assert work() == {"failed": 1, "waiting": 1, "done": 2}
        assert [h[2]["webhook-id"] for h in receiver.hits("/flaky")] == [first.uid]
        waiting = OutboxItem.objects.get(
            connector_key=OUTGOING_KEY, payload__endpoint=endpoint.pk, status="pending"
        )
        assert waiting.attempts == 0  # waiting is not an attempt
        # Both due now: the first goes out, then the second.
        OutboxItem.objects.filter(connector_key=OUTGOING_KEY).exclude(status="done").update(
            available_at=timezone.now()
        )
        assert work() == {"done": 2}
    assert [h[2]["webhook-id"] for h in receiver.hits("/flaky")] == [
        first.uid,
        first.uid,
        second.uid,
    ]
    assert other.attempts.count() == 2


def test_retry_delay__the_documented_schedule_with_jitter(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "OUTGOING_WEBHOOK_RETRY_JITTER": 0}
    assert [retry_delay(n) for n in range(1, 9)] == [
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        36000,
        None,
    ]
    settings.AUTOMATE = {**settings.AUTOMATE, "OUTGOING_WEBHOOK_RETRY_JITTER": 0.2}
    for _ in range(50):
        assert 240 <= retry_delay(2) <= 360


# -- SSRF ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "addresses",
    [["10.0.0.7"], ["127.0.0.1"], ["169.254.169.254"], ["93.184.215.14", "192.168.1.5"]],
)
def test_delivery__a_url_resolving_to_a_private_address_is_refused(addresses, fake_dns, net_guard):
    fake_dns.add("hooks.customer.example", *addresses)
    endpoint, _ = WebhookEndpoint.create("https://hooks.customer.example/in")
    send_webhook("invoice.paid", {})

    assert work() == {"dead": 1}  # refused at once: no retry reaches it later

    assert net_guard.attempts == []  # no connect at all
    assert "hooks.customer.example" in fake_dns.lookups
    [attempt] = attempts(endpoint)
    assert attempt.error_code == "ssrf_refused"
    assert attempt.status_code is None


def test_delivery__loopback_needs_the_allow_list(receiver, net_guard):
    endpoint, _ = WebhookEndpoint.create(receiver.url("/ok"))
    send_webhook("invoice.paid", {})
    with outgoing_settings(receiver, HTTP_ALLOW_NETWORKS=[]):
        assert work() == {"dead": 1}
    assert receiver.requests == []
    assert attempts(endpoint)[0].error_code == "ssrf_refused"


def test_delivery__one_guarded_client_per_process_serves_every_delivery(receiver, monkeypatch):
    from automate_core import http

    fresh: dict = {}
    monkeypatch.setattr(http, "_shared", fresh)  # as in a fresh process
    try:
        check_one_client(receiver, monkeypatch, http)
    finally:
        for client in fresh.values():
            client.close()


def check_one_client(receiver, monkeypatch, http) -> None:
    from automate.conf import settings as app_settings

    built = []
    original = http.SafeTransport.__init__

    def counting(self, **kwargs):
        built.append(kwargs.get("purpose"))
        original(self, **kwargs)

    monkeypatch.setattr(http.SafeTransport, "__init__", counting)
    WebhookEndpoint.create(receiver.url("/ok"))
    WebhookEndpoint.create(receiver.url("/accepted"))
    send_webhook("invoice.paid", {"id": "in_1"})
    send_webhook("invoice.paid", {"id": "in_2"})
    assert work() == {"done": 4}
    assert built == ["webhooks"]  # one transport, not one per request
    client = http.shared_safe_client(
        purpose="webhooks", max_size=app_settings.OUTGOING_WEBHOOK_RESPONSE_MAX_BYTES
    )
    assert isinstance(client._transport, http.SafeTransport)  # the guarded one
    assert len(receiver.hits("/ok")) == len(receiver.hits("/accepted")) == 2


def test_delivery__the_shared_client_refuses_what_the_rules_refuse(receiver):
    endpoint, _ = WebhookEndpoint.create(receiver.url("/ok"))
    with outgoing_settings(receiver, HTTP_ALLOW_NETWORKS=[]):  # loopback no longer admitted
        send_webhook("invoice.paid", {"id": "in_1"})
        assert work() == {"dead": 1}
    [attempt] = attempts(endpoint)
    assert attempt.error_code == "ssrf_refused"
    assert receiver.hits("/ok") == []


def test_ssrf_safe_request__refuses_a_client_of_another_purpose():
    from automate_core import http
    from automate_core.providers.errors import AutomateError

    other = http.shared_safe_client(purpose="http_request")
    with pytest.raises(AutomateError, match="shared_safe_client"):
        http.ssrf_safe_request(
            "POST", "https://hooks.example.com/", purpose="webhooks", client=other
        )
