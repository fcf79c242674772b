"""Reusable webhook signature checks: raw bytes in, ``True`` or ``False`` out.

Every function here is pure (no Django, no I/O) and answers ``False`` for anything it cannot
accept, whatever the input: a missing or malformed header, non-ASCII header values, bad hex
or base64, signatures of the wrong length, non-integer or absurd timestamps, a body that is
not UTF-8. A webhook endpoint is public, so hostile input is normal input; raising would turn
it into a 5xx, which every sender reads as "retry later".

The rules they share:

* the signature is computed over the bytes that arrived, before any parsing;
* digests are compared with :func:`hmac.compare_digest` on raw bytes, after the received
  value was decoded strictly (hex of the exact length, canonical base64);
* a timestamped scheme rejects a timestamp more than ``tolerance`` seconds away from
  ``clock()`` in either direction (300 s by default, as Stripe, Slack and Standard Webhooks
  recommend); ``clock`` is injectable so published examples with old timestamps can be
  checked against a frozen clock;
* one call checks one secret: key rotation (trying every active secret) belongs to
  :meth:`automate_connectors.base.Connector.check_webhook`;
* every ``False`` comes with a :class:`~automate_connectors.verdict.Reason` given to
  :func:`~automate_connectors.verdict.refuse`, which the webhook view logs (see
  :mod:`automate_connectors.verdict`); the answer itself stays a plain ``bool``.

The algorithms follow each sender's public documentation:

* GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``;
* Stripe: ``Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>[,v1=...]``,
  the whole ``whsec_...`` string being the key;
* Slack: ``X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:<ts>:<body>")>`` with the
  timestamp in ``X-Slack-Request-Timestamp``;
* Standard Webhooks: ``webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<ts>.<body>")>``
  (space-separated, several allowed), the key being the base64 text after ``whsec_``; Svix
  sends the same three headers named ``svix-id``, ``svix-timestamp``, ``svix-signature``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, ParamSpec

from automate_connectors.verdict import Reason, accepted, refuse

logger = logging.getLogger("automate.connectors.verification")

__all__ = [
    "DEFAULT_TOLERANCE",
    "Algorithm",
    "Clock",
    "Encoding",
    "Reason",
    "decode_signature",
    "hmac_digest",
    "refuse",
    "standard_webhooks_headers",
    "timestamp_is_fresh",
    "verify_github",
    "verify_hmac",
    "verify_slack",
    "verify_standard_webhooks",
    "verify_stripe",
]

#: Seconds a signed timestamp may differ from now, in either direction.
DEFAULT_TOLERANCE = 300

Clock = Callable[[], float]
Algorithm = Literal["sha1", "sha256", "sha512"]
Encoding = Literal["hex", "base64"]

_ALGORITHMS: dict[str, Any] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
}
_DIGEST_SIZES = {name: constructor().digest_size for name, constructor in _ALGORITHMS.items()}
_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_BASE64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}")
# A Unix timestamp in seconds: plain ASCII digits, no sign, no spaces, no leading zero (so
# the text signed and the number read agree), at most 12 digits (year 33658); longer values
# are rejected before int() ever sees them.
_TIMESTAMP_RE = re.compile(r"0|[1-9][0-9]{0,11}")
# Signatures after the first few are not looked at: no sender sends more than a handful
# (one per active secret), and an endless list must not cost an HMAC comparison each.
MAX_SIGNATURES = 16

P = ParamSpec("P")


def _never_raises(func: Callable[P, bool]) -> Callable[P, bool]:
    """Turn any exception into ``False``, and any truthy non-bool result into ``False`` too.

    A ``True`` clears a reason refused earlier in the same check (see ``accepted``); an
    exception is refused as ``verifier_raised`` with its type name.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> bool:
        try:
            ok = func(*args, **kwargs) is True
        except Exception as exc:
            logger.debug("%s rejected a request: %s", func.__name__, type(exc).__name__)
            return refuse(Reason.VERIFIER_RAISED, exception=type(exc).__name__)
        return accepted() if ok else False

    return wrapper


