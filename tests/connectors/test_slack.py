"""The built-in Slack connector's Web API actions: it passes the kit and speaks Slack's dialect.

Slack answers most failures with HTTP 200 and ``{"ok": false, "error": ...}``; these tests
pin how those strings become error codes. Webhook verification has its own tests
(test_builtin_webhooks.py) and is only checked here through the kit's rules.
"""

from __future__ import annotations

import time
import uuid

import pytest

from automate_connectors.builtin.slack import SLACK_API, SlackConnector
from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_core.throttling import RateLimitExceeded
from automate_testing.contracts import ConnectorContractTest
from automate_testing.http import MockResponse, mock_http

from .signing import slack_signature

TOKEN = "xoxb-test-token"
CONFIG = {"bot_token": "secret://SLACK_BOT_TOKEN"}
POSTED = {"ok": True, "channel": "C024BE91L", "ts": "1700000000.000100", "message": {}}


class TestBuiltinSlackContract(ConnectorContractTest):
    connector_class = SlackConnector
    secret_values = {"SLACK_BOT_TOKEN": TOKEN}
    # Verification needs only the signing secret (a profile's secrets): {} is a valid
    # config, and actions without bot_token fail with CONFIGURATION (tested below).
    empty_config_is_valid = True
    sample_inputs = {
        "post_message": {"channel": "C024BE91L", "text": "Deployed", "thread_ts": "1.2"},
        "add_reaction": {"channel": "C024BE91L", "timestamp": "1700000000.000100", "name": "+1"},
        "remove_reaction": {"channel": "C1", "timestamp": "1.2", "name": ":eyes:"},
    }
    sample_responses = {
        "post_message": {"POST /chat.postMessage": POSTED},
        "add_reaction": {"POST /reactions.add": {"ok": True}},
        "remove_reaction": {"POST /reactions.remove": {"ok": True}},
    }

    def get_config(self):
        return dict(CONFIG)

    def sign_webhook(self, raw_body, secret):
        ts = int(time.time())
        return {
            "X-Slack-Signature": slack_signature(secret, ts, raw_body),
            "X-Slack-Request-Timestamp": str(ts),
        }


@pytest.fixture
def slack(connector_factory):
    return connector_factory(
        SlackConnector, config=CONFIG, secret_values={"SLACK_BOT_TOKEN": TOKEN}
    )


def test_slack__post_message_sends_json_with_the_bot_token(slack):
    with mock_http(SLACK_API) as mock:
        mock.post("/chat.postMessage", json=POSTED)
        result = slack.execute_action(
            "post_message", {"channel": "#ops", "text": "Hi", "unfurl_links": False}
        )
    assert result == {"channel": "C024BE91L", "ts": "1700000000.000100"}
    call = mock.calls[0]
    assert call.url == "https://slack.com/api/chat.postMessage"
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert call.json == {"channel": "#ops", "text": "Hi", "unfurl_links": False}


def test_slack__base_url_points_at_govslack(connector_factory):
    slack = connector_factory(
        SlackConnector,
        config={**CONFIG, "base_url": "https://slack-gov.com/api/"},
        secret_values={"SLACK_BOT_TOKEN": TOKEN},
    )
    with mock_http() as mock:
        mock.post("https://slack-gov.com/api/chat.postMessage", json=POSTED)
        slack.execute_action("post_message", {"channel": "C1", "text": "Hi"})
    assert len(mock.calls) == 1


def test_slack__reaction_name_is_sent_without_colons(slack):
    with mock_http(SLACK_API) as mock:
        mock.post("/reactions.add", json={"ok": True})
        result = slack.execute_action(
            "add_reaction", {"channel": "C1", "timestamp": "1.2", "name": ":white_check_mark:"}
        )
    assert result == {"ok": True, "changed": True}
    assert mock.calls[0].json == {"channel": "C1", "timestamp": "1.2", "name": "white_check_mark"}


