"""The built-in GitHub connector's REST actions: it passes the kit and reads GitHub's limits.

Webhook verification keeps its own tests (test_builtin_webhooks.py); the kit checks it here
once more through its rules.
"""

from __future__ import annotations

import uuid

import pytest

from automate_connectors.builtin.github import GITHUB_API, GitHubConnector, github_retry_after
from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_core.throttling import RateLimitExceeded
from automate_testing.contracts import ConnectorContractTest
from automate_testing.http import MockResponse, mock_http

from .signing import github_signature

TOKEN = "github_pat_test"
CONFIG = {"token": "secret://GITHUB_TOKEN", "repository": "acme/widgets"}
ISSUE = {"id": 1296269, "number": 42, "html_url": "https://github.com/acme/widgets/issues/42"}
COMMENT = {"id": 99, "html_url": "https://github.com/acme/widgets/issues/42#issuecomment-99"}


class TestBuiltinGitHubContract(ConnectorContractTest):
    connector_class = GitHubConnector
    secret_values = {"GITHUB_TOKEN": TOKEN}
    # Receiving webhooks needs only the profile's secrets: {} is a valid config, and
    # actions without a token fail with CONFIGURATION (tested below).
    empty_config_is_valid = True
    sample_inputs = {
        "create_issue": {"title": "Build broken", "body": "See CI", "labels": ["ci"]},
        "create_comment": {"repository": "acme/api", "issue_number": 7, "body": "Looking"},
    }
    sample_responses = {
        "create_issue": {"POST /repos/acme/widgets/issues": MockResponse(json=ISSUE, status=201)},
        "create_comment": {
            "POST /repos/acme/api/issues/7/comments": MockResponse(json=COMMENT, status=201)
        },
    }

    def get_config(self):
        return dict(CONFIG)

    def sign_webhook(self, raw_body, secret):
        return {"X-Hub-Signature-256": github_signature(secret, raw_body)}


@pytest.fixture
def github(connector_factory):
    return connector_factory(GitHubConnector, config=CONFIG, secret_values={"GITHUB_TOKEN": TOKEN})


def test_github__create_issue_sends_the_api_headers(github):
    with mock_http(GITHUB_API) as mock:
        mock.post("/repos/acme/widgets/issues", json=ISSUE, status=201)
        result = github.execute_action(
            "create_issue", {"title": "Hi", "assignees": ["octocat"], "milestone": 3}
        )
    assert result == {"id": "1296269", "number": 42, "url": ISSUE["html_url"]}
    call = mock.calls[0]
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert call.headers["accept"] == "application/vnd.github+json"
    assert call.headers["x-github-api-version"] == "2022-11-28"
    assert call.json == {"title": "Hi", "assignees": ["octocat"], "milestone": 3}


def test_github__comment_on_a_pull_request_uses_the_issues_endpoint(github):
    with mock_http(GITHUB_API) as mock:
        mock.post("/repos/acme/widgets/issues/8/comments", json=COMMENT, status=201)
        result = github.execute_action("create_comment", {"issue_number": 8, "body": "LGTM"})
    assert result == {"id": "99", "url": COMMENT["html_url"], "issue_number": 8}
    assert mock.calls[0].json == {"body": "LGTM"}


def test_github__enterprise_base_url(connector_factory):
    github = connector_factory(
        GitHubConnector,
        config={**CONFIG, "base_url": "https://git.example.com/api/v3/"},
        secret_values={"GITHUB_TOKEN": TOKEN},
    )
    with mock_http() as mock:
        mock.post("https://git.example.com/api/v3/repos/acme/widgets/issues", json=ISSUE)
        github.execute_action("create_issue", {"title": "Hi"})
    assert len(mock.calls) == 1


def test_github__repository_is_required_somewhere(connector_factory):
    github = connector_factory(
        GitHubConnector,
        config={"token": "secret://GITHUB_TOKEN"},
        secret_values={"GITHUB_TOKEN": TOKEN},
    )
    with mock_http(GITHUB_API) as mock, pytest.raises(AutomateError) as raised:
        github.execute_action("create_issue", {"title": "Hi"})
    assert raised.value.code == ErrorCodes.INVALID_ARGUMENT
    assert "repository" in raised.value.message
    assert mock.calls == []


@pytest.mark.parametrize("repo", ["acme/..", "acme/.", "acme", "../etc", "acme/w/x", "-x/y"])
def test_github__bad_repository_is_rejected_before_http(github, repo):
    with mock_http(GITHUB_API) as mock, pytest.raises(AutomateError) as raised:
        github.execute_action(
            "create_comment", {"repository": repo, "issue_number": 1, "body": "x"}
        )
    assert raised.value.code == ErrorCodes.INVALID_ARGUMENT
    assert mock.calls == []


