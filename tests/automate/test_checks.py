"""System checks: stable ids, hints, and what triggers them."""

from __future__ import annotations

import pytest
from django.core import checks
from django.test import override_settings

from automate.checks import check_celery_app, check_connection_profiles, check_connector_settings
from automate.models import ConnectionProfile
from automate_core.checks import check_settings


def ids(messages) -> list[str]:
    return [m.id for m in messages]


def test_checks__clean_test_settings_have_no_messages():
    assert check_connector_settings() == []
    assert check_settings() == []
    assert check_celery_app() == []


@override_settings(AUTOMATE={"CONNECTORS": {"mystery": {"secrets": ["secret://x"]}}})
def test_checks__unknown_connector_in_settings_is_e001_with_hint():
    [message] = check_connector_settings()
    assert message.id == "automate.E001"
    assert message.level == checks.ERROR
    assert "'mystery'" in message.msg and "my_service" in message.hint


@override_settings(AUTOMATE={"CONNECTORS": {"my_service": {}}})
def test_checks__verifying_connector_without_secret_is_w001():
    [message] = check_connector_settings()
    assert message.id == "automate.W001"
    assert "401" in message.msg


@override_settings(AUTOMATE={"CONNECTORS": {"my_service": {"enabled": False}}})
def test_checks__disabled_connector_without_secret_is_fine():
    assert check_connector_settings() == []


@override_settings(AUTOMATE={"CONNECTORS": {"my_service": "secret://x"}})
def test_checks__connector_entry_must_be_a_dict():
    assert ids(check_connector_settings()) == ["automate.E003"]


@pytest.mark.parametrize(
    ("automate", "expected"),
    [
        ({"WEBHOOK_MAX_BODY_BYTES": 0}, ["automate.E101"]),
        ({"WEBHOOK_MAX_BODY_BYTES": "1MB"}, ["automate.E101"]),
        ({"SECRET_BACKENDS": ["nowhere.Backend"]}, ["automate.E102"]),
        ({"ENCRYPTION_KEYS": ["not-a-fernet-key"]}, ["automate.E103"]),
        ({"CONNECTION_CACHE_SECONDS": -1}, ["automate.E104"]),
        ({"CONNECTION_CACHE_SECONDS": "5"}, ["automate.E104"]),
        ({"CONNECTION_CACHE_SECONDS": 0}, []),
        ({"WEBHOOK_MAX_BYTES": 10}, ["automate.W100"]),
    ],
)
def test_checks__bad_settings(automate, expected):
    with override_settings(AUTOMATE=automate):
        assert ids(check_settings()) == expected


@pytest.mark.django_db
def test_checks__profiles_are_checked_with_the_database_tag():
    profile = ConnectionProfile.objects.create(key="quiet", connector_key="my_service")
    ConnectionProfile.objects.filter(pk=profile.pk).update(connector_key="gone")
    assert check_connection_profiles(databases=None) == []
    [message] = check_connection_profiles(databases=["default"])
    assert message.id == "automate.E001" and message.obj.key == "quiet"


@pytest.mark.django_db
def test_checks__profiles_check_before_migrate_finds_no_table_and_says_nothing(monkeypatch):
    from django.db import connection

    # `migrate` runs database checks on a database that has no tables yet.
    monkeypatch.setattr(connection.introspection, "table_names", lambda cursor=None: [])
    assert check_connection_profiles(databases=["default"]) == []
