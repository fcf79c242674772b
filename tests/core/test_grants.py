"""Secret grants (AUTOMATE["SECRET_GRANTS"]) and allow-lists per purpose (HTTP_ALLOW_FOR)."""

from __future__ import annotations

import ipaddress

import pytest
from django.core.checks import Error

from automate_core import secrets
from automate_core.checks import check_settings
from automate_core.http import is_credential_header, redact_headers, safe_client
from automate_core.net import SSRFError, check_address
from automate_core.secrets import (
    SecretNotGranted,
    check_grant,
    check_use,
    check_value_grant,
    resolve_granted,
)
from tests.core.helpers import automate_settings

pytestmark = pytest.mark.django_db

GRANTS = {
    "STRIPE": {"hosts": ["api.stripe.com"], "uses": ["http_request"]},
    "CRM": {"hosts": [".crm.example.com"]},
}


@pytest.fixture(autouse=True)
def granted():
    with automate_settings(
        SECRET_GRANTS=GRANTS, SECRETS={"STRIPE": "sk-1234567", "CRM": "c-1234567"}
    ):
        yield


def test_grant__a_granted_host_and_use_pass():
    assert check_grant("secret://STRIPE", use="http_request", host="api.stripe.com") == "STRIPE"
    assert check_grant("secret://CRM", use="llm", host="eu.crm.example.com") == "CRM"
    assert check_grant("secret://CRM", use="code", host="CRM.example.com.") == "CRM"


def test_grant__another_host_is_refused_naming_secret_host_and_use():
    with pytest.raises(SecretNotGranted) as refused:
        check_grant("secret://STRIPE", use="http_request", host="evil.example")
    assert refused.value.code == "permission_denied"
    assert refused.value.retryable is False
    assert refused.value.details == {
        "secret": "STRIPE",
        "host": "evil.example",
        "use": "http_request",
        "reason": "secret_not_granted",
    }
    assert "sk-1234567" not in str(refused.value)


def test_grant__another_use_is_refused():
    with pytest.raises(SecretNotGranted, match="allows only the uses http_request"):
        check_grant("secret://STRIPE", use="connection", host="api.stripe.com")


def test_grant__a_grant_overrides_the_implicit_host():
    with pytest.raises(SecretNotGranted):
        check_grant(
            "secret://STRIPE",
            use="http_request",
            host="evil.example",
            implicit_hosts=["evil.example"],
        )


def test_grant__no_grant_passes_only_for_the_implicit_host():
    assert check_grant("secret://OTHER", use="llm", host="h.example", implicit_hosts=["h.example"])
    with pytest.raises(SecretNotGranted, match="no AUTOMATE"):
        check_grant("secret://OTHER", use="llm", host="x.example", implicit_hosts=["h.example"])
    with pytest.raises(SecretNotGranted):
        check_grant("secret://OTHER", use="llm", host="", implicit_hosts=[""])


def test_grant__a_signing_secret_is_refused_even_when_granted():
    # tests/settings.py: my_service's webhook secret is secret://my-service-webhook.
    grants = {"my-service-webhook": {"hosts": ["h.example"]}}
    with (
        automate_settings(SECRET_GRANTS=grants),
        pytest.raises(SecretNotGranted, match="signing secret"),
    ):
        check_grant("secret://my-service-webhook", use="code", host="h.example")


def test_grant__a_profiles_webhook_secret_is_a_signing_secret():
    from automate.models import ConnectionProfile

    ConnectionProfile.objects.create(
        key="acme", connector_key="generic_hmac", webhook_secrets=["secret://ACME_WHSEC"]
    )
    with pytest.raises(SecretNotGranted, match="signing secret"):
        check_grant("secret://ACME_WHSEC", use="code", host="h", implicit_hosts=["h"])


def test_grant__check_use_needs_an_explicit_grant_for_the_use():
    assert check_use("secret://STRIPE", use="http_request") == "STRIPE"
    assert check_use("secret://CRM", use="http_request") == "CRM"
    with pytest.raises(SecretNotGranted):
        check_use("secret://OTHER", use="http_request")
    with pytest.raises(SecretNotGranted):
        check_use("secret://STRIPE", use="mcp")


def test_grant__resolve_granted_reads_the_value_only_after_the_check():
    assert resolve_granted("secret://STRIPE", use="http_request", host="api.stripe.com") == (
        "sk-1234567"
    )
    calls = []

    class Spy:
        def resolve(self, value):
            calls.append(value)
            return "never"

    with pytest.raises(SecretNotGranted):
        resolve_granted("secret://STRIPE", use="http_request", host="x", resolver=Spy())
    assert calls == []


def test_grant__a_resolved_value_is_checked_by_the_secret_it_came_from():
    value = secrets.resolve("secret://STRIPE")
    check_value_grant(value, use="http_request", host="api.stripe.com")
    with pytest.raises(SecretNotGranted) as refused:
        check_value_grant(value, use="http_request", host="evil.example")
    assert refused.value.details["secret"] == "STRIPE"


def test_grant__an_unknown_value_counts_as_ungranted():
    check_value_grant(
        "never-resolved", use="connection", host="a.example", implicit_hosts=["a.example"]
    )
    with pytest.raises(SecretNotGranted, match="unnamed"):
        check_value_grant("never-resolved", use="connection", host="b.example")


