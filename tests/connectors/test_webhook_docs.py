"""docs/webhook-verifiers.md runs as written: each section's settings block configures a
real server (pytest-django's live server on 127.0.0.1), its sender block signs and posts
over HTTP, and the row the page promises is in the outbox."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import override_settings

from automate_core.models import OutboxItem
from automate_core.providers.base import ProviderContext

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhook-verifiers.md"
BLOCK_RE = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _sections() -> dict[str, list[str]]:
    """Python blocks of the page by section heading (``## `github` `` -> ``github``)."""
    sections: dict[str, list[str]] = {}
    for part in re.split(r"^## ", DOC.read_text(), flags=re.MULTILINE)[1:]:
        title, _, text = part.partition("\n")
        sections[title.strip().strip("`")] = BLOCK_RE.findall(text)
    return sections


# section -> (URL key, event type, external id) each of the page's senders must produce
EXPECTED = {
    "github": [("github", "ping", None)],
    "stripe": [("stripe", "invoice.paid", "evt_docs_1")],
    "slack": [("slack", "app_mention", "Ev0DOCS1")],
    "standard_webhooks": [
        ("acme", "invoice.paid", "msg_docs_1"),
        ("acme", "email.delivered", "msg_docs_svix_1"),  # the svix-* headers
    ],
    "generic_hmac": [("billing", "charge.refunded", "dlv_docs_1")],
}
SENDERS = [(section, index) for section, rows in EXPECTED.items() for index in range(len(rows))]


def test_docs__every_builtin_has_a_section_with_settings_and_a_sender():
    sections = _sections()
    for name in EXPECTED:
        blocks = sections[name]
        assert any(b.startswith("AUTOMATE = {") for b in blocks), name
        assert any("httpx.post(" in b for b in blocks), name


def test_docs__every_sender_block_is_expected():
    sections = _sections()
    for name, rows in EXPECTED.items():
        assert len([b for b in sections[name] if "httpx.post(" in b]) == len(rows), name


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("section", "index"), SENDERS)
def test_docs__example_is_accepted_by_a_running_server(section, index, live_server, monkeypatch):
    blocks = _sections()[section]
    settings_code = next(b for b in blocks if b.startswith("AUTOMATE = {"))
    sender_code = [b for b in blocks if "httpx.post(" in b][index]
    namespace: dict = {}
    exec(settings_code, namespace)
    monkeypatch.setenv("AUTOMATE_BASE_URL", live_server.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")

    sent: dict = {}
    with override_settings(AUTOMATE=namespace["AUTOMATE"]):
        exec(sender_code, sent)

    key, event_type, external_id = EXPECTED[section][index]
    assert sent["response"].status_code == 202, sent["response"].text
    item = OutboxItem.objects.get()
    assert item.connector_key == key
    assert item.event_type == event_type
    if external_id is not None:
        assert item.external_id == external_id


def test_docs__own_connector_example_verifies_with_verify_hmac():
    import hashlib
    import hmac
    import time

    code = _sections()["The verifiers in your own connector"][-1]
    namespace: dict = {}
    exec(code, namespace)
    connector = namespace["AcmeConnector"]({}, ctx=ProviderContext())
    body, timestamp = b'{"ok": true}', str(int(time.time()))
    digest = hmac.new(b"acme-secret", timestamp.encode() + b"." + body, hashlib.sha256)
    headers = {"X-Acme-Signature": "v2=" + digest.hexdigest(), "X-Acme-Timestamp": timestamp}
    with connector.using_secret("acme-secret"):
        assert connector.verify_webhook(headers, body) is True
        assert connector.verify_webhook({**headers, "X-Acme-Timestamp": "1"}, body) is False
