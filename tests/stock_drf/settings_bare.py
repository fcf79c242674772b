"""The stock project without ``rest_framework`` in INSTALLED_APPS (DRF is imported, not
installed as an app): the browsable API's templates are then missing."""

from __future__ import annotations

from tests.stock_drf.settings import *  # noqa: F403

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "rest_framework"]  # noqa: F405
