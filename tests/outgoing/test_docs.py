"""docs/sending-webhooks.md: the receiving side's example verifies a real delivery."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from automate import send_webhook
from automate.outgoing import WebhookEndpoint
from tests.outgoing.conftest import work

pytestmark = pytest.mark.django_db

DOC = Path(__file__).resolve().parents[2] / "docs" / "sending-webhooks.md"


def receiver_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    [block] = [b for b in blocks if "def receive(" in b]
    return textwrap.dedent(block)


def test_docs__the_receiver_example_accepts_a_delivery_and_refuses_a_forgery(receiver):
    _endpoint, secret = WebhookEndpoint.create(receiver.url("/ok"))
    send_webhook("invoice.paid", {"id": "in_1"})
    work()
    [(_m, _p, headers, body)] = receiver.hits("/ok")

    handled = []
    namespace = {"ENDPOINT_SECRET": secret, "handle": lambda *event: handled.append(event)}
    exec(receiver_example(), namespace)  # the page's code, as written
    receive = namespace["receive"]

    assert receive(body, headers) == 200
    assert handled == [("invoice.paid", {"id": "in_1"})]
    assert receive(body.replace(b"in_1", b"in_2"), headers) == 401
    assert len(handled) == 1


def test_docs__every_setting_of_the_page_is_in_the_reference():
    reference = (DOC.parent / "reference.md").read_text()
    for name in set(re.findall(r"OUTGOING_WEBHOOK_[A-Z_]+", DOC.read_text())):
        assert f"`{name}`" in reference, name
