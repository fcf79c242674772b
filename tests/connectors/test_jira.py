"""The built-in Jira connector: passes the contract kit, and talks to Jira as Jira expects."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid

import pytest

from automate_connectors.builtin.jira import JiraConnector, text_to_adf
from automate_connectors.registry import BUILTIN_MODULES, get_connector
from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_core.throttling import RateLimitExceeded
from automate_testing.context import make_context
from automate_testing.contracts import ConnectorContractTest
from automate_testing.http import MockResponse, mock_http

SITE = "https://ops.atlassian.net"
TOKEN = "jira-t0ken-value"
CONFIG = {
    "url": SITE,
    "email": "bot@example.com",
    "api_token": "secret://JIRA_TOKEN",
    "project_key": "OPS",
}
SECRETS = {"JIRA_TOKEN": TOKEN}
TRANSITIONS = {
    "transitions": [
        {"id": "11", "name": "In Progress", "to": {"name": "In Progress"}},
        {"id": "31", "name": "Done", "to": {"name": "Done"}},
    ]
}


def jira_signature(body: bytes, secret: str) -> str:
    """Jira's algorithm for webhooks registered with a secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class TestBuiltinJiraContract(ConnectorContractTest):
    connector_class = JiraConnector
    secret_values = {"JIRA_TOKEN": TOKEN}
    sample_inputs = {
        "create_issue": {"summary": "Printer on fire", "description": "Smoke.", "labels": ["ops"]},
        "add_comment": {"issue_key": "OPS-7", "body": "On it"},
        "get_transitions": {"issue_key": "OPS-7"},
        "transition_issue": {"issue_key": "OPS-7", "transition": "done", "comment": "Fixed"},
    }
    sample_responses = {
        "create_issue": {
            "POST /rest/api/3/issue": MockResponse(json={"id": "10001", "key": "OPS-1"}, status=201)
        },
        "add_comment": {
            "POST /rest/api/3/issue/OPS-7/comment": MockResponse(json={"id": "555"}, status=201)
        },
        "get_transitions": {"GET /rest/api/3/issue/OPS-7/transitions": TRANSITIONS},
        "transition_issue": {
            "GET /rest/api/3/issue/OPS-7/transitions": TRANSITIONS,
            "POST /rest/api/3/issue/OPS-7/transitions": MockResponse(status=204),
        },
    }

    def get_config(self):
        return dict(CONFIG)

    def sign_webhook(self, raw_body, secret):
        return {"X-Hub-Signature": jira_signature(raw_body, secret)}


@pytest.fixture
def jira(connector_factory):
    return connector_factory(
        JiraConnector, config=CONFIG, secrets=["jira-hook"], secret_values={"JIRA_TOKEN": TOKEN}
    )


def test_jira__create_issue_sends_adf_with_basic_auth(jira):
    with mock_http(SITE) as mock:
        mock.post("/rest/api/3/issue", json={"id": "10001", "key": "OPS-1"}, status=201)
        result = jira.execute_action(
            "create_issue",
            {"summary": "Hi", "description": "one\ntwo\n\nthree", "priority": "High"},
        )
    assert result == {"id": "10001", "key": "OPS-1", "url": f"{SITE}/browse/OPS-1"}
    call = mock.calls[0]
    assert (
        call.headers["authorization"]
        == "Basic " + base64.b64encode(f"bot@example.com:{TOKEN}".encode()).decode()
    )
    fields = call.json["fields"]
    assert fields["project"] == {"key": "OPS"}
    assert fields["issuetype"] == {"name": "Task"}
    assert fields["priority"] == {"name": "High"}
    assert fields["description"] == text_to_adf("one\ntwo\n\nthree")


def test_text_to_adf__paragraphs_and_line_breaks():
    assert text_to_adf("a\nb\n\nc\n\n\n") == {
        "type": "doc",
        "version": 1,
        "content": [
            {
                "type": "paragraph",
                "content": [
                    {"type": "text", "text": "a"},
                    {"type": "hardBreak"},
                    {"type": "text", "text": "b"},
                ],
            },
            {"type": "paragraph", "content": [{"type": "text", "text": "c"}]},
        ],
    }


