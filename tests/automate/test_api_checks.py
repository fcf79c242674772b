"""automate.W020: the REST API is mounted but DRF's templates (the browsable API) are not."""

from __future__ import annotations

import pytest
from django.core import checks
from django.test import modify_settings, override_settings

WITHOUT_DRF_APP = modify_settings(INSTALLED_APPS={"remove": ["rest_framework"]})


def w020() -> list[checks.CheckMessage]:
    return [m for m in checks.run_checks(tags=["automate"]) if m.id == "automate.W020"]


@WITHOUT_DRF_APP
@pytest.mark.parametrize("urlconf", ["tests.urls", "tests.stock_drf.urls_namespaced"])
def test_check__api_mounted_without_rest_framework_app_warns(urlconf):
    with override_settings(ROOT_URLCONF=urlconf):
        (message,) = w020()
    assert message.level == checks.WARNING
    assert "'rest_framework' is not in INSTALLED_APPS" in message.msg
    assert message.hint.startswith('Add "rest_framework" to INSTALLED_APPS')


@WITHOUT_DRF_APP
@override_settings(ROOT_URLCONF="tests.stock_drf.urls_no_api")
def test_check__api_not_mounted_is_silent():
    assert w020() == []


def test_check__rest_framework_installed_is_silent():
    assert w020() == []
