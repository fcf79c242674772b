"""The API connectors built the way production builds them: from a connection profile.

``build_connector`` resolves a profile's ``secret://`` references before the connector
sees its config, so the config models must accept a resolved secret while still refusing
a token pasted into the profile in clear.
"""

from __future__ import annotations

import pytest

from automate.connections import Connection, build_connector
from automate.models import ConnectionProfile
from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_testing.context import make_context
from automate_testing.http import mock_http

SECRETS = {"API_TOKEN": "tok-123", "SIGNING": "signing-secret"}

# connector -> (config with a reference, credential field, action, input, route, reply)
CASES = {
    "slack": (
        {"bot_token": "secret://API_TOKEN"},
        "bot_token",
        "post_message",
        {"channel": "C1", "text": "Hi"},
        "https://slack.com/api/chat.postMessage",
        {"ok": True, "channel": "C1", "ts": "1.2"},
    ),
    "github": (
        {"token": "secret://API_TOKEN", "repository": "acme/widgets"},
        "token",
        "create_comment",
        {"issue_number": 3, "body": "Hi"},
        "https://api.github.com/repos/acme/widgets/issues/3/comments",
        {"id": 9, "html_url": "https://github.com/acme/widgets/issues/3#issuecomment-9"},
    ),
    "http": (
        {"base_url": "https://api.example.com", "credentials_ref": "secret://API_TOKEN"},
        "credentials_ref",
        "post",
        {"url": "/hooks", "json": {"a": 1}},
        "https://api.example.com/hooks",
        {"ok": True},
    ),
}


# A credential's grant is checked against the webhook signing secrets, which profiles hold.
@pytest.mark.django_db
@pytest.mark.parametrize("key", sorted(CASES))
def test_builtin_connection__references_resolved_by_the_profile_reach_the_service(key):
    config, _, action, data, url, reply = CASES[key]
    connection = Connection(
        key=key, connector_key=key, config=config, secrets=("secret://SIGNING",)
    )
    connector = build_connector(connection, ctx=make_context(SECRETS))
    with mock_http() as mock:
        mock.post(url, json=reply)
        connector.execute_action(action, data)
    assert mock.calls[0].headers["authorization"] == "Bearer tok-123"
    assert connector.secrets == ["signing-secret"]


@pytest.mark.parametrize("key", sorted(CASES))
def test_builtin_connection__token_pasted_in_clear_is_refused(key):
    config, field, *_ = CASES[key]
    connection = Connection(key=key, connector_key=key, config={**config, field: "tok-123"})
    with pytest.raises(AutomateError) as raised:
        build_connector(connection, ctx=make_context(SECRETS))
    assert raised.value.code == ErrorCodes.INVALID_ARGUMENT
    assert field in raised.value.message
    assert "tok-123" not in str(raised.value)


@pytest.mark.django_db
def test_builtin_connection__slack_profile_with_a_bot_token_still_verifies_webhooks():
    from automate.connections import connector_for

    ConnectionProfile.objects.create(
        key="slack", connector_key="slack", config={"bot_token": "secret://API_TOKEN"}
    )
    connector = connector_for("slack", ctx=make_context(SECRETS))
    assert connector is not None
    assert connector.cfg.bot_token == "tok-123"