def test_github__validation_errors_carry_githubs_messages(github):
    with mock_http(GITHUB_API) as mock:
        mock.post(
            "/repos/acme/widgets/issues",
            status=422,
            json={
                "message": "Validation Failed",
                "errors": [{"resource": "Issue", "field": "milestone", "code": "invalid"}],
            },
        )
        with pytest.raises(AutomateError) as raised:
            github.execute_action("create_issue", {"title": "Hi", "milestone": 999})
    assert raised.value.code == ErrorCodes.INVALID_ARGUMENT
    assert "Validation Failed; milestone: invalid" in raised.value.message


def test_github__primary_rate_limit_403_is_rate_limited(github):
    with mock_http(GITHUB_API) as mock:
        mock.post(
            "/repos/acme/widgets/issues",
            status=403,
            headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "4102444800"},
            json={"message": "API rate limit exceeded"},
        )
        with pytest.raises(AutomateError) as raised:
            github.execute_action("create_issue", {"title": "Hi"})
    assert raised.value.code == ErrorCodes.RATE_LIMITED
    assert raised.value.retryable is True
    assert raised.value.details["retry_after"] > 0
    assert "API rate limit exceeded" in raised.value.message


def test_github__secondary_rate_limit_uses_retry_after(github):
    with mock_http(GITHUB_API) as mock:
        mock.post("/repos/acme/widgets/issues", status=403, headers={"Retry-After": "60"})
        with pytest.raises(AutomateError) as raised:
            github.execute_action("create_issue", {"title": "Hi"})
    assert raised.value.code == ErrorCodes.RATE_LIMITED
    assert raised.value.details["retry_after"] == 60


def test_github__plain_403_stays_permission_denied(github):
    with mock_http(GITHUB_API) as mock:
        mock.post(
            "/repos/acme/widgets/issues",
            status=403,
            headers={"x-ratelimit-remaining": "4999"},
            json={"message": "Resource not accessible by integration"},
        )
        with pytest.raises(AutomateError) as raised:
            github.execute_action("create_issue", {"title": "Hi"})
    assert raised.value.code == ErrorCodes.PERMISSION_DENIED
    assert raised.value.retryable is False
    assert "Resource not accessible" in raised.value.message


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1030"}, 30),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "900"}, 0),
        ({"x-ratelimit-remaining": "0"}, 60),
        ({"Retry-After": "5", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "2000"}, 5),
        ({"x-ratelimit-remaining": "10"}, None),
        ({}, None),
    ],
)
def test_github_retry_after__reads_githubs_headers(headers, expected):
    import httpx

    assert github_retry_after(httpx.Headers(headers), now=1000.0) == expected


def test_github__unexpected_response_is_internal(github):
    with mock_http(GITHUB_API) as mock:
        mock.post("/repos/acme/widgets/issues", json={"id": 1}, status=201)
        with pytest.raises(AutomateError) as raised:
            github.execute_action("create_issue", {"title": "Hi"})
    assert raised.value.code == ErrorCodes.INTERNAL


def test_github__actions_without_token_are_a_configuration_error(connector_factory):
    github = connector_factory(GitHubConnector, config={"repository": "acme/widgets"})
    with mock_http(GITHUB_API) as mock, pytest.raises(AutomateError) as raised:
        github.execute_action("create_issue", {"title": "Hi"})
    assert raised.value.code == ErrorCodes.CONFIGURATION
    assert "token" in raised.value.message
    assert mock.calls == []


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"token": "ghp_pasted_in_clear"}, "token"),
        ({"base_url": "http://git.example.com/api/v3"}, "base_url"),
        ({"repository": "not a repo"}, "repository"),
        ({"rate_limit": "fast"}, "rate_limit"),
        ({"secret": "typo"}, "secret"),
    ],
)
def test_github__config_rejects_bad_fields(connector_factory, config, field):
    with pytest.raises(AutomateError) as raised:
        connector_factory(GitHubConnector, config=config)
    assert raised.value.code == ErrorCodes.INVALID_ARGUMENT
    assert field in raised.value.message


def test_github__rate_limit_is_enforced_before_http(connector_factory):
    name = f"GH_{uuid.uuid4().hex}"  # a budget of its own, whatever ran before
    github = connector_factory(
        GitHubConnector,
        config={**CONFIG, "token": f"secret://{name}", "rate_limit": "1/hour"},
        secret_values={name: TOKEN},
    )
    with mock_http(GITHUB_API) as mock:
        mock.post("/repos/acme/widgets/issues/1/comments", json=COMMENT, status=201)
        github.execute_action("create_comment", {"issue_number": 1, "body": "one"})
        with pytest.raises(RateLimitExceeded) as raised:
            github.execute_action("create_comment", {"issue_number": 1, "body": "two"})
    assert len(mock.calls) == 1
    assert raised.value.provider == "github"


def test_github__existing_webhook_only_config_still_valid(connector_factory):
    github = connector_factory(GitHubConnector, config={})
    assert github.cfg.token is None
    assert github.base_url == GITHUB_API
