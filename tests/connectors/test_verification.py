"""The pure verifiers: published examples, the senders' own signers, and hostile input."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
import standardwebhooks
import stripe
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from automate.connections import Connection, build_connector
from automate_connectors import verification as v
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

NOW = 1_700_000_000
STRIPE_SECRET = "whsec_test_3n5dKp0cY8sQ1"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-test-key-32byt").decode()
BODY = b'{"id": "evt_1", "type": "invoice.paid"}'


def frozen(at: float = NOW):
    return lambda: at


# Header values no sender would send; every verifier must answer False, never raise.
HOSTILE_VALUES = [
    None,
    "",
    " ",
    "é" * 64,
    "\x00" * 64,
    "sha256=" + "é" * 64,
    "v0=" + "zz" * 32,
    "t=,v1=",
    "t=1,t=2,v1=00",
    "v1," + "A" * 10_000,
    "9" * 5000,
    "=" * 100,
    "💥",
    b"sha256=00",
    12345,
    ["sha256=00"],
]


# -- GitHub ---------------------------------------------------------------------------------


def test_verify_github__published_example_is_accepted():
    ex = GITHUB_EXAMPLE
    assert v.verify_github(ex["secret"], ex["body"], ex["signature"]) is True


@pytest.mark.parametrize(
    ("case", "secret", "body", "signature"),
    [
        ("wrong secret", "It's a secret to nobody", b"Hello, World!", GITHUB_EXAMPLE["signature"]),
        ("tampered body", GITHUB_EXAMPLE["secret"], b"Hello, World?", GITHUB_EXAMPLE["signature"]),
        ("no prefix", GITHUB_EXAMPLE["secret"], b"Hello, World!", GITHUB_EXAMPLE["signature"][7:]),
        (
            "sha1 prefix",
            GITHUB_EXAMPLE["secret"],
            b"Hello, World!",
            "sha1=" + GITHUB_EXAMPLE["signature"][7:],
        ),
        ("truncated", GITHUB_EXAMPLE["secret"], b"Hello, World!", GITHUB_EXAMPLE["signature"][:-2]),
        ("padded", GITHUB_EXAMPLE["secret"], b"Hello, World!", GITHUB_EXAMPLE["signature"] + " "),
        ("missing", GITHUB_EXAMPLE["secret"], b"Hello, World!", None),
    ],
)
def test_verify_github__rejects(case, secret, body, signature):
    assert v.verify_github(secret, body, signature) is False, case


def test_verify_github__legacy_sha1_signature_is_not_enough():
    # GitHub also sends X-Hub-Signature (SHA-1); the verifier only trusts SHA-256.
    sha1 = hmac.new(b"s3cret", BODY, hashlib.sha1).hexdigest()
    assert v.verify_github("s3cret", BODY, "sha1=" + sha1) is False
    assert v.verify_github("s3cret", BODY, github_signature("s3cret", BODY)) is True


def test_verify_github__non_utf8_body_is_signed_as_bytes():
    body = b"\xff\xfe\x00binary"
    assert v.verify_github("s3cret", body, github_signature("s3cret", body)) is True


# -- Stripe ---------------------------------------------------------------------------------


def test_verify_stripe__accepts_stripe_libraries_signature():
    header = stripe.WebhookSignature.generate_signature_header(
        BODY.decode(), STRIPE_SECRET, timestamp=NOW
    )
    assert v.verify_stripe(STRIPE_SECRET, BODY, header, clock=frozen()) is True


def test_verify_stripe__agrees_with_stripe_library_on_its_own_signature():
    header = stripe.WebhookSignature.generate_signature_header(BODY.decode(), STRIPE_SECRET)
    assert stripe.WebhookSignature.verify_header(BODY, header, STRIPE_SECRET, tolerance=300)
    assert v.verify_stripe(STRIPE_SECRET, BODY, header) is True


def test_verify_stripe__whole_whsec_string_is_the_key():
    header = stripe_header(STRIPE_SECRET, BODY, NOW)
    without_prefix = STRIPE_SECRET.removeprefix("whsec_")
    assert v.verify_stripe(without_prefix, BODY, header, clock=frozen()) is False


def test_verify_stripe__any_of_several_v1_signatures_matches():
    good = stripe_header(STRIPE_SECRET, BODY, NOW).split(",")[1]
    other = stripe_header("whsec_old_secret", BODY, NOW).split(",")[1]
    header = f"t={NOW},{other},{good},v0=deadbeef"
    assert v.verify_stripe(STRIPE_SECRET, BODY, header, clock=frozen()) is True


@pytest.mark.parametrize(
    ("case", "header"),
    [
        ("v0 only", f"t={NOW},v0=" + "0" * 64),
        ("no timestamp", "v1=" + "0" * 64),
        ("two timestamps", None),
        ("signature is not hex", f"t={NOW},v1=" + "zz" * 32),
        ("short signature", f"t={NOW},v1=abcd"),
        ("negative timestamp", f"t=-{NOW},v1=" + "0" * 64),
        ("float timestamp", f"t={NOW}.5,v1=" + "0" * 64),
        ("huge timestamp", "t=" + "9" * 5000 + ",v1=" + "0" * 64),
        ("empty", ""),
    ],
)
def test_verify_stripe__malformed_header_is_rejected(case, header):
    if header is None:
        good = stripe_header(STRIPE_SECRET, BODY, NOW)
        header = f"t={NOW + 1}," + good
    assert v.verify_stripe(STRIPE_SECRET, BODY, header, clock=frozen()) is False, case


@pytest.mark.parametrize(
    ("case", "offset", "accepted"),
    [
        ("at the edge, past", -300, True),
        ("at the edge, future", 300, True),
        ("stale", -301, False),
        ("future", 301, False),
    ],
)
def test_verify_stripe__timestamp_tolerance(case, offset, accepted):
    header = stripe_header(STRIPE_SECRET, BODY, NOW + offset)
    assert v.verify_stripe(STRIPE_SECRET, BODY, header, clock=frozen()) is accepted, case


def test_verify_stripe__tolerance_is_configurable():
    header = stripe_header(STRIPE_SECRET, BODY, NOW - 600)
    assert v.verify_stripe(STRIPE_SECRET, BODY, header, clock=frozen()) is False
    assert v.verify_stripe(STRIPE_SECRET, BODY, header, tolerance=900, clock=frozen()) is True


def test_verify_stripe__tampered_body_and_wrong_secret_are_rejected():
    header = stripe_header(STRIPE_SECRET, BODY, NOW)
    assert v.verify_stripe(STRIPE_SECRET, BODY + b" ", header, clock=frozen()) is False
    assert v.verify_stripe("whsec_other", BODY, header, clock=frozen()) is False


def test_verify_stripe__non_utf8_body_is_signed_as_bytes():
    body = b"\xff\xfe\x00"
    header = stripe_header(STRIPE_SECRET, body, NOW)
    assert v.verify_stripe(STRIPE_SECRET, body, header, clock=frozen()) is True


# -- Slack ----------------------------------------------------------------------------------


def test_verify_slack__documented_example_with_frozen_clock():
    ex = SLACK_EXAMPLE
    at = frozen(ex["timestamp"] + 10)
    assert v.verify_slack(ex["secret"], ex["body"], ex["signature"], "1531420618", clock=at)


def test_verify_slack__documented_example_is_stale_today():
    ex = SLACK_EXAMPLE
    assert v.verify_slack(ex["secret"], ex["body"], ex["signature"], "1531420618") is False


@pytest.mark.parametrize(
    ("case", "timestamp", "signature"),
    [
        ("missing timestamp", None, slack_signature("sek", NOW, BODY)),
        ("missing signature", str(NOW), None),
        ("no v0= prefix", str(NOW), slack_signature("sek", NOW, BODY)[3:]),
        ("other version", str(NOW), "v1=" + slack_signature("sek", NOW, BODY)[3:]),
        ("timestamp with spaces", f" {NOW} ", slack_signature("sek", f" {NOW} ", BODY)),
        ("timestamp with a sign", f"+{NOW}", slack_signature("sek", f"+{NOW}", BODY)),
        ("leading zero", f"0{NOW}", slack_signature("sek", f"0{NOW}", BODY)),
        ("exponent", "1.7e9", slack_signature("sek", "1.7e9", BODY)),
        ("signed another timestamp", str(NOW), slack_signature("sek", NOW + 1, BODY)),
        ("wrong secret", str(NOW), slack_signature("kes", NOW, BODY)),
        ("stale", str(NOW - 301), slack_signature("sek", NOW - 301, BODY)),
        ("future", str(NOW + 301), slack_signature("sek", NOW + 301, BODY)),
    ],
)
def test_verify_slack__rejects(case, timestamp, signature):
    assert v.verify_slack("sek", BODY, signature, timestamp, clock=frozen()) is False, case


def test_verify_slack__own_signature_within_tolerance_is_accepted():
    signature = slack_signature("sek", NOW - 299, BODY)
    assert v.verify_slack("sek", BODY, signature, str(NOW - 299), clock=frozen()) is True


# -- Standard Webhooks ----------------------------------------------------------------------


def test_verify_standard_webhooks__published_example_with_frozen_clock():
    ex = STANDARD_EXAMPLE
    assert v.verify_standard_webhooks(
        ex["secret"],
        ex["body"],
        ex["id"],
        str(ex["timestamp"]),
        ex["signature"],
        clock=frozen(ex["timestamp"]),
    )


def test_verify_standard_webhooks__accepts_the_reference_librarys_signature():
    wh = standardwebhooks.Webhook(STANDARD_SECRET)
    when = datetime.fromtimestamp(NOW, tz=UTC)
    signature = wh.sign("msg_1", when, BODY.decode())
    assert v.verify_standard_webhooks(
        STANDARD_SECRET, BODY, "msg_1", str(NOW), signature, clock=frozen()
    )


def test_verify_standard_webhooks__agrees_with_reference_library_today():
    import time

    now = int(time.time())
    signature = standard_signature(STANDARD_SECRET, "msg_2", now, BODY)
    headers = {"webhook-id": "msg_2", "webhook-timestamp": str(now), "webhook-signature": signature}
    assert standardwebhooks.Webhook(STANDARD_SECRET).verify(BODY, headers) == {
        "id": "evt_1",
        "type": "invoice.paid",
    }
    assert v.verify_standard_webhooks(STANDARD_SECRET, BODY, "msg_2", str(now), signature)


def test_verify_standard_webhooks__any_of_several_signatures_matches():
    mine = standard_signature(STANDARD_SECRET, "msg_1", NOW, BODY)
    other_key = "whsec_" + base64.b64encode(b"another-key-of-thirty-two-bytes!").decode()
    other = standard_signature(other_key, "msg_1", NOW, BODY)
    header = f"v1a,{'A' * 86}== {other} v2,{mine[3:]} {mine}"
    assert v.verify_standard_webhooks(
        STANDARD_SECRET, BODY, "msg_1", str(NOW), header, clock=frozen()
    )
    # The same list without our signature: the v2 entry (same bytes) must not count.
    header = f"{other} v2,{mine[3:]}"
    assert not v.verify_standard_webhooks(
        STANDARD_SECRET, BODY, "msg_1", str(NOW), header, clock=frozen()
    )


def test_verify_standard_webhooks__key_with_or_without_prefix_or_padding():
    ex = STANDARD_EXAMPLE
    bare = ex["secret"].removeprefix("whsec_")
    args = (ex["body"], ex["id"], str(ex["timestamp"]), ex["signature"])
    assert v.verify_standard_webhooks(bare, *args, clock=frozen(ex["timestamp"]))
    assert v.verify_standard_webhooks(base64.b64decode(bare), *args, clock=frozen(ex["timestamp"]))
    # Some dashboards show the key without its base64 padding; the reference signer needs
    # the padding, so this signature is computed by hand.
    key = b"sixteen-byte-key!"
    unpadded_key = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    digest = hmac.new(key, f"m.{NOW}.".encode() + BODY, hashlib.sha256).digest()
    signature = "v1," + base64.b64encode(digest).decode()
    assert v.verify_standard_webhooks(unpadded_key, BODY, "m", str(NOW), signature, clock=frozen())


@pytest.mark.parametrize(
    ("case", "secret", "msg_id", "timestamp", "signature"),
    [
        ("key is not base64", "whsec_not base64!!", "msg_1", str(NOW), None),
        ("empty key", "whsec_", "msg_1", str(NOW), None),
        ("missing id", STANDARD_SECRET, None, str(NOW), None),
        ("other id", STANDARD_SECRET, "msg_2", str(NOW), None),
        ("non-ascii id", STANDARD_SECRET, "msg_é", str(NOW), None),
        ("missing timestamp", STANDARD_SECRET, "msg_1", None, None),
        ("other timestamp", STANDARD_SECRET, "msg_1", str(NOW + 1), None),
        ("stale", STANDARD_SECRET, "msg_1", str(NOW - 301), "stale"),
        ("future", STANDARD_SECRET, "msg_1", str(NOW + 301), "future"),
        ("no version", STANDARD_SECRET, "msg_1", str(NOW), "bare"),
        ("bad base64", STANDARD_SECRET, "msg_1", str(NOW), "v1,@@@@"),
        ("short", STANDARD_SECRET, "msg_1", str(NOW), "v1,AAAA"),
        ("missing signature", STANDARD_SECRET, "msg_1", str(NOW), ""),
    ],
)
def test_verify_standard_webhooks__rejects(case, secret, msg_id, timestamp, signature):
    good = standard_signature(STANDARD_SECRET, "msg_1", NOW, BODY)
    if signature is None:
        signature = good
    elif signature == "stale":
        signature = standard_signature(STANDARD_SECRET, "msg_1", NOW - 301, BODY)
    elif signature == "future":
        signature = standard_signature(STANDARD_SECRET, "msg_1", NOW + 301, BODY)
    elif signature == "bare":
        signature = good[3:]
    result = v.verify_standard_webhooks(secret, BODY, msg_id, timestamp, signature, clock=frozen())
    assert result is False, case


# -- Generic HMAC ---------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
@pytest.mark.parametrize("prefix", ["", "sha256=", "v1:"])
def test_verify_hmac__each_algorithm_encoding_and_prefix(algorithm, encoding, prefix):
    signature = generic_signature(
        "k3y", BODY, algorithm=algorithm, encoding=encoding, prefix=prefix
    )
    options = {"algorithm": algorithm, "encoding": encoding, "prefix": prefix}
    assert v.verify_hmac("k3y", BODY, signature, **options) is True
    assert v.verify_hmac("k3y", BODY + b"!", signature, **options) is False
    assert v.verify_hmac("key", BODY, signature, **options) is False
    if prefix:
        assert v.verify_hmac("k3y", BODY, signature[len(prefix) :], **options) is False


def test_verify_hmac__digest_of_another_algorithm_is_rejected():
    sha1 = generic_signature("k3y", BODY, algorithm="sha1")
    assert v.verify_hmac("k3y", BODY, sha1, algorithm="sha256") is False


def test_verify_hmac__base64_must_be_canonical():
    signature = generic_signature("k3y", BODY, encoding="base64")
    assert v.verify_hmac("k3y", BODY, signature, encoding="base64") is True
    for mangled in (signature.rstrip("="), signature + "\n", " " + signature, signature + "A"):
        assert v.verify_hmac("k3y", BODY, mangled, encoding="base64") is False, mangled


def test_verify_hmac__uppercase_hex_is_the_same_digest():
    signature = generic_signature("k3y", BODY)
    assert v.verify_hmac("k3y", BODY, signature.upper()) is True


def test_verify_hmac__timestamped_signature():
    signature = generic_signature("k3y", BODY, timestamp=NOW, separator=":")
    kwargs = {"separator": ":", "clock": frozen()}
    assert v.verify_hmac("k3y", BODY, signature, timestamp=str(NOW), **kwargs) is True
    assert v.verify_hmac("k3y", BODY, signature, timestamp=str(NOW + 1), **kwargs) is False
    assert v.verify_hmac("k3y", BODY, signature, **kwargs) is False
    late = {"separator": ":", "clock": frozen(NOW + 301)}
    assert v.verify_hmac("k3y", BODY, signature, timestamp=str(NOW), **late) is False


def test_verify_hmac__bytes_secret_is_used_as_is():
    signature = hmac.new(b"\xffkey", BODY, hashlib.sha256).hexdigest()
    assert v.verify_hmac(b"\xffkey", BODY, signature) is True


# -- Hostile input: False, never an exception ---------------------------------------------


def _all_verifiers(value, body=BODY):
    """Every verifier, with ``value`` in each header position in turn."""
    yield "github", v.verify_github("s", body, value)
    yield "hmac", v.verify_hmac("s", body, value)
    timestamped = generic_signature("s", body, timestamp=NOW)
    yield "hmac-ts", v.verify_hmac("s", body, timestamped, timestamp=value, clock=frozen())
    yield "stripe", v.verify_stripe("s", body, value)
    yield "slack-sig", v.verify_slack("s", body, value, str(NOW), clock=frozen())
    yield "slack-ts", v.verify_slack("s", body, slack_signature("s", NOW, body), value)
    good = standard_signature(STANDARD_SECRET, "m", NOW, body)
    for position in range(3):
        args = ["m", str(NOW), good]
        args[position] = value
        yield (
            f"standard-{position}",
            v.verify_standard_webhooks(STANDARD_SECRET, body, *args, clock=frozen()),
        )
    yield "standard-key", v.verify_standard_webhooks(value, body, "m", str(NOW), good)


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=range(len(HOSTILE_VALUES)))
def test_verifiers__hostile_header_values_answer_false(value):
    for name, result in _all_verifiers(value):
        assert result is False, name


def test_verifiers__non_bytes_body_answers_false():
    assert v.verify_github("s", "not bytes", github_signature("s", b"not bytes")) is False
    assert v.verify_hmac("s", None, "00" * 32) is False


def test_verifiers__secret_of_a_wrong_type_answers_false():
    assert v.verify_github(None, BODY, github_signature("s", BODY)) is False
    assert v.verify_hmac(42, BODY, "00" * 32) is False


def test_verifiers__unknown_algorithm_or_encoding_answers_false():
    assert v.verify_hmac("s", BODY, generic_signature("s", BODY), algorithm="md5") is False
    assert v.verify_hmac("s", BODY, generic_signature("s", BODY), encoding="base32") is False


def test_verifiers__a_clock_that_raises_answers_false():
    def broken() -> float:
        raise OSError("no clock")

    header = stripe_header(STRIPE_SECRET, BODY, NOW)
    assert v.verify_stripe(STRIPE_SECRET, BODY, header, clock=broken) is False


@settings(max_examples=150, deadline=None)
@given(value=st.one_of(st.none(), st.text(), st.binary().map(lambda b: b.decode("latin-1"))))
def test_verifiers__arbitrary_header_values_answer_false(value):
    # The only values that are right in some position: the message id and timestamp signed.
    assume(value not in {"m", str(NOW)})
    for name, result in _all_verifiers(value):
        assert result is False, name


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=512))
def test_verifiers__any_body_signed_correctly_is_accepted(body):
    assert v.verify_github("s", body, github_signature("s", body))
    assert v.verify_stripe("s", body, stripe_header("s", body, NOW), clock=frozen())
    assert v.verify_slack("s", body, slack_signature("s", NOW, body), str(NOW), clock=frozen())
    signature = standard_signature(STANDARD_SECRET, "m", NOW, body)
    assert v.verify_standard_webhooks(
        STANDARD_SECRET, body, "m", str(NOW), signature, clock=frozen()
    )


# -- Rotation: several active secrets -----------------------------------------------------


@pytest.mark.parametrize(
    ("connector_key", "config", "sign"),
    [
        (
            "github",
            {},
            lambda secret, body: {"X-Hub-Signature-256": github_signature(secret, body)},
        ),
        ("generic_hmac", {}, lambda secret, body: {"X-Signature": generic_signature(secret, body)}),
    ],
)
def test_check_webhook__any_active_secret_verifies(connector_key, config, sign):
    connection = Connection(
        key=connector_key, connector_key=connector_key, config=config, secrets=("new", "old")
    )
    connector = build_connector(connection)
    assert connector.check_webhook(sign("new", BODY), BODY) is True
    assert connector.check_webhook(sign("old", BODY), BODY) is True
    assert connector.check_webhook(sign("retired", BODY), BODY) is False


def test_check_webhook__rotation_for_stripe_with_a_frozen_clock(monkeypatch):
    from automate_connectors.builtin.stripe import StripeConnector

    monkeypatch.setattr(StripeConnector, "clock", staticmethod(frozen()))
    connection = Connection(
        key="stripe", connector_key="stripe", secrets=("whsec_new", "whsec_old")
    )
    connector = build_connector(connection)
    for secret in ("whsec_new", "whsec_old"):
        headers = {"Stripe-Signature": stripe_header(secret, BODY, NOW)}
        assert connector.check_webhook(headers, BODY) is True, secret
    headers = {"Stripe-Signature": stripe_header("whsec_gone", BODY, NOW)}
    assert connector.check_webhook(headers, BODY) is False
