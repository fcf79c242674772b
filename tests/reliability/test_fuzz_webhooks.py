"""Fuzz: 10,000 malformed, forged and valid webhook requests against a live HTTP server.

The server is pytest-django's ``live_server`` (a real WSGI server on 127.0.0.1, real
sockets, the suite's database). Whatever arrives, the answer is never a 5xx, and no
outbox row exists that a request with a valid signature did not create.
``AUTOMATE_FUZZ_REQUESTS`` changes the count (``make soak`` runs more).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import random
from collections import Counter
from urllib.parse import urlparse

import pytest

from automate_core.models import OutboxItem
from tests.automate.test_webhook_view import SECRET

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

REQUESTS = int(os.environ.get("AUTOMATE_FUZZ_REQUESTS", "10000"))
MAX_BODY = 2048


def _sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _junk(rng: random.Random, size: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(size))


def _json_body(rng: random.Random, n: int) -> bytes:
    """A JSON event, sometimes with odd ids and types: long, unicode, numbers, null."""
    event_id = rng.choice(
        [
            f"fz_{n}",
            f"fz_{n}_" + "x" * rng.randint(200, 400),
            f"fz_{n}_\u00e9\u4e2d\U0001f600",
            n,
            None,
            "",
        ]
    )
    event_type = rng.choice(["order.paid", "", "x" * 300, None, 5, ["a"], "t\x00nul"])
    payload = {"id": event_id, "type": event_type, "n": n}
    if rng.random() < 0.2:
        payload["nested"] = json.loads("[" * 50 + "]" * 50)
    if rng.random() < 0.1:
        return json.dumps([payload]).encode()
    return json.dumps(payload, ensure_ascii=rng.random() < 0.5).encode()


def _case(rng: random.Random, n: int, sent_ids: list[str]):
    """One request: (kind, method, path, body, headers, signed_validly)."""
    path = "/webhooks/my_service/"
    body = _json_body(rng, n)
    headers = {"Content-Type": rng.choice(["application/json", "text/plain", "", "a/b; x=\u00ff"])}
    kind = rng.choice(
        [
            "valid",
            "valid",
            "valid",
            "duplicate",
            "wrong_secret",
            "tampered",
            "no_signature",
            "junk_signature",
            "junk_body_signed",
            "junk_body_unsigned",
            "too_large",
            "unknown_connector",
            "method",
            "empty_signed",
        ]
    )
    method, signed = "POST", False
    if kind == "valid":
        headers["X-Signature"], signed = _sign(body), True
    elif kind == "duplicate" and sent_ids:
        body = json.dumps({"id": rng.choice(sent_ids), "type": "order.paid"}).encode()
        headers["X-Signature"], signed = _sign(body), True
    elif kind == "wrong_secret":
        headers["X-Signature"] = _sign(body, "not-the-secret")
    elif kind == "tampered":
        headers["X-Signature"] = _sign(body)
        body = body[:-1] + bytes([body[-1] ^ 1])
    elif kind == "junk_signature":
        headers["X-Signature"] = rng.choice(
            ["", " ", "0" * 64, _sign(body).upper(), "\u00ff" * 10, "sha256=" + _sign(body)]
        )
    elif kind == "junk_body_signed":
        body = _junk(rng, rng.randint(0, 300))
        headers["X-Signature"], signed = _sign(body), True
    elif kind == "junk_body_unsigned":
        body = _junk(rng, rng.randint(0, 300))
        headers["X-Signature"] = _sign(_junk(rng, 8))
    elif kind == "too_large":
        body = b'{"id": "big", "pad": "' + b"x" * (MAX_BODY + rng.randint(1, 5000)) + b'"}'
        headers["X-Signature"] = _sign(body)
    elif kind == "unknown_connector":
        path = rng.choice(["/webhooks/nope/", "/webhooks/%00/", "/webhooks/" + "a" * 300 + "/"])
        headers["X-Signature"] = _sign(body)
    elif kind == "method":
        method = rng.choice(["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
        headers["X-Signature"] = _sign(body)
    elif kind == "empty_signed":
        body = b""
        headers["X-Signature"], signed = _sign(body), True
    else:  # a duplicate before any event was sent: plain unsigned
        kind = "no_signature"
    return kind, method, path, body, headers, signed


def test_fuzz__nul_in_the_connector_key_is_404(client):
    # Found by the fuzz run on PostgreSQL: the profile lookup raised DataError (a 500).
    body = b'{"id": "x"}'
    response = client.post(
        "/webhooks/a%00b/", data=body, content_type="application/json", HTTP_X_SIGNATURE=_sign(body)
    )
    assert response.status_code == 404
    assert not OutboxItem.objects.exists()


@pytest.mark.parametrize("seed", [20261128])
def test_fuzz__no_5xx_and_no_row_without_a_valid_signature(live_server, settings, seed):
    settings.AUTOMATE = {**settings.AUTOMATE, "WEBHOOK_MAX_BODY_BYTES": MAX_BODY}
    url = urlparse(live_server.url)
    rng = random.Random(seed)
    sent_ids: list[str] = []
    accepted: set[int] = set()
    statuses: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []
    for n in range(REQUESTS):
        kind, method, path, body, headers, signed = _case(rng, n, sent_ids)
        # One connection per request: the WSGI server writes headers and body in separate
        # packets, and a kept-alive connection would wait on delayed ACKs.
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        conn.request(method, path, body=body, headers={**headers, "Connection": "close"})
        response = conn.getresponse()
        data = response.read()
        conn.close()
        statuses[(kind, response.status)] += 1
        if response.status >= 500:
            failures.append(f"{kind} {method} {path[:40]} -> {response.status}: {data[:200]!r}")
        if response.status == 202:
            if not signed:
                failures.append(f"{kind}: accepted without a valid signature")
            accepted.add(json.loads(data)["id"])
            if kind == "valid":
                event = json.loads(body)
                event_id = event.get("id") if isinstance(event, dict) else None
                if isinstance(event_id, str) and event_id:
                    sent_ids.append(event_id)
    print("fuzz statuses:", dict(sorted(statuses.items())))
    assert not failures, failures[:10]
    rows = set(OutboxItem.objects.values_list("id", flat=True))
    assert rows == accepted, (
        f"{len(rows - accepted)} rows no signed request created; "
        f"{len(accepted - rows)} accepted ids without a row"
    )
    # Every kind of request was exercised, and the forged ones were refused.
    kinds = {kind for kind, _ in statuses}
    assert {"valid", "tampered", "wrong_secret", "too_large", "method"} <= kinds
    for kind in ("wrong_secret", "tampered", "junk_body_unsigned"):
        assert {status for k, status in statuses if k == kind} == {401}, kind
    assert {status for k, status in statuses if k == "duplicate"} <= {200}
    assert {status for k, status in statuses if k == "too_large"} == {413}
