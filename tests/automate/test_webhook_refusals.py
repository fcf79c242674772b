"""Why a delivery was refused: one WARNING per 401 with a reason code and the trace id,
never the body, a secret or an exception's message; and docs/receiving-webhooks.md says
the same (reason codes, log format, the LOGGING dict)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import logging.config
import re
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils.log import configure_logging

from automate_connectors.base import Connector
from automate_connectors.registry import connectors
from automate_connectors.verdict import Reason
from automate_core.models import OutboxItem
from automate_core.providers.base import ProviderContext

pytestmark = pytest.mark.django_db

DOC = Path(__file__).resolve().parents[2] / "docs" / "receiving-webhooks.md"

STRIPE_SECRET = "whsec_stripe-SECRET-MARKER-1"
UNUSABLE_SECRET = "not base64: SECRET-MARKER-2"
LEAKY_SECRET = "leaky-SECRET-MARKER-3"
PLAIN_SECRET = "plain-SECRET-MARKER-4"
SPEC_SECRET = "spec-SECRET-MARKER-5"
SECRET_MARKER = "SECRET-MARKER"
BODY = b'{"id": "evt_1", "type": "invoice.paid", "card": "BODY-MARKER-4242"}'


class LeakyVerifierConnector(Connector):
    """A client verifier whose exception message quotes the secret and the body."""

    key = "test_leaky_verifier"

    def verify_webhook(self, headers: dict, raw_body: bytes) -> bool:
        raise ValueError(f"expected {self.secret!r} for {raw_body!r}")


class PlainRefusalConnector(Connector):
    """A client verifier that answers a plain ``False``, as the spec's examples do."""

    key = "test_plain_refusal"

    def verify_webhook(self, headers: dict, raw_body: bytes) -> bool:
        return hmac.compare_digest(headers.get("X-Token", ""), "never")


AUTOMATE = {
    "SECRETS": {
        "stripe": STRIPE_SECRET,
        "unusable": UNUSABLE_SECRET,
        "leaky": LEAKY_SECRET,
        "plain": PLAIN_SECRET,
        "spec": SPEC_SECRET,
    },
    "CONNECTORS": {
        "stripe": {"secrets": ["secret://stripe"]},
        "svix_app": {"connector": "standard_webhooks", "secrets": ["secret://unusable"]},
        "leaky": {"connector": "test_leaky_verifier", "secrets": ["secret://leaky"]},
        "plain": {"connector": "test_plain_refusal", "secrets": ["secret://plain"]},
        "my_service": {"secrets": ["secret://spec"]},
    },
}


@pytest.fixture(autouse=True)
def _setup():
    for cls in (LeakyVerifierConnector, PlainRefusalConnector):
        connectors.register(cls)
    try:
        with override_settings(AUTOMATE=AUTOMATE):
            yield
    finally:
        for cls in (LeakyVerifierConnector, PlainRefusalConnector):
            connectors.unregister(cls.key)


def stripe_signature(secret: str, ts: int, body: bytes = BODY) -> str:
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def standard_headers() -> dict[str, str]:
    # Well-formed and fresh, signed with a valid key: only the configured secret is unusable.
    key, ts = b"std-key-material-32-bytes-long!!", str(int(time.time()))
    digest = hmac.new(key, b"msg_1." + ts.encode() + b"." + BODY, hashlib.sha256).digest()
    signature = "v1," + base64.b64encode(digest).decode()
    return {"webhook-id": "msg_1", "webhook-timestamp": ts, "webhook-signature": signature}


def now() -> int:
    return int(time.time())


# reason -> (connection key, headers, exception type in the log)
CASES = {
    "missing_header": ("stripe", lambda: {}, None),
    "malformed_header": ("stripe", lambda: {"Stripe-Signature": "t=soon,v1=zz"}, None),
    "timestamp_outside_tolerance": (
        "stripe",
        lambda: {"Stripe-Signature": stripe_signature(STRIPE_SECRET, now() - 3600)},
        None,
    ),
    "no_secret_matched": (
        "stripe",
        lambda: {"Stripe-Signature": stripe_signature("whsec_other", now())},
        None,
    ),
    "unusable_secret": ("svix_app", standard_headers, None),
    "verifier_raised": ("leaky", lambda: {"X-Signature": "whatever"}, "ValueError"),
    "rejected": ("plain", lambda: {"X-Token": "guess"}, None),
}


def refusals(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "automate.webhooks"]


def assert_nothing_secret_logged(caplog) -> None:
    """Neither the body nor a secret in any record: message, arguments or attributes."""
    for record in caplog.records:
        texts = [record.getMessage(), caplog.text, *map(repr, vars(record).values())]
        for text in texts:
            assert "BODY-MARKER" not in text, record
            assert SECRET_MARKER not in text, record


def test_refusal__cases_cover_every_reason_code():
    assert set(CASES) == {reason.value for reason in Reason}


