"""An outsider holding one signed request (a log line, a proxy, a leaked capture).

Finding 8: where the signature covers no event id (GitHub, Jira, generic HMAC), the id was
an unsigned header, so the same signed body sent again with a new id, or none, was stored
again each time; a Slack interaction (no id at all) replayed within the timestamp tolerance
was stored each time. Now the signed content is remembered for
``AUTOMATE["WEBHOOK_REPLAY_WINDOW_SECONDS"]`` (automate.replays).

Finding 15: a misconfigured profile logged an ERROR for every unauthenticated request and
its 503 told anyone why.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client, override_settings

from automate import views
from automate_connectors.builtin.jira import JiraConnector as BuiltinJira
from automate_connectors.webhooks import Headers
from automate_core.models import OutboxItem
from automate_testing.context import make_context
from tests.connectors.signing import generic_signature, github_signature, slack_signature

pytestmark = pytest.mark.django_db(transaction=True)

SECRETS = {
    "github": "replay-github",
    "generic_hmac": "replay-generic",
    "slack": "replay-slack",
}
AUTOMATE = {
    "SECRETS": SECRETS,
    "CONNECTORS": {
        "github": {"secrets": ["secret://github"]},
        "generic_hmac": {
            "secrets": ["secret://generic_hmac"],
            "config": {"event_id_header": "X-Acme-Delivery"},
        },
        "acme_ts": {
            "connector": "generic_hmac",
            "secrets": ["secret://generic_hmac"],
            "config": {"timestamp_header": "X-Acme-Timestamp"},
        },
        "slack": {"secrets": ["secret://slack"]},
        "broken": {"connector": "github", "secrets": ["secret://NOT_DEFINED_ANYWHERE"]},
    },
}


@pytest.fixture(autouse=True)
def connections():
    with override_settings(AUTOMATE=AUTOMATE):
        yield


def _post(key: str, body: bytes, headers: dict[str, str]):
    client = Client(enforce_csrf_checks=True)
    return client.post(
        f"/webhooks/{key}/", data=body, content_type="application/json", headers=headers
    )


def _rows(key: str) -> int:
    return OutboxItem.objects.filter(connector_key=key).count()


GITHUB_BODY = json.dumps({"action": "opened", "issue": {"number": 1}}).encode()


def test_outsider__github_body_replayed_with_new_or_missing_delivery_ids_is_stored_once():
    signature = {"X-Hub-Signature-256": github_signature(SECRETS["github"], GITHUB_BODY)}
    first = _post(
        "github", GITHUB_BODY, {**signature, "X-GitHub-Event": "issues", "X-GitHub-Delivery": "d-1"}
    )
    assert first.status_code == 202
    for delivery in ("d-2", "d-3", None):
        headers = {**signature, "X-GitHub-Event": "issues"}
        if delivery:
            headers["X-GitHub-Delivery"] = delivery
        replay = _post("github", GITHUB_BODY, headers)
        assert replay.status_code == 200, delivery
        assert replay.json() == {
            "trace_id": first.json()["trace_id"],
            "id": first.json()["id"],
            "duplicate": True,
        }
    assert _rows("github") == 1


def test_outsider__github_redelivery_of_the_same_delivery_is_still_a_duplicate():
    headers = {
        "X-Hub-Signature-256": github_signature(SECRETS["github"], GITHUB_BODY),
        "X-GitHub-Delivery": "d-1",
    }
    assert _post("github", GITHUB_BODY, headers).status_code == 202
    assert _post("github", GITHUB_BODY, headers).status_code == 200
    assert _rows("github") == 1


def test_outsider__github_distinct_bodies_are_distinct_events():
    for number in range(3):
        body = json.dumps({"action": "opened", "issue": {"number": number}}).encode()
        headers = {"X-Hub-Signature-256": github_signature(SECRETS["github"], body)}
        assert _post("github", body, headers).status_code == 202
    assert _rows("github") == 3


def test_outsider__concurrent_replays_with_distinct_ids_store_one_event(postgres):
    """Four copies at once, each with its own delivery id: the receipt's unique index
    (not a lock held in memory) lets one through, on a database where they really race."""
    signature = {"X-Hub-Signature-256": github_signature(SECRETS["github"], GITHUB_BODY)}
    barrier = threading.Barrier(4)

    def send(n: int) -> int:
        try:
            barrier.wait(timeout=30)
            return _post(
                "github", GITHUB_BODY, {**signature, "X-GitHub-Delivery": f"c{n}"}
            ).status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        codes = sorted(pool.map(send, range(4)))
    assert codes == [200, 200, 200, 202]
    assert _rows("github") == 1


def test_outsider__jira_signs_no_id_so_its_replay_content_is_the_signed_body():
    # tests/testapp registers the spec's JiraConnector as "jira", so the built-in one is
    # checked here directly; the view's use of the answer is the GitHub tests' path.
    jira = BuiltinJira(
        {"url": "https://example.atlassian.net", "email": "a@example.com", "api_token": "x"},
        ctx=make_context({}),
    )
    body = json.dumps({"webhookEvent": "jira:issue_created", "timestamp": 1}).encode()
    for identifier in ("w1", "w2", None):
        headers = Headers({"X-Atlassian-Webhook-Identifier": identifier} if identifier else {})
        event = jira.parse_webhook(headers, body)
        assert event.external_id == identifier  # unsigned: not what dedupes replays
        assert jira.webhook_replay_content(headers, body, event) == body


def test_outsider__generic_hmac_body_replayed_with_new_ids_is_stored_once():
    body = b'{"type": "order.paid", "amount": 10}'
    signature = {"X-Signature": generic_signature(SECRETS["generic_hmac"], body)}
    for n in range(4):
        response = _post("generic_hmac", body, {**signature, "X-Acme-Delivery": f"a{n}"})
        assert response.status_code == (202 if n == 0 else 200)
    assert _rows("generic_hmac") == 1


def _acme_ts(body: bytes, ts: int) -> dict[str, str]:
    signed = f"{ts}.".encode() + body
    digest = hmac.new(SECRETS["generic_hmac"].encode(), signed, hashlib.sha256).hexdigest()
    return {"X-Signature": digest, "X-Acme-Timestamp": str(ts)}


def test_outsider__generic_hmac_with_a_signed_timestamp_dedupes_on_body_and_timestamp():
    body = b'{"type": "heartbeat"}'
    now = int(time.time())
    assert _post("acme_ts", body, _acme_ts(body, now)).status_code == 202
    assert _post("acme_ts", body, _acme_ts(body, now)).status_code == 200  # the replay
    # The same body signed at another time is another event.
    assert _post("acme_ts", body, _acme_ts(body, now - 1)).status_code == 202
    assert _rows("acme_ts") == 2


def _slack(body: bytes, ts: int) -> dict[str, str]:
    return {
        "X-Slack-Signature": slack_signature(SECRETS["slack"], ts, body),
        "X-Slack-Request-Timestamp": str(ts),
    }


BLOCK_ACTIONS = (
    b"payload="
    + json.dumps(
        {"type": "block_actions", "user": {"id": "U1"}, "actions": [{"action_id": "approve"}]}
    ).encode()
)


def test_outsider__slack_block_actions_replayed_within_the_tolerance_is_stored_once():
    ts = int(time.time())
    headers = _slack(BLOCK_ACTIONS, ts)
    responses = [_post("slack", BLOCK_ACTIONS, headers).status_code for _ in range(3)]
    assert responses == [202, 200, 200]
    assert _rows("slack") == 1
    # A second click (Slack signs it with its own timestamp) is a new event.
    assert _post("slack", BLOCK_ACTIONS, _slack(BLOCK_ACTIONS, ts - 5)).status_code == 202
    assert _rows("slack") == 2


def test_outsider__a_replay_after_the_window_is_a_new_event():
    from automate.replays import WebhookReceipt

    headers = {"X-Hub-Signature-256": github_signature(SECRETS["github"], GITHUB_BODY)}
    assert _post("github", GITHUB_BODY, headers).status_code == 202
    # The window (a day by default) has passed for the first receipt.
    WebhookReceipt.objects.update(seen_at=WebhookReceipt.objects.get().seen_at - timedelta(days=2))
    assert _post("github", GITHUB_BODY, headers).status_code == 202
    assert _post("github", GITHUB_BODY, headers).status_code == 200
    assert _rows("github") == 2
    assert WebhookReceipt.objects.count() == 1  # the receipt was taken over, not doubled


def test_outsider__replay_window_zero_turns_the_guard_off():
    from automate.replays import WebhookReceipt

    with override_settings(AUTOMATE={**AUTOMATE, "WEBHOOK_REPLAY_WINDOW_SECONDS": 0}):
        headers = {"X-Hub-Signature-256": github_signature(SECRETS["github"], GITHUB_BODY)}
        assert _post("github", GITHUB_BODY, headers).status_code == 202
        assert _post("github", GITHUB_BODY, headers).status_code == 202
    assert _rows("github") == 2
    assert not WebhookReceipt.objects.exists()


def test_outsider__a_replay_of_a_deleted_event_stores_nothing():
    headers = {"X-Hub-Signature-256": github_signature(SECRETS["github"], GITHUB_BODY)}
    assert _post("github", GITHUB_BODY, headers).status_code == 202
    OutboxItem.objects.all().delete()  # the receipt outlives its row, pointing at nothing
    replay = _post("github", GITHUB_BODY, headers)
    assert replay.status_code == 200
    assert replay.json()["duplicate"] is True
    assert _rows("github") == 0


# -- Finding 15 -------------------------------------------------------------------------


def test_outsider__misconfigured_profile_logs_one_warning_a_minute_and_answers_no_cause(
    caplog, monkeypatch
):
    now = [1000.0]
    # raising=False: the old code had neither, and must fail on its answers, not here.
    monkeypatch.setattr(views, "_clock", lambda: now[0], raising=False)
    monkeypatch.setattr(views, "_misconfigured_logged", {}, raising=False)
    with caplog.at_level(logging.DEBUG):
        answers = [_post("broken", b"{}", {}) for _ in range(5)]
        now[0] += 59
        answers.append(_post("broken", b"{}", {}))
        now[0] += 2  # a minute after the first WARNING
        answers.append(_post("broken", b"{}", {}))
    assert {a.status_code for a in answers} == {503}
    for answer in answers:
        body = answer.json()
        assert body["error"] == "temporarily unavailable"
        assert "NOT_DEFINED_ANYWHERE" not in answer.content.decode()
        assert "misconfigured" not in answer.content.decode()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # django.request's too
    records = [r for r in caplog.records if r.name == "automate.webhooks"]
    assert [r.levelname for r in records] == ["WARNING", "WARNING"]
    assert "NOT_DEFINED_ANYWHERE" in records[0].getMessage()  # the operator learns why
