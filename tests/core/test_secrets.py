"""Secret backends (environment, settings, encrypted rows, a custom store) and key rotation."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from automate.models import ConnectionProfile
from automate_core import crypto, redaction, secrets
from automate_core.models import Secret
from automate_core.providers.errors import AutomateError
from automate_core.secrets import (
    DatabaseBackend,
    EnvironmentBackend,
    SecretBackend,
    SecretNotFound,
    SecretResolver,
    SecretValue,
    SettingsBackend,
)
from tests.core.helpers import automate_settings

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


class VaultLikeBackend:
    """A custom store, as a Vault or AWS Secrets Manager backend would be written."""

    store = {"team/api-token": "vault-value-123"}
    calls: list[str] = []

    def get(self, name: str) -> str | None:
        self.calls.append(name)
        return self.store.get(name)


# -- Backends ------------------------------------------------------------------------


def test_environment_backend__maps_names_to_variables(monkeypatch):
    monkeypatch.setenv("AUTOMATE_SECRET_GITHUB_WEBHOOK", "env-value-1")
    assert EnvironmentBackend().get("github-webhook") == "env-value-1"
    assert EnvironmentBackend().get("absent") is None


def test_settings_backend__reads_automate_secrets():
    with automate_settings(SECRETS={"a.b": "settings-value"}):
        assert SettingsBackend().get("a.b") == "settings-value"
        assert SettingsBackend().get("other") is None


def test_database_backend__decrypts_rows(db):
    row = Secret(name="db-secret")
    row.set_value("database-value")
    row.save()
    assert "database-value" not in row.ciphertext
    assert DatabaseBackend().get("db-secret") == "database-value"
    assert DatabaseBackend().get("absent") is None


def test_database_backend__wrong_key_is_a_clear_error(db):
    with automate_settings(ENCRYPTION_KEYS=[OLD_KEY]):
        row = Secret(name="old")
        row.set_value("database-value")
        row.save()
    with automate_settings(ENCRYPTION_KEYS=[NEW_KEY]), pytest.raises(AutomateError) as info:
        DatabaseBackend().get("old")
    assert info.value.code == "configuration"
    assert "ENCRYPTION_KEYS" in info.value.message


def test_secret__storing_without_keys_explains_the_setting(db):
    with automate_settings(ENCRYPTION_KEYS=[]), pytest.raises(ImproperlyConfigured) as info:
        Secret(name="x").set_value("value-123")
    assert "Fernet.generate_key" in str(info.value)


def test_resolver__tries_backends_in_order(monkeypatch):
    monkeypatch.setenv("AUTOMATE_SECRET_SHARED", "from-environment")
    with automate_settings(SECRETS={"shared": "from-settings", "only-settings": "settings-2"}):
        resolver = SecretResolver([EnvironmentBackend(), SettingsBackend()])
        assert resolver.resolve("secret://shared") == "from-environment"
        assert resolver.resolve("secret://only-settings") == "settings-2"
        assert resolver.resolve("plain text") == "plain text"


def test_resolver__missing_secret_names_it(db):
    with pytest.raises(SecretNotFound, match="'nowhere'") as info:
        secrets.resolve("secret://nowhere")
    assert info.value.code == "configuration"


@pytest.mark.parametrize(
    "reference", ["secret://", "secret://../x", "secret://a b", "secret://" + "x" * 201]
)
def test_parse_reference__rejects_bad_names(reference):
    with pytest.raises(ValueError, match="invalid secret name"):
        secrets.parse_reference(reference)


def test_secret_value__never_shows_in_repr():
    value = SecretValue("hidden-value-1")
    assert value == "hidden-value-1"
    assert "hidden-value-1" not in repr(value)
    assert "hidden-value-1" not in repr({"token": value})


def test_resolver__remembers_values_for_redaction():
    with automate_settings(SECRETS={"k": "remember-me-77"}):
        secrets.resolve("secret://k")
    assert redaction.redact("x remember-me-77 y") == f"x {redaction.MASK} y"


def test_custom_backend__from_settings():
    VaultLikeBackend.calls.clear()
    backends = ["tests.core.test_secrets.VaultLikeBackend", "automate_core.secrets.SettingsBackend"]
    with automate_settings(SECRET_BACKENDS=backends):
        assert secrets.resolve("secret://team/api-token") == "vault-value-123"
        resolver = secrets.default_resolver()
    assert isinstance(resolver.backends[0], SecretBackend)
    assert VaultLikeBackend.calls == ["team/api-token"]
    assert "vault-value-123" not in repr(resolver)


def test_custom_backend__bad_path_is_a_configuration_error():
    bad = automate_settings(SECRET_BACKENDS=["tests.core.nope.Backend"])
    with bad, pytest.raises(ImproperlyConfigured, match=r"tests\.core\.nope\.Backend"):
        secrets.resolve("secret://x")


# -- Key rotation ----------------------------------------------------------------------


def _stored(name: str, value: str) -> Secret:
    row = Secret(name=name)
    row.set_value(value)
    row.save()
    return row


def _profile(*values: str) -> ConnectionProfile:
    profile = ConnectionProfile(key="my_service", connector_key="my_service")
    for value in values:
        profile.add_webhook_secret(value)
    profile.save()
    return profile


def _rotate(*args: str) -> str:
    out = io.StringIO()
    call_command("automate_rotate_secrets", *args, stdout=out)
    return out.getvalue()


def test_rotate_secrets__re_encrypts_rows_and_profiles(db):
    with automate_settings(ENCRYPTION_KEYS=[OLD_KEY]):
        row = _stored("api", "rotated-value-1")
        profile = _profile("secret://my-service-webhook", "webhook-value-1")
    before = list(profile.webhook_secrets)
    with automate_settings(ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        output = _rotate()
    assert "re-encrypted 1 secret(s) and 1 webhook secret(s)" in output
    with automate_settings(ENCRYPTION_KEYS=[NEW_KEY]):  # the old key can now go
        assert Secret.objects.get(pk=row.pk).get_value() == "rotated-value-1"
        profile.refresh_from_db()
        encrypted = profile.webhook_secrets[0]
        assert encrypted.startswith("fernet:")
        assert encrypted != before[0]
        assert crypto.decrypt(encrypted[len("fernet:") :]) == "webhook-value-1"
    assert profile.webhook_secrets[1] == "secret://my-service-webhook"


def test_rotate_secrets__dry_run_changes_nothing(db):
    with automate_settings(ENCRYPTION_KEYS=[OLD_KEY]):
        row = _stored("api", "dry-run-value")
        profile = _profile("webhook-value-2")
    with automate_settings(ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        output = _rotate("--dry-run")
    assert "would re-encrypt 1 secret(s) and 1 webhook secret(s)" in output
    assert Secret.objects.get(pk=row.pk).ciphertext == row.ciphertext
    assert ConnectionProfile.objects.get(pk=profile.pk).webhook_secrets == profile.webhook_secrets


def test_rotate_secrets__undecryptable_values_are_kept_and_reported(db):
    lost_key = Fernet.generate_key().decode()
    with automate_settings(ENCRYPTION_KEYS=[lost_key]):
        orphan = _stored("orphan", "orphan-value")
        profile = _profile("orphan-webhook")
    with automate_settings(ENCRYPTION_KEYS=[OLD_KEY]):
        good = _stored("good", "good-value")
    with automate_settings(ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        with pytest.raises(CommandError) as info:
            _rotate()
        assert Secret.objects.get(pk=good.pk).ciphertext != good.ciphertext
    message = str(info.value)
    assert "'orphan'" in message
    assert "'my_service' secret #1" in message
    assert "orphan-value" not in message
    assert Secret.objects.get(pk=orphan.pk).ciphertext == orphan.ciphertext
    assert ConnectionProfile.objects.get(pk=profile.pk).webhook_secrets == profile.webhook_secrets
    with automate_settings(ENCRYPTION_KEYS=[NEW_KEY]):
        assert Secret.objects.get(pk=good.pk).get_value() == "good-value"


def test_rotate_secrets__without_keys_explains_the_setting(db):
    with (
        automate_settings(ENCRYPTION_KEYS=[]),
        pytest.raises(CommandError, match="ENCRYPTION_KEYS"),
    ):
        _rotate()


def test_rotate_secrets__re_encrypts_mcp_server_api_keys(db):
    from automate.models import MCPServer

    with automate_settings(ENCRYPTION_KEYS=[OLD_KEY]):
        server = MCPServer.objects.create(
            name="Tools", url="https://tools.example/mcp", api_key="mcp-api-key-1"
        )
        by_reference = MCPServer.objects.create(
            name="Other", url="https://other.example/mcp", api_key="secret://mcp-key"
        )
    sealed_before = server.api_key
    assert crypto.is_sealed(sealed_before)
    with automate_settings(ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        output = _rotate()
    assert "and 1 webhook secret(s) and API key(s)" in output
    with automate_settings(ENCRYPTION_KEYS=[NEW_KEY]):  # the old key can now go
        server.refresh_from_db()
        assert server.api_key != sealed_before
        assert crypto.unseal(server.api_key) == "mcp-api-key-1"
    assert MCPServer.objects.get(pk=by_reference.pk).api_key == "secret://mcp-key"


def test_seal__references_stay_as_written_values_are_encrypted_once(settings):
    with automate_settings(ENCRYPTION_KEYS=[OLD_KEY]):
        assert crypto.seal("secret://name") == "secret://name"
        sealed = crypto.seal("plain-value-123")
        assert sealed.startswith(crypto.SEALED_PREFIX) and "plain-value-123" not in sealed
        assert crypto.seal(sealed) == sealed
        assert crypto.unseal(sealed) == "plain-value-123"
        assert crypto.reseal("secret://name") == "secret://name"
