"""The built-in connectors end to end: signed requests through WebhookView into the outbox.

Each sender is configured with no code (settings or a ConnectionProfile row), signs with its
own algorithm (its library where it has one), and every case asserts the status code and the
outbox rows.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from automate.models import ConnectionProfile
from automate_connectors.builtin.slack import SlackConnector
from automate_connectors.builtin.standard_webhooks import StandardWebhooksConnector
from automate_connectors.registry import get_connector
from automate_core.models import OutboxItem
from tests.connectors.signing import (
    GITHUB_EXAMPLE,
    SLACK_EXAMPLE,
    STANDARD_EXAMPLE,
    generic_signature,
    github_signature,
    slack_signature,
    standard_signature,
    stripe_header,
)

pytestmark = pytest.mark.django_db

STANDARD_KEY = "whsec_" + base64.b64encode(b"e2e-standard-webhooks-key-32byte").decode()
OLD_STANDARD_KEY = "whsec_" + base64.b64encode(b"e2e-standard-webhooks-old-key-32").decode()
SECRETS = {
    "github": "gh-webhook-secret",
    "github-old": "gh-webhook-secret-old",
    "stripe": "whsec_e2eStripeSecret",
    "stripe-old": "whsec_e2eStripeSecretOld",
    "slack": "slack-signing-secret",
    "slack-old": "slack-signing-secret-old",
    "standard": STANDARD_KEY,
    "standard-old": OLD_STANDARD_KEY,
    "acme": "acme-webhook-secret",
    "acme-old": "acme-webhook-secret-old",
}
ACME_CONFIG = {
    "header": "X-Acme-Signature",
    "algorithm": "sha512",
    "encoding": "base64",
    "prefix": "sha512=",
    "timestamp_header": "X-Acme-Timestamp",
    "event_id_header": "X-Acme-Delivery",
    "event_type_field": "event.kind",
}
AUTOMATE = {
    "ENCRYPTION_KEYS": ["kQHKMyc0hW0aZcB7uPzMZxHXk5l1lM8Cr2Ow0ySvpO0="],
    "SECRETS": SECRETS,
    "CONNECTORS": {
        "github": {"secrets": ["secret://github", "secret://github-old"]},
        "stripe": {"secrets": ["secret://stripe", "secret://stripe-old"]},
        "slack": {"secrets": ["secret://slack", "secret://slack-old"]},
        "standard_webhooks": {"secrets": ["secret://standard", "secret://standard-old"]},
        "acme": {
            "connector": "generic_hmac",
            "config": ACME_CONFIG,
            "secrets": ["secret://acme", "secret://acme-old"],
        },
    },
}


@pytest.fixture(autouse=True)
def _automate_settings():
    with override_settings(AUTOMATE=AUTOMATE):
        yield


def now() -> int:
    return int(time.time())


@dataclass
class Sender:
    """How one sender signs a delivery, and what the outbox row must say about it."""

    key: str
    secret: str
    sign: Callable[..., dict[str, str]]  # (secret, body, event_id, timestamp) -> headers
    body: Callable[[str], bytes]  # event_id -> body
    event_type: str
    content_type: str = "application/json"
    stale: bool = True  # whether the scheme signs a timestamp
    kept_headers: dict[str, str] = field(default_factory=dict)


def _github_headers(secret: str, body: bytes, event_id: str, ts: int) -> dict[str, str]:
    return {
        "X-Hub-Signature-256": github_signature(secret, body),
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": event_id,
        "X-GitHub-Hook-ID": "42",
    }


def _stripe_headers(secret: str, body: bytes, event_id: str, ts: int) -> dict[str, str]:
    return {"Stripe-Signature": stripe_header(secret, body, ts)}


def _slack_headers(secret: str, body: bytes, event_id: str, ts: int) -> dict[str, str]:
    return {
        "X-Slack-Signature": slack_signature(secret, ts, body),
        "X-Slack-Request-Timestamp": str(ts),
    }


def _standard_headers(secret: str, body: bytes, event_id: str, ts: int) -> dict[str, str]:
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": standard_signature(secret, event_id, ts, body),
    }


def _acme_headers(secret: str, body: bytes, event_id: str, ts: int) -> dict[str, str]:
    signature = generic_signature(
        secret, body, algorithm="sha512", encoding="base64", prefix="sha512=", timestamp=ts
    )
    return {"X-Acme-Signature": signature, "X-Acme-Timestamp": str(ts), "X-Acme-Delivery": event_id}


SENDERS = {
    "github": Sender(
        key="github",
        secret="github",
        sign=_github_headers,
        body=lambda eid: json.dumps({"action": "opened", "issue": {"id": 7}}).encode(),
        event_type="issues",
        stale=False,
        kept_headers={"x-github-hook-id": "42", "x-github-event": "issues"},
    ),
    "stripe": Sender(
        key="stripe",
        secret="stripe",
        sign=_stripe_headers,
        body=lambda eid: json.dumps({"id": eid, "type": "invoice.paid", "data": {}}).encode(),
        event_type="invoice.paid",
    ),
    "slack": Sender(
        key="slack",
        secret="slack",
        sign=_slack_headers,
        body=lambda eid: json.dumps(
            {
                "type": "event_callback",
                "event_id": eid,
                "event": {"type": "app_mention", "text": "hi"},
            }
        ).encode(),
        event_type="app_mention",
    ),
    "standard_webhooks": Sender(
        key="standard_webhooks",
        secret="standard",
        sign=_standard_headers,
        body=lambda eid: json.dumps({"type": "user.created", "data": {"id": 1}}).encode(),
        event_type="user.created",
    ),
    "acme": Sender(
        key="acme",
        secret="acme",
        sign=_acme_headers,
        body=lambda eid: json.dumps({"event": {"kind": "order.shipped"}}).encode(),
        event_type="order.shipped",
        kept_headers={"x-acme-delivery": "ANY", "x-acme-timestamp": "ANY"},
    ),
}
SENDER_IDS = list(SENDERS)


def deliver(client, sender: Sender, *, event_id="evt_001", secret=None, ts=None, body=None, **kw):
    """Sign a delivery as ``sender`` would and post it; ``kw`` overrides or drops headers."""
    body = sender.body(event_id) if body is None else body
    ts = now() if ts is None else ts
    headers = sender.sign(SECRETS[secret or sender.secret], body, event_id, ts)
    for name, value in kw.items():
        name = name.replace("_", "-")
        headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
        if value is not None:
            headers[name] = value
    return client.post(
        f"/webhooks/{sender.key}/", data=body, content_type=sender.content_type, headers=headers
    )


# -- Accepted -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SENDER_IDS)
def test_builtin__signed_delivery_is_stored_then_202(csrf_client, name):
    sender = SENDERS[name]
    response = deliver(csrf_client, sender, event_id="evt_001")
    assert response.status_code == 202, response.content
    item = OutboxItem.objects.get()
    assert response.json() == {"trace_id": item.trace_id, "id": item.pk}
    assert item.connector_key == sender.key
    assert item.event_type == sender.event_type
    assert item.external_id == "evt_001"
    assert item.payload == json.loads(sender.body("evt_001"))
    for header, value in sender.kept_headers.items():
        assert header in item.headers
        assert value == "ANY" or item.headers[header] == value


@pytest.mark.parametrize("name", SENDER_IDS)
def test_builtin__older_active_secret_still_verifies(csrf_client, name):
    sender = SENDERS[name]
    response = deliver(csrf_client, sender, secret=f"{sender.secret}-old")
    assert response.status_code == 202
    assert OutboxItem.objects.count() == 1


@pytest.mark.parametrize("name", SENDER_IDS)
def test_builtin__replayed_event_id_is_stored_once(csrf_client, name):
    sender = SENDERS[name]
    first = deliver(csrf_client, sender, event_id="evt_replay")
    second = deliver(csrf_client, sender, event_id="evt_replay")
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json()["duplicate"] is True
    assert second.json()["trace_id"] == first.json()["trace_id"]
    assert OutboxItem.objects.count() == 1


# -- Rejected: 401 and no row ---------------------------------------------------------------


SIGNATURE_HEADERS = {
    "github": "X-Hub-Signature-256",
    "stripe": "Stripe-Signature",
    "slack": "X-Slack-Signature",
    "standard_webhooks": "webhook-signature",
    "acme": "X-Acme-Signature",
}
TIMESTAMP_HEADERS = {
    "slack": "X-Slack-Request-Timestamp",
    "standard_webhooks": "webhook-timestamp",
    "acme": "X-Acme-Timestamp",
}


def _assert_rejected(response) -> None:
    assert response.status_code == 401, response.content
    assert response.json()["error"] == "signature verification failed"
    assert not OutboxItem.objects.exists()


@pytest.mark.parametrize("name", SENDER_IDS)
def test_builtin__wrong_secret_is_401(csrf_client, name):
    # A well-formed secret of each kind (also valid base64 for Standard Webhooks).
    wrong = "whsec_" + base64.b64encode(b"w" * 32).decode()
    sender = SENDERS[name]
    body = sender.body("evt_1")
    headers = sender.sign(wrong, body, "evt_1", now())
    response = csrf_client.post(
        f"/webhooks/{sender.key}/", data=body, content_type=sender.content_type, headers=headers
    )
    _assert_rejected(response)


@pytest.mark.parametrize("name", SENDER_IDS)
def test_builtin__tampered_body_is_401(csrf_client, name):
    sender = SENDERS[name]
    headers = sender.sign(SECRETS[sender.secret], sender.body("evt_1"), "evt_1", now())
    tampered = sender.body("evt_1").replace(b"}", b', "admin": true}', 1)
    response = csrf_client.post(
        f"/webhooks/{sender.key}/", data=tampered, content_type=sender.content_type, headers=headers
    )
    _assert_rejected(response)


@pytest.mark.parametrize("name", SENDER_IDS)
def test_builtin__missing_signature_header_is_401(csrf_client, name):
    sender = SENDERS[name]
    _assert_rejected(deliver(csrf_client, sender, **{SIGNATURE_HEADERS[name]: None}))


@pytest.mark.parametrize("name", SENDER_IDS)
@pytest.mark.parametrize("value", ["", "garbage", "sha256=", "t=1,v1=00", "v1,====", "é" * 10])
def test_builtin__malformed_signature_header_is_401(csrf_client, name, value):
    sender = SENDERS[name]
    _assert_rejected(deliver(csrf_client, sender, **{SIGNATURE_HEADERS[name]: value}))


@pytest.mark.parametrize("name", [n for n in SENDER_IDS if SENDERS[n].stale])
# Well past the 300 s tolerance: these run on the real clock, and a slow machine must not
# bring a future timestamp back inside the window (the edges are tested with a frozen clock
# in test_verification.py).
@pytest.mark.parametrize("offset", [-360, 360, -86400])
def test_builtin__stale_or_future_timestamp_is_401(csrf_client, name, offset):
    _assert_rejected(deliver(csrf_client, SENDERS[name], ts=now() + offset))


@pytest.mark.parametrize("name", list(TIMESTAMP_HEADERS))
def test_builtin__missing_or_malformed_timestamp_is_401(csrf_client, name):
    sender = SENDERS[name]
    _assert_rejected(deliver(csrf_client, sender, **{TIMESTAMP_HEADERS[name]: None}))
    _assert_rejected(deliver(csrf_client, sender, **{TIMESTAMP_HEADERS[name]: "soon"}))


def test_builtin__standard_webhooks_missing_id_is_401(csrf_client):
    _assert_rejected(deliver(csrf_client, SENDERS["standard_webhooks"], webhook_id=None))


def test_builtin__non_utf8_body_signed_correctly_is_kept_raw(csrf_client):
    body = b"\xff\xfe\x00 not json"
    headers = {"X-Hub-Signature-256": github_signature(SECRETS["github"], body)}
    headers["X-GitHub-Delivery"] = "d-raw"
    response = csrf_client.post(
        "/webhooks/github/", data=body, content_type="text/plain", headers=headers
    )
    assert response.status_code == 202
    item = OutboxItem.objects.get()
    assert item.payload is None
    assert bytes(item.raw_body) == body


# -- Each sender's published example -------------------------------------------------------


def test_github__published_example_through_the_view(csrf_client):
    ex = GITHUB_EXAMPLE
    with override_settings(AUTOMATE={**AUTOMATE, "SECRETS": {**SECRETS, "github": ex["secret"]}}):
        response = csrf_client.post(
            "/webhooks/github/",
            data=ex["body"],
            content_type="text/plain",
            headers={
                "X-Hub-Signature-256": ex["signature"],
                "X-GitHub-Event": "ping",
                "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            },
        )
    assert response.status_code == 202
    item = OutboxItem.objects.get()
    assert item.event_type == "ping"
    assert item.external_id == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert bytes(item.raw_body) == b"Hello, World!"


def test_github__form_encoded_delivery_is_unwrapped(csrf_client):
    from urllib.parse import urlencode

    body = urlencode({"payload": json.dumps({"zen": "Keep it logically awesome."})}).encode()
    headers = {
        "X-Hub-Signature-256": github_signature(SECRETS["github"], body),
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "d-form",
    }
    response = csrf_client.post(
        "/webhooks/github/",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers=headers,
    )
    assert response.status_code == 202
    assert OutboxItem.objects.get().payload == {"zen": "Keep it logically awesome."}


def test_github__id_in_the_payload_is_not_the_delivery_id(csrf_client):
    body = json.dumps({"id": 1, "zen": "x"}).encode()
    headers = {"X-Hub-Signature-256": github_signature(SECRETS["github"], body)}
    response = csrf_client.post(
        "/webhooks/github/", data=body, content_type="application/json", headers=headers
    )
    assert response.status_code == 202
    item = OutboxItem.objects.get()
    assert item.external_id is None
    assert item.event_type == ""


def test_slack__documented_example_with_a_frozen_clock(csrf_client, monkeypatch):
    ex = SLACK_EXAMPLE
    monkeypatch.setattr(SlackConnector, "clock", staticmethod(lambda: ex["timestamp"] + 5.0))
    with override_settings(AUTOMATE={**AUTOMATE, "SECRETS": {**SECRETS, "slack": ex["secret"]}}):
        response = csrf_client.post(
            "/webhooks/slack/",
            data=ex["body"],
            content_type="application/x-www-form-urlencoded",
            headers={
                "X-Slack-Signature": ex["signature"],
                "X-Slack-Request-Timestamp": str(ex["timestamp"]),
            },
        )
    assert response.status_code == 202
    item = OutboxItem.objects.get()
    assert item.event_type == "slash_command"
    assert item.external_id == "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    assert item.payload["command"] == "/webhook-collect"
    assert item.payload["text"] == ""
    assert item.headers["x-slack-request-timestamp"] == "1531420618"


def test_slack__documented_example_is_stale_on_the_real_clock(csrf_client):
    ex = SLACK_EXAMPLE
    with override_settings(AUTOMATE={**AUTOMATE, "SECRETS": {**SECRETS, "slack": ex["secret"]}}):
        response = csrf_client.post(
            "/webhooks/slack/",
            data=ex["body"],
            content_type="application/x-www-form-urlencoded",
            headers={
                "X-Slack-Signature": ex["signature"],
                "X-Slack-Request-Timestamp": str(ex["timestamp"]),
            },
        )
    _assert_rejected(response)


def test_slack__url_verification_answers_the_challenge_and_stores_nothing(csrf_client):
    body = json.dumps(
        {
            "token": "t",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
    ).encode()
    response = deliver(csrf_client, SENDERS["slack"], body=body)
    assert response.status_code == 200
    assert response.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    assert not OutboxItem.objects.exists()


def test_slack__unsigned_url_verification_is_401(csrf_client):
    body = b'{"type": "url_verification", "challenge": "abc"}'
    response = deliver(csrf_client, SENDERS["slack"], body=body, X_Slack_Signature="v0=" + "0" * 64)
    _assert_rejected(response)


def test_slack__interaction_payload_type_is_the_event_type(csrf_client):
    from urllib.parse import urlencode

    interaction = {"type": "block_actions", "trigger_id": "1.2.3", "actions": [{"value": "ok"}]}
    body = urlencode({"payload": json.dumps(interaction)}).encode()
    response = csrf_client.post(
        "/webhooks/slack/",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers=_slack_headers(SECRETS["slack"], body, "", now()),
    )
    assert response.status_code == 202
    item = OutboxItem.objects.get()
    assert item.event_type == "block_actions"
    assert item.payload == interaction


def test_slack__retry_of_an_event_is_not_stored_again(csrf_client):
    sender = SENDERS["slack"]
    assert deliver(csrf_client, sender, event_id="Ev1").status_code == 202
    retry = deliver(csrf_client, sender, event_id="Ev1", X_Slack_Retry_Num="1")
    assert retry.status_code == 200
    assert OutboxItem.objects.count() == 1


def test_standard_webhooks__published_example_with_a_frozen_clock(csrf_client, monkeypatch):
    ex = STANDARD_EXAMPLE
    monkeypatch.setattr(StandardWebhooksConnector, "clock", staticmethod(lambda: ex["timestamp"]))
    with override_settings(AUTOMATE={**AUTOMATE, "SECRETS": {**SECRETS, "standard": ex["secret"]}}):
        response = csrf_client.post(
            "/webhooks/standard_webhooks/",
            data=ex["body"],
            content_type="application/json",
            headers={
                "webhook-id": ex["id"],
                "webhook-timestamp": str(ex["timestamp"]),
                "webhook-signature": ex["signature"],
            },
        )
    assert response.status_code == 202
    item = OutboxItem.objects.get()
    assert item.external_id == ex["id"]
    assert item.payload == {"test": 2432232314}
    assert item.headers["webhook-timestamp"] == "1614265330"


# -- Configuration through ConnectionProfile rows --------------------------------------------


def test_generic_hmac__profile_row_with_encrypted_secrets(csrf_client):
    profile = ConnectionProfile(
        key="billing",
        connector_key="generic_hmac",
        config={"header": "X-Billing-Sig", "encoding": "base64", "event_id_field": "meta.id"},
    )
    profile.add_webhook_secret("billing-old")
    profile.add_webhook_secret("billing-new")
    profile.save()
    for n, secret in enumerate(("billing-old", "billing-new")):
        body = json.dumps({"type": "charge", "meta": {"id": n}}).encode()
        signature = generic_signature(secret, body, encoding="base64")
        response = csrf_client.post(
            "/webhooks/billing/",
            data=body,
            content_type="application/json",
            headers={"X-Billing-Sig": signature},
        )
        assert response.status_code == 202, secret
    assert sorted(OutboxItem.objects.values_list("external_id", "event_type")) == [
        ("0", "charge"),
        ("1", "charge"),
    ]
    body = b'{"meta": {"id": 9}}'
    hex_signature = generic_signature("billing-new", body)  # hex, but base64 is configured
    response = csrf_client.post(
        "/webhooks/billing/",
        data=body,
        content_type="application/json",
        headers={"X-Billing-Sig": hex_signature},
    )
    assert response.status_code == 401
    assert OutboxItem.objects.count() == 2


def test_generic_hmac__defaults_verify_the_guides_x_signature_scheme(csrf_client):
    ConnectionProfile(key="plain", connector_key="generic_hmac").save()
    profile = ConnectionProfile.objects.get(key="plain")
    profile.add_webhook_secret("plain-secret")
    profile.save()
    body = b'{"id": "p1", "type": "thing.done"}'
    response = csrf_client.post(
        "/webhooks/plain/",
        data=body,
        content_type="application/json",
        headers={"X-Signature": generic_signature("plain-secret", body)},
    )
    assert response.status_code == 202
    item = OutboxItem.objects.get()
    assert item.event_type == "thing.done"
    assert item.external_id is None  # no id source configured: nothing is guessed


@pytest.mark.parametrize(
    ("config", "field_name"),
    [
        ({"algorithm": "md5"}, "algorithm"),
        ({"encoding": "base32"}, "encoding"),
        ({"header": "X Bad Header"}, "header"),
        ({"tolerance_seconds": 0}, "tolerance_seconds"),
        ({"headr": "X-Typo"}, "headr"),
    ],
)
def test_generic_hmac__invalid_config_is_a_clear_validation_error(config, field_name):
    profile = ConnectionProfile(key="bad", connector_key="generic_hmac", config=config)
    with pytest.raises(ValidationError) as excinfo:
        profile.save()
    assert field_name in str(excinfo.value)
    assert not ConnectionProfile.objects.exists()


@pytest.mark.parametrize("key", ["github", "stripe", "slack", "standard_webhooks"])
def test_builtin__unknown_config_keys_are_rejected(key):
    profile = ConnectionProfile(key=f"x-{key}", connector_key=key, config={"secret": "x"})
    with pytest.raises(ValidationError, match="secret"):
        profile.save()


def test_stripe__tolerance_is_configurable_per_profile(csrf_client):
    profile = ConnectionProfile(
        key="stripe", connector_key="stripe", config={"tolerance_seconds": 3600}
    )
    profile.add_webhook_secret(SECRETS["stripe"])
    profile.save()
    response = deliver(csrf_client, SENDERS["stripe"], ts=now() - 1800)
    assert response.status_code == 202


def test_builtin__registered_with_verifying_triggers():
    for key in ("generic_hmac", "github", "stripe", "slack", "standard_webhooks"):
        cls = get_connector(key)
        assert cls.triggers()
        assert all(t.verification_method != "none" for t in cls.triggers())
    # The receive-only senders have no actions; Slack and GitHub also call their APIs.
    for key in ("generic_hmac", "stripe", "standard_webhooks"):
        assert get_connector(key).actions() == []


# -- Signed but unstorable content: stored safely, never a 500 ----------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "evt_nul", "type": "a\\u0000b"}',
        b'{"id": "evt_sur", "type": "t", "note": "\\ud800"}',
        b'{"id": "evt_nan", "type": "t", "amount": NaN}',
        b'{"id": "evt_inf", "type": "t", "amount": -Infinity}',
    ],
    ids=["nul", "lone surrogate", "nan", "infinity"],
)
def test_builtin__unstorable_json_is_kept_as_raw_bytes(csrf_client, body):
    sender = SENDERS["stripe"]
    response = deliver(csrf_client, sender, body=body)
    assert response.status_code == 202
    item = OutboxItem.objects.get()
    assert item.payload is None
    assert bytes(item.raw_body) == body
    assert item.external_id == json.loads(body)["id"]
    assert "\x00" not in item.event_type


def test_builtin__overlong_event_id_is_hashed_and_still_deduplicated(csrf_client):
    sender = SENDERS["standard_webhooks"]
    long_id = "msg_" + "x" * 400
    first = deliver(csrf_client, sender, event_id=long_id)
    second = deliver(csrf_client, sender, event_id=long_id)
    assert first.status_code == 202
    assert second.status_code == 200
    item = OutboxItem.objects.get()
    assert item.external_id.startswith("sha256:")
    assert len(item.external_id) == len("sha256:") + 64


@pytest.mark.parametrize("name", SENDER_IDS)
def test_builtin__connection_without_a_secret_accepts_nothing(csrf_client, name):
    sender = SENDERS[name]
    connectors = {key: {**entry, "secrets": []} for key, entry in AUTOMATE["CONNECTORS"].items()}
    with override_settings(AUTOMATE={**AUTOMATE, "CONNECTORS": connectors}):
        response = deliver(csrf_client, sender)
    _assert_rejected(response)
