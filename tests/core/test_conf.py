"""Typed settings per app (automate_core.conf): defaults, caching, checks, run-time errors."""

from __future__ import annotations

import copy
import typing

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from automate.conf import AutomateSettings
from automate.conf import settings as app_settings
from automate_core import conf
from automate_core.checks import check_settings
from automate_core.conf import CoreSettings
from automate_core.conf import settings as automate_settings
from automate_llm.conf import LLMSettings
from automate_llm.conf import settings as llm_settings


def messages_for(**automate) -> list[checks.CheckMessage]:
    with override_settings(AUTOMATE=automate):
        return check_settings()


# -- Declarations -------------------------------------------------------------------


def test_each_app_declares_its_own_keys():
    assert "OUTBOX_MAX_ATTEMPTS" in CoreSettings.names()
    assert "STEP_MAX_ATTEMPTS" in AutomateSettings.names()
    assert "STEP_MAX_ATTEMPTS" not in CoreSettings.names()
    assert LLMSettings.names() == ["LLM_HTTP_CLIENT_FACTORY", "LLM_MAX_RESPONSE_BYTES"]
    assert conf.installed_settings_classes() == [CoreSettings, AutomateSettings, LLMSettings]


@pytest.mark.parametrize("cls", [CoreSettings, AutomateSettings, LLMSettings])
def test_every_default_has_its_declared_type(cls):
    assert cls.problems(cls.defaults()) == []


@override_settings(AUTOMATE={})
def test_defaults_are_read_when_nothing_is_set():
    assert automate_settings.OUTBOX_MAX_ATTEMPTS == 8
    assert automate_settings.HTTP_ALLOWED_PORTS == [80, 443, 8080, 8443]
    assert app_settings.EXECUTION == "auto"
    assert app_settings.STEP_TIMEOUT_SECONDS == 30.0
    assert llm_settings.LLM_HTTP_CLIENT_FACTORY is None


@override_settings(AUTOMATE=None)
def test_automate_set_to_none_reads_the_defaults():
    assert app_settings.WEBHOOK_MAX_BODY_BYTES == 1024 * 1024


@override_settings(
    AUTOMATE={
        "STEP_BACKOFF_SECONDS": 5,
        "CONNECTION_CACHE_SECONDS": 0,
        "SECRET_BACKENDS": ("automate_core.secrets.SettingsBackend",),
    }
)
def test_values_read_as_the_declared_type_so_no_call_site_casts():
    # An int written for seconds reads as a float; a tuple for a list reads as a list.
    assert type(app_settings.STEP_BACKOFF_SECONDS) is float
    assert type(app_settings.CONNECTION_CACHE_SECONDS) is float
    assert automate_settings.SECRET_BACKENDS == ["automate_core.secrets.SettingsBackend"]
    assert type(app_settings.WORKER_BATCH_SIZE) is int


def test_mutable_defaults_are_copies():
    with override_settings(AUTOMATE={}):
        automate_settings.HTTP_ALLOW_HOSTS.append("changed.example")
    with override_settings(AUTOMATE={}):
        assert automate_settings.HTTP_ALLOW_HOSTS == []
    assert CoreSettings.defaults()["HTTP_ALLOW_HOSTS"] == []


# -- Caching -------------------------------------------------------------------------


def test_values_are_read_once_and_reset_when_automate_changes(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "WORKER_BATCH_SIZE": 7}
    assert app_settings.WORKER_BATCH_SIZE == 7
    assert AutomateSettings in conf._loaded  # kept for the next read
    with override_settings(AUTOMATE={"WORKER_BATCH_SIZE": 3}):
        assert AutomateSettings not in conf._loaded  # setting_changed cleared it
        assert app_settings.WORKER_BATCH_SIZE == 3
    assert app_settings.WORKER_BATCH_SIZE == 7
    settings.AUTOMATE = {**settings.AUTOMATE, "WORKER_BATCH_SIZE": 9}
    assert app_settings.WORKER_BATCH_SIZE == 9