def test_jira__input_project_key_overrides_config(jira):
    with mock_http(SITE) as mock:
        mock.post("/rest/api/3/issue", json={"id": "1", "key": "WEB-1"}, status=201)
        jira.execute_action("create_issue", {"summary": "Hi", "project_key": "WEB"})
    assert mock.calls[0].json["fields"]["project"] == {"key": "WEB"}


def test_jira__create_issue_without_any_project_is_invalid_before_http(connector_factory):
    config = {k: v for k, v in CONFIG.items() if k != "project_key"}
    jira = connector_factory(JiraConnector, config=config, secret_values={"JIRA_TOKEN": TOKEN})
    with mock_http(SITE) as mock, pytest.raises(AutomateError) as raised:
        jira.execute_action("create_issue", {"summary": "Hi"})
    assert raised.value.code == ErrorCodes.INVALID_ARGUMENT
    assert "project_key" in raised.value.message
    assert mock.calls == []


def test_jira__unresolvable_token_is_a_configuration_error_before_http():
    # Built directly: connector_factory, like a profile, would resolve the token first.
    jira = JiraConnector(CONFIG, ctx=make_context())  # no secret values at all
    with mock_http(SITE) as mock, pytest.raises(AutomateError) as raised:
        jira.execute_action("add_comment", {"issue_key": "OPS-1", "body": "x"})
    assert raised.value.code == ErrorCodes.CONFIGURATION
    assert "JIRA_TOKEN" in raised.value.message
    assert mock.calls == []


def test_jira__error_carries_jira_messages(jira):
    with mock_http(SITE) as mock:
        mock.post(
            "/rest/api/3/issue",
            status=400,
            json={"errorMessages": ["Bad project"], "errors": {"summary": "too long"}},
        )
        with pytest.raises(AutomateError) as raised:
            jira.execute_action("create_issue", {"summary": "Hi"})
    error = raised.value
    assert error.code == ErrorCodes.INVALID_ARGUMENT
    assert error.provider == "jira"
    assert "Bad project" in error.message
    assert "summary: too long" in error.message


def test_jira__rate_limit_is_retryable_with_retry_after(jira):
    with mock_http(SITE) as mock:
        mock.get("/rest/api/3/issue/OPS-1/transitions", status=429, headers={"Retry-After": "7"})
        with pytest.raises(AutomateError) as raised:
            jira.execute_action("get_transitions", {"issue_key": "OPS-1"})
    assert raised.value.code == ErrorCodes.RATE_LIMITED
    assert raised.value.retryable is True
    assert raised.value.details["retry_after"] == 7


def test_jira__unexpected_response_is_internal(jira):
    with mock_http(SITE) as mock:
        mock.post("/rest/api/3/issue", json={"id": "1"}, status=201)
        with pytest.raises(AutomateError) as raised:
            jira.execute_action("create_issue", {"summary": "Hi"})
    assert raised.value.code == ErrorCodes.INTERNAL
    assert "no 'key'" in raised.value.message


def test_jira__non_json_body_is_internal(jira):
    with mock_http(SITE) as mock:
        mock.post("/rest/api/3/issue", body="<html>maintenance</html>", status=200)
        with pytest.raises(AutomateError) as raised:
            jira.execute_action("create_issue", {"summary": "Hi"})
    assert "not JSON" in raised.value.message


def test_jira__transition_by_id_posts_without_lookup(jira):
    with mock_http(SITE) as mock:
        mock.post("/rest/api/3/issue/OPS-2/transitions", status=204)
        result = jira.execute_action("transition_issue", {"issue_key": "OPS-2", "transition": "31"})
    assert result == {"issue_key": "OPS-2", "transition_id": "31", "transition_name": None}
    assert [c.method for c in mock.calls] == ["POST"]
    assert mock.calls[0].json == {"transition": {"id": "31"}}


def test_jira__transition_by_name_with_comment(jira):
    with mock_http(SITE) as mock:
        mock.get("/rest/api/3/issue/OPS-2/transitions", json=TRANSITIONS)
        mock.post("/rest/api/3/issue/OPS-2/transitions", status=204)
        result = jira.execute_action(
            "transition_issue", {"issue_key": "OPS-2", "transition": "in progress", "comment": "go"}
        )
    assert result["transition_id"] == "11"
    assert result["transition_name"] == "In Progress"
    assert mock.calls[1].json["update"]["comment"][0]["add"]["body"] == text_to_adf("go")


