"""ConnectionProfile: validation on save, secrets stored safely, the admin never shows them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from automate.connections import build_connector, find_connection
from automate.models import ConnectionProfile

JIRA = {"url": "https://x.atlassian.net", "email": "a@example.com", "api_token": "secret://jira"}

pytestmark = pytest.mark.django_db


def test_profile__config_is_validated_against_the_connector_schema_on_save():
    with pytest.raises(ValidationError) as info:
        ConnectionProfile.objects.create(key="j", connector_key="jira", config={"url": "x"})
    assert "email: Field required" in str(info.value.message_dict["config"])


def test_profile__unknown_connector_is_refused():
    with pytest.raises(ValidationError) as info:
        ConnectionProfile.objects.create(key="x", connector_key="nope")
    assert "no connector is registered as 'nope'" in str(info.value.message_dict["connector_key"])


def test_profile__plain_secret_values_are_refused():
    profile = ConnectionProfile(key="s", connector_key="my_service", webhook_secrets=["plain"])
    with pytest.raises(ValidationError):
        profile.save()


def test_profile__encrypted_secret_is_stored_encrypted_and_resolves():
    profile = ConnectionProfile(key="enc", connector_key="my_service")
    profile.add_webhook_secret("s3cret-value-123")
    profile.save()
    stored = ConnectionProfile.objects.get(key="enc").webhook_secrets
    assert stored[0].startswith("fernet:") and "s3cret-value-123" not in stored[0]
    connector = build_connector(find_connection("enc"))
    assert connector.secret == "s3cret-value-123"
    assert profile.describe_webhook_secrets() == ["encrypted value #1"]


def test_profile__config_references_are_resolved_for_the_connector(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "SECRETS": {"jira": "real-token"}}
    ConnectionProfile.objects.create(key="jira_main", connector_key="jira", config=JIRA)
    connector = build_connector(find_connection("jira_main"))
    assert connector.cfg.api_token == "real-token"
    # The row keeps the reference, never the value.
    assert ConnectionProfile.objects.get(key="jira_main").config["api_token"] == "secret://jira"


def test_profile__row_wins_over_settings_entry():
    ConnectionProfile.objects.create(
        key="my_service", connector_key="my_service", webhook_secrets=["secret://other"]
    )
    assert find_connection("my_service").secrets == ("secret://other",)


@pytest.fixture
def admin_client(client):
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    return client


def test_admin__secret_added_in_admin_is_never_shown_back(admin_client):
    response = admin_client.post(
        "/admin/automate/connectionprofile/add/",
        {
            "key": "acme",
            "connector_key": "my_service",
            "name": "Acme",
            "enabled": "on",
            "config": "{}",
            "new_webhook_secret": "admin-typed-secret",
        },
    )
    assert response.status_code == 302, response.content
    profile = ConnectionProfile.objects.get(key="acme")
    assert len(profile.webhook_secrets) == 1
    page = admin_client.get(f"/admin/automate/connectionprofile/{profile.pk}/change/")
    assert page.status_code == 200
    assert b"admin-typed-secret" not in page.content
    assert profile.webhook_secrets[0].encode() not in page.content
    assert b"encrypted value #1" in page.content


def test_admin__removing_a_secret(admin_client):
    profile = ConnectionProfile(key="rot", connector_key="my_service")
    profile.add_webhook_secret("secret://old")
    profile.add_webhook_secret("secret://new")
    profile.save()
    response = admin_client.post(
        f"/admin/automate/connectionprofile/{profile.pk}/change/",
        {
            "key": "rot",
            "connector_key": "my_service",
            "name": "",
            "enabled": "on",
            "config": "{}",
            "remove_webhook_secrets": ["1"],
        },
    )
    assert response.status_code == 302
    profile.refresh_from_db()
    assert profile.webhook_secrets == ["secret://new"]