def test_grant__safe_client_binds_its_credential_to_base_url_or_the_grant():
    import respx

    with pytest.raises(SecretNotGranted):  # refused when the client is built
        safe_client(
            base_url="https://evil.example", credentials_ref="secret://STRIPE", purpose="llm"
        )
    with pytest.raises(SecretNotGranted, match="signing secret"):
        safe_client(credentials_ref="secret://my-service-webhook")
    # No base_url: each request's host is checked before anything is sent.
    with respx.mock:
        respx.get("https://eu.crm.example.com/x").respond(200, json={})
        with safe_client(credentials_ref="secret://CRM", purpose="rag") as client:
            sent = client.get("https://eu.crm.example.com/x")
            with pytest.raises(SecretNotGranted):
                client.get("https://evil.example/x")
    assert sent.request.headers["Authorization"] == "Bearer c-1234567"


def test_credential_header__names_are_matched_by_substring():
    for name in (
        "Authorization",
        "X-Api-Key",
        "Api_Key",
        "Ocp-Apim-Subscription-Key",
        "X-Functions-Key",
        "X-Auth-Token",
        "X-Hub-Signature-256",
        "Set-Cookie",
        "X-Client-Secret",
        "X-Password",
        "X-Session-Id",
    ):
        assert is_credential_header(name), name
    for name in ("Content-Type", "X-Trace", "Accept", "X-Request-Id", "User-Agent"):
        assert not is_credential_header(name), name


def test_credential_header__redact_headers_masks_values():
    assert redact_headers({"X-Api-Key": "v", "Content-Type": "text/plain"}) == {
        "X-Api-Key": "[redacted]",
        "Content-Type": "text/plain",
    }


# -- Allow-lists per purpose --------------------------------------------------------------


def test_allow_for__opens_a_network_for_its_purpose_only():
    ip = ipaddress.ip_address("10.20.0.5")
    with automate_settings(HTTP_ALLOW_FOR={"mcp": {"networks": ["10.20.0.0/16"]}}):
        check_address(ip, "mcp.internal", purpose="mcp")
        for purpose in (None, "http_request", "llm"):
            with pytest.raises(SSRFError) as refused:
                check_address(ip, "mcp.internal", purpose=purpose)
            assert refused.value.details["reason"] == "private_address"


def test_allow_for__hosts_by_purpose():
    ip = ipaddress.ip_address("10.0.0.1")
    with automate_settings(HTTP_ALLOW_FOR={"llm": {"hosts": [".corp.example"]}}):
        check_address(ip, "vllm.corp.example", purpose="llm")
        with pytest.raises(SSRFError, match='HTTP_ALLOW_FOR"\\]\\["rag"\\]'):
            check_address(ip, "vllm.corp.example", purpose="rag")


def test_allow_for__the_global_lists_still_open_every_purpose():
    ip = ipaddress.ip_address("10.0.0.1")
    with automate_settings(HTTP_ALLOW_NETWORKS=["10.0.0.0/8"]):
        for purpose in (None, "http_request", "mcp"):
            check_address(ip, "svc", purpose=purpose)


def test_allow_for__metadata_stays_blocked():
    allow = {"llm": {"networks": ["169.254.0.0/16"]}}
    with automate_settings(HTTP_ALLOW_FOR=allow), pytest.raises(SSRFError) as refused:
        check_address(ipaddress.ip_address("169.254.169.254"), "m", purpose="llm")
    assert refused.value.details["reason"] == "denied_address"


# -- System checks ------------------------------------------------------------------------


def _ids(**overrides) -> list[tuple[str, str]]:
    with automate_settings(**overrides):
        return [(m.id, m.msg) for m in check_settings() if isinstance(m, Error)]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"smtp": {"hosts": ["x"]}}, "not an outbound purpose"),
        ({"mcp": {"cidrs": ["10.0.0.0/8"]}}, "keys other than"),
        ({"mcp": {"networks": ["not-a-network"]}}, "not a network"),
    ],
)
def test_checks__http_allow_for_mistakes_are_e110(value, words):
    [(check_id, message)] = _ids(HTTP_ALLOW_FOR=value)
    assert check_id == "automate.E110"
    assert words in message


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"K": {"hosts": []}}, "names no hosts"),
        ({"K": {"hosts": ["a"], "scopes": ["x"]}}, "keys other than"),
        ({"K": {"hosts": ["a"], "uses": ["email"]}}, "uses other than"),
    ],
)
def test_checks__secret_grant_mistakes_are_e111(value, words):
    [(check_id, message)] = _ids(SECRET_GRANTS=value)
    assert check_id == "automate.E111"
    assert words in message


def test_checks__good_grants_and_allow_lists_pass():
    assert (
        _ids(
            SECRET_GRANTS={"K": {"hosts": [".a.example"], "uses": ["code", "mcp"]}},
            HTTP_ALLOW_FOR={"mcp": {"networks": ["10.0.0.0/8"], "hosts": ["m.internal"]}},
        )
        == []
    )


def test_checks__the_global_allow_lists_are_w110():
    with automate_settings(HTTP_ALLOW_NETWORKS=["10.0.0.0/8"], HTTP_ALLOW_HOSTS=["m.internal"]):
        [warning] = [m for m in check_settings() if m.id == "automate.W110"]
    assert "HTTP_ALLOW_NETWORKS" in warning.msg and "HTTP_ALLOW_HOSTS" in warning.msg
    assert "HTTP_ALLOW_FOR" in warning.hint
    with automate_settings(HTTP_ALLOW_FOR={"mcp": {"networks": ["10.0.0.0/8"]}}):
        assert [m for m in check_settings() if m.id == "automate.W110"] == []
