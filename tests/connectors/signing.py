"""Test-side signers: each sender's algorithm, written from its documentation.

Stripe and Standard Webhooks are signed with the senders' own libraries (``stripe``,
``standardwebhooks``) wherever those can sign; the helpers here cover GitHub, Slack and the
generic HMAC scheme, which have no signing library on PyPI, and raw bodies that are not
UTF-8 (the libraries take text).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import standardwebhooks
import stripe

GITHUB_EXAMPLE = {
    "secret": "It's a Secret to Everybody",
    "body": b"Hello, World!",
    "signature": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
}
STANDARD_EXAMPLE = {
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "timestamp": 1614265330,
    "body": b'{"test": 2432232314}',
    "signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}
SLACK_EXAMPLE = {
    "secret": "8f742231b10e8888abcd99yyyzzz85a5",
    "timestamp": 1531420618,
    "body": (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
        b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
        b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com"
        b"%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    ),
    "signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
}


def github_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def slack_signature(secret: str, timestamp: int | str, body: bytes) -> str:
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def stripe_header(secret: str, body: bytes, timestamp: int) -> str:
    """Stripe's own test helper signs text; bytes that are not UTF-8 are signed by hand."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
        return f"t={timestamp},v1={digest.hexdigest()}"
    return stripe.WebhookSignature.generate_signature_header(text, secret, timestamp=timestamp)


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``standardwebhooks.Webhook.sign``; it takes text, so other bytes are signed by hand."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        message = f"{msg_id}.{timestamp}.".encode() + body
        return "v1," + base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    return standardwebhooks.Webhook(secret).sign(msg_id, when, text)


def generic_signature(
    secret: str,
    body: bytes,
    *,
    algorithm: str = "sha256",
    encoding: str = "hex",
    prefix: str = "",
    timestamp: int | None = None,
    separator: str = ".",
) -> str:
    message = body if timestamp is None else f"{timestamp}{separator}".encode() + body
    digest = hmac.new(secret.encode(), message, getattr(hashlib, algorithm)).digest()
    encoded = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    return prefix + encoded