def test_a_replaced_automate_dict_is_read_again_even_without_the_signal(settings):
    from django.conf import settings as django_settings

    assert app_settings.WORKER_BATCH_SIZE == 20
    # Assigning on the settings object itself sends no setting_changed.
    settings.AUTOMATE = settings.AUTOMATE  # so the fixture undoes the assignment below
    django_settings.AUTOMATE = {**django_settings.AUTOMATE, "WORKER_BATCH_SIZE": 4}
    assert app_settings.WORKER_BATCH_SIZE == 4


def test_other_settings_changing_keep_the_cache(settings):
    assert automate_settings.OUTBOX_MAX_ATTEMPTS == 8
    settings.CELERY_BROKER_URL = None
    assert CoreSettings in conf._loaded


# -- Bad values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("automate", "message"),
    [
        ({"OUTBOX_MAX_ATTEMPTS": 0}, 'AUTOMATE["OUTBOX_MAX_ATTEMPTS"] must be a positive integer'),
        ({"OUTBOX_MAX_ATTEMPTS": True}, 'AUTOMATE["OUTBOX_MAX_ATTEMPTS"] must be a positive'),
        ({"OUTBOX_BACKOFF_BASE_SECONDS": -1}, "must be a number, 0 or more, not -1."),
        ({"STEP_TIMEOUT_SECONDS": "30"}, 'AUTOMATE["STEP_TIMEOUT_SECONDS"] must be a positive'),
        ({"WORKER_POLL_SECONDS": 0}, 'AUTOMATE["WORKER_POLL_SECONDS"]'),
        ({"HTTP_ALLOWED_PORTS": "80"}, "must be a list of integers or one of '*', not '80'."),
        ({"HTTP_ALLOWED_PORTS": [80, "443"]}, 'AUTOMATE["HTTP_ALLOWED_PORTS"]'),
        ({"WEBHOOK_HEADER_ALLOWLIST": "content-type"}, "must be a list of strings, not str."),
        ({"CONNECTORS": ["github"]}, 'AUTOMATE["CONNECTORS"] must be a dict'),
        ({"LLM_HTTP_CLIENT_FACTORY": 3}, "must be a string or a callable or None, not 3."),
        ({"HTTP_USER_AGENT": None}, 'AUTOMATE["HTTP_USER_AGENT"] must be a string, not None.'),
    ],
)
def test_a_bad_value_is_an_error_naming_the_key(automate, message):
    [error] = messages_for(**automate)
    assert error.id == "automate.E105" and error.level == checks.ERROR
    assert message in error.msg


def test_manage_py_check_fails_with_the_key_name():
    bad = override_settings(AUTOMATE={"STEP_MAX_ATTEMPTS": "3"})
    with bad, pytest.raises(SystemCheckError, match=r'AUTOMATE\["STEP_MAX_ATTEMPTS"\] must be'):
        call_command("check")


def test_a_key_with_its_own_check_id_keeps_it():
    assert [m.id for m in messages_for(MCP_STDIO_START_TIMEOUT=-1)] == ["automate.E405"]
    [error] = messages_for(MCP_STDIO_SERVERS=["time"])
    assert error.id == "automate.E400" and '"command": ["uvx"' in error.hint


def test_a_bad_value_never_shows_a_secret():
    [keys] = messages_for(ENCRYPTION_KEYS="a-single-key-not-in-a-list")
    [secrets] = messages_for(SECRETS={"token": {"value": "hunter2"}})
    assert keys.id == secrets.id == "automate.E105"
    assert "a-single-key" not in keys.msg and keys.msg.endswith("not str.")
    assert "hunter2" not in secrets.msg and secrets.msg.endswith("not dict.")


def test_a_choice_shows_the_rejected_value_and_is_left_to_its_own_check():
    # EXECUTION is reported by automate.checks.check_celery_app as automate.E004.
    assert messages_for(EXECUTION="threads") == []
    bad = override_settings(AUTOMATE={"EXECUTION": "threads"})
    with bad, pytest.raises(ImproperlyConfigured) as info:
        _ = app_settings.EXECUTION
    assert str(info.value) == (
        "AUTOMATE[\"EXECUTION\"] must be one of 'auto', 'celery', 'embedded', not 'threads'."
    )


