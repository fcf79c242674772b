"""System checks: in the Celery mode the tasks bind to the project's app and broker."""

from __future__ import annotations

import sys

import pytest
from celery import Celery, _state
from django.test import override_settings

from automate.checks import check_celery_app

BROKER = "redis://127.0.0.1:6379/12"


@pytest.fixture(autouse=True)
def no_celery_app(monkeypatch):
    """Start as a process that loaded no Celery app; Celery's state is restored after."""
    monkeypatch.setattr(_state, "default_app", None)
    monkeypatch.setattr(_state._tls, "current_app", None)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    # Celery's Django fix-up puts the working directory on sys.path.
    monkeypatch.setattr(sys, "path", [*sys.path])


@pytest.fixture
def project_app():
    """What yourproject/celery.py does, imported by yourproject/__init__.py."""
    app = Celery("checks_project")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.set_current()
    yield app
    app.close()


def ids(messages) -> list[str]:
    return [m.id for m in messages]


@override_settings(CELERY_BROKER_URL=BROKER)
def test_celery_check__no_project_app_means_celerys_fallback_app():
    [message] = check_celery_app()
    assert message.id == "automate.W004"
    assert "amqp://guest@localhost//" in message.msg
    assert "config_from_object('django.conf:settings', namespace='CELERY')" in message.hint
    assert "__init__.py" in message.hint


@override_settings(CELERY_BROKER_URL=BROKER, CELERY_DB_REUSE_MAX=10_000)
def test_celery_check__project_app_configured_from_settings_is_silent(project_app):
    assert project_app.conf.broker_url == BROKER
    assert check_celery_app() == []


@override_settings(CELERY_BROKER_URL=BROKER)
def test_celery_check__without_db_reuse_max_each_task_would_reconnect(project_app):
    [message] = check_celery_app()
    assert message.id == "automate.W006"
    assert "CELERY_DB_REUSE_MAX" in message.msg and "new database connection" in message.msg
    assert "CELERY_DB_REUSE_MAX = 10_000" in message.hint


@override_settings(CELERY_BROKER_URL=BROKER, CELERY_DB_REUSE_MAX=10_000)
def test_celery_check__db_reuse_max_is_read_as_celerys_django_fixup_reads_it(project_app):
    """The setting the check finds is the one Celery's fix-up keeps connections by."""
    from celery.fixups.django import DjangoWorkerFixup

    assert DjangoWorkerFixup(project_app).db_reuse_max == 10_000
    assert check_celery_app() == []


@override_settings(CELERY_BROKER_URL=None, AUTOMATE={"EXECUTION": "celery"})
def test_celery_check__explicit_celery_mode_with_the_broker_set_elsewhere_is_silent():
    app = Celery("checks_project", broker="redis://127.0.0.1:6379/3")
    app.conf.update(CELERY_DB_REUSE_MAX=10_000)
    try:
        assert check_celery_app() == []
    finally:
        app.close()


@override_settings(CELERY_BROKER_URL=None, AUTOMATE={"EXECUTION": "celery"})
def test_celery_check__explicit_celery_mode_without_a_project_app_warns():
    assert ids(check_celery_app()) == ["automate.W004"]


@override_settings(CELERY_BROKER_URL=BROKER)
def test_celery_check__app_with_another_broker_warns_without_its_password():
    app = Celery("checks_project", broker="redis://:pw-never-shown@127.0.0.1:6379/3")
    try:
        [message] = check_celery_app()
    finally:
        app.close()
    assert message.id == "automate.W005"
    assert "'checks_project'" in message.msg and BROKER in message.msg
    assert "redis://:**@127.0.0.1:6379/3" in message.msg
    assert "pw-never-shown" not in f"{message.msg} {message.hint}"


@override_settings(CELERY_BROKER_URL=BROKER, CELERY_DB_REUSE_MAX=10_000)
def test_celery_check__environment_variable_overriding_the_setting_warns(project_app, monkeypatch):
    # Celery's own CELERY_BROKER_URL variable wins over every configured broker.
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/4")
    [message] = check_celery_app()
    assert message.id == "automate.W005" and "environment variable" in message.hint


@pytest.mark.parametrize(
    "settings",
    [
        {"CELERY_BROKER_URL": None},  # "auto" without a broker: embedded
        {"CELERY_BROKER_URL": BROKER, "AUTOMATE": {"EXECUTION": "embedded"}},
    ],
)
def test_celery_check__embedded_mode_needs_no_celery_app(settings):
    with override_settings(**settings):
        assert check_celery_app() == []


@override_settings(AUTOMATE={"EXECUTION": "threads"})
def test_celery_check__unknown_execution_mode_is_e004():
    [message] = check_celery_app()
    assert message.id == "automate.E004" and "'threads'" in message.msg
