"""Refusal reasons: what each verification function reports for each way a request fails,
and how ``Connector.webhook_verdict`` combines attempts across secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from automate_connectors.base import Connector
from automate_connectors.verdict import Reason, WebhookVerdict, accepted, recording, refuse
from automate_connectors.verification import (
    standard_webhooks_headers,
    verify_github,
    verify_hmac,
    verify_slack,
    verify_standard_webhooks,
    verify_stripe,
)
from automate_core.providers.base import ProviderContext

NOW = 1_700_000_000
BODY = b'{"id": "evt_1"}'
SECRET = "shared-secret"
STD_KEY = b"k" * 32
STD_SECRET = "whsec_" + base64.b64encode(STD_KEY).decode()


def clock() -> float:
    return float(NOW)


def hexmac(message: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def stripe(ts: int = NOW, secret: str = SECRET) -> str:
    return f"t={ts},v1={hexmac(f'{ts}.'.encode() + BODY, secret)}"


def std_signature(msg_id: str = "msg_1", ts: int = NOW, key: bytes = STD_KEY) -> str:
    digest = hmac.new(key, f"{msg_id}.{ts}.".encode() + BODY, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def reason_of(call) -> tuple[bool, Reason | None, str | None]:
    with recording() as recorder:
        result = call()
    return result, recorder.reason, recorder.exception


def _hmac(signature, **kw):
    return lambda: verify_hmac(SECRET, BODY, signature, clock=clock, **kw)


def _slack(signature, timestamp):
    return lambda: verify_slack(SECRET, BODY, signature, timestamp, clock=clock)


def _std(msg_id="msg_1", timestamp=str(NOW), signature=None, secret=STD_SECRET):
    signature = std_signature() if signature is None else signature
    return lambda: verify_standard_webhooks(secret, BODY, msg_id, timestamp, signature, clock=clock)


ts_body = f"{NOW}.".encode() + BODY
slack_ok = "v0=" + hexmac(f"v0:{NOW}:".encode() + BODY)
CASES = {
    # generic HMAC
    "hmac missing": (_hmac(None), Reason.MISSING_HEADER),
    "hmac empty": (_hmac(""), Reason.MISSING_HEADER),
    "hmac bad hex": (_hmac("zz" * 32), Reason.MALFORMED_HEADER),
    "hmac wrong length": (_hmac("ab" * 20), Reason.MALFORMED_HEADER),
    "hmac wrong prefix": (_hmac(hexmac(BODY), prefix="v2="), Reason.MALFORMED_HEADER),
    "hmac ts missing": (_hmac(hexmac(ts_body), timestamp=""), Reason.MISSING_HEADER),
    "hmac ts malformed": (_hmac(hexmac(ts_body), timestamp="soon"), Reason.MALFORMED_HEADER),
    "hmac ts stale": (
        _hmac(hexmac(ts_body), timestamp=str(NOW - 301)),
        Reason.TIMESTAMP_OUTSIDE_TOLERANCE,
    ),
    "hmac ts future": (
        _hmac(hexmac(ts_body), timestamp=str(NOW + 301)),
        Reason.TIMESTAMP_OUTSIDE_TOLERANCE,
    ),
    "hmac mismatch": (_hmac(hexmac(BODY, "other")), Reason.NO_SECRET_MATCHED),
    "hmac unknown algorithm": (_hmac(hexmac(BODY), algorithm="md5"), Reason.VERIFIER_RAISED),
    # GitHub
    "github missing": (lambda: verify_github(SECRET, BODY, None), Reason.MISSING_HEADER),
    "github bare hex": (lambda: verify_github(SECRET, BODY, hexmac(BODY)), Reason.MALFORMED_HEADER),
    "github mismatch": (
        lambda: verify_github(SECRET, BODY, "sha256=" + hexmac(b"other body")),
        Reason.NO_SECRET_MATCHED,
    ),
    # Stripe
    "stripe missing": (
        lambda: verify_stripe(SECRET, BODY, None, clock=clock),
        Reason.MISSING_HEADER,
    ),
    "stripe garbage": (
        lambda: verify_stripe(SECRET, BODY, "garbage", clock=clock),
        Reason.MALFORMED_HEADER,
    ),
    "stripe two t": (
        lambda: verify_stripe(SECRET, BODY, f"t={NOW}," + stripe(), clock=clock),
        Reason.MALFORMED_HEADER,
    ),
    "stripe only bad v1": (
        lambda: verify_stripe(SECRET, BODY, f"t={NOW},v1=zz", clock=clock),
        Reason.MALFORMED_HEADER,
    ),
    "stripe ts malformed": (
        lambda: verify_stripe(SECRET, BODY, "t=-1,v1=" + "ab" * 32, clock=clock),
        Reason.MALFORMED_HEADER,
    ),
    "stripe stale": (
        lambda: verify_stripe(SECRET, BODY, stripe(NOW - 600), clock=clock),
        Reason.TIMESTAMP_OUTSIDE_TOLERANCE,
    ),
    "stripe mismatch": (
        lambda: verify_stripe(SECRET, BODY, stripe(secret="other"), clock=clock),
        Reason.NO_SECRET_MATCHED,
    ),
    # Slack
    "slack signature missing": (_slack(None, str(NOW)), Reason.MISSING_HEADER),
    "slack timestamp missing": (_slack(slack_ok, None), Reason.MISSING_HEADER),
    "slack no v0": (_slack(slack_ok[3:], str(NOW)), Reason.MALFORMED_HEADER),
    "slack ts malformed": (_slack(slack_ok, "12:00"), Reason.MALFORMED_HEADER),
    "slack stale": (_slack(slack_ok, str(NOW - 600)), Reason.TIMESTAMP_OUTSIDE_TOLERANCE),
    "slack mismatch": (_slack("v0=" + "ab" * 32, str(NOW)), Reason.NO_SECRET_MATCHED),
    # Standard Webhooks
    "std id missing": (_std(msg_id=None), Reason.MISSING_HEADER),
    "std timestamp missing": (_std(timestamp=""), Reason.MISSING_HEADER),
    "std signature missing": (_std(signature=""), Reason.MISSING_HEADER),
    "std id not ascii": (_std(msg_id="msg_é"), Reason.MALFORMED_HEADER),
    "std only v1a": (_std(signature="v1a,abc"), Reason.MALFORMED_HEADER),
    "std undecodable v1": (_std(signature="v1,====="), Reason.MALFORMED_HEADER),
    "std ts malformed": (_std(timestamp="01"), Reason.MALFORMED_HEADER),
    "std stale": (
        _std(timestamp=str(NOW - 600), signature=std_signature(ts=NOW - 600)),
        Reason.TIMESTAMP_OUTSIDE_TOLERANCE,
    ),
    "std mismatch": (_std(signature=std_signature(key=b"o" * 32)), Reason.NO_SECRET_MATCHED),
    "std secret not base64": (_std(secret="whsec_not base64!"), Reason.UNUSABLE_SECRET),
}


@pytest.mark.parametrize("case", list(CASES))
def test_verdict__each_verifier_refuses_with_its_reason(case):
    call, reason = CASES[case]
    result, recorded, exception = reason_of(call)
    assert result is False
    assert recorded is reason
    assert (exception is not None) == (reason is Reason.VERIFIER_RAISED)


def test_verdict__cases_cover_every_reason_a_verification_function_gives():
    given = {reason for _, reason in CASES.values()}
    assert given == set(Reason) - {Reason.REJECTED}


@pytest.mark.parametrize(
    "call",
    [
        _hmac(hexmac(BODY)),
        lambda: verify_stripe(SECRET, BODY, stripe(), clock=clock),
        _slack(slack_ok, str(NOW)),
        _std(),
    ],
)
def test_verdict__accepted_request_records_no_reason(call):
    assert reason_of(call) == (True, None, None)


def test_verdict__raised_exception_is_named_by_type_only():
    result, reason, exception = reason_of(_hmac(hexmac(BODY), algorithm="md5"))
    assert (result, reason, exception) == (False, Reason.VERIFIER_RAISED, "KeyError")


def test_verdict__refuse_outside_a_recording_only_returns_false():
    assert refuse(Reason.MALFORMED_HEADER) is False
    assert verify_github(SECRET, BODY, None) is False
    with recording() as recorder:
        pass
    assert recorder.reason is None


def test_verdict__refuse_takes_the_value_and_rejects_unknown_codes():
    with recording() as recorder:
        assert refuse("missing_header") is False
    assert recorder.reason is Reason.MISSING_HEADER
    with pytest.raises(ValueError):
        refuse("bad_vibes")


def test_verdict__a_later_pass_forgets_an_earlier_refusal():
    with recording() as recorder:
        verify_github(SECRET, BODY, None)
        assert recorder.reason is Reason.MISSING_HEADER
        assert verify_github(SECRET, BODY, "sha256=" + hexmac(BODY)) is True
    assert recorder.reason is None
    with recording() as recorder:
        refuse(Reason.MALFORMED_HEADER)
        assert accepted() is True
    assert recorder.reason is None


# -- Standard Webhooks header families -------------------------------------------------------


def test_headers__svix_family_is_read_when_complete():
    svix = {"svix-id": "a", "svix-timestamp": "1", "svix-signature": "s"}
    std = {"webhook-id": "b", "webhook-timestamp": "2", "webhook-signature": "t"}
    assert standard_webhooks_headers(svix) == ("a", "1", "s")
    assert standard_webhooks_headers(std) == ("b", "2", "t")
    assert standard_webhooks_headers({**std, **svix}) == ("a", "1", "s")
    # Incomplete svix family: the webhook-* family, never a mix of the two.
    partial = {"svix-id": "a", "svix-timestamp": "1", "svix-signature": ""}
    assert standard_webhooks_headers({**std, **partial}) == ("b", "2", "t")
    assert standard_webhooks_headers({**partial, "webhook-signature": "t"}) == (None, None, "t")
    assert standard_webhooks_headers({}) == (None, None, None)


# -- Across secrets: Connector.webhook_verdict -----------------------------------------------


class ScriptedConnector(Connector):
    """Answers per secret from ``script``: True, False, a Reason to refuse, or an exception."""

    key = "scripted"
    script: dict = {}

    def verify_webhook(self, headers: dict, raw_body: bytes) -> bool:
        outcome = self.script[self.secret]
        if isinstance(outcome, Exception):
            raise outcome
        if isinstance(outcome, Reason):
            return refuse(outcome)
        return outcome


def verdict(*outcomes) -> WebhookVerdict:
    connector = ScriptedConnector({}, ctx=ProviderContext())
    secrets = tuple(f"s{i}" for i in range(len(outcomes)))
    connector._automate_webhook_secrets = secrets
    connector.script = dict(zip(secrets, outcomes, strict=True))
    return connector.webhook_verdict({}, BODY)


def test_combine__any_secret_accepting_is_accepted():
    assert verdict(Reason.NO_SECRET_MATCHED, True) == WebhookVerdict(accepted=True)


def test_combine__no_secret_matched_only_when_every_secret_was_compared():
    assert verdict(Reason.NO_SECRET_MATCHED, Reason.NO_SECRET_MATCHED).reason is (
        Reason.NO_SECRET_MATCHED
    )
    assert verdict(Reason.NO_SECRET_MATCHED, Reason.UNUSABLE_SECRET).reason is (
        Reason.UNUSABLE_SECRET
    )


def test_combine__first_other_reason_wins():
    result = verdict(Reason.NO_SECRET_MATCHED, KeyError("s1"), Reason.UNUSABLE_SECRET)
    assert result == WebhookVerdict(False, Reason.VERIFIER_RAISED, "KeyError")


def test_combine__plain_false_or_truthy_non_bool_is_rejected():
    assert verdict(False).reason is Reason.REJECTED
    assert verdict(1).reason is Reason.REJECTED


def test_combine__a_reason_does_not_leak_into_the_next_secrets_attempt():
    # s0 refuses as no_secret_matched, s1 says nothing: s1 is "rejected", which wins.
    assert verdict(Reason.NO_SECRET_MATCHED, False).reason is Reason.REJECTED


def test_combine__check_webhook_stays_a_bool():
    connector = ScriptedConnector({}, ctx=ProviderContext())
    connector._automate_webhook_secrets = ("s0",)
    connector.script = {"s0": Reason.MALFORMED_HEADER}
    assert connector.check_webhook({}, BODY) is False
    connector.script = {"s0": True}
    assert connector.check_webhook({}, BODY) is True


def test_combine__no_secret_stays_bound_after_a_verifier_raised_or_refused():
    connector = ScriptedConnector({}, ctx=ProviderContext())
    connector._automate_webhook_secrets = ("s0", "s1")
    connector.script = {"s0": KeyError("s0"), "s1": Reason.NO_SECRET_MATCHED}
    assert connector.webhook_verdict({}, BODY).reason is Reason.VERIFIER_RAISED
    assert connector._automate_current_secret is None
    assert connector.secret == "s0"  # the newest again, as outside any check


def test_recording__nested_blocks_keep_their_own_reasons_and_leave_nothing_behind():
    with recording() as outer:
        with recording() as inner:
            refuse(Reason.MALFORMED_HEADER)
        assert inner.reason is Reason.MALFORMED_HEADER
        assert outer.reason is None
        refuse(Reason.MISSING_HEADER)
    assert outer.reason is Reason.MISSING_HEADER
    assert refuse(Reason.REJECTED) is False  # outside a recording: nothing is recorded
    assert outer.reason is Reason.MISSING_HEADER