def _missing(value: Any) -> bool:
    """An absent header, or one sent empty (which no scheme can mean as a value)."""
    return value is None or value == ""


def _fresh_timestamp(timestamp: Any, tolerance: float, clock: Clock) -> int | None:
    """The timestamp when it is present, well-formed and fresh; else ``None``, refused."""
    ts = None if _missing(timestamp) else parse_timestamp(timestamp)
    if ts is None:
        refuse(Reason.MISSING_HEADER if _missing(timestamp) else Reason.MALFORMED_HEADER)
    elif not timestamp_is_fresh(ts, tolerance=tolerance, clock=clock):
        refuse(Reason.TIMESTAMP_OUTSIDE_TOLERANCE)
        ts = None
    return ts


def _matched(expected: bytes, candidates: list[bytes | None]) -> bool:
    """Compare, refusing ``malformed_header`` when no candidate could even be decoded."""
    if candidates.count(None) == len(candidates):  # none could be decoded
        return refuse(Reason.MALFORMED_HEADER)
    if _matches_any(expected, candidates):
        return True
    return refuse(Reason.NO_SECRET_MATCHED)


# -- Building blocks -----------------------------------------------------------------------


def _key_bytes(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        return secret
    if isinstance(secret, str):
        return secret.encode("utf-8")
    raise TypeError(f"a secret is str or bytes, not {type(secret).__name__}")


#: A tuple, not ``bytes | bytearray | memoryview``: that expression builds a union per call.
_BYTES_LIKE = (bytes, bytearray, memoryview)


def hmac_digest(secret: str | bytes, message: bytes, algorithm: Algorithm = "sha256") -> bytes:
    """The raw HMAC of ``message``; a ``str`` secret is used as its UTF-8 bytes."""
    if not isinstance(message, _BYTES_LIKE):
        raise TypeError("the signed message must be bytes")
    # The one-shot hmac.digest: OpenSSL's, without an HMAC object (one per webhook).
    return hmac.digest(_key_bytes(secret), bytes(message), _ALGORITHMS[algorithm])


def decode_signature(value: Any, encoding: Encoding, *, length: int | None = None) -> bytes | None:
    """Strictly decode a received signature; ``None`` when it is not well-formed.

    Only ASCII is accepted (``bytes.fromhex`` would skip spaces, ``b64decode`` would drop
    stray characters without ``validate``); ``length`` is the expected digest size.
    """
    if not isinstance(value, str) or not value or len(value) > 1024:
        return None
    if encoding == "hex":
        if not _HEX_RE.fullmatch(value) or len(value) % 2:
            return None
        decoded = bytes.fromhex(value)
    elif encoding == "base64":
        if not _BASE64_RE.fullmatch(value) or len(value) % 4:
            return None
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
    else:
        return None
    if length is not None and len(decoded) != length:
        return None
    return decoded


def _digest_size(algorithm: Algorithm) -> int:
    return _DIGEST_SIZES[algorithm]


def _matches_any(expected: bytes, candidates: Iterable[bytes | None]) -> bool:
    """True when one candidate equals ``expected``; every candidate is compared."""
    found = False
    for candidate in candidates:
        if candidate is not None and hmac.compare_digest(expected, candidate):
            found = True
    return found


def parse_timestamp(value: Any) -> int | None:
    """A Unix timestamp in whole seconds from a header value; ``None`` when malformed."""
    if not isinstance(value, str) or not _TIMESTAMP_RE.fullmatch(value):
        return None
    return int(value)


def timestamp_is_fresh(
    timestamp: int, *, tolerance: float = DEFAULT_TOLERANCE, clock: Clock = time.time
) -> bool:
    """True when ``timestamp`` is within ``tolerance`` seconds of ``clock()``, past or future.

    Future timestamps are bounded too: a sender's clock may run a little ahead, but a
    signature dated next week is a replay waiting to happen.
    """
    return abs(float(clock()) - timestamp) <= tolerance


# -- Generic HMAC ---------------------------------------------------------------------------


@_never_raises
def verify_hmac(
    secret: str | bytes,
    body: bytes,
    signature: Any,
    *,
    algorithm: Algorithm = "sha256",
    encoding: Encoding = "hex",
    prefix: str = "",
    timestamp: Any = None,
    separator: str = ".",
    tolerance: float = DEFAULT_TOLERANCE,
    clock: Clock = time.time,
) -> bool:
    """Check ``signature`` = ``prefix`` + encoded HMAC of the body.

    With ``timestamp`` (the value of a timestamp header), the signed message is
    ``"<timestamp><separator><body>"`` and a stale or future timestamp fails the check.
    """
    if _missing(signature):
        return refuse(Reason.MISSING_HEADER)
    if not isinstance(signature, str) or not signature.startswith(prefix):
        return refuse(Reason.MALFORMED_HEADER)
    received = decode_signature(signature[len(prefix) :], encoding, length=_digest_size(algorithm))
    if received is None:
        return refuse(Reason.MALFORMED_HEADER)
    message = bytes(body)
    if timestamp is not None:
        ts = _fresh_timestamp(timestamp, tolerance, clock)
        if ts is None:
            return False
        message = f"{ts}{separator}".encode() + message
    return _matched(hmac_digest(secret, message, algorithm), [received])


# -- GitHub ---------------------------------------------------------------------------------


@_never_raises
def verify_github(secret: str | bytes, body: bytes, signature_header: Any) -> bool:
    """GitHub's ``X-Hub-Signature-256: sha256=<hex>`` over the raw body.

    The legacy SHA-1 header (``X-Hub-Signature``) is deliberately not accepted: GitHub sends
    both, and accepting the weaker one would let it stand in for the stronger.
    """
    return verify_hmac(secret, body, signature_header, algorithm="sha256", prefix="sha256=")


# -- Stripe ---------------------------------------------------------------------------------


@_never_raises
def verify_stripe(
    secret: str | bytes,
    body: bytes,
    signature_header: Any,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    clock: Clock = time.time,
) -> bool:
    """Stripe's ``Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>...]``.

    Several ``v1`` entries appear while a secret is being rolled; any of them may match.
    Other schemes (``v0`` test signatures) are ignored. A header with no ``t`` or two of
    them is malformed.
    """
    if _missing(signature_header):
        return refuse(Reason.MISSING_HEADER)
    if not isinstance(signature_header, str) or len(signature_header) > 8192:
        return refuse(Reason.MALFORMED_HEADER)
    timestamps: list[str] = []
    signatures: list[bytes | None] = []
    for item in signature_header.split(","):
        name, sep, value = item.partition("=")
        if not sep:
            continue
        if name == "t":
            timestamps.append(value)
        elif name == "v1" and len(signatures) < MAX_SIGNATURES:
            signatures.append(decode_signature(value, "hex", length=32))
    if len(timestamps) != 1 or not signatures:
        return refuse(Reason.MALFORMED_HEADER)
    ts = _fresh_timestamp(timestamps[0], tolerance, clock)
    if ts is None:
        return False
    expected = hmac_digest(secret, f"{ts}.".encode() + bytes(body))
    return _matched(expected, signatures)


# -- Slack ----------------------------------------------------------------------------------


@_never_raises
def verify_slack(
    secret: str | bytes,
    body: bytes,
    signature: Any,
    timestamp: Any,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    clock: Clock = time.time,
) -> bool:
    """Slack's ``X-Slack-Signature: v0=<hex>`` over ``"v0:<timestamp>:<body>"``."""
    if _missing(signature) or _missing(timestamp):
        return refuse(Reason.MISSING_HEADER)
    if not isinstance(signature, str) or not signature.startswith("v0="):
        return refuse(Reason.MALFORMED_HEADER)
    received = decode_signature(signature[3:], "hex", length=32)
    if received is None:
        return refuse(Reason.MALFORMED_HEADER)
    ts = _fresh_timestamp(timestamp, tolerance, clock)
    if ts is None:
        return False
    return _matched(hmac_digest(secret, f"v0:{ts}:".encode() + bytes(body)), [received])


# -- Standard Webhooks ---------------------------------------------------------------------


def standard_webhooks_key(secret: str | bytes) -> bytes | None:
    """The HMAC key of a Standard Webhooks secret (``whsec_<base64>``), ``None`` if invalid.

    The prefix is optional, as in the reference libraries; raw ``bytes`` are the key itself.
    """
    if isinstance(secret, bytes):
        return secret or None
    if not isinstance(secret, str):
        return None
    text = secret.removeprefix("whsec_")
    # Unpadded base64 is accepted too: some dashboards show the key without padding.
    text += "=" * (-len(text) % 4)
    key = decode_signature(text, "base64")
    return key or None


def standard_webhooks_headers(headers: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """``(id, timestamp, signature)`` from one complete family of Standard Webhooks headers.

    Svix names them ``svix-id``, ``svix-timestamp`` and ``svix-signature``; the
    specification ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``. The
    ``svix-*`` family is used when all three of its headers are present and non-empty, as
    Svix's own library prefers it; otherwise the ``webhook-*`` family. Values are never
    mixed across families: a request with no complete family gets that of the ``webhook-*``
    family, whose missing header is then refused. ``headers`` is looked up with lower-case
    names (:class:`automate_connectors.webhooks.Headers` ignores case).
    """
    values: tuple[Any, Any, Any] = (None, None, None)
    for id_name, timestamp_name, signature_name in _STANDARD_WEBHOOKS_FAMILIES:
        values = (headers.get(id_name), headers.get(timestamp_name), headers.get(signature_name))
        if not any(_missing(value) for value in values):
            break
    return values


_STANDARD_WEBHOOKS_FAMILIES = (
    ("svix-id", "svix-timestamp", "svix-signature"),
    ("webhook-id", "webhook-timestamp", "webhook-signature"),
)


@_never_raises
def verify_standard_webhooks(
    secret: str | bytes,
    body: bytes,
    msg_id: Any,
    timestamp: Any,
    signature_header: Any,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    clock: Clock = time.time,
) -> bool:
    """Standard Webhooks: ``webhook-signature`` holds space-separated ``v1,<base64>`` entries.

    Any ``v1`` entry may match (several are sent while a key is rotated); other versions,
    such as the asymmetric ``v1a``, are skipped. Pass the values of one header family
    (:func:`standard_webhooks_headers` picks it).
    """
    if _missing(msg_id) or _missing(signature_header):
        return refuse(Reason.MISSING_HEADER)
    if not isinstance(msg_id, str) or len(msg_id) > 1024:
        return refuse(Reason.MALFORMED_HEADER)
    if not isinstance(signature_header, str) or len(signature_header) > 8192:
        return refuse(Reason.MALFORMED_HEADER)
    try:
        msg_id_bytes = msg_id.encode("ascii")
    except UnicodeEncodeError:
        return refuse(Reason.MALFORMED_HEADER)
    ts = _fresh_timestamp(timestamp, tolerance, clock)
    if ts is None:
        return False
    signatures: list[bytes | None] = []
    for entry in signature_header.split(" "):
        version, sep, value = entry.partition(",")
        if sep and version == "v1" and len(signatures) < MAX_SIGNATURES:
            signatures.append(decode_signature(value, "base64", length=32))
    if not signatures:
        return refuse(Reason.MALFORMED_HEADER)
    # The secret is checked last: a request that could never pass says so whatever the key.
    key = standard_webhooks_key(secret)
    if key is None:
        return refuse(Reason.UNUSABLE_SECRET)
    expected = hmac_digest(key, msg_id_bytes + f".{ts}.".encode() + bytes(body))
    return _matched(expected, signatures)