@override_settings(AUTOMATE={"OUTBOX_LEASE_SECONDS": "300", "STEP_MAX_ATTEMPTS": -2})
def test_reading_a_bad_value_raises_improperly_configured_naming_it():
    with pytest.raises(ImproperlyConfigured, match=r'AUTOMATE\["OUTBOX_LEASE_SECONDS"\]'):
        _ = automate_settings.OUTBOX_LEASE_SECONDS
    with pytest.raises(ImproperlyConfigured, match=r'AUTOMATE\["STEP_MAX_ATTEMPTS"\]'):
        _ = app_settings.STEP_MAX_ATTEMPTS
    # One bad key does not stop the others.
    assert automate_settings.OUTBOX_MAX_ATTEMPTS == 8
    assert app_settings.STEP_TIMEOUT_SECONDS == 30.0


@override_settings(AUTOMATE=["not", "a", "dict"])
def test_automate_not_a_dict_is_e100_and_fails_reads():
    assert [m.id for m in check_settings()] == ["automate.E100"]
    with pytest.raises(ImproperlyConfigured, match="AUTOMATE must be a dict"):
        _ = automate_settings.OUTBOX_MAX_ATTEMPTS


def test_deeper_checks_skip_a_value_of_the_wrong_type():
    # A string is not a list of backends: E105 only, no E102 per character.
    assert [m.id for m in messages_for(SECRET_BACKENDS="automate_core.x")] == ["automate.E105"]


# -- Unknown keys --------------------------------------------------------------------


def test_unknown_key_detection_knows_every_installed_apps_keys():
    known = {"OUTBOX_MAX_ATTEMPTS": 3, "STEP_MAX_ATTEMPTS": 2, "LLM_HTTP_CLIENT_FACTORY": None}
    assert messages_for(**known) == []
    [warning] = messages_for(**known, STEP_MAX_ATTEMPT=2)
    assert warning.id == "automate.W100" and "'STEP_MAX_ATTEMPT'" in warning.msg


def test_a_key_of_an_app_that_is_not_installed_is_unknown(monkeypatch):
    monkeypatch.setattr(
        conf, "installed_settings_classes", lambda: [CoreSettings, AutomateSettings]
    )
    [warning] = messages_for(LLM_HTTP_CLIENT_FACTORY=None)
    assert warning.id == "automate.W100"


# -- Which object serves which key ---------------------------------------------------


def test_an_app_object_serves_only_its_own_keys():
    with pytest.raises(AttributeError, match=r"STEP_MAX_ATTEMPTS is a setting of automate\.conf"):
        _ = llm_settings.STEP_MAX_ATTEMPTS
    with pytest.raises(AttributeError, match=r"OUTBOX_MAX_ATTEMPTS is a setting of automate_core"):
        _ = app_settings.OUTBOX_MAX_ATTEMPTS
    with pytest.raises(AttributeError, match=r"'NO_SUCH_KEY' is not a setting of automate\.conf"):
        _ = app_settings.NO_SUCH_KEY


def test_core_object_serves_only_core_keys():
    with override_settings(AUTOMATE={"STEP_MAX_ATTEMPTS": 5}):
        assert app_settings.STEP_MAX_ATTEMPTS == 5
        with pytest.raises(
            AttributeError, match=r"STEP_MAX_ATTEMPTS is a setting of automate\.conf"
        ):
            _ = automate_settings.STEP_MAX_ATTEMPTS
    with pytest.raises(AttributeError):
        _ = automate_settings.NO_SUCH_KEY


def test_the_objects_can_be_copied_and_never_show_values():
    assert copy.copy(automate_settings) is not None
    assert repr(app_settings) == "<lazy AutomateSettings>"
    with pytest.raises(AttributeError):
        _ = automate_settings._private


def test_attributes_are_typed_for_mypy():
    hints = typing.get_type_hints(CoreSettings)
    assert hints["OUTBOX_MAX_ATTEMPTS"] is int
    assert typing.get_type_hints(AutomateSettings)["STEP_BACKOFF_SECONDS"] is float
