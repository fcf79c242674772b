"""System checks: every secret:// reference of a connection must resolve (W002, W003)."""

from __future__ import annotations

import re

import pytest
from django.test import override_settings

from automate.checks import check_connection_profiles, check_connector_settings
from automate.models import ConnectionProfile
from automate_core.models import Secret

ENV_ONLY = ["automate_core.secrets.EnvironmentBackend", "automate_core.secrets.SettingsBackend"]
DEFAULT_BACKENDS = [*ENV_ONLY, "automate_core.secrets.DatabaseBackend"]
KEYS = ["kQHKMyc0hW0aZcB7uPzMZxHXk5l1lM8Cr2Ow0ySvpO0="]
VALUE = "whsec-the-value-never-shown"


def automate(connection: dict, backends: list[str] = ENV_ONLY, **extra) -> dict:
    return {
        "CONNECTORS": {"my_service": connection},
        "SECRET_BACKENDS": backends,
        "ENCRYPTION_KEYS": KEYS,
        **extra,
    }


def texts(messages) -> str:
    return "\n".join(f"{m.msg}\n{m.hint}" for m in messages)


@pytest.fixture(autouse=True)
def _no_stray_variables(monkeypatch):
    for name in ("AUTOMATE_SECRET_GITHUB_WEBHOOK_SECRET", "AUTOMATE_SECRET_JIRA_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_secret_check__unset_variable_warns_and_the_hinted_variable_silences_it(monkeypatch):
    with override_settings(AUTOMATE=automate({"secrets": ["secret://GITHUB_WEBHOOK_SECRET"]})):
        [message] = check_connector_settings()
        assert message.id == "automate.W002"
        assert "AUTOMATE[\"CONNECTORS\"]['my_service']" in message.msg
        assert "'secret://GITHUB_WEBHOOK_SECRET'" in message.msg and "503" in message.msg
        [variable] = re.findall(r"environment variable (\w+)", message.hint)
        assert variable == "AUTOMATE_SECRET_GITHUB_WEBHOOK_SECRET"

        monkeypatch.setenv(variable, VALUE)
        assert check_connector_settings() == []


def test_secret_check__never_shows_a_value(monkeypatch):
    monkeypatch.setenv("AUTOMATE_SECRET_GITHUB_WEBHOOK_SECRET", VALUE)
    connection = {
        "secrets": ["secret://GITHUB_WEBHOOK_SECRET", "secret://missing-hook"],
        "config": {"api_token": "secret://JIRA_TOKEN"},
    }
    settings = automate(connection, SECRETS={"JIRA_TOKEN": "settings-value-never-shown"})
    with override_settings(AUTOMATE=settings):
        [message] = check_connector_settings()
    assert "'secret://missing-hook'" in message.msg
    shown = texts([message])
    assert VALUE not in shown and "settings-value-never-shown" not in shown


def test_secret_check__finds_references_nested_in_the_config():
    connection = {
        "secrets": ["secret://my-service-webhook"],
        "config": {"auth": {"headers": [{"value": "secret://JIRA_TOKEN"}]}, "n": 3},
    }
    settings = automate(connection, SECRETS={"my-service-webhook": "x" * 10})
    with override_settings(AUTOMATE=settings):
        [message] = check_connector_settings()
    assert message.id == "automate.W002" and "'secret://JIRA_TOKEN'" in message.msg
    assert "AUTOMATE_SECRET_JIRA_TOKEN" in message.hint
    assert "add 'JIRA_TOKEN' to AUTOMATE[\"SECRETS\"]" in message.hint


def test_secret_check__disabled_connection_is_not_checked():
    connection = {"secrets": ["secret://GITHUB_WEBHOOK_SECRET"], "enabled": False}
    with override_settings(AUTOMATE=automate(connection)):
        assert check_connector_settings() == []


def test_secret_check__invalid_reference_is_named():
    with override_settings(AUTOMATE=automate({"secrets": ["secret://has space"]})):
        [message] = check_connector_settings()
    assert message.id == "automate.W002" and "invalid secret name 'has space'" in message.msg


def test_secret_check__without_backends_every_reference_warns():
    with override_settings(AUTOMATE=automate({"secrets": ["secret://x-hook"]}, backends=[])):
        [message] = check_connector_settings()
    assert message.id == "automate.W002" and "SECRET_BACKENDS" in message.hint


class ExplodingBackend:
    def get(self, name: str) -> str | None:
        raise RuntimeError(f"vault said {VALUE}")


def test_secret_check__failing_backend_is_named_by_type_only():
    backends = [f"{__name__}.ExplodingBackend"]
    with override_settings(AUTOMATE=automate({"secrets": ["secret://x-hook"]}, backends)):
        [message] = check_connector_settings()
    assert "ExplodingBackend raised RuntimeError" in message.msg
    assert VALUE not in texts([message])


def test_secret_check__unimportable_backend_is_left_to_e102():
    backends = ["nowhere.Backend"]
    with override_settings(AUTOMATE=automate({"secrets": ["secret://x-hook"]}, backends)):
        assert check_connector_settings() == []


# -- The database backend ----------------------------------------------------------------


def test_secret_check__without_a_database_the_database_backend_is_not_asked():
    connection = {"secrets": ["secret://GITHUB_WEBHOOK_SECRET"]}
    with override_settings(AUTOMATE=automate(connection, DEFAULT_BACKENDS)):
        [message] = check_connector_settings(databases=None)
    assert message.id == "automate.W003"
    assert "without the database" in message.msg and "--database default" in message.hint


@pytest.mark.django_db
def test_secret_check__with_the_database_a_secret_row_resolves_it():
    connection = {"secrets": ["secret://GITHUB_WEBHOOK_SECRET"]}
    with override_settings(AUTOMATE=automate(connection, DEFAULT_BACKENDS)):
        [message] = check_connector_settings(databases=["default"])
        assert message.id == "automate.W002"
        assert "Secret row named 'GITHUB_WEBHOOK_SECRET'" in message.hint

        row = Secret(name="GITHUB_WEBHOOK_SECRET")
        row.set_value(VALUE)
        row.save()
        assert check_connector_settings(databases=["default"]) == []


@pytest.mark.django_db
def test_secret_check__before_migrate_no_secret_table_means_no_row(monkeypatch):
    from django.db import connection

    monkeypatch.setattr(connection.introspection, "table_names", lambda cursor=None: [])
    settings = automate({"secrets": ["secret://GITHUB_WEBHOOK_SECRET"]}, DEFAULT_BACKENDS)
    with override_settings(AUTOMATE=settings):
        assert [m.id for m in check_connector_settings(databases=["default"])] == ["automate.W002"]


# -- Connection profiles -----------------------------------------------------------------


@pytest.mark.django_db
def test_secret_check__profile_references_are_checked_with_the_database(monkeypatch):
    profile = ConnectionProfile(key="acme", connector_key="my_service")
    profile.webhook_secrets = ["secret://GITHUB_WEBHOOK_SECRET"]
    profile.add_webhook_secret("sealed-value-never-shown")
    profile.save()
    with override_settings(AUTOMATE=automate({}, DEFAULT_BACKENDS)):
        assert check_connection_profiles(databases=None) == []
        [message] = check_connection_profiles(databases=["default"])
        assert message.id == "automate.W002" and message.obj == profile
        assert message.msg.startswith("Connection profile 'acme' refers to")
        assert "sealed-value-never-shown" not in texts([message])
        assert profile.webhook_secrets[0] not in texts([message])  # nor its ciphertext

        monkeypatch.setenv("AUTOMATE_SECRET_GITHUB_WEBHOOK_SECRET", VALUE)
        assert check_connection_profiles(databases=["default"]) == []