@pytest.mark.parametrize("reason", list(CASES))
def test_refusal__401_no_row_and_one_warning_with_reason_and_trace_id(csrf_client, caplog, reason):
    key, headers, exception_type = CASES[reason]
    with caplog.at_level(logging.DEBUG):
        response = csrf_client.post(
            f"/webhooks/{key}/", data=BODY, content_type="application/json", headers=headers()
        )
    assert response.status_code == 401, response.content
    assert not OutboxItem.objects.exists()
    [record] = refusals(caplog)
    trace_id = response["X-Automate-Trace-Id"]
    assert record.levelno == logging.WARNING
    assert record.trace_id == trace_id == response.json()["trace_id"]
    assert record.reason == reason
    assert record.connector_key == key
    assert record.exception_type == exception_type
    suffix = f" exception={exception_type}" if exception_type else ""
    assert record.getMessage() == f"webhook refused: connector={key} reason={reason}{suffix}"
    assert_nothing_secret_logged(caplog)


def test_refusal__spec_connector_raising_on_a_missing_header_names_the_type(csrf_client, caplog):
    # The spec's MyWebhookConnector calls compare_digest(None, ...) when X-Signature is absent.
    with caplog.at_level(logging.DEBUG):
        response = csrf_client.post(
            "/webhooks/my_service/", data=BODY, content_type="application/json"
        )
    assert response.status_code == 401
    [record] = refusals(caplog)
    assert (record.reason, record.exception_type) == ("verifier_raised", "TypeError")
    assert_nothing_secret_logged(caplog)


def test_refusal__connection_without_secrets_is_verifier_raised_improperly_configured(
    csrf_client, caplog
):
    connections = {**AUTOMATE["CONNECTORS"], "stripe": {"secrets": []}}
    headers = {"Stripe-Signature": stripe_signature(STRIPE_SECRET, now())}
    with (
        override_settings(AUTOMATE={**AUTOMATE, "CONNECTORS": connections}),
        caplog.at_level(logging.WARNING, logger="automate.webhooks"),
    ):
        response = csrf_client.post(
            "/webhooks/stripe/", data=BODY, content_type="application/json", headers=headers
        )
    assert response.status_code == 401
    [record] = refusals(caplog)
    assert (record.reason, record.exception_type) == ("verifier_raised", "ImproperlyConfigured")


def test_refusal__accepted_delivery_logs_no_refusal(csrf_client, caplog):
    headers = {"Stripe-Signature": stripe_signature(STRIPE_SECRET, now())}
    with caplog.at_level(logging.DEBUG):
        response = csrf_client.post(
            "/webhooks/stripe/", data=BODY, content_type="application/json", headers=headers
        )
    assert response.status_code == 202
    assert not [r for r in refusals(caplog) if r.levelno >= logging.WARNING]


# -- The documentation ----------------------------------------------------------------------


def _section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


def test_docs__reason_table_lists_exactly_the_codes():
    section = _section("Why a delivery was refused")
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE))
    assert documented == {reason.value for reason in Reason}


def test_docs__logging_dict_prints_the_documented_line(csrf_client, capsys):
    section = _section("Why a delivery was refused")
    [example] = [b for b in _python_blocks(section) if b.startswith("LOGGING = {")]
    namespace: dict = {}
    exec(example, namespace)
    headers = {"Stripe-Signature": stripe_signature(STRIPE_SECRET, now() - 3600)}
    logging.config.dictConfig(namespace["LOGGING"])
    try:
        response = csrf_client.post(
            "/webhooks/stripe/", data=BODY, content_type="application/json", headers=headers
        )
    finally:
        # Back to what django.setup() configured for the rest of the suite.
        configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)
    trace_id = response["X-Automate-Trace-Id"]
    expected = (
        f"WARNING automate.webhooks [{trace_id}] webhook refused: "
        "connector=stripe reason=timestamp_outside_tolerance"
    )
    assert expected in capsys.readouterr().err.splitlines()
    # The page's sample line has the same shape.
    sample = re.sub(r"\[[0-9a-f]{32}\]", f"[{trace_id}]", section)
    assert expected in sample


def test_docs__own_connector_example_reports_its_reasons():
    [example] = [b for b in _python_blocks(_section("Why a delivery was refused")) if "class " in b]
    namespace: dict = {}
    exec(example, namespace)
    connector = namespace["AcmeConnector"]({}, ctx=ProviderContext())
    connector._automate_webhook_secrets = ("acme-secret",)
    body = b'{"ok": true}'
    good = hmac.new(b"acme-secret", b"acct_1." + body, hashlib.sha256).hexdigest()
    bad = hmac.new(b"other", b"acct_1." + body, hashlib.sha256).hexdigest()
    assert connector.webhook_verdict(
        {"X-Acme-Account": "acct_1", "X-Acme-Signature": good}, body
    ).accepted
    assert (
        connector.webhook_verdict({"X-Acme-Signature": good}, body).reason is Reason.MISSING_HEADER
    )
    verdict = connector.webhook_verdict({"X-Acme-Account": "acct_1", "X-Acme-Signature": bad}, body)
    assert verdict.reason is Reason.NO_SECRET_MATCHED
