"""MCPServer: derived keys, write-only credentials stored encrypted or as references."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import connection

from automate.models import MCPServer

pytestmark = pytest.mark.django_db

URL = "https://tools.example.com/mcp"


def raw_api_key(server):
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM automate_mcpserver WHERE id = %s", [server.pk])
        return cursor.fetchone()[0]


def test_mcp_server__api_key_is_encrypted_at_rest():
    server = MCPServer.objects.create(name="My Tools", url=URL, api_key="plain-secret")
    stored = raw_api_key(server)
    assert stored.startswith("fernet:")
    assert "plain-secret" not in stored
    assert server.describe_api_key() == "set (encrypted)"
    endpoint = MCPServer.objects.get(pk=server.pk).endpoint()
    assert endpoint.headers["Authorization"] == "Bearer plain-secret"
    assert "plain-secret" not in repr(endpoint)


def test_mcp_server__saving_again_does_not_encrypt_twice():
    server = MCPServer.objects.create(name="My Tools", url=URL, api_key="k1")
    server.timeout = 5
    server.save()
    assert MCPServer.objects.get(pk=server.pk).endpoint().headers["Authorization"] == "Bearer k1"


def test_mcp_server__secret_reference_is_kept_and_resolved(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "SECRETS": {"mcp-key": "from-settings"}}
    server = MCPServer.objects.create(name="My Tools", url=URL, api_key="secret://mcp-key")
    assert raw_api_key(server) == "secret://mcp-key"
    assert server.describe_api_key() == "secret://mcp-key"
    assert server.endpoint().headers["Authorization"] == "Bearer from-settings"


def test_mcp_server__key_with_a_scheme_is_sent_as_is():
    server = MCPServer.objects.create(name="My Tools", url=URL, api_key="Token abc")
    assert server.endpoint().headers["Authorization"] == "Token abc"


def test_mcp_server__extra_headers_resolve_references(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "SECRETS": {"tenant": "acme"}}
    server = MCPServer.objects.create(
        name="My Tools", url=URL, headers={"X-Tenant": "secret://tenant", "X-Env": "prod"}
    )
    headers = server.endpoint().headers
    assert (headers["X-Tenant"], headers["X-Env"]) == ("acme", "prod")
    assert "Authorization" not in headers


@pytest.mark.parametrize(
    ("fields", "error_field"),
    [
        ({"headers": {"Authorization": "Bearer x"}}, "headers"),
        ({"headers": {"Bad Name": "x"}}, "headers"),
        ({"headers": {"X-Ok": 3}}, "headers"),
        ({"headers": ["X-Ok"]}, "headers"),
        ({"url": "ftp://tools.example.com/mcp"}, "url"),
        ({"url": "tools.example.com/mcp"}, "url"),
        ({"name": "!!!"}, "name"),
        ({"key": "Not A Key"}, "key"),
        ({"api_key": "secret://bad name"}, "api_key"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_mcp_server__invalid_fields_are_refused(fields, error_field):
    values = {"name": "My Tools", "url": URL, **fields}
    with pytest.raises(ValidationError) as info:
        MCPServer.objects.create(**values)
    assert error_field in info.value.message_dict
    assert not MCPServer.objects.exists()


def test_mcp_server__derived_key_must_be_unique():
    MCPServer.objects.create(name="My Tools", url=URL)
    with pytest.raises(ValidationError) as info:
        MCPServer.objects.create(name="my tools", url=URL)
    assert "key" in info.value.message_dict
    other = MCPServer.objects.create(name="my tools", key="my_tools_2", url=URL)
    assert other.key == "my_tools_2"


def test_mcp_server__plain_key_without_encryption_keys_is_an_instructive_error(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "ENCRYPTION_KEYS": []}
    with pytest.raises(ImproperlyConfigured, match="secret:// references"):
        MCPServer.objects.create(name="My Tools", url=URL, api_key="plain")
    assert not MCPServer.objects.exists()


def test_client__sdk_missing_is_an_instructive_error(monkeypatch):
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "mcp", None)  # what an absent package looks like
    for name in ("automate.mcp.client", "automate.mcp.sync", "automate.mcp.calls"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ImproperlyConfigured, match=r"django-automate\[mcp\]"):
        importlib.import_module("automate.mcp.client")
