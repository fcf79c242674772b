"""Key rotation learns its fields from the apps (``register_sealed`` in ``ready()``)."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.core.exceptions import AppRegistryNotReady
from django.core.management import CommandError, call_command

from automate.models import ConnectionProfile
from automate_core import crypto
from automate_core.crypto import Shape, register_sealed, sealed_fields
from automate_core.crypto.sealed_fields import unregister_sealed
from tests.architecture.import_graph import all_imports
from tests.core.helpers import automate_settings
from tests.testapp.models import Credential

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


@pytest.fixture
def registry():
    """Whatever a test registers or removes, the apps' registrations come back after it."""
    before = sealed_fields()
    yield
    for entry in sealed_fields():
        unregister_sealed(entry.model, entry.field)
    for entry in before:
        register_sealed(entry.model, entry.field, shape=entry.shape, describe=entry.describe)


def _rotate() -> str:
    out = io.StringIO()
    call_command("automate_rotate_secrets", stdout=out)
    return out.getvalue()


def _credential(name: str, value: str) -> Credential:
    return Credential.objects.create(name=name, token=crypto.seal(value))


def test_apps_register_their_sealed_fields_in_ready():
    registered = [(entry.model, entry.field, entry.shape) for entry in sealed_fields()]
    assert registered == [
        ("automate_core.Secret", "ciphertext", Shape.TOKEN),
        ("automate.ConnectionProfile", "webhook_secrets", Shape.SEALED_LIST),
        ("automate.MCPServer", "api_key", Shape.SEALED),
        ("automate.EndpointSecret", "secret", Shape.SEALED),
        ("testapp.Credential", "token", Shape.SEALED),
    ]


def test_rotate_secrets__re_encrypts_a_field_a_project_app_registered(db):
    with automate_settings(ENCRYPTION_KEYS=[OLD_KEY]):
        sealed = _credential("billing", "project-token-1")
        reference = _credential("other", "secret://billing-token")
    with automate_settings(ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        output = _rotate()
    assert "re-encrypted 0 secret(s) and 1 webhook secret(s) and API key(s)" in output
    with automate_settings(ENCRYPTION_KEYS=[NEW_KEY]):  # the old key can now go
        sealed_after = Credential.objects.get(pk=sealed.pk).token
        assert sealed_after != sealed.token
        assert crypto.unseal(sealed_after) == "project-token-1"
    assert Credential.objects.get(pk=reference.pk).token == "secret://billing-token"


def test_rotate_secrets__names_an_undecryptable_project_value_by_its_description(db):
    with automate_settings(ENCRYPTION_KEYS=[Fernet.generate_key().decode()]):
        lost = _credential("lost", "lost-value")
    with (
        automate_settings(ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]),
        pytest.raises(CommandError) as info,
    ):
        _rotate()
    assert "credential 'lost'" in str(info.value)
    assert "lost-value" not in str(info.value)
    assert Credential.objects.get(pk=lost.pk).token == lost.token


def test_rotate_secrets__default_description_names_model_row_and_field(db, registry):
    register_sealed("testapp.Credential", "token")
    with automate_settings(ENCRYPTION_KEYS=[Fernet.generate_key().decode()]):
        lost = _credential("lost", "lost-value")
    with (
        automate_settings(ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]),
        pytest.raises(CommandError, match=f"credential {lost.pk} token"),
    ):
        _rotate()


def test_rotate_secrets__leaves_fields_no_app_registered(db, registry):
    """The kernel names no model of the apps above it: what is not registered is not seen."""
    with automate_settings(ENCRYPTION_KEYS=[OLD_KEY]):
        profile = ConnectionProfile(key="my_service", connector_key="my_service")
        profile.add_webhook_secret("webhook-value-1")
        profile.save()
        credential = _credential("billing", "project-token-1")
    unregister_sealed("automate.ConnectionProfile", "webhook_secrets")
    unregister_sealed("testapp.Credential", "token")
    with automate_settings(ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        output = _rotate()
    assert "re-encrypted 0 secret(s) and 0 webhook secret(s) and API key(s)" in output
    assert ConnectionProfile.objects.get(pk=profile.pk).webhook_secrets == profile.webhook_secrets
    assert Credential.objects.get(pk=credential.pk).token == credential.token


def test_register_sealed__again_replaces_the_entry(registry):
    register_sealed("testapp.Credential", "token", describe=lambda row: "replaced")
    entries = [e for e in sealed_fields() if e.model == "testapp.Credential"]
    assert len(entries) == 1
    assert entries[0].describe(None) == "replaced"


@pytest.mark.parametrize(
    ("model", "field", "shape", "message"),
    [
        ("testapp.Nothing", "token", "sealed", "'testapp.Nothing' is not an installed model"),
        ("Credential", "token", "sealed", "name it 'app_label.ModelName'"),
        ("testapp.Credential", "secret", "sealed", "has no field 'secret'"),
        ("testapp.Credential", "token", "pgp", "unknown sealed field shape 'pgp'"),
    ],
)
def test_register_sealed__bad_input_is_refused_with_the_reason(
    registry, model, field, shape, message
):
    with pytest.raises(ValueError, match=message):
        register_sealed(model, field, shape=shape)


def test_register_sealed__before_the_models_load_says_where_to_call_it(monkeypatch):
    monkeypatch.setattr(apps, "models_ready", False)
    with pytest.raises(AppRegistryNotReady, match=r"AppConfig\.ready\(\)"):
        register_sealed("testapp.Credential", "token")


def test_core_imports_no_app_above_it():
    above = ("automate", "automate_connectors", "automate_llm", "rag", "automate_testing")
    upward = [
        f"{imp.source}:{imp.line} -> {imp.target}"
        for imp in all_imports()
        if imp.source.split(".")[0] == "automate_core" and imp.target.split(".")[0] in above
    ]
    assert upward == []
