"""Standard Webhooks signing (standardwebhooks.com, symmetric ``v1``), the sender's half.

A secret is ``whsec_`` followed by the base64 of 24 random bytes, as Svix and the
specification's libraries generate them. The signed content is
``"<webhook-id>.<webhook-timestamp>.<body>"``, the signature HMAC-SHA256 in base64, and
``webhook-signature`` lists one ``v1,<signature>`` per active secret, space-separated, so
a receiver that still knows only the previous secret keeps verifying during a rotation.
The receiving half is :func:`automate_connectors.verification.verify_standard_webhooks`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as random_source
from collections.abc import Iterable

from automate_connectors.verification import standard_webhooks_key

__all__ = ["SECRET_PREFIX", "generate_secret", "sign", "signature_header"]

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24


def generate_secret() -> str:
    """A new random ``whsec_...`` secret."""
    raw = random_source.token_bytes(SECRET_BYTES)
    return SECRET_PREFIX + base64.b64encode(raw).decode("ascii")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of one message with one secret."""
    key = standard_webhooks_key(secret)
    if key is None:
        raise ValueError("not a usable Standard Webhooks secret (whsec_<base64>)")
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one ``v1`` entry per secret, space-separated."""
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)