def test_jira__unknown_transition_name_lists_the_available_ones(jira):
    with mock_http(SITE) as mock:
        mock.get("/rest/api/3/issue/OPS-2/transitions", json=TRANSITIONS)
        with pytest.raises(AutomateError) as raised:
            jira.execute_action("transition_issue", {"issue_key": "OPS-2", "transition": "Ship"})
    assert raised.value.code == ErrorCodes.INVALID_ARGUMENT
    assert "'In Progress', 'Done'" in raised.value.message
    assert [c.method for c in mock.calls] == ["GET"]


@pytest.mark.parametrize("key", ["ops-1", "OPS-0", "../admin", "OPS-1/comment", ""])
def test_jira__issue_key_outside_the_pattern_is_rejected_before_http(jira, key):
    with mock_http(SITE) as mock, pytest.raises(AutomateError) as raised:
        jira.execute_action("add_comment", {"issue_key": key, "body": "x"})
    assert raised.value.code == ErrorCodes.INVALID_ARGUMENT
    assert mock.calls == []


@pytest.mark.parametrize("url", ["ops.atlassian.net", "ftp://ops.atlassian.net"])
def test_jira__config_url_must_be_http(connector_factory, url):
    with pytest.raises(AutomateError) as raised:
        connector_factory(JiraConnector, config={**CONFIG, "url": url}, secret_values=SECRETS)
    assert raised.value.code == ErrorCodes.INVALID_ARGUMENT
    assert "url" in raised.value.message


def test_jira__webhook_signature(jira):
    body = json.dumps({"webhookEvent": "jira:issue_created", "issue": {"key": "OPS-1"}}).encode()
    assert jira.check_webhook({"X-Hub-Signature": jira_signature(body, "jira-hook")}, body)
    assert not jira.check_webhook({"X-Hub-Signature": jira_signature(body, "other")}, body)
    bare = jira_signature(body, "jira-hook").removeprefix("sha256=")
    assert not jira.check_webhook({"X-Hub-Signature": bare}, body)
    assert not jira.check_webhook({}, body)


def test_jira__webhook_event_type_and_delivery_id():
    body = json.dumps({"webhookEvent": "jira:issue_updated", "timestamp": 1}).encode()
    event = JiraConnector.parse_webhook(
        JiraConnector.__new__(JiraConnector),
        {"X-Atlassian-Webhook-Identifier": "delivery-9"},
        body,
    )
    assert event.event_type == "jira:issue_updated"
    assert event.external_id == "delivery-9"
    assert event.payload["timestamp"] == 1


def test_jira__builtin_is_replaced_by_the_projects_own_jira():
    # tests.testapp.connectors defines the spec's JiraConnector under the same key.
    assert "automate_connectors.builtin.jira" in BUILTIN_MODULES
    assert get_connector("jira").__module__ == "tests.testapp.connectors"


def test_jira__rate_limit_is_enforced_before_http(connector_factory):
    email = f"{uuid.uuid4().hex}@example.com"  # the budget is per site and account
    jira = connector_factory(
        JiraConnector,
        config={**CONFIG, "email": email, "rate_limit": "1/hour"},
        secret_values={"JIRA_TOKEN": TOKEN},
    )
    with mock_http(SITE) as mock:
        mock.get("/rest/api/3/issue/OPS-1/transitions", json=TRANSITIONS)
        jira.execute_action("get_transitions", {"issue_key": "OPS-1"})
        with pytest.raises(RateLimitExceeded) as raised:
            jira.execute_action("get_transitions", {"issue_key": "OPS-1"})
    assert len(mock.calls) == 1
    assert raised.value.code == ErrorCodes.RATE_LIMITED
    assert raised.value.provider == "jira"


def test_jira__bad_rate_limit_is_a_config_error(connector_factory):
    with pytest.raises(AutomateError) as raised:
        connector_factory(
            JiraConnector, config={**CONFIG, "rate_limit": "often"}, secret_values=SECRETS
        )
    assert raised.value.code == ErrorCodes.INVALID_ARGUMENT
    assert "rate_limit" in raised.value.message