@pytest.mark.parametrize(
    ("action", "method", "settled"),
    [
        ("add_reaction", "reactions.add", "already_reacted"),
        ("remove_reaction", "reactions.remove", "no_reaction"),
    ],
)
def test_slack__reaction_already_in_place_is_success(slack, action, method, settled):
    with mock_http(SLACK_API) as mock:
        mock.post(f"/{method}", json={"ok": False, "error": settled})
        result = slack.execute_action(action, {"channel": "C1", "timestamp": "1.2", "name": "+1"})
    assert result == {"ok": True, "changed": False}


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("invalid_auth", ErrorCodes.UNAUTHENTICATED),
        ("token_revoked", ErrorCodes.UNAUTHENTICATED),
        ("missing_scope", ErrorCodes.PERMISSION_DENIED),
        ("not_in_channel", ErrorCodes.PERMISSION_DENIED),
        ("channel_not_found", ErrorCodes.NOT_FOUND),
        ("ratelimited", ErrorCodes.RATE_LIMITED),
        ("internal_error", ErrorCodes.UNAVAILABLE),
        ("msg_too_long", ErrorCodes.INVALID_ARGUMENT),
        ("some_future_error", ErrorCodes.INVALID_ARGUMENT),
    ],
)
def test_slack__ok_false_maps_to_error_codes(slack, error, code):
    with mock_http(SLACK_API) as mock:
        mock.post("/chat.postMessage", json={"ok": False, "error": error, "needed": "chat:write"})
        with pytest.raises(AutomateError) as raised:
            slack.execute_action("post_message", {"channel": "C1", "text": "Hi"})
    assert raised.value.code == code
    assert raised.value.provider == "slack"
    assert error in raised.value.message
    assert raised.value.details["slack_error"] == error
    assert raised.value.details["needed_scope"] == "chat:write"


def test_slack__http_429_is_rate_limited_with_retry_after(slack):
    with mock_http(SLACK_API) as mock:
        mock.post("/chat.postMessage", status=429, headers={"Retry-After": "30"})
        with pytest.raises(AutomateError) as raised:
            slack.execute_action("post_message", {"channel": "C1", "text": "Hi"})
    assert raised.value.code == ErrorCodes.RATE_LIMITED
    assert raised.value.retryable is True
    assert raised.value.details["retry_after"] == 30


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (MockResponse(body="<html>down</html>", status=200), "not JSON"),
        (MockResponse(json={"channel": "C1"}), "'ok'"),
        (MockResponse(json={"ok": True}), "channel and ts"),
    ],
)
def test_slack__unexpected_responses_are_internal(slack, reply, expected):
    with mock_http(SLACK_API) as mock:
        mock.post("/chat.postMessage", json=reply.json, body=reply.body, status=reply.status)
        with pytest.raises(AutomateError) as raised:
            slack.execute_action("post_message", {"channel": "C1", "text": "Hi"})
    assert raised.value.code == ErrorCodes.INTERNAL
    assert expected in raised.value.message


def test_slack__actions_without_bot_token_are_a_configuration_error(connector_factory):
    slack = connector_factory(SlackConnector, config={})
    with mock_http(SLACK_API) as mock, pytest.raises(AutomateError) as raised:
        slack.execute_action("post_message", {"channel": "C1", "text": "Hi"})
    assert raised.value.code == ErrorCodes.CONFIGURATION
    assert "bot_token" in raised.value.message
    assert mock.calls == []


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"bot_token": "xoxb-pasted-in-clear"}, "bot_token"),
        ({"base_url": "http://slack.com/api"}, "base_url"),
        ({"rate_limit": "lots"}, "rate_limit"),
        ({"signing_secret": "typo"}, "signing_secret"),
    ],
)
def test_slack__config_rejects_bad_fields(connector_factory, config, field):
    with pytest.raises(AutomateError) as raised:
        connector_factory(SlackConnector, config=config)
    assert raised.value.code == ErrorCodes.INVALID_ARGUMENT
    assert field in raised.value.message


def test_slack__rate_limit_is_enforced_before_http(connector_factory):
    name = f"SLACK_{uuid.uuid4().hex}"  # a budget of its own, whatever ran before
    slack = connector_factory(
        SlackConnector,
        config={"bot_token": f"secret://{name}", "rate_limit": "2/min"},
        secret_values={name: TOKEN},
    )
    with mock_http(SLACK_API) as mock:
        mock.post("/chat.postMessage", json=POSTED)
        for _ in range(2):
            slack.execute_action("post_message", {"channel": "C1", "text": "Hi"})
        with pytest.raises(RateLimitExceeded) as raised:
            slack.execute_action("post_message", {"channel": "C1", "text": "Hi"})
    assert len(mock.calls) == 2
    assert raised.value.code == ErrorCodes.RATE_LIMITED
    assert raised.value.provider == "slack"
    assert raised.value.retry_after > 0


def test_slack__existing_verification_only_config_still_valid(connector_factory):
    slack = connector_factory(SlackConnector, config={"tolerance_seconds": 60})
    assert slack.cfg.tolerance_seconds == 60
    assert slack.cfg.bot_token is None
