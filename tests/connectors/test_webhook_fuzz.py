"""Hypothesis against every built-in endpoint: never a 5xx, never a row unless signed.

Each example posts arbitrary headers (random names, and the sender's own header names with
arbitrary or nearly valid values) and an arbitrary body. About half the examples are then
signed correctly, on top of the arbitrary headers: those must be stored (202, one row),
whatever the body holds; the others must be refused (401, no row) with one logged reason
that says why (never the catch-all ``rejected`` nor ``verifier_raised``: a built-in verifier
always knows). Rows are deleted at the start of each example, so examples do not see each
other's events. Standard Webhooks deliveries are signed under either family of header names
(``webhook-*`` or Svix's ``svix-*``).
"""

from __future__ import annotations

import base64
import json
import logging
import time

import pytest
from django.test import Client, override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automate.replays import WebhookReceipt
from automate_connectors.verdict import Reason
from automate_core.models import OutboxItem
from tests.connectors.signing import (
    generic_signature,
    github_signature,
    slack_signature,
    standard_signature,
    stripe_header,
)

pytestmark = pytest.mark.django_db

STANDARD_KEY = "whsec_" + base64.b64encode(b"fuzz-standard-webhooks-key-32byt").decode()
SECRETS = {
    "github": "fuzz-github",
    "stripe": "whsec_fuzzStripe",
    "slack": "fuzz-slack",
    "standard_webhooks": STANDARD_KEY,
    "generic_hmac": "fuzz-generic",
}
AUTOMATE = {
    "SECRETS": SECRETS,
    "CONNECTORS": {
        key: {"secrets": [f"secret://{key}"]}
        | ({"config": {"timestamp_header": "X-Timestamp"}} if key == "generic_hmac" else {})
        for key in SECRETS
    },
}


def _sign(key: str, body: bytes, msg_id: str, family: str = "webhook") -> dict[str, str]:
    """The headers the real sender would add for ``body``, signed now."""
    secret, ts = SECRETS[key], int(time.time())
    if key == "github":
        return {"X-Hub-Signature-256": github_signature(secret, body)}
    if key == "stripe":
        return {"Stripe-Signature": stripe_header(secret, body, ts)}
    if key == "slack":
        return {
            "X-Slack-Signature": slack_signature(secret, ts, body),
            "X-Slack-Request-Timestamp": str(ts),
        }
    if key == "standard_webhooks":
        return {
            f"{family}-id": msg_id,
            f"{family}-timestamp": str(ts),
            f"{family}-signature": standard_signature(secret, msg_id, ts, body),
        }
    signature = generic_signature(secret, body, timestamp=ts)
    return {"X-Signature": signature, "X-Timestamp": str(ts)}


# What an HTTP server hands a WSGI app: visible ASCII and Latin-1, spaces and tabs (servers
# refuse control characters in header values, and decode the bytes as Latin-1).
header_text = st.text(
    alphabet=st.characters(codec="latin-1", exclude_categories=("Cc",), include_characters="\t"),
    max_size=120,
)
now_ish = st.integers(min_value=-400, max_value=400).map(lambda d: str(int(time.time()) + d))
# Cheap builders instead of from_regex: generation time dominates these tests.
hex_digest = st.binary(min_size=18, max_size=66).map(bytes.hex)
near_valid = st.one_of(
    header_text,
    now_ish,
    st.builds(lambda a, h: f"{a}={h}", st.sampled_from(["sha1", "sha256", "sha512"]), hex_digest),
    hex_digest.map(lambda h: "v0=" + h),
    st.builds(lambda t, h: f"t={t},v1={h}", now_ish, hex_digest),
    st.binary(min_size=28, max_size=36).map(lambda b: "v1," + base64.b64encode(b).decode()),
)
SENDER_HEADERS = [
    "X-Hub-Signature-256",
    "X-Hub-Signature",
    "X-GitHub-Event",
    "X-GitHub-Delivery",
    "Stripe-Signature",
    "X-Slack-Signature",
    "X-Slack-Request-Timestamp",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "X-Signature",
    "X-Timestamp",
    "Authorization",
    "Cookie",
]
header_names = st.one_of(
    st.sampled_from(SENDER_HEADERS),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzXYZ0123456789-", min_size=1, max_size=30).filter(
        # "host" is Django's ALLOWED_HOSTS check (a 400 before the view), not the view's.
        lambda n: n[0] != "-" and n.lower() not in {"content-length", "content-type", "host"}
    ),
)
headers_strategy = st.dictionaries(header_names, near_valid, max_size=8)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
event_bodies = st.fixed_dictionaries(
    {"id": st.text(max_size=300), "type": st.text(max_size=250)},
    optional={
        "data": json_values,
        "event_id": st.text(max_size=40),
        "event": st.fixed_dictionaries({"type": st.text(max_size=30)}),
    },
).map(lambda d: json.dumps(d).encode())
bodies = st.one_of(
    st.binary(max_size=1024),
    json_values.map(lambda v: json.dumps(v).encode()),
    event_bodies,
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


# What a built-in verifier may answer: it always knows why.
SPECIFIC_REASONS = set(Reason) - {Reason.REJECTED, Reason.VERIFIER_RAISED}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _check(
    key: str, headers: dict[str, str], body: bytes, signed: bool, msg_id: str, family: str
) -> None:
    OutboxItem.objects.all().delete()
    WebhookReceipt.objects.all().delete()  # each example is a first delivery
    if signed:
        signing = _sign(key, body, msg_id, family)
        # A complete svix-* family is read first (as Svix's library does): drop random
        # headers of the family not signed, which could otherwise complete it.
        dropped = {name.lower() for name in signing}
        if key == "standard_webhooks":
            other = "webhook-" if family == "svix" else "svix-"
            dropped |= {name.lower() for name in headers if name.lower().startswith(other)}
        headers = {k: v for k, v in headers.items() if k.lower() not in dropped} | signing
    client = Client(enforce_csrf_checks=True)
    collector = _Records()
    log = logging.getLogger("automate.webhooks")
    log.addHandler(collector)
    try:
        with override_settings(AUTOMATE=AUTOMATE):
            response = client.post(
                f"/webhooks/{key}/", data=body, content_type="application/json", headers=headers
            )
    finally:
        log.removeHandler(collector)
    assert response.status_code < 500
    rows = OutboxItem.objects.count()
    if not signed:
        assert response.status_code == 401, response.content
        assert rows == 0
        [refusal] = [r for r in collector.records if r.levelno == logging.WARNING]
        assert refusal.reason in SPECIFIC_REASONS, refusal.getMessage()
    elif response.status_code == 200:
        # Only a signed Slack url_verification is answered without storing anything.
        assert key == "slack"
        assert "challenge" in response.json()
        assert rows == 0
    else:
        assert response.status_code == 202, response.content
        assert rows == 1


FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("key", list(SECRETS))
@FUZZ
@given(
    headers=headers_strategy,
    body=bodies,
    signed=st.booleans(),
    msg_id=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=40).map(
        lambda s: "msg_" + s
    ),
    family=st.sampled_from(["webhook", "svix"]),
)
def test_webhook_fuzz__never_5xx_and_rows_only_when_signed(
    key, headers, body, signed, msg_id, family
):
    _check(key, headers, body, signed, msg_id, family)
